"""Server auth: bearer tokens, nested scopes, revocation, hashing, and the loopback rule."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

from gyre.cli._server_cmds import register
from gyre.errors import Forbidden, InvalidArgument, Unauthorized
from gyre.store._http import HttpStore
from tests.fixtures.server import LiveServer, ServerFactory

API = "/api/v1"


@pytest.fixture
def secured(server_factory: ServerFactory) -> LiveServer:
    return server_factory(auth=True)


@pytest.fixture
def scoped(secured: LiveServer) -> dict[str, str]:
    """One token per scope, keyed by scope."""
    return {
        scope: secured.store.create_token(f"{scope}-token", [scope])[1]
        for scope in ("read", "write", "admin")
    }


@pytest.fixture
def client(secured: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=secured.url, timeout=30) as c:
        yield c


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """gyre (test harness)."""

    register(app)
    return app


# -- 401 / 403 ------------------------------------------------------------------------------


def test_no_or_bad_token_is_401(client: httpx.Client, scoped: dict[str, str]) -> None:
    for headers in [{}, _bearer("gyre_not-a-token"), {"Authorization": "Basic dXNlcjpwdw=="}]:
        response = client.get(f"{API}/experiments", headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error_code"] == "UNAUTHORIZED"
        assert response.headers["www-authenticate"] == "Bearer"
        assert "gyre_not-a-token" not in response.text


def test_health_and_docs_need_no_token(client: httpx.Client) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs").status_code == 200


def test_scope_matrix(client: httpx.Client, scoped: dict[str, str]) -> None:
    run_id = uuid.uuid4().hex
    exp = client.post(
        f"{API}/experiments", json={"name": "matrix"}, headers=_bearer(scoped["write"])
    ).json()["experiment_id"]
    client.post(
        f"{API}/runs",
        json={"experiment_id": exp, "run_id": run_id},
        headers=_bearer(scoped["write"]),
    ).raise_for_status()

    digest = "0" * 64
    reads = [
        ("GET", f"{API}/experiments", None),
        ("GET", f"{API}/runs/{run_id}", None),
        ("POST", f"{API}/runs/search", {"experiment_ids": [exp]}),
        ("HEAD", f"{API}/artifacts/blobs/{digest}", None),
        ("GET", f"{API}/artifacts/manifests?scope=runs/{run_id}", None),
        ("GET", f"{API}/models", None),
        ("GET", f"{API}/audit", None),
    ]
    writes = [
        ("POST", f"{API}/experiments", {"name": f"m-{uuid.uuid4().hex[:6]}"}),
        ("POST", f"{API}/runs/{run_id}/log-batch", {"params": {}}),
        ("PATCH", f"{API}/runs/{run_id}", {"status": "RUNNING"}),
        ("POST", f"{API}/artifacts/manifests", {"scope": f"runs/{run_id}", "entries": {}}),
        ("POST", f"{API}/models/m/versions", {"source": "file:///m"}),
        ("PUT", f"{API}/models/m/aliases/champion", {"version": 1}),
    ]
    allowed = {"read": {"read"}, "write": {"read", "write"}, "admin": {"read", "write"}}
    for scope, secret in scoped.items():
        for kind, requests in (("read", reads), ("write", writes)):
            for method, path, body in requests:
                response = client.request(method, path, json=body, headers=_bearer(secret))
                if kind in allowed[scope]:
                    assert response.status_code not in (401, 403), (scope, method, path)
                else:
                    assert response.status_code == 403, (scope, method, path)
                    assert response.json()["error_code"] == "FORBIDDEN"
                    assert f"{scope}-token" in response.json()["message"]

    upload = client.put(f"{API}/artifacts/blobs", content=b"bytes", headers=_bearer(scoped["read"]))
    assert upload.status_code == 403


def test_http_store_sends_its_token(secured: LiveServer, scoped: dict[str, str]) -> None:
    with HttpStore(secured.url, token=scoped["write"]) as store:
        assert store.create_experiment("with-token").name == "with-token"
    with HttpStore(secured.url, token=scoped["read"]) as store:
        assert store.get_experiment_by_name("with-token") is not None
        with pytest.raises(Forbidden, match="read-token"):
            store.create_experiment("not-allowed")
    with HttpStore(secured.url) as store, pytest.raises(Unauthorized):
        store.search_experiments()


def test_http_store_reads_gyre_token(
    secured: LiveServer, scoped: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GYRE_TOKEN", scoped["read"])
    with HttpStore(secured.url) as store:
        assert store.search_experiments() == []


# -- revocation and storage -----------------------------------------------------------------


def test_a_revoked_token_stops_working_within_seconds(
    secured: LiveServer, client: httpx.Client
) -> None:
    _, secret = secured.store.create_token("short-lived", ["read"])
    assert client.get(f"{API}/experiments", headers=_bearer(secret)).status_code == 200
    secured.store.revoke_token("short-lived")
    revoked_at = time.monotonic()
    deadline = revoked_at + 3.0
    while client.get(f"{API}/experiments", headers=_bearer(secret)).status_code != 401:
        assert time.monotonic() < deadline, "revoked token still accepted after 3 s"
        time.sleep(0.05)  # poll interval, not synchronisation


def test_tokens_are_stored_hashed(secured: LiveServer) -> None:
    runner = CliRunner()
    uri = f"sqlite:///{secured.db_path}"
    created = runner.invoke(
        _cli(), ["tokens", "create", "ci", "--scope", "write", "--tracking-uri", uri]
    )
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("gyre_")

    with httpx.Client(base_url=secured.url) as client:
        assert client.get(f"{API}/experiments", headers=_bearer(secret)).status_code == 200

    stored = b"".join(p.read_bytes() for p in secured.db_path.parent.glob("gyre.db*"))
    assert secret.encode() not in stored
    assert secret[12:].encode() not in stored, "not even the part after the shown prefix"

    listed = runner.invoke(_cli(), ["tokens", "list", "--json", "--tracking-uri", uri])
    assert listed.exit_code == 0 and secret not in listed.stdout
    assert '"name": "ci"' in listed.stdout

    revoked = runner.invoke(_cli(), ["tokens", "revoke", "ci", "--tracking-uri", uri])
    assert revoked.exit_code == 0, revoked.output
    table = runner.invoke(_cli(), ["tokens", "list", "--tracking-uri", uri])
    assert "revoked" in table.stdout


# -- the loopback rule ----------------------------------------------------------------------


def test_server_refuses_a_public_address_without_auth(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'gyre.db'}"
    result = CliRunner().invoke(
        _cli(), ["server", "--host", "0.0.0.0", "--no-auth", "--tracking-uri", uri]
    )
    assert isinstance(result.exception, InvalidArgument)
    assert "'0.0.0.0'" in str(result.exception)
    assert "gyre tokens create" in str(result.exception.hint)


def test_the_cli_refusal_is_exit_code_2_and_one_line(tmp_path: Path) -> None:
    gyre = shutil.which("gyre", path=str(Path(sys.executable).parent))
    assert gyre, "the gyre console script is installed next to the interpreter"
    result = subprocess.run(
        [gyre, "server", "--host", "0.0.0.0", "--tracking-uri", f"sqlite:///{tmp_path / 'g.db'}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "0.0.0.0" in lines[0]


def test_a_predict_token_reads_nothing_of_tracking_and_admin_grants_predict() -> None:
    from gyre.entities import Token

    predict = Token("edge", ("predict",), 0, "gyre_x")
    assert predict.granted == {"predict"}
    assert Token("ops", ("admin",), 0, "gyre_y").granted >= {"read", "write", "predict"}
    assert "predict" not in Token("ci", ("write",), 0, "gyre_z").granted
