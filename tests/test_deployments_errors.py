"""The dashboard's error rates: read from the serving processes' own counters."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np

from gyre.models import load_model, save_model
from gyre.server._deployments import serving_errors
from gyre.serving import ServedModel, create_app
from tests.fixtures.server import free_port


def _doubler(tmp_path: Path) -> ServedModel:
    from sklearn.linear_model import LinearRegression

    x = np.arange(20, dtype=float).reshape(-1, 1)
    save_model(LinearRegression().fit(x, 2 * x[:, 0]), tmp_path / "m", input_example=x[:3])
    return ServedModel("doubler", "7", load_model(tmp_path / "m"))


def test_error_rates_per_version_come_from_the_serving_processes(tmp_path: Path) -> None:
    from gyre.cli._demo import _ServerThread  # uvicorn in a thread, ready on /v2/health/ready

    server = _ServerThread(create_app([_doubler(tmp_path)], access_log=False))
    server.start()
    with httpx.Client(base_url=server.url) as client:
        for value in (1.0, 2.0, 3.0):
            ok = client.post("/predict/doubler", json={"records": [{"0": value}]})
            assert ok.status_code == 200, ok.text
        for bad in ("two", None):
            refused = client.post("/predict/doubler", json={"records": [{"0": bad}]})
            assert refused.status_code == 400
        # refused before any version took it: counted for the model, under no version
        unknown = client.post("/predict/doubler/versions/99", json={"records": [{"0": 1.0}]})
        assert unknown.status_code == 404
        dead = f"http://127.0.0.1:{free_port()}"
        errors = serving_errors("doubler", [server.url, dead])
    server.stop()
    assert errors["recorded"] is True
    assert sorted(errors["versions"]) == ["", "7"]
    row = errors["versions"]["7"]
    assert (row["requests"], row["errors"]) == (5, 2)
    assert row["error_rate"] == 2 / 5
    assert errors["versions"][""] == {"requests": 1.0, "errors": 1.0, "error_rate": 1.0}
    up, down = errors["servers"]
    assert up == {"url": server.url, "ok": True}
    assert down["ok"] is False and "Connect" in down["error"], "never counted as zero"
    assert serving_errors("doubler", [])["recorded"] is False, "no servers: say so"
