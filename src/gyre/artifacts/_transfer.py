"""Files and folders in and out of an ArtifactStore: what every caller of the seam uses.

Nothing here may write outside the folder it is given or read outside the folder it is
asked to upload: paths are checked, links that escape are refused naming the link, and a
downloaded file appears only once its bytes have been verified.
"""

from __future__ import annotations

import os
import shutil
import uuid
from os import PathLike
from pathlib import Path
from typing import BinaryIO

from gyre.artifacts._paths import validate_artifact_path, validate_scope
from gyre.artifacts._protocol import ArtifactStore, BlobRef
from gyre.artifacts._verify import CHUNK_BYTES
from gyre.errors import Conflict, InvalidArgument, NotFound

__all__ = ["download", "list_artifacts", "upload"]

StrPath = str | PathLike[str]


def upload(
    store: ArtifactStore, scope: str, local_path: StrPath, artifact_path: str | None = None
) -> dict[str, BlobRef]:
    """Upload a file, or every file below a folder, into ``scope``; the entries recorded.

    A file lands at ``<artifact_path>/<its name>``, a folder's contents below
    ``artifact_path`` (at the top of the scope when it is None). Links inside a folder are
    followed if they stay inside it; one that escapes is refused, naming it. All entries
    are recorded with one ``append_manifest`` call, after every blob is stored.

    >>> upload(store, "runs/42", "model/", "model")  # doctest: +SKIP
    {'model/weights.bin': BlobRef(digest='9f86...', size=1024)}
    """
    scope = validate_scope(scope)
    under = _optional_path(artifact_path)
    source = Path(local_path)
    if source.is_dir():
        files = _files_below(source)
    elif source.is_file():
        # Named by the caller, so a link is followed; it keeps its own name.
        files = [(validate_artifact_path(source.name), source.resolve())]
    elif not source.exists():
        raise NotFound(f"{str(source)!r} does not exist", hint="check the path to upload")
    else:
        raise InvalidArgument(
            f"{str(source)!r} is not a regular file or folder", hint="upload files or folders"
        )
    entries: dict[str, BlobRef] = {}
    for rel, path in files:
        with _open_no_follow(path) as src:
            entries[f"{under}/{rel}" if under else rel] = store.put_blob(src)
    if entries:
        store.append_manifest(scope, entries)
    return entries


def download(
    store: ArtifactStore, scope: str, dest_dir: StrPath, artifact_path: str | None = None
) -> Path:
    """Download ``scope``'s artifacts (or the file or sub-tree ``artifact_path``) into
    ``dest_dir``, keeping their paths; the local path of what was asked for.

    Each file is written aside and renamed into place only after its digest checked out;
    entries that would land outside ``dest_dir`` are refused, naming them.

    >>> download(store, "runs/42", "out", "model")  # doctest: +SKIP
    PosixPath('out/model')
    """
    scope = validate_scope(scope)
    wanted = _optional_path(artifact_path)
    dest = Path(dest_dir)
    manifest = store.read_manifest(scope)
    if wanted:
        chosen = {p: r for p, r in manifest.items() if p == wanted or p.startswith(wanted + "/")}
        if not chosen:
            raise NotFound(
                f"no artifact {wanted!r} in {scope!r}",
                hint="list_artifacts(store, scope) shows what is there",
            )
    else:
        chosen = manifest
    # Re-checked here: a manifest may come from a store someone else wrote to.
    checked = {validate_artifact_path(p): r for p, r in chosen.items()}
    _refuse_file_folder_clash(checked)
    dest.mkdir(parents=True, exist_ok=True)
    real_dest = dest.resolve()
    for rel, ref in sorted(checked.items()):
        folder = _folder_inside(real_dest, rel, dest)
        _fetch(store, ref, folder / rel.rsplit("/", 1)[-1])
    return dest / wanted if wanted else dest


def list_artifacts(store: ArtifactStore, scope: str, prefix: str = "") -> list[tuple[str, BlobRef]]:
    """``(path, ref)`` of every artifact in ``scope`` at or below the folder ``prefix``,
    sorted by path.

    >>> list_artifacts(store, "runs/42", "model")  # doctest: +SKIP
    [('model/weights.bin', BlobRef(digest='9f86...', size=1024))]
    """
    manifest = store.read_manifest(validate_scope(scope))
    wanted = _optional_path(prefix)
    return sorted(
        (p, r)
        for p, r in manifest.items()
        if not wanted or p == wanted or p.startswith(wanted + "/")
    )


def _optional_path(path: str | None) -> str:
    return "" if path is None or path == "" else validate_artifact_path(path)


def _files_below(root: Path) -> list[tuple[str, Path]]:
    """``(artifact path, file to read)`` for every file below ``root``, in name order."""
    real_root = root.resolve()
    found: list[tuple[str, Path]] = []

    def walk(folder: Path, rel: str, chain: frozenset[Path]) -> None:
        # ``folder`` is a real path; ``chain`` the real folders on the way to it, so a link
        # back to one of them (a cycle) is caught instead of walked forever.
        with os.scandir(folder) as scan:
            children = sorted(scan, key=lambda e: e.name)
        for child in children:
            child_rel = f"{rel}/{child.name}" if rel else child.name
            path = Path(child.path)
            shown = str(root / child_rel)  # as the caller knows it, before resolving links
            if child.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(real_root):
                    raise InvalidArgument(
                        f"link {shown!r} points outside the uploaded folder {str(root)!r}, "
                        f"to {str(target)!r}",
                        hint="copy what it points to into the folder, or upload that separately",
                    )
                if not target.exists():
                    raise NotFound(f"link {shown!r} is broken: {str(target)!r} is missing")
                if target in chain:
                    raise InvalidArgument(
                        f"link {shown!r} points back to its own folder {str(target)!r}",
                        hint="remove the link; it would repeat the folder forever",
                    )
                path = target
            if path.is_dir() and not path.is_symlink():
                walk(path, child_rel, chain | {path})
            elif path.is_file() and not path.is_symlink():
                found.append((validate_artifact_path(child_rel), path))
            else:
                raise InvalidArgument(
                    f"{shown!r} is not a regular file or folder",
                    hint="move sockets, pipes and devices out of the folder to upload",
                )

    walk(real_root, "", frozenset({real_root}))
    return found


def _open_no_follow(path: Path) -> BinaryIO:
    # ``path`` was checked during the walk; refusing a link now closes the window in which
    # it could have been swapped for one that escapes.
    return os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)), "rb")


def _refuse_file_folder_clash(entries: dict[str, BlobRef]) -> None:
    for path in entries:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            ancestor = "/".join(parts[:depth])
            if ancestor in entries:
                raise Conflict(
                    f"artifacts {ancestor!r} and {path!r} cannot both be downloaded: "
                    f"{ancestor!r} is a file and also a folder",
                    hint="download one of them with artifact_path",
                )


def _folder_inside(real_dest: Path, rel: str, dest: Path) -> Path:
    """The (created) folder ``rel`` goes into, never outside ``real_dest``.

    Checked one level at a time before creating the next, so a link already in the
    destination cannot redirect a write elsewhere."""
    folder = real_dest
    for part in rel.split("/")[:-1]:
        candidate = folder / part
        if candidate.is_symlink() or candidate.exists():
            resolved = candidate.resolve()
            if not resolved.is_relative_to(real_dest):
                raise InvalidArgument(
                    f"artifact {rel!r} would land outside {str(dest)!r}: "
                    f"{str(candidate)!r} leads to {str(resolved)!r}",
                    hint="download into an empty folder",
                )
            if not resolved.is_dir():
                raise Conflict(
                    f"artifact {rel!r} needs {str(candidate)!r} to be a folder",
                    hint="download into an empty folder",
                )
            folder = resolved
        else:
            candidate.mkdir()
            folder = candidate
    return folder


def _fetch(store: ArtifactStore, ref: BlobRef, target: Path) -> None:
    # A unique name beside the target, created with the usual permissions (umask applies).
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.part")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as out, store.open_blob(ref.digest) as src:
            shutil.copyfileobj(src, out, CHUNK_BYTES)
        # Renaming replaces a link at ``target`` itself, never what it points to.
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
