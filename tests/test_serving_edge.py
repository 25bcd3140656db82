"""Edge mode: ``gyre serve --bundle model.gyre`` serves the bundle alone (no tracking server,
no network), logs to local disk, and syncs the log to a central ``gyre server`` that may be
down: serving goes on, nothing is lost, and a retried sync duplicates nothing."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from gyre.artifacts import open_artifact_store
from gyre.artifacts._http import HttpArtifactStore
from gyre.errors import BackendUnavailable
from gyre.models import save_model
from gyre.models._bundle import write_bundle
from gyre.predictions import query
from gyre.serving import _listen
from gyre.serving._edge import EdgeSync
from tests.fixtures.predictions import FailingStore
from tests.fixtures.server import ServerFactory, free_port, wait_healthy
from tests.test_serving_app import lifespan
from tests.test_serving_batch import _cli
from tests.test_serving_deploy import EXAMPLE, scaled
from tests.test_serving_process import offline_serve  # noqa: F401 - a fixture

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextmanager
def central_server(port: int, folder: Path) -> Iterator[str]:
    """A ``gyre server`` (in a thread) on ``port``, storing under ``folder``."""
    from gyre.server import create_app
    from gyre.store._sql import SqlStore

    folder.mkdir(exist_ok=True)
    app = create_app(SqlStore(f"sqlite:///{folder / 'gyre.db'}"),
                     open_artifact_store(str(folder / "artifacts")), auth=False)  # fmt: skip
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, alive=thread.is_alive)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def _ids(store_dir: Path, model: str) -> list[tuple[str, int]]:
    table = query(open_artifact_store(str(store_dir)), model)
    return sorted((r["request_id"], r["version"]) for r in table.to_pylist())


async def test_edge_serves_a_bundle_offline_and_syncs_when_central_comes_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gyre.serving._entry import app_from_env

    package = tmp_path / "pkg"
    save_model(scaled(2.0), package, input_example=EXAMPLE)
    bundle = write_bundle(package, tmp_path / "svc.gyre", name="svc", version=3)
    assert bundle.model_version == 3
    port = free_port()
    central = f"http://127.0.0.1:{port}"
    # Any use of the tracking server would fail: nothing listens there.
    monkeypatch.setenv("GYRE_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(_listen, "run", lambda app, **kw: calls.append(kw))
    monkeypatch.setenv("_GYRE_SERVE_SPEC", "-")  # so that monkeypatch removes what serve sets
    edge_dir = tmp_path / "edge"
    result = CliRunner().invoke(
        _cli(),
        ["serve", "--bundle", str(tmp_path / "svc.gyre"), "--log-dir", str(edge_dir),
         "--sync-to", central, "--sync-interval", "0", "--port", "0"],
        env={"COLUMNS": "200"},  # (the banner on one line)
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "svc v3" in result.output and f"edge mode, sync to {central}" in result.output
    spec = json.loads(os.environ["_GYRE_SERVE_SPEC"])
    assert spec["edge"]["store"] == str(edge_dir / "store")

    app = app_from_env()
    transport = httpx.ASGITransport(app=app)
    answered: list[str] = []
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://edge") as client,
        lifespan(app),
    ):

        async def predict(n: int) -> None:
            for _ in range(n):
                a = await client.post("/predict/svc", json=[{"x": 1.5}])
                assert a.status_code == 200 and a.json()["predictions"] == [3.0]
                assert a.headers["x-gyre-model-version"] == "3"
                answered.append(a.json()["request_id"])

        await predict(5)
        down = await client.post("/admin/sync")  # central is down
        assert down.status_code == 503, down.text
        assert down.json()["error_code"] == "BACKEND_UNAVAILABLE"
        assert central in down.json()["message"]
        await predict(5)  # serving goes on
        status = (await client.get("/admin/status")).json()["sync"]
        assert status["failures"] == 1 and central in status["last_error"]

        with central_server(port, tmp_path / "central") as url:
            up = await client.post("/admin/sync")
            assert up.status_code == 200, up.text
            assert up.json()["report"]["models"] == ["svc"]
            assert _ids(tmp_path / "central" / "artifacts", "svc") == sorted(
                (rid, 3) for rid in answered
            )
            again = await client.post("/admin/sync")
            assert again.json()["report"]["entries"] == 0, "nothing twice"
            metrics = (await client.get("/metrics")).text
            assert 'gyre_serving_sync_total{outcome="ok"} 2.0' in metrics
            assert 'gyre_serving_sync_total{outcome="failed"} 1.0' in metrics
            await predict(4)  # logged after the last sync: compacted at shutdown
    assert len(answered) == 14

    # The next sync (here: a fresh one, as after a restart) is cut short, then retried.
    local = open_artifact_store(str(edge_dir / "store"))
    with (
        central_server(port, tmp_path / "central") as url,
        HttpArtifactStore(url, retry_seconds=2.0) as remote,
    ):
        flaky: Any = FailingStore(remote, blobs_left=0)
        with pytest.raises(BackendUnavailable):
            EdgeSync(None, local, flaky).run_once()
        EdgeSync(None, local, remote).run_once()
    expected = sorted((rid, 3) for rid in answered)
    assert _ids(tmp_path / "central" / "artifacts", "svc") == expected, "all, once"
    assert _ids(edge_dir / "store", "svc") == expected, "and all kept at the edge"
    assert (edge_dir / "spool").is_dir()


async def test_background_sync_carries_the_log_to_central(tmp_path: Path) -> None:
    import asyncio
    import time

    from gyre.models import load_model
    from gyre.predictions import PredictionLog
    from gyre.serving import ServedModel
    from tests.test_serving_app import serving

    package = tmp_path / "pkg"
    save_model(scaled(1.0), package, input_example=EXAMPLE)
    local = open_artifact_store(str(tmp_path / "store"))
    log = PredictionLog(tmp_path / "spool", local, sync_interval_ms=5)
    edge_sync = EdgeSync(log, local, str(tmp_path / "central"), interval=0.05)
    async with serving(
        [ServedModel("svc", "1", load_model(package))], prediction_log=log, edge_sync=edge_sync
    ) as client:
        ids = [(await client.post("/predict/svc", json=[{"x": 1.0}])).json()["request_id"]
               for _ in range(3)]  # fmt: skip
        deadline = time.monotonic() + 20
        while len(query(open_artifact_store(str(tmp_path / "central")), "svc")) < 3:
            assert time.monotonic() < deadline, edge_sync.status()
            await asyncio.sleep(0.02)  # poll interval, not synchronisation
    assert _ids(tmp_path / "central", "svc") == sorted((rid, 1) for rid in ids)
    assert edge_sync.status()["syncs"] >= 1 and edge_sync.status()["last_error"] is None


def _bundle(tmp_path: Path) -> Path:
    package = tmp_path / "pkg"
    save_model(scaled(2.0), package, input_example=EXAMPLE)
    write_bundle(package, tmp_path / "svc.gyre", name="svc", version=3)
    return tmp_path / "svc.gyre"


def test_edge_refuses_a_log_folder_it_cannot_write(
    tmp_path: Path,
    offline_serve: list[dict[str, Any]],  # noqa: F811
) -> None:
    """Not a server that answers 200 while every prediction fails to spool: one line naming
    the folder, at start-up."""
    from gyre.errors import InvalidArgument

    bundle = _bundle(tmp_path)
    (tmp_path / "a-file").write_text("not a folder")
    bad = tmp_path / "a-file" / "edge"
    args = ["serve", "--bundle", str(bundle), "--port", "0", "--log-dir"]
    result = CliRunner().invoke(_cli(), [*args, str(bad)])
    assert isinstance(result.exception, InvalidArgument)
    assert str(result.exception) == (
        f"cannot write the prediction log to {str(bad / 'spool')!r}: Not a directory (point "
        "--log-dir at a folder this user can write, or serve with --no-log)"
    )
    assert offline_serve == []
    edge = tmp_path / "edge"
    result = CliRunner().invoke(_cli(), [*args, str(edge)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in edge.iterdir()) == ["spool", "store"]
    assert not [p for p in edge.rglob("*") if p.is_file()], "the probes are removed"


@pytest.mark.parametrize("uri", ["ftp://nowhere", "s3://", "file://elsewhere/x"])
def test_edge_refuses_a_sync_target_gyre_sync_refuses(
    tmp_path: Path,
    offline_serve: list[dict[str, Any]],  # noqa: F811
    uri: str,
) -> None:
    """``--sync-to`` is checked as ``gyre sync --to`` is (the same words), not left to a
    background sync that fails forever."""
    from gyre.errors import InvalidArgument

    with pytest.raises(InvalidArgument) as refused:  # what `gyre sync --to URI` says
        open_artifact_store(uri)
    bundle = _bundle(tmp_path)
    edge = ["--bundle", str(bundle), "--port", "0", "--log-dir", str(tmp_path / "edge")]
    result = CliRunner().invoke(_cli(), ["serve", *edge, "--sync-to", uri])
    assert isinstance(result.exception, InvalidArgument)
    assert result.exception.message == f"--sync-to: {refused.value.message}"
    assert result.exception.hint == refused.value.hint
    assert offline_serve == []


def test_central_refusing_the_token_is_not_the_edge_refusing_its_client(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    """A central server that refuses the edge's token: the edge's sync fails as a
    dependency does (503 on ``POST /admin/sync``), naming central and GYRE_TOKEN, not as a
    401 its own client would take for its own token being wrong."""
    guarded = server_factory(auth=True)
    local = open_artifact_store(str(tmp_path / "store"))
    central = HttpArtifactStore(guarded.url, token="not-a-token", retry_seconds=1.0)
    edge_sync = EdgeSync(None, local, central, interval=0)
    with pytest.raises(BackendUnavailable) as refused:
        edge_sync.run_once()
    edge_sync.close()
    assert f"{guarded.url!r} refused the prediction log's sync" in refused.value.message
    assert refused.value.hint is not None and "GYRE_TOKEN" in refused.value.hint
    assert edge_sync.status()["failures"] == 1 and edge_sync.status()["syncs"] == 0


def test_edge_flags_that_cannot_work_are_refused_with_the_way_that_does(
    tmp_path: Path,
    offline_serve: list[dict[str, Any]],  # noqa: F811
) -> None:
    """A folder given as --bundle, --sync-interval without --sync-to (it was ignored), and
    a public address without auth (edge mode needs --auth to read tokens at all)."""
    from gyre.errors import InvalidArgument

    bundle = _bundle(tmp_path)
    edge = ["--port", "0", "--log-dir", str(tmp_path / "edge")]
    folder = CliRunner().invoke(_cli(), ["serve", "--bundle", str(tmp_path), *edge])
    assert isinstance(folder.exception, InvalidArgument)
    assert folder.exception.message == (
        f"bundle {str(tmp_path)!r} is a folder; --bundle takes a .gyre file"
    )
    alone = CliRunner().invoke(
        _cli(), ["serve", "--bundle", str(bundle), *edge, "--sync-interval", "5"]
    )
    assert isinstance(alone.exception, InvalidArgument)
    assert alone.exception.message == (
        "--sync-interval 5 without --sync-to: there is nowhere to sync to"
    )
    public = CliRunner().invoke(
        _cli(), ["serve", "--bundle", str(bundle), *edge, "--host", "0.0.0.0"]
    )
    assert isinstance(public.exception, InvalidArgument)
    assert public.exception.hint is not None and "again with --auth" in public.exception.hint
    assert offline_serve == []


def test_the_status_says_when_a_sync_is_under_way(tmp_path: Path) -> None:
    """A central that answers slowly (or never: the client waits its timeout) keeps a sync
    running; the status says since when, rather than showing nothing at all."""
    release = threading.Event()
    asked = threading.Event()

    class Slow:
        uri = "https://slow.central"

        def read_manifest(self, scope: str) -> dict[str, Any]:
            asked.set()
            release.wait(timeout=30)
            return {}

    edge_sync = EdgeSync(None, open_artifact_store(str(tmp_path / "store")), Slow())  # type: ignore[arg-type]
    syncing = threading.Thread(target=edge_sync.run_once)
    syncing.start()
    try:
        assert asked.wait(timeout=30)
        running = edge_sync.status()
    finally:
        release.set()
        syncing.join(timeout=30)
    assert running["running_since_ms"] is not None and running["syncs"] == 0
    done = edge_sync.status()
    assert done["running_since_ms"] is None and done["syncs"] == 1


def test_admin_sync_takes_the_records_of_every_worker(tmp_path: Path) -> None:
    """``gyre serve --bundle --workers 2``: ``POST /admin/sync`` reaches one worker, and the
    other's records (in a spool file it is still writing) go to central with it, not at
    that worker's next compaction interval."""
    from tests.test_serving_process import _gyre_serve

    package = tmp_path / "pkg"
    save_model(scaled(2.0), package, input_example=EXAMPLE)
    write_bundle(package, tmp_path / "svc.gyre", name="svc", version=3)
    central = tmp_path / "central"
    args = ["--bundle", str(tmp_path / "svc.gyre"), "--log-dir", str(tmp_path / "edge"),
            "--sync-to", str(central), "--sync-interval", "0", "--workers", "2"]  # fmt: skip
    env = {**os.environ, "GYRE_HOME": str(tmp_path / "home"), "GYRE_COMPACT_INTERVAL_S": "3600"}
    with _gyre_serve(tmp_path, args, env) as (_, url):
        # a connection each: the two workers take turns accepting them
        answered = [
            httpx.post(f"{url}/predict/svc", json=[{"x": 1.5}]).json()["request_id"]
            for _ in range(40)
        ]
        synced = httpx.post(f"{url}/admin/sync", timeout=60)
        assert synced.status_code == 200, synced.text
        assert synced.headers["x-gyre-workers-flushed"] == "2/2"
        logged = query(open_artifact_store(str(central)), "svc").to_pylist()
        assert sorted(r["request_id"] for r in logged) == sorted(answered)
