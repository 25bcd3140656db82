"""The prediction server as a process: ``gyre serve`` in a subprocess (graceful shutdown with
two workers), uvicorn in a thread for an off-the-shelf OIP client (tritonclient), and the
command's auth rules."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from typer.testing import CliRunner

from gyre.models import Model
from gyre.serving import ServedModel, _listen, create_app, resolve_model
from gyre.serving._protocol import HOLDING_PROTOCOL, thread_config
from tests.test_predictions_compactor import _stat
from tests.test_serving_app import (
    classifier,  # noqa: F401 - a fixture
    classifier_data,
    regressor,  # noqa: F401 - a fixture
    save_classifier,
    save_doubler,
)
from tests.test_serving_batch import _cli

REPO = Path(__file__).resolve().parent.parent
READY_SECONDS = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(url: str, alive: Callable[[], bool], seconds: float = READY_SECONDS) -> None:
    """Poll ``/v2/health/ready`` until 200; fail at the deadline or once not ``alive()``."""
    deadline = time.monotonic() + seconds
    with httpx.Client(timeout=2.0) as client:
        while True:
            try:
                if client.get(f"{url}/v2/health/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if not alive():
                raise RuntimeError(f"server for {url} exited before it became ready")
            if time.monotonic() > deadline:
                raise TimeoutError(f"server at {url} not ready after {seconds} s")
            time.sleep(0.05)  # poll interval, not synchronisation


# -- a real `gyre serve` ------------------------------------------------------------------


@contextlib.contextmanager
def _gyre_serve(
    tmp_path: Path, args: list[str], env: dict[str, str]
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``gyre serve ARGS`` on a free port, ready; its output in ``tmp_path/serve.log``.
    Killed at the end if the test has not stopped it."""
    port = free_port()
    command = [sys.executable, "-c", "from tests.test_serving_batch import _cli; _cli()()",
               "serve", *args, "--port", str(port)]  # fmt: skip
    with (tmp_path / "serve.log").open("wb") as out:
        server = subprocess.Popen(
            command, env={**env, "PYTHONPATH": str(REPO)}, stdout=out, stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, alive=lambda: server.poll() is None)
            yield server, url
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()


def test_sigterm_drains_in_flight_requests(tmp_path: Path) -> None:
    model_dir = save_doubler(tmp_path / "slow", sleep=1.5)
    env = {**os.environ, "GYRE_HOME": str(tmp_path / "home")}
    args = [f"slow={model_dir}", "--workers", "2", "--no-log"]
    with _gyre_serve(tmp_path, args, env) as (server, url):
        answers: list[httpx.Response] = []
        slow = threading.Thread(
            target=lambda: answers.append(
                httpx.post(f"{url}/predict/slow", json=[{"x": 21.0}], timeout=30)
            )
        )
        slow.start()
        _wait_for_predict_call(url)
        server.send_signal(signal.SIGTERM)
        slow.join(timeout=30)
        assert server.wait(timeout=30) == 0
    [answer] = answers
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == [42.0]
    output = (tmp_path / "serve.log").read_text()
    assert '"logger":"gyre.serving.access"' in output and '"path":"/predict/slow"' in output
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/v2/health/live", timeout=2)


def test_everything_gyre_serve_writes_is_a_json_line(tmp_path: Path) -> None:
    """A log collector reads the server's output line by line: a warning a model's
    predict raises (numpy's overflow, say) is one JSON line too, not raw text."""
    model_dir = save_doubler(tmp_path / "dbl")  # warns on 555
    env = {**os.environ, "GYRE_HOME": str(tmp_path / "home")}
    with _gyre_serve(tmp_path, [f"dbl={model_dir}", "--no-log"], env) as (server, url):
        answer = httpx.post(f"{url}/predict/dbl", json=[{"x": 555.0}], timeout=30)
        server.send_signal(signal.SIGTERM)  # (one worker: uvicorn exits by the signal again)
        server.wait(timeout=30)
    assert answer.status_code == 200 and answer.json()["predictions"] == [1110.0]
    lines = [json.loads(line) for line in (tmp_path / "serve.log").read_text().splitlines()]
    [warned] = [line for line in lines if line["logger"] == "py.warnings"]
    assert warned["level"] == "warning" and "555 overflows" in warned["msg"]


def _compactors(spool: Path) -> list[int]:
    """The pids of the running spool compactor processes of ``spool``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
        except OSError:
            continue
        ours = b"gyre.predictions._compactor" in argv and str(spool).encode() in argv
        if ours and _stat(int(entry.name)) is not None:
            found.append(int(entry.name))
    return found


def _scrape(url: str) -> dict[str, float]:
    """A scrape of ``/metrics``, read with Prometheus's own text parser: sample name ->
    value (the series without labels, and the last of those with)."""
    from prometheus_client.parser import text_string_to_metric_families

    metrics = httpx.get(f"{url}/metrics", timeout=5).text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
    }


def _log_stats(url: str) -> dict[str, float]:
    """The ``gyre_prediction_log_*`` series of a scrape (name without the prefix)."""
    return {
        name.removeprefix("gyre_prediction_log_"): value
        for name, value in _scrape(url).items()
        if name.startswith("gyre_prediction_log_")
    }


def _workers(server: subprocess.Popen[bytes]) -> list[int]:
    """The pids of the uvicorn worker processes of ``gyre serve`` process ``server``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        if parent == server.pid and b"spawn_main" in argv and b"resource_tracker" not in argv:
            found.append(int(entry.name))
    return found


def _inflight(url: str) -> float:
    return _scrape(url)["gyre_serving_inflight_requests"]


def test_the_gauges_of_a_killed_worker_leave_the_metrics(tmp_path: Path) -> None:
    """Workers killed with SIGKILL while they held requests: once they are replaced, the
    requests they held are no longer counted as in flight (their gauges used to stay in
    every scrape for as long as the server ran)."""
    model_dir = save_doubler(tmp_path / "slow", sleep=60, sleep_on=-1.0)
    env = {**os.environ, "GYRE_HOME": str(tmp_path / "home")}
    with _gyre_serve(tmp_path, [f"slow={model_dir}", "--workers", "2", "--no-log"], env) as (
        server,
        url,
    ):

        def hold() -> None:
            with contextlib.suppress(httpx.HTTPError):  # (its worker is killed under it)
                httpx.post(f"{url}/predict/slow", json=[{"x": -1.0}], timeout=90)

        held = [threading.Thread(target=hold, daemon=True) for _ in range(4)]
        for thread in held:
            thread.start()
        deadline = time.monotonic() + 60
        while _inflight(url) < 5:  # the four, and the scrape itself
            assert time.monotonic() < deadline, "the slow requests were never in flight"
            time.sleep(0.1)  # poll interval
        before = _workers(server)
        assert len(before) == 2
        for pid in before:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while len(set(_workers(server)) - set(before)) < 2:  # uvicorn replaced both
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-2000:]
            time.sleep(0.1)  # poll interval
        wait_ready(url, alive=lambda: server.poll() is None)
        # idle now: each worker counts at most the scrape it answers (one a second old)
        while (now := _inflight(url)) > 2:
            assert time.monotonic() < deadline, f"{now} requests still counted in flight"
            time.sleep(0.1)  # poll interval
        assert server.poll() is None


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and has not exited (a zombie waiting for its parent
    to read its status has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_workers_stop_when_gyre_serve_is_killed(tmp_path: Path) -> None:
    """kill -9 of `gyre serve` stops its workers too (gracefully: SIGTERM from the kernel),
    as it stops its compactor; they used to go on serving on its port, with nothing left
    to stop them."""
    model_dir = save_classifier(tmp_path / "clf")
    env = {**os.environ, "GYRE_HOME": str(tmp_path / "home")}
    with _gyre_serve(tmp_path, [str(model_dir), "--workers", "2", "--no-log"], env) as (
        server,
        _,
    ):
        deadline = time.monotonic() + READY_SECONDS
        while len(workers := _workers(server)) < 2:
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.05)  # poll interval
        server.kill()
        server.wait()
        deadline = time.monotonic() + 60
        while alive := [pid for pid in workers if _running(pid)]:
            assert time.monotonic() < deadline, f"workers {alive} outlived gyre serve"
            time.sleep(0.05)  # poll interval
    log = (tmp_path / "serve.log").read_text()
    assert log.count("Finished server process") == 2, log[-2000:]


def _tcp_sockets(port: int) -> dict[int, str]:
    """The TCP sockets on local port ``port`` (inode -> state: ``0A`` listening, ``01``
    established), from ``/proc/net/tcp`` and ``tcp6``."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    found[int(fields[9])] = fields[3]
    return found


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT spreads on Linux")
def test_each_worker_listens_on_a_socket_of_its_own_and_takes_its_share(tmp_path: Path) -> None:
    """With one socket for all, which worker took a connection was a race the busy or
    first-woken worker kept winning (64 connections opened at once went 54-10 or 57-7).
    Each worker now listens on a socket of its own and the kernel spreads connections
    over them: two listening sockets, one per worker, and 64 connections shared."""
    model_dir = save_classifier(tmp_path / "clf")
    env = {**os.environ, "GYRE_HOME": str(tmp_path / "home")}
    with _gyre_serve(tmp_path, [str(model_dir), "--workers", "2", "--no-log"], env) as (
        server,
        url,
    ):
        port = int(url.rsplit(":", 1)[1])
        deadline = time.monotonic() + READY_SECONDS
        while True:  # the second worker may still be starting
            workers = _workers(server)
            listening = {i for i, state in _tcp_sockets(port).items() if state == "0A"}
            owners = {pid: _socket_inodes(pid) & listening for pid in workers}
            if len(workers) == 2 and all(len(mine) == 1 for mine in owners.values()):
                break
            assert time.monotonic() < deadline, (owners, (tmp_path / "serve.log").read_text())
            time.sleep(0.05)  # poll interval
        assert len(listening) == 2, "one listening socket per worker, none in the supervisor"
        assert _socket_inodes(server.pid).isdisjoint(listening)
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(64)]
        try:
            while True:  # until the workers have accepted all 64
                sockets = _tcp_sockets(port)
                held = {
                    pid: sum(sockets.get(i) == "01" for i in _socket_inodes(pid)) for pid in workers
                }
                if sum(held.values()) == 64:
                    break
                assert time.monotonic() < deadline, held
                time.sleep(0.05)  # poll interval
        finally:
            for client in clients:
                client.close()
        # spread by a hash of each connection's ports: 32 +- 4 a worker; below 12 happens
        # about once in ten million runs
        assert min(held.values()) >= 12, held
        assert httpx.get(f"{url}/v2/health/ready").status_code == 200


def test_a_worker_keeps_the_shared_socket_when_it_is_not_the_one_bound(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker puts its own socket only in place of the supervisor's bound, not listening
    one; anything else at that descriptor is left alone, and the worker says why."""
    if not sys.platform.startswith("linux"):
        pytest.skip("SO_REUSEPORT spreads on Linux")
    with socket.socket() as shared:
        shared.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        shared.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        shared.bind(("127.0.0.1", 0))
        port = shared.getsockname()[1]
        before = os.fstat(shared.fileno()).st_ino
        assert _listen.own_listener(shared.fileno(), "127.0.0.1", port)
        # the descriptor is now a new socket of the same port, shared with nobody
        assert os.fstat(shared.fileno()).st_ino != before
        assert shared.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        assert shared.getsockname() == ("127.0.0.1", port)
        shared.listen()
        assert not _listen.own_listener(shared.fileno(), "127.0.0.1", port)
        assert f"descriptor {shared.fileno()} is listening already" in caplog.text
        assert not _listen.own_listener(shared.fileno(), "127.0.0.1", port + 1)
        assert f"not port {port + 1}" in caplog.text
    with (tmp_path / "file").open("w") as plain:
        assert not _listen.own_listener(plain.fileno(), "127.0.0.1", port)
        assert f"descriptor {plain.fileno()} is not a socket" in caplog.text


def test_a_server_compacts_its_log_in_a_process_of_its_own(tmp_path: Path) -> None:
    from gyre.artifacts import open_artifact_store
    from gyre.predictions import query

    model_dir = save_doubler(tmp_path / "dbl")
    home = tmp_path / "home"
    env = {**os.environ, "GYRE_HOME": str(home),
           "GYRE_COMPACT_INTERVAL_S": "0.2", "GYRE_COMPACT_NICE": "5"}  # fmt: skip
    for name in ("GYRE_ARTIFACT_URI", "GYRE_SPOOL_DIR", "GYRE_TRACKING_URI"):
        env.pop(name, None)
    spool = home / "predictions" / "spool"
    store = open_artifact_store(str(home / "artifacts"))
    with _gyre_serve(tmp_path, [f"dbl={model_dir}", "--workers", "2"], env) as (server, url):
        [compactor] = _compactors(spool)
        stat = _stat(compactor)
        assert stat is not None and stat[16] == "5", "at the niceness GYRE_COMPACT_NICE gives"
        with httpx.Client(base_url=url, timeout=30) as client:
            for i in range(10):
                answer = client.post("/predict/dbl", json=[{"x": float(i)}])
                assert answer.status_code == 200, answer.text
        # compacted while the server runs: the workers finish their spool files every
        # 0.2 s, the compactor turns them into segments
        deadline = time.monotonic() + 60
        while query(store, "dbl").num_rows < 10:
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(0.05)  # poll interval
        # and /metrics says so, though no worker compacted anything (the compactor's
        # numbers are written after its run, a moment after the rows are queryable); the
        # workers' totals are summed, whichever of them answers the scrape
        while (values := _log_stats(url)).get("compactor_compacted_records_total") != 10 or (
            values.get("appended_records_total") != 10
        ):
            assert time.monotonic() < deadline, values
            time.sleep(0.05)  # poll interval
        assert values["compacted_records_total"] == 0
        assert values["compactor_last_run_failed"] == 0
        again = [_log_stats(url) for _ in range(4)]  # (answered by either worker)
        assert [v["appended_records_total"] for v in again] == [10.0] * 4
        assert all(v["oldest_unsynced_seconds"] < 60 for v in again)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    assert query(store, "dbl").num_rows == 10
    assert not _compactors(spool), "the compactor stops with its server"


def test_serve_takes_the_spool_settings_from_the_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from gyre.serving._entry import _open_log

    monkeypatch.setenv("GYRE_SPOOL_DIR", str(tmp_path / "my-spool"))
    monkeypatch.setenv("GYRE_SPOOL_SYNC_MS", "40")
    monkeypatch.setenv("GYRE_COMPACT_INTERVAL_S", "7.5")
    monkeypatch.setattr(_listen, "run", lambda app, **kw: None)
    for name in ("_GYRE_SERVE_SPEC", "GYRE_TRACKING_URI"):
        monkeypatch.setenv(name, "-")  # so that monkeypatch removes what `serve` sets
        monkeypatch.delenv(name)
    model_dir = save_classifier(tmp_path / "clf")
    result = CliRunner().invoke(_cli(), ["serve", f"churn={model_dir}", "--port", "0"])
    assert result.exit_code == 0, result.output
    spec = json.loads(os.environ["_GYRE_SERVE_SPEC"])
    assert spec["spool_dir"] == str((tmp_path / "my-spool").resolve())
    log = _open_log(spec["spool_dir"], str(tmp_path / "artifacts"), spec["log"])  # a worker's
    try:
        assert (log.sync_interval_ms, log.compact_interval_s) == (40, 7.5)
        assert log.background_compaction is False  # the server's compactor process does it
    finally:
        log.close()


def test_serve_refuses_bad_prediction_log_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gyre.errors import InvalidArgument

    monkeypatch.setenv("GYRE_COMPACT_INTERVAL_S", "soon")
    model_dir = save_classifier(tmp_path / "clf")
    result = CliRunner().invoke(_cli(), ["serve", str(model_dir), "--port", "0"])
    assert isinstance(result.exception, InvalidArgument)
    assert "GYRE_COMPACT_INTERVAL_S='soon' (from env) is not a positive number" in str(
        result.exception
    )
    monkeypatch.delenv("GYRE_COMPACT_INTERVAL_S")
    monkeypatch.setenv("GYRE_SPOOL_SYNC_MS", "0")
    result = CliRunner().invoke(_cli(), ["serve", str(model_dir), "--port", "0"])
    assert isinstance(result.exception, InvalidArgument)
    assert "GYRE_SPOOL_SYNC_MS=0 must be at least 1" in str(result.exception)
    monkeypatch.delenv("GYRE_SPOOL_SYNC_MS")
    monkeypatch.setenv("GYRE_COMPACT_NICE", "-5")
    result = CliRunner().invoke(_cli(), ["serve", str(model_dir), "--port", "0"])
    assert isinstance(result.exception, InvalidArgument)
    assert "GYRE_COMPACT_NICE=-5 is not a niceness from 0 to 19" in str(result.exception)


def _wait_for_predict_call(url: str, seconds: float = 30.0) -> None:
    """Until the metrics (summed over both workers) show the slow predict call started."""
    series = 'gyre_serving_batch_rows_count{model="slow"'
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        metrics = httpx.get(f"{url}/metrics", timeout=5).text
        if any(line.startswith(series) and line.endswith(" 1.0") for line in metrics.splitlines()):
            return
        time.sleep(0.02)
    raise TimeoutError("the slow request never reached the model")


# -- an off-the-shelf OIP client ----------------------------------------------------------


class _ServerThread:
    """``app`` under uvicorn in a thread, with the loop and HTTP protocol `gyre serve` uses."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(thread_config(app, port=self.port))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _ServerThread:
        self.thread.start()
        wait_ready(self.url, alive=self.thread.is_alive)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def live_models(classifier: Model, regressor: Model) -> Iterator[str]:  # noqa: F811
    models = [ServedModel("clf", "3", classifier), ServedModel("reg", "1", regressor)]
    with _ServerThread(create_app(models, access_log=False)) as server:
        yield server.url


def test_tritonclient_round_trip(live_models: str, classifier: Model, regressor: Model) -> None:  # noqa: F811
    http = pytest.importorskip("tritonclient.http")
    utils = pytest.importorskip("tritonclient.utils")
    frame, _ = classifier_data(6, seed=21)
    rows = frame.to_numpy()
    client = http.InferenceServerClient(url=live_models.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("clf") and client.is_model_ready("clf", "3")
        assert client.get_server_metadata()["name"] == "gyre"
        meta = client.get_model_metadata("clf")
        assert meta["inputs"][0]["shape"] == [-1, 20] and meta["versions"] == ["3"]

        for binary in (True, False):
            tensor = http.InferInput("input-0", list(rows.shape), "FP64")
            tensor.set_data_from_numpy(rows, binary_data=binary)
            outputs = [
                http.InferRequestedOutput("predict", binary_data=binary),
                http.InferRequestedOutput("predict_proba", binary_data=not binary),
            ]
            result = client.infer("clf", [tensor], outputs=outputs, request_id=f"t-{binary}")
            assert result.get_response()["id"] == f"t-{binary}"
            assert result.as_numpy("predict").tolist() == classifier.predict(frame).tolist()
            np.testing.assert_allclose(
                result.as_numpy("predict_proba"), classifier.predict_proba(frame), rtol=1e-12
            )

        # Defaults: binary input, no outputs named (so binary_data_output=true).
        x = np.arange(12, dtype=np.float32).reshape(3, 4)
        tensor = http.InferInput("input-0", [3, 4], "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer("reg", [tensor])
        np.testing.assert_allclose(
            result.as_numpy("predict"), regressor.predict(x.astype(np.float64)), rtol=1e-6
        )

        # Compressed request bodies, as the client sends them when asked to
        for algorithm in ("gzip", "deflate"):
            tensor = http.InferInput("input-0", list(rows.shape), "FP64")
            tensor.set_data_from_numpy(rows, binary_data=False)
            result = client.infer("clf", [tensor], request_compression_algorithm=algorithm)
            assert result.as_numpy("predict").tolist() == classifier.predict(frame).tolist()

        wrong = http.InferInput("input-0", [1, 3], "FP64")
        wrong.set_data_from_numpy(np.zeros((1, 3)))
        with pytest.raises(utils.InferenceServerException, match="expected 20 features, got 3"):
            client.infer("clf", [wrong])
        with pytest.raises(utils.InferenceServerException, match="not served here"):
            client.get_model_metadata("nope")
    finally:
        client.close()


# -- the command's rules ------------------------------------------------------------------


def test_serve_refuses_non_loopback_without_auth(tmp_path: Path) -> None:
    from gyre.errors import InvalidArgument

    model_dir = save_classifier(tmp_path / "clf")
    result = CliRunner().invoke(
        _cli(), ["serve", str(model_dir), "--host", "0.0.0.0", "--port", "0"]
    )
    assert isinstance(result.exception, InvalidArgument)
    assert str(result.exception) == (
        "refusing to listen on '0.0.0.0' without auth (create a token with `gyre tokens "
        "create NAME --scope predict` and start again (auth is then on by default), or listen "
        "on 127.0.0.1)"
    )
    unknown = CliRunner().invoke(_cli(), ["serve", "models:/nope@champion", "--port", "0"])
    assert "nope" in str(unknown.exception)


@pytest.mark.anyio
async def test_serve_with_a_token_turns_auth_on(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    classifier: Model,  # noqa: F811
) -> None:
    from gyre import config
    from gyre.serving._entry import app_from_env
    from gyre.store import open_store
    from tests.test_serving_app import lifespan, records

    store = open_store(config.get("GYRE_TRACKING_URI"))
    try:
        _, secret = store.create_token("svc", ["admin"])  # type: ignore[attr-defined]
        _, reader = store.create_token("ro", ["read"])  # type: ignore[attr-defined]
    finally:
        store.close()
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(_listen, "run", lambda app, **kw: calls.append({"app": app, **kw}))
    for name in ("_GYRE_SERVE_SPEC", "GYRE_TRACKING_URI", "PROMETHEUS_MULTIPROC_DIR"):
        monkeypatch.setenv(name, "-")  # so that monkeypatch removes what `serve` sets
        monkeypatch.delenv(name)
    model_dir = save_classifier(tmp_path / "clf")
    result = CliRunner().invoke(
        _cli(),
        ["serve", f"churn={model_dir}", "--host", "0.0.0.0", "--workers", "3", "--port", "0"],
    )
    assert result.exit_code == 0, result.output
    [call] = calls
    assert call["app"] == "gyre.serving._entry:app_from_env" and call["factory"] is True
    assert (call["workers"], call["loop"], call["http"]) == (3, "uvloop", HOLDING_PROTOCOL)
    assert "auth on, 3 workers" in result.output
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ  # removed again after the run

    app = app_from_env()
    # (`serve` removed its workers' admin folder when it returned, as when a /tmp cleaner
    # removes it under a server: a worker starting now still starts, and says so)
    assert "admin requests this worker answers reach it alone" in caplog.text
    row = records(classifier_data(1)[0])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://s") as client, lifespan(app):
        anonymous = await client.post("/predict/churn", json=row)
        forbidden = await client.post(
            "/predict/churn", json=row, headers={"Authorization": f"Bearer {reader}"}
        )
        allowed = await client.post(
            "/predict/churn", json=row, headers={"Authorization": f"Bearer {secret}"}
        )
    assert anonymous.status_code == 401 and forbidden.status_code == 403
    assert allowed.status_code == 200
    assert allowed.json()["version"] == allowed.headers["x-gyre-model-version"]
    version = allowed.json()["version"]  # a folder: versioned by its package digest
    assert version.isdigit() and version == resolve_model(str(model_dir)).version


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- start-up checks: what would fail only after the models are loaded fails first --------


@pytest.fixture
def offline_serve(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The server's run (``_listen.run``: uvicorn) recorded instead of run; what ``serve``
    sets in the environment is removed again after the test."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(_listen, "run", lambda app, **kw: calls.append(kw))
    for name in ("_GYRE_SERVE_SPEC", "GYRE_TRACKING_URI", "PROMETHEUS_MULTIPROC_DIR"):
        monkeypatch.setenv(name, "-")  # so that monkeypatch removes what `serve` sets
        monkeypatch.delenv(name)
    return calls


def _lingering_port() -> int:
    """A port held only by the closed end of a connection (FIN_WAIT/TIME_WAIT), as a server
    that set SO_REUSEADDR (uvicorn does) leaves it when it stops."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port: int = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    accepted.close()  # the server's end closes first: it lingers, bound to the port
    listener.close()
    client.close()
    return port


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_refuses_a_port_in_use_in_one_line(tmp_path: Path, workers: str) -> None:
    """Before anything is loaded: one red line naming host and port, exit 2 (uvicorn's own
    bind failure, after the models loaded, is exit 3 and a JSON log line per bind)."""
    model_dir = save_classifier(tmp_path / "clf")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-c", "import sys; from gyre.cli import main; "
             "sys.exit(main(sys.argv[1:]))", "serve", str(model_dir), "--no-log",
             "--port", str(port), "--workers", workers],
            capture_output=True, text=True, cwd=tmp_path, timeout=120,
            env={**os.environ, "COLUMNS": "300"},
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line == (
        f"error: cannot listen on 127.0.0.1:{port}: the port is already in use (pick another "
        f"--port (0: any free port), or stop what listens on 127.0.0.1:{port})"
    )
    assert done.stdout == ""


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_binds_as_uvicorn_does(
    tmp_path: Path, offline_serve: list[dict[str, Any]], workers: str
) -> None:
    """The check sets SO_REUSEADDR as uvicorn does: a port the last server's connections
    still hold passes (uvicorn binds it), a port something listens on does not."""
    from gyre.errors import InvalidArgument

    model_dir = save_classifier(tmp_path / "clf")
    port = _lingering_port()
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))  # held: a check without SO_REUSEADDR would refuse it
    args = ["serve", str(model_dir), "--no-log", "--workers", workers, "--port", str(port)]
    result = CliRunner().invoke(_cli(), args)
    assert result.exit_code == 0, result.output
    assert [call["port"] for call in offline_serve] == [port]
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", port))
        taken.listen()
        refused = CliRunner().invoke(_cli(), args)
    assert isinstance(refused.exception, InvalidArgument)
    assert f"cannot listen on 127.0.0.1:{port}: the port is already in use" in str(
        refused.exception
    )
    assert len(offline_serve) == 1, "uvicorn not started"
    if workers == "2" and sys.platform.startswith("linux"):
        # a server listening with SO_REUSEPORT, which the workers' own sockets would join
        # (splitting its connections with it) if the port were not refused first
        with socket.socket() as shared:
            shared.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            shared.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            shared.bind(("127.0.0.1", port))
            shared.listen()
            joined = CliRunner().invoke(_cli(), args)
        assert isinstance(joined.exception, InvalidArgument), joined.output
        assert "the port is already in use" in str(joined.exception)
        assert len(offline_serve) == 1, "uvicorn not started"


@pytest.mark.parametrize("port", ["84036", "65536", "-1"])
def test_serve_refuses_a_port_out_of_range(
    tmp_path: Path, offline_serve: list[dict[str, Any]], port: str
) -> None:
    from gyre.errors import InvalidArgument

    model_dir = save_classifier(tmp_path / "clf")
    result = CliRunner().invoke(_cli(), ["serve", str(model_dir), "--no-log", "--port", port])
    assert isinstance(result.exception, InvalidArgument)
    assert str(result.exception) == (
        f"--port {port} is not a TCP port (use a number from 1 to 65535, or 0 for any free port)"
    )
    assert offline_serve == []


def test_serve_on_port_zero_says_where_the_port_is_told(tmp_path: Path) -> None:
    """``--port 0``: the banner does not claim ``:0``; it points at uvicorn's log line,
    which names the port the server then answers on. Read by a log collector (standard
    error not a terminal), the banner is a JSON log line like the rest, however long."""
    import re

    model_dir = save_classifier(tmp_path / "clf")
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-c", "import sys; from gyre.cli import main; "
             "sys.exit(main(sys.argv[1:]))", "serve", str(model_dir), "--no-log", "--port", "0"],
            env={**os.environ, "COLUMNS": "80"}, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + READY_SECONDS
            while not (found := re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)",
                                          log.read_text())):  # fmt: skip
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)  # poll interval, not synchronisation
            port = int(found.group(1))
            assert port != 0
            wait_ready(f"http://127.0.0.1:{port}", alive=lambda: server.poll() is None)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    # standard error is not a terminal here: every line is a JSON log line, the banner too
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    banner = lines[0]["msg"]
    assert lines[0]["logger"] == "gyre.serving" and lines[0]["level"] == "info"
    assert banner.startswith(
        "gyre serve on http://127.0.0.1, a free port (see 'Uvicorn running on' below): "
    ), banner
    assert ":0" not in banner


def test_serve_refuses_a_spool_folder_it_cannot_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline_serve: list[dict[str, Any]]
) -> None:
    from gyre.errors import InvalidArgument

    model_dir = save_classifier(tmp_path / "clf")
    (tmp_path / "a-file").write_text("not a folder")
    bad = tmp_path / "a-file" / "spool"
    result = CliRunner().invoke(
        _cli(), ["serve", str(model_dir), "--port", "0", "--spool-dir", str(bad)]
    )
    assert isinstance(result.exception, InvalidArgument)
    assert str(result.exception) == (
        f"cannot write the prediction log to {str(bad)!r}: Not a directory (point --spool-dir "
        "at a folder this user can write, or serve with --no-log)"
    )
    monkeypatch.setenv("GYRE_SPOOL_DIR", str(bad))
    result = CliRunner().invoke(_cli(), ["serve", str(model_dir), "--port", "0"])
    assert isinstance(result.exception, InvalidArgument)
    assert f"{str(bad)!r}: Not a directory (point GYRE_SPOOL_DIR at" in str(result.exception)
    assert offline_serve == []
    # with --no-log there is no spool to write
    no_log = CliRunner().invoke(_cli(), ["serve", str(model_dir), "--port", "0", "--no-log"])
    assert no_log.exit_code == 0, no_log.output
    # a folder that can be written is created, and the probe leaves nothing in it
    good = tmp_path / "new" / "spool"
    result = CliRunner().invoke(
        _cli(), ["serve", str(model_dir), "--port", "0", "--spool-dir", str(good)]
    )
    assert result.exit_code == 0, result.output
    assert good.is_dir() and list(good.iterdir()) == []
