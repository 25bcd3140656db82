"""The artifact store seam: both backends, the path checks, file/folder transfer, streaming."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gyre.artifacts import (
    ArtifactStore,
    BlobRef,
    close_artifact_store,
    download,
    list_artifacts,
    open_artifact_store,
    upload,
    validate_artifact_path,
)
from gyre.artifacts._local import LocalArtifactStore
from gyre.artifacts._verify import CHUNK_BYTES, open_verified, spooled
from gyre.errors import BackendUnavailable, Conflict, IntegrityError, InvalidArgument, NotFound
from gyre.testing._artifacts import check_artifact_store


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """Each backend in turn, empty (S3: a fresh prefix in the test server's bucket)."""
    if request.param == "local":
        opened: Any = LocalArtifactStore(str(tmp_path / "artifacts"))
    else:
        from gyre.artifacts.s3 import S3ArtifactStore

        opened = S3ArtifactStore(request.getfixturevalue("s3_uri"))
    with opened:
        yield opened


def _damage(store: Any, digest: str, request: pytest.FixtureRequest) -> None:
    """Flip one byte of the stored blob, behind the store's back."""
    if isinstance(store, LocalArtifactStore):
        path = store.blob_path(digest)
        path.chmod(0o644)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        client = request.getfixturevalue("s3_client")
        key = store.blob_key(digest)
        body = client.get_object(Bucket=store.bucket, Key=key)["Body"]
        with body:
            data = bytearray(body.read())
        data[len(data) // 2] ^= 0xFF
        client.put_object(Bucket=store.bucket, Key=key, Body=bytes(data))


def _stored_blobs(store: Any, request: pytest.FixtureRequest) -> list[str]:
    """The names under which the backend physically keeps blobs."""
    if isinstance(store, LocalArtifactStore):
        return sorted(p.name for p in (store.root / "blobs").rglob("*") if p.is_file())
    client = request.getfixturevalue("s3_client")
    listing = client.list_objects_v2(Bucket=store.bucket, Prefix=f"{store.prefix}/blobs/")
    return sorted(item["Key"].rsplit("/", 1)[-1] for item in listing.get("Contents", []))


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# -- conformance and backend specifics --------------------------------------------------------


def test_conformance(store: ArtifactStore) -> None:
    check_artifact_store(store)


def test_identical_bytes_are_stored_once(store: Any, request: pytest.FixtureRequest) -> None:
    data = os.urandom(2 * CHUNK_BYTES + 3)
    refs = {store.put_blob(io.BytesIO(data)) for _ in range(3)}
    assert refs == {BlobRef(hashlib.sha256(data).hexdigest(), len(data))}
    assert _stored_blobs(store, request) == [hashlib.sha256(data).hexdigest()]


def test_damaged_blob_is_detected_on_read(
    store: Any, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    data = os.urandom(CHUNK_BYTES + 100)
    ref = store.put_blob(io.BytesIO(data))
    store.append_manifest("runs/damaged", {"model.bin": ref})
    _damage(store, ref.digest, request)

    with store.open_blob(ref.digest) as stream, pytest.raises(IntegrityError, match=ref.digest):
        stream.read()
    # A download never leaves the damaged bytes behind, not even as a partial file.
    dest = tmp_path / "out"
    with pytest.raises(IntegrityError, match=ref.digest):
        download(store, "runs/damaged", dest)
    assert list(dest.iterdir()) == []


def test_a_damaged_copy_is_repaired_by_the_next_upload(
    store: Any, request: pytest.FixtureRequest
) -> None:
    data = os.urandom(5000)
    ref = store.put_blob(io.BytesIO(data))
    # Truncation changes the size, which put_blob can see without reading the blob back.
    if isinstance(store, LocalArtifactStore):
        path = store.blob_path(ref.digest)
        path.chmod(0o644)
        path.write_bytes(data[:-1])
    else:
        client = request.getfixturevalue("s3_client")
        client.put_object(Bucket=store.bucket, Key=store.blob_key(ref.digest), Body=data[:-1])
    assert store.put_blob(io.BytesIO(data)) == ref
    with store.open_blob(ref.digest) as stream:
        assert stream.read() == data


def test_concurrent_writers_of_one_blob(store: Any) -> None:
    data = os.urandom(3 * CHUNK_BYTES)
    start = threading.Barrier(4)
    refs: list[BlobRef] = []

    def put() -> None:
        start.wait(timeout=30)
        refs.append(store.put_blob(io.BytesIO(data)))

    threads = [threading.Thread(target=put) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(refs) == 4 and len(set(refs)) == 1
    with store.open_blob(refs[0].digest) as stream:
        assert stream.read() == data
    if isinstance(store, LocalArtifactStore):
        assert list((store.root / "tmp").iterdir()) == [], "no partial files are left"


# -- opening by URI -------------------------------------------------------------------------


def test_open_local_by_path_and_file_uri(tmp_path: Path) -> None:
    by_path = open_artifact_store(str(tmp_path / "a"))
    by_uri = open_artifact_store(f"file://{tmp_path / 'a'}")
    assert isinstance(by_path, LocalArtifactStore) and isinstance(by_uri, LocalArtifactStore)
    assert by_path.root == by_uri.root == tmp_path / "a"
    ref = by_path.put_blob(io.BytesIO(b"shared"))
    assert by_uri.has_blob(ref.digest)


@pytest.mark.s3
def test_open_s3_by_uri(s3_uri: str) -> None:
    from gyre.artifacts.s3 import S3ArtifactStore

    opened = open_artifact_store(s3_uri)
    assert isinstance(opened, S3ArtifactStore)
    with opened:
        assert opened.read_manifest("runs/none") == {}


def test_open_http_by_uri() -> None:
    from gyre.artifacts._http import HttpArtifactStore

    opened = open_artifact_store("http://127.0.0.1:1")
    assert isinstance(opened, HttpArtifactStore)
    opened.close()


@pytest.mark.parametrize(
    ("uri", "needle"),
    [
        ("ftp://host/x", "'ftp://host/x'"),
        ("", "''"),
        ("file://otherhost/x", "'otherhost'"),
        ("s3://", "'s3://'"),
        ("s3://bucket/a/../b", "'s3://bucket/a/../b'"),
    ],
)
def test_bad_uris_are_refused_naming_them(uri: str, needle: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        open_artifact_store(uri)
    assert needle in str(caught.value)


@pytest.mark.s3
def test_missing_bucket_is_named(s3_uri: str) -> None:
    from gyre.artifacts.s3 import S3ArtifactStore

    with S3ArtifactStore("s3://no-such-bucket-here/prefix") as missing:
        with pytest.raises(NotFound, match="no-such-bucket-here") as caught:
            missing.put_blob(io.BytesIO(b"data"))
        assert caught.value.hint and "mb s3://no-such-bucket-here" in caught.value.hint
        with pytest.raises(NotFound, match="no-such-bucket-here"):
            missing.read_manifest("runs/1")


def test_unreachable_endpoint_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from gyre.artifacts.s3 import S3ArtifactStore

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("GYRE_S3_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with S3ArtifactStore("s3://bucket/p", max_attempts=1) as unreachable:
        with pytest.raises(BackendUnavailable, match=endpoint):
            unreachable.read_manifest("runs/1")
        with pytest.raises(BackendUnavailable, match=endpoint):
            unreachable.put_blob(io.BytesIO(b"x"))


def test_malformed_endpoint_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from gyre.artifacts.s3 import S3ArtifactStore

    monkeypatch.setenv("GYRE_S3_ENDPOINT_URL", "not-a-url")
    with pytest.raises(InvalidArgument, match="not-a-url"):
        S3ArtifactStore("s3://bucket/p")


# -- path checks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    ["..", "../x", "a/../../x", "a/..", "/etc/passwd", "//x", "", ".", "a\\b", "a\x00b", "C:/x"],
)
def test_bad_artifact_paths_are_refused_naming_them(bad: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_artifact_path(bad)
    assert repr(bad) in str(caught.value)


@pytest.mark.parametrize(
    ("path", "normal"),
    [("a", "a"), ("a//b/./c/", "a/b/c"), ("./model.pkl", "model.pkl"), ("x..y/z", "x..y/z")],
)
def test_artifact_paths_are_normalised(path: str, normal: str) -> None:
    assert validate_artifact_path(path) == normal


def test_upload_refuses_bad_artifact_path_and_scope(tmp_path: Path) -> None:
    source = tmp_path / "f.txt"
    source.write_text("x")
    store = LocalArtifactStore(str(tmp_path / "store"))
    for bad in ("../up", "/abs"):
        with pytest.raises(InvalidArgument, match=repr(bad)):
            upload(store, "runs/1", source, bad)
    with pytest.raises(InvalidArgument, match="'../runs'"):
        upload(store, "../runs", source)
    assert not (tmp_path / "store").exists(), "nothing was written"


def test_upload_refuses_a_link_that_escapes(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("not for upload")
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "ok.txt").write_text("fine")
    link = folder / "sub" / "leak.txt"
    link.symlink_to(outside)
    store = LocalArtifactStore(str(tmp_path / "store"))
    with pytest.raises(InvalidArgument) as caught:
        upload(store, "runs/1", folder)
    assert str(link) in str(caught.value)
    assert store.read_manifest("runs/1") == {}, "nothing is recorded"
    assert not (tmp_path / "store" / "blobs").exists(), "nothing is stored"


def test_upload_refuses_a_folder_link_that_escapes(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x").write_text("x")
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "escape").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(InvalidArgument, match="escape"):
        upload(LocalArtifactStore(str(tmp_path / "store")), "runs/1", folder)


def test_upload_follows_links_that_stay_inside_and_refuses_cycles(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    (folder / "real").mkdir(parents=True)
    (folder / "real" / "w.bin").write_bytes(b"weights")
    (folder / "alias.bin").symlink_to(folder / "real" / "w.bin")
    (folder / "view").symlink_to("real", target_is_directory=True)
    store = LocalArtifactStore(str(tmp_path / "store"))
    entries = upload(store, "runs/1", folder)
    assert sorted(entries) == ["alias.bin", "real/w.bin", "view/w.bin"]
    assert len(set(entries.values())) == 1

    (folder / "real" / "loop").symlink_to(folder, target_is_directory=True)
    with pytest.raises(InvalidArgument, match="loop"):
        upload(store, "runs/2", folder)


def test_upload_refuses_broken_links_and_special_files(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    store = LocalArtifactStore(str(tmp_path / "store"))
    (folder / "dangling").symlink_to(folder / "gone")
    with pytest.raises(NotFound, match="dangling"):
        upload(store, "runs/1", folder)
    (folder / "dangling").unlink()
    os.mkfifo(folder / "pipe")  # reading it would block forever
    with pytest.raises(InvalidArgument, match="pipe"):
        upload(store, "runs/1", folder)


def test_download_refuses_entries_that_would_land_outside(tmp_path: Path) -> None:
    class Hostile(LocalArtifactStore):
        """A store whose manifest was written by someone who did not use gyre."""

        bad_path = ""

        def read_manifest(self, scope: str) -> dict[str, BlobRef]:
            return {"fine.txt": ref, self.bad_path: ref}

    hostile = Hostile(str(tmp_path / "store"))
    ref = hostile.put_blob(io.BytesIO(b"payload"))
    dest = tmp_path / "dest"
    for bad in ("../evil.txt", "a/../../evil.txt", "/tmp/evil.txt"):
        hostile.bad_path = bad
        with pytest.raises(InvalidArgument, match=repr(bad)):
            download(hostile, "runs/1", dest)
    assert not (tmp_path / "evil.txt").exists()
    assert not dest.exists() or list(dest.iterdir()) == [], "nothing was written"


def test_download_does_not_follow_a_link_out_of_dest(tmp_path: Path) -> None:
    store = LocalArtifactStore(str(tmp_path / "store"))
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "f.txt").write_text("x")
    upload(store, "runs/1", source)
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "sub").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidArgument, match="sub/f.txt"):
        download(store, "runs/1", dest)
    assert list(outside.iterdir()) == []


# -- files and folders ----------------------------------------------------------------------


def test_folder_tree_round_trips(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "model"
    files = {
        "MLmodel": b"flavor: sklearn\n",
        "data/weights.bin": os.urandom(CHUNK_BYTES * 2 + 5),
        "data/copy-of-weights.bin": b"",
        "data/nested/deeper/empty.txt": b"",
        "données/ünïcode name.txt": "ça marche".encode(),
    }
    files["data/copy-of-weights.bin"] = files["data/weights.bin"]
    for rel, data in files.items():
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        (source / rel).write_bytes(data)
    (source / "empty-folder").mkdir()

    entries = upload(store, "runs/tree", source, "model")
    assert sorted(entries) == sorted(f"model/{rel}" for rel in files)
    assert entries["model/data/weights.bin"] == entries["model/data/copy-of-weights.bin"]
    assert list_artifacts(store, "runs/tree") == sorted(entries.items())
    assert [p for p, _ in list_artifacts(store, "runs/tree", "model/data/nested")] == [
        "model/data/nested/deeper/empty.txt"
    ]
    assert list_artifacts(store, "runs/tree", "model/dat") == [], "prefixes are folders"

    everything = download(store, "runs/tree", tmp_path / "all")
    assert everything == tmp_path / "all"
    assert _tree(everything / "model") == files

    sub = download(store, "runs/tree", tmp_path / "sub", "model/data/nested")
    assert sub == tmp_path / "sub" / "model" / "data" / "nested"
    assert _tree(tmp_path / "sub") == {"model/data/nested/deeper/empty.txt": b""}

    one = download(store, "runs/tree", tmp_path / "one", "model/MLmodel")
    assert one.read_bytes() == files["MLmodel"]

    with pytest.raises(NotFound, match="'model/nothing'"):
        download(store, "runs/tree", tmp_path / "none", "model/nothing")


def test_a_single_file_lands_under_artifact_path(tmp_path: Path) -> None:
    store = LocalArtifactStore(str(tmp_path / "store"))
    source = tmp_path / "report.html"
    source.write_text("<html/>")
    assert list(upload(store, "runs/1", source)) == ["report.html"]
    assert list(upload(store, "runs/1", source, "reports/v1")) == ["reports/v1/report.html"]
    assert [p for p, _ in list_artifacts(store, "runs/1")] == [
        "report.html",
        "reports/v1/report.html",
    ]
    with pytest.raises(NotFound, match="missing.txt"):
        upload(store, "runs/1", tmp_path / "missing.txt")


def test_download_overwrites_and_refuses_file_folder_clash(tmp_path: Path) -> None:
    store = LocalArtifactStore(str(tmp_path / "store"))
    a, b = (store.put_blob(io.BytesIO(x)) for x in (b"first", b"second"))
    store.append_manifest("runs/1", {"out.txt": a})
    dest = tmp_path / "dest"
    download(store, "runs/1", dest)
    store.append_manifest("runs/1", {"out.txt": b})
    download(store, "runs/1", dest)
    assert (dest / "out.txt").read_bytes() == b"second"

    store.append_manifest("runs/2", {"x": a, "x/y": b})
    with pytest.raises(Conflict, match="'x/y'"):
        download(store, "runs/2", tmp_path / "clash")


# -- the verifying reader and the spool -----------------------------------------------------


def test_verifying_reader_checks_at_eof() -> None:
    data = os.urandom(3 * CHUNK_BYTES + 1)
    digest = hashlib.sha256(data).hexdigest()
    with open_verified(io.BytesIO(data), digest, "memory") as good:
        assert b"".join(iter(lambda: good.read(12345), b"")) == data

    wrong = hashlib.sha256(b"other").hexdigest()
    with open_verified(io.BytesIO(data), wrong, "memory://x") as bad:
        bad.read(10)  # no verdict before the end
        with pytest.raises(IntegrityError, match=f"{wrong}.*memory://x"):
            bad.read()
        with pytest.raises(IntegrityError):
            bad.read()  # and the verdict does not go away


def test_spool_hashes_and_cleans_up(tmp_path: Path) -> None:
    data = os.urandom(CHUNK_BYTES + 7)
    with spooled(io.BytesIO(data), tmp_path) as (path, ref):
        assert path.read_bytes() == data
        assert ref == BlobRef(hashlib.sha256(data).hexdigest(), len(data))
    assert list(tmp_path.iterdir()) == []


# -- 500 MB through each backend, in a subprocess that reports its peak memory ---------------

BIG_BYTES = 500 * 1024 * 1024
PEAK_RSS_LIMIT_MB = 250

_STREAM_SCRIPT = """
import hashlib, json, os, resource, sys, time
from gyre.artifacts import download, open_artifact_store, upload


def peak_rss_mb():
    # Linux carries ru_maxrss across exec, so it would report the pytest process this
    # one was forked from; VmHWM is the peak of this program alone.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return usage / (1024 * 1024 if sys.platform == "darwin" else 1024)


uri, source, dest = sys.argv[1:4]
store = open_artifact_store(uri)
started = time.monotonic()
(ref,) = upload(store, "runs/big", source).values()
uploaded = time.monotonic()
os.remove(source)  # the store has it now; keeps the disk in use near 1 GB
path = download(store, "runs/big", dest, "big.bin")
downloaded = time.monotonic()
store.close()
sha = hashlib.sha256()
with open(path, "rb") as f:
    while chunk := f.read(1 << 20):
        sha.update(chunk)
print(json.dumps({
    "ref_digest": ref.digest,
    "file_digest": sha.hexdigest(),
    "upload_s": round(uploaded - started, 1),
    "download_s": round(downloaded - uploaded, 1),
    "peak_rss_mb": round(peak_rss_mb(), 1),
    "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
}))
"""


def _random_file(path: Path, size: int) -> str:
    sha = hashlib.sha256()
    with open(path, "wb") as out:
        remaining = size
        while remaining:
            chunk = os.urandom(min(CHUNK_BYTES, remaining))
            sha.update(chunk)
            out.write(chunk)
            remaining -= len(chunk)
    return sha.hexdigest()


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("backend", ["local", pytest.param("s3", marks=pytest.mark.s3)])
def test_500_mb_streams_with_bounded_memory(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    uri = str(tmp_path / "store") if backend == "local" else request.getfixturevalue("s3_uri")
    work = tmp_path / "big"
    work.mkdir()
    try:
        expected = _random_file(work / "big.bin", BIG_BYTES)
        done = subprocess.run(
            [sys.executable, "-c", _STREAM_SCRIPT, uri, str(work / "big.bin"), str(work / "out")],
            capture_output=True,
            text=True,
            timeout=840,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{backend}: {report}")
        assert report["ref_digest"] == report["file_digest"] == expected
        assert report["peak_rss_mb"] < PEAK_RSS_LIMIT_MB, report
    finally:
        # 500 MB per copy: never leave one for pytest's retained temp folders.
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(tmp_path / "store", ignore_errors=True)


def test_close_artifact_store_releases_what_a_store_holds_and_takes_one_without_close(
    tmp_path: Path,
) -> None:
    from gyre.artifacts._http import HttpArtifactStore

    remote = HttpArtifactStore("http://127.0.0.1:9")  # (nothing is contacted)
    close_artifact_store(remote)
    assert remote._client.is_closed
    close_artifact_store(LocalArtifactStore(str(tmp_path)))  # a folder store
    close_artifact_store(object())  # a plugin's store without close(): nothing to do
