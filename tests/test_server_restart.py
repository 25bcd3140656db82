"""HttpStore across a server crash: retries plus batch ids lose nothing and duplicate nothing."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gyre.entities import Metric
from gyre.errors import BackendUnavailable
from gyre.store._http import HttpStore
from tests.fixtures.server import LiveServer, ServerProcess, free_port

BATCHES = 300
PER_BATCH = 10


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(
        port=free_port(),
        tracking_uri=f"sqlite:///{tmp_path / 'gyre.db'}",
        artifact_uri=str(tmp_path / "artifacts"),
        log=tmp_path / "server.log",
    )
    process.start()
    yield process
    process.stop()


class _CountsFailures(httpx.HTTPTransport):
    """The network, counting the requests that failed on it."""

    failures = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().handle_request(request)
        except httpx.TransportError:
            self.failures += 1
            raise


@pytest.mark.slow
def test_logging_through_a_kill_and_restart_keeps_every_point_once(
    server_process: ServerProcess,
) -> None:
    transport = _CountsFailures()
    with HttpStore(server_process.url, retry_seconds=60, transport=transport) as store:
        exp = store.create_experiment("restart").experiment_id
        run_id = store.create_run(exp).run_id

        progress = threading.Semaphore(0)
        failures: list[BaseException] = []

        def log_all() -> None:
            try:
                for b in range(BATCHES):
                    points = [
                        Metric("m", float(step), step, step)
                        for step in range(b * PER_BATCH, (b + 1) * PER_BATCH)
                    ]
                    store.log_batch(run_id, metrics=points, batch_id=uuid.uuid4().hex)
                    progress.release()
            except BaseException as exc:
                failures.append(exc)
                progress.release()

        writer = threading.Thread(target=log_all)
        writer.start()
        try:
            # Kill while batches are flowing: some in flight, some acknowledged.
            for _ in range(BATCHES // 3):
                assert progress.acquire(timeout=60), "the writer made no progress"
                assert not failures, failures
            server_process.kill()
            server_process.start()
        finally:
            writer.join(timeout=120)
        assert not writer.is_alive(), "the writer did not finish"
        assert not failures, failures
        assert transport.failures > 0, "the writer never noticed the outage"

        steps = [m.step for m in store.get_metric_history(run_id, "m")]
    assert steps == list(range(BATCHES * PER_BATCH)), server_process.log_text()[-2000:]


class _LosesFirstAnswer(httpx.BaseTransport):
    """Forwards to a real server, but for the first request to ``path_suffix`` it drops the
    answer after the server has applied the request, as a crash or a network cut would."""

    def __init__(self, path_suffix: str) -> None:
        self._inner = httpx.HTTPTransport()
        self._suffix = path_suffix
        self.lost = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if request.url.path.endswith(self._suffix) and not self.lost:
            self.lost += 1
            response.close()
            raise httpx.RemoteProtocolError("server disconnected", request=request)
        return response

    def close(self) -> None:
        self._inner.close()


@pytest.mark.parametrize("lost", ["/log-batch", "/runs", "/experiments"])
def test_a_lost_answer_is_retried_without_applying_twice(
    live_server: LiveServer, lost: str
) -> None:
    transport = _LosesFirstAnswer(lost)
    with HttpStore(live_server.url, transport=transport) as store:
        exp = store.create_experiment(f"lost-{uuid.uuid4().hex[:6]}")
        run = store.create_run(exp.experiment_id, name="once")
        store.log_batch(run.run_id, metrics=[Metric("m", 1.0, 0, 1)], params={"p": "1"})
    assert transport.lost == 1

    embedded = live_server.store
    assert embedded.get_experiment_by_name(exp.name) == exp
    runs = embedded.search_runs([exp.experiment_id]).items
    assert [r.run_id for r in runs] == [run.run_id]
    assert len(embedded.get_metric_history(run.run_id, "m")) == 1


def test_a_lost_answer_to_a_call_without_a_key_is_not_repeated(live_server: LiveServer) -> None:
    transport = _LosesFirstAnswer("/versions")
    with HttpStore(live_server.url, transport=transport) as store:
        with pytest.raises(BackendUnavailable, match="may or may not"):
            store.create_model_version("churn", "file:///m")
        assert transport.lost == 1
        # Applied once by the server, and not a second time by a retry.
        assert [v.version for v in store.list_model_versions("churn")] == [1]


def test_a_refused_connection_is_retried_even_without_a_key(live_server: LiveServer) -> None:
    calls = 0
    inner = httpx.HTTPTransport()

    def refuse_first(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ConnectError("connection refused", request=request)
        return inner.handle_request(request)

    with HttpStore(live_server.url, transport=httpx.MockTransport(refuse_first)) as store:
        assert store.create_model_version("fraud", "file:///m").version == 1
    inner.close()
    assert calls == 2
