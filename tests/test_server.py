"""gyre.server: routes, the error shape, limits, and the HTTP clients against a live server."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import re
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import pytest

from gyre.artifacts._http import HttpArtifactStore
from gyre.artifacts._protocol import BlobRef
from gyre.entities import Metric, RunStatus
from gyre.errors import (
    BackendUnavailable,
    GyreError,
    IntegrityError,
    InvalidArgument,
    NotFound,
    PayloadTooLarge,
)
from gyre.server import create_app
from gyre.store import MetadataStore
from gyre.store._http import HttpStore
from gyre.store._sql import SqlStore
from gyre.testing._artifacts import ARTIFACT_STORE_CHECKS
from tests.fixtures.server import LiveServer, ServerFactory, ServerThread

API = "/api/v1"
ERROR_KEYS = {"error_code", "message", "hint"}


@pytest.fixture
def client(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=30) as c:
        yield c


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) <= ERROR_KEYS and {"error_code", "message"} <= set(body), body
    assert body["error_code"] == code, body
    assert "Traceback" not in response.text
    return dict(body)


def _run(client: httpx.Client) -> str:
    exp = client.post(f"{API}/experiments", json={"name": f"e-{uuid.uuid4().hex[:8]}"})
    run = client.post(f"{API}/runs", json={"experiment_id": exp.json()["experiment_id"]})
    assert run.status_code == 200, run.text
    return str(run.json()["run_id"])


# -- basics ---------------------------------------------------------------------------------


def test_healthz_needs_nothing(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_openapi_documents_the_versioned_api(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in [
        f"{API}/experiments",
        f"{API}/experiments/{{experiment_id}}",
        f"{API}/runs",
        f"{API}/runs/search",
        f"{API}/runs/{{run_id}}",
        f"{API}/runs/{{run_id}}/log-batch",
        f"{API}/runs/{{run_id}}/metric-history",
        f"{API}/runs/{{run_id}}/inputs",
        f"{API}/artifacts/blobs",
        f"{API}/artifacts/blobs/{{digest}}",
        f"{API}/artifacts/manifests",
        f"{API}/models",
        f"{API}/models/{{name}}/versions/{{version}}",
        f"{API}/models/{{name}}/aliases/{{alias}}",
        f"{API}/audit",
        "/healthz",
    ]:
        assert path in paths, path
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_a_full_round_trip_over_rest(client: httpx.Client) -> None:
    run_id = _run(client)
    batch = {
        "metrics": [
            {"key": "loss", "value": 0.5, "step": 0, "timestamp": 1},
            {"key": "loss", "value": "NaN", "step": 1, "timestamp": 2},
        ],
        "params": {"lr": "0.1"},
        "batch_id": uuid.uuid4().hex,
    }
    assert client.post(f"{API}/runs/{run_id}/log-batch", json=batch).status_code == 204
    history = client.get(f"{API}/runs/{run_id}/metric-history", params={"key": "loss"}).json()
    assert [m["value"] for m in history["metrics"]] == [0.5, "NaN"]
    done = client.patch(f"{API}/runs/{run_id}", json={"status": "FINISHED"})
    assert done.json()["status"] == "FINISHED" and done.json()["params"] == {"lr": "0.1"}


# -- the error shape ------------------------------------------------------------------------


def test_unknown_run_is_404_naming_the_id(client: httpx.Client) -> None:
    missing = "0" * 32
    body = _error(client.get(f"{API}/runs/{missing}"), 404, "NOT_FOUND")
    assert missing in body["message"]


def test_unknown_route_and_wrong_method_are_json(client: httpx.Client) -> None:
    body = _error(client.get(f"{API}/nope"), 404, "NOT_FOUND")
    assert "/api/v1/nope" in body["message"]
    body = _error(client.delete(f"{API}/runs/search"), 405, "INVALID_ARGUMENT")
    assert "DELETE" in body["message"]


def test_conflict_is_409(client: httpx.Client) -> None:
    client.post(f"{API}/experiments", json={"name": "twice"})
    body = _error(client.post(f"{API}/experiments", json={"name": "twice"}), 409, "CONFLICT")
    assert "twice" in body["message"]


def test_validation_errors_are_400_naming_the_field(client: httpx.Client) -> None:
    run_id = _run(client)
    bad_value = {"metrics": [{"key": "x", "value": "abc", "step": 0, "timestamp": 1}]}
    body = _error(
        client.post(f"{API}/runs/{run_id}/log-batch", json=bad_value), 400, "INVALID_ARGUMENT"
    )
    assert "metrics[0].value" in body["message"] and "'abc'" in body["message"]

    body = _error(client.post(f"{API}/experiments", json={}), 400, "INVALID_ARGUMENT")
    assert "'name'" in body["message"]

    body = _error(client.get(f"{API}/runs/{run_id}/metric-history"), 400, "INVALID_ARGUMENT")
    assert "query parameter 'key'" in body["message"]

    body = _error(
        client.patch(f"{API}/runs/{run_id}", json={"status": "DONE"}), 400, "INVALID_ARGUMENT"
    )
    assert "'status'" in body["message"] and "'DONE'" in body["message"]


def test_malformed_json_is_400(client: httpx.Client) -> None:
    response = client.post(
        f"{API}/experiments",
        content=b'{"name": "x",',
        headers={"content-type": "application/json"},
    )
    body = _error(response, 400, "INVALID_ARGUMENT")
    assert "malformed JSON" in body["message"]


def test_an_internal_error_is_500_without_a_traceback(
    live_server: LiveServer,
    client: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def explode(run_id: str) -> None:
        raise RuntimeError("secret internals of the database")

    monkeypatch.setattr(live_server.store, "get_run", explode)
    with caplog.at_level(logging.ERROR, logger="gyre.server"):
        response = client.get(f"{API}/runs/{'a' * 32}")
    body = _error(response, 500, "INTERNAL_ERROR")
    match = re.fullmatch(r"internal error \(request id ([0-9a-f]+)\)", body["message"])
    assert match, body
    assert "secret internals" not in response.text
    assert response.headers["x-request-id"] == match.group(1)
    logged = [r for r in caplog.records if match.group(1) in r.getMessage()]
    assert logged and logged[0].exc_info is not None, "logged server-side with the traceback"

    with HttpStore(live_server.url, retry_seconds=1) as store, pytest.raises(GyreError) as exc:
        store.get_run("a" * 32)
    assert type(exc.value) is GyreError
    assert "internal error (request id" in str(exc.value)


# -- body limit -----------------------------------------------------------------------------


def _big_batch(n: int) -> dict[str, Any]:
    return {"metrics": [{"key": f"k{i}", "value": 1.0, "timestamp": 1} for i in range(n)]}


def test_large_json_bodies_get_413_and_the_server_keeps_serving(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(max_request_bytes=4096)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        run_id = _run(client)
        url = f"{API}/runs/{run_id}/log-batch"
        big = json.dumps(_big_batch(500)).encode()
        assert len(big) > 4096

        # Announced by Content-Length: refused before the body is read.
        body = _error(
            client.post(url, content=big, headers={"content-type": "application/json"}),
            413,
            "PAYLOAD_TOO_LARGE",
        )
        assert "4096" in body["message"]

        # Streamed without a length: refused once the bytes counted pass the limit.
        def chunks() -> Iterator[bytes]:
            for i in range(0, len(big), 1000):
                yield big[i : i + 1000]

        response = client.post(url, content=chunks(), headers={"content-type": "application/json"})
        _error(response, 413, "PAYLOAD_TOO_LARGE")

        assert client.get("/healthz").status_code == 200
        assert client.post(url, json=_big_batch(3)).status_code == 204

    with HttpStore(server.url) as store, pytest.raises(PayloadTooLarge):
        store.log_batch(run_id, metrics=[Metric(f"k{i}", 1.0, 0, 1) for i in range(500)])


def test_blob_uploads_are_streamed_and_not_limited_by_the_json_limit(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(max_request_bytes=4096)
    payload = bytes(range(256)) * (12 * 4096 + 7)  # ~12 MiB: past the in-memory spool
    with HttpArtifactStore(server.url) as store:
        ref = store.put_blob(io.BytesIO(payload))
        assert ref == BlobRef(hashlib.sha256(payload).hexdigest(), len(payload))
        assert store.has_blob(ref.digest)
        with store.open_blob(ref.digest) as stream:
            assert stream.read() == payload
        assert store.put_blob(io.BytesIO(payload)) == ref, "identical bytes, same ref"


# -- artifacts ------------------------------------------------------------------------------


def test_artifact_round_trip(http_artifact_store: HttpArtifactStore) -> None:
    store = http_artifact_store
    a = store.put_blob(io.BytesIO(b"model bytes"))
    b = store.put_blob(io.BytesIO(b"requirements"))
    missing = hashlib.sha256(b"never stored").hexdigest()
    assert not store.has_blob(missing)
    with pytest.raises(NotFound, match=missing):
        store.open_blob(missing)

    scope = f"runs/{uuid.uuid4().hex}"
    assert store.read_manifest(scope) == {}
    store.append_manifest(scope, {"model/model.skops": a})
    store.append_manifest(scope, {"requirements.txt": b, "model/model.skops": b})
    assert store.read_manifest(scope) == {"model/model.skops": b, "requirements.txt": b}


@pytest.mark.parametrize("check", ARTIFACT_STORE_CHECKS, ids=lambda c: c.__name__)
def test_artifact_store_contract_over_http(
    http_artifact_store: HttpArtifactStore, check: Callable[[HttpArtifactStore], None]
) -> None:
    check(http_artifact_store)


class _TamperedArtifacts:
    """Serves other bytes than the digest asked for."""

    uri = "memory://tampered"

    def put_blob(self, src: BinaryIO) -> BlobRef:
        raise NotImplementedError

    def open_blob(self, digest: str) -> BinaryIO:
        return io.BytesIO(b"not what was stored")

    def has_blob(self, digest: str) -> bool:
        return True

    def append_manifest(self, scope: str, entries: dict[str, BlobRef]) -> None:
        raise NotImplementedError

    def read_manifest(self, scope: str) -> dict[str, BlobRef]:
        return {}


def test_a_download_is_verified_by_the_client(tmp_path: Path) -> None:
    app = create_app(
        SqlStore(f"sqlite:///{tmp_path / 'db.sqlite'}"), _TamperedArtifacts(), auth=False
    )
    digest = hashlib.sha256(b"the real bytes").hexdigest()
    with ServerThread(app) as server, HttpArtifactStore(server.url) as store:
        stream = store.open_blob(digest)
        with stream, pytest.raises(IntegrityError, match=digest):
            stream.read()


# -- HttpStore ------------------------------------------------------------------------------


def test_http_store_raises_what_the_embedded_store_raises(
    live_server: LiveServer, http_store: HttpStore
) -> None:
    embedded = live_server.store
    exp = embedded.create_experiment("same-errors").experiment_id
    cases: list[Callable[[MetadataStore], object]] = [
        lambda s: s.get_run("9" * 32),
        lambda s: s.create_experiment("same-errors"),
        lambda s: s.search_runs([exp], filter="metrics.x ~ 1"),
        lambda s: s.search_runs([exp], max_results=0),
        lambda s: s.update_run("9" * 32, status=RunStatus.FINISHED),
    ]
    for case in cases:
        with pytest.raises(GyreError) as local:
            case(embedded)
        with pytest.raises(GyreError) as remote:
            case(http_store)
        assert type(remote.value) is type(local.value)
        assert str(remote.value) == str(local.value)


def test_non_finite_metrics_survive_http(http_store: HttpStore) -> None:
    exp = http_store.create_experiment("nonfinite").experiment_id
    run = http_store.create_run(exp).run_id
    http_store.log_batch(run, metrics=[Metric("v", math.inf, 0, 1), Metric("v", math.nan, 1, 2)])
    values = [m.value for m in http_store.get_metric_history(run, "v")]
    assert values[0] == math.inf and math.isnan(values[1])


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_an_unreachable_server_is_backend_unavailable_naming_the_url() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    with HttpStore(url, retry_seconds=0.3) as store, pytest.raises(BackendUnavailable) as exc:
        store.get_experiment("1")
    assert url in str(exc.value)


def test_a_cli_command_against_a_down_server_says_it_retries_for_the_time_the_setting_gives(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """GYRE_HTTP_RETRY_S bounds the retrying (a read command need not wait the SDK's 30 s
    for a server that is down); a call that will retry for long says so as it starts."""
    from gyre.cli import main

    url = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("GYRE_HTTP_RETRY_S", "2.5")
    with caplog.at_level(logging.WARNING, logger="gyre.http"):
        code = main(["predictions", "query", "models:/churn", "--tracking-uri", url])
    assert code == 1
    [said] = [r.getMessage() for r in caplog.records if r.name == "gyre.http"]
    assert url in said and "retrying for up to 2.5 s in all (GYRE_HTTP_RETRY_S)" in said
    # the SDK's clients take the setting too; 0 does not retry, so says nothing
    monkeypatch.setenv("GYRE_HTTP_RETRY_S", "0")
    caplog.clear()
    with HttpStore(url) as store, pytest.raises(BackendUnavailable):
        assert store.retry_seconds == 0
        store.get_experiment("1")
    assert not [r for r in caplog.records if r.name == "gyre.http"]
    monkeypatch.setenv("GYRE_HTTP_RETRY_S", "soon")
    with pytest.raises(InvalidArgument, match="GYRE_HTTP_RETRY_S='soon'"):
        HttpStore(url)


def test_http_store_retries_503_then_succeeds() -> None:
    calls = []
    experiment = {"experiment_id": "1", "name": "e", "creation_time": 1, "tags": {}}

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) < 3:
            return httpx.Response(503, text="upstream restarting")
        return httpx.Response(200, json=experiment)

    with HttpStore("http://gyre.test", transport=httpx.MockTransport(handler)) as store:
        assert store.get_experiment("1").name == "e"
    assert calls == ["/api/v1/experiments/1"] * 3


def test_http_store_gives_up_on_a_proxy_that_keeps_failing() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>bad gateway</html>")

    transport = httpx.MockTransport(handler)
    with (
        HttpStore("http://gyre.test", retry_seconds=0.2, transport=transport) as store,
        pytest.raises(BackendUnavailable, match=r"gyre\.test"),
    ):
        store.get_experiment("1")
