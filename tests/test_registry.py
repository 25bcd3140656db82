"""The model lifecycle a data scientist runs: log, register, load, alias, validate, promote."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import gyre
from gyre.errors import GateFailed, InvalidArgument, NotFound
from gyre.registry import Registry
from gyre.registry._gate import validate
from tests.fixtures.server import LiveServer


def make_data(seed: int, n: int = 400, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=0.5, size=n) > shift).astype(int)
    frame = pd.DataFrame(x, columns=["age", "income", "visits", "tenure"])
    frame["region"] = np.where(x[:, 2] > 0, "north", "south")
    frame["y"] = y
    return frame


FEATURES = ["age", "income", "visits", "tenure"]


@pytest.fixture
def tracking(sqlite_uri: str) -> Iterator[str]:
    gyre.set_tracking_uri(sqlite_uri)
    yield sqlite_uri
    gyre.set_tracking_uri(None)


def train_and_log(c: float, features: list[str] = FEATURES) -> tuple[str, object]:
    train = make_data(0)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c))
    with gyre.start_run(experiment="churn", name=f"lr-C{c}") as run:
        gyre.log_param("C", c)
        gyre.log_dataset(train, "customers")
        model.fit(train[features], train["y"])
        gyre.log_metric("train_acc", float(model.score(train[features], train["y"])))
        info = gyre.log_model(
            model, input_example=train[features][:5], reference_data=train[features]
        )
    assert info.uri == f"runs:/{run.run_id}/model"
    return info.uri, model


def test_log_register_and_load_by_every_uri(tracking: str, tmp_path: Path) -> None:
    uri, model = train_and_log(1.0)
    holdout = make_data(1)[FEATURES]
    expected = model.predict(holdout)  # type: ignore[attr-defined]

    v = gyre.register_model(uri, "churn", description="first")
    assert (v.name, v.version, v.source) == ("churn", 1, uri)
    reg = Registry(tracking)
    reg.set_alias("churn", "champion", 1, reason="first release")
    for ref in (uri, "models:/churn/1", "models:/churn@champion", "models:/churn@latest"):
        loaded = gyre.load_model(ref)
        assert np.array_equal(loaded.predict(holdout), expected), ref
    local = gyre.load_model(str(reg.download(uri)))
    assert np.array_equal(local.predict(holdout), expected)
    assert local.metadata["run_id"] == v.run_id
    assert local.metadata["datasets"][0]["name"] == "customers"
    assert local.reference_profile is not None
    reg.close()


def test_lineage_traces_run_params_datasets_and_code(tracking: str) -> None:
    uri, _ = train_and_log(0.5)
    v = gyre.register_model(uri, "churn")
    reg = Registry(tracking)
    info = reg.lineage("churn", v.version)
    assert info["run"]["params"] == {"C": "0.5"}
    assert "train_acc" in info["run"]["metrics"]
    assert (
        info["datasets"][0]["digest"]
        == gyre.Client(tracking).get_run(v.run_id or "").inputs[0].dataset.digest
    )
    assert info["gate"]["verdict"] is None
    reg.close()


def test_registering_a_run_without_a_model_names_the_path(tracking: str) -> None:
    with gyre.start_run(experiment="churn") as run:
        pass
    with pytest.raises(NotFound, match=f"{run.run_id}.*'model'"):
        gyre.register_model(f"runs:/{run.run_id}/model", "churn")
    with pytest.raises(InvalidArgument, match="'s3://bucket/model'"):
        gyre.load_model("s3://bucket/model")
    with pytest.raises(NotFound, match="'nope'"):
        gyre.load_model("models:/nope@prod")


def test_a_misspelled_model_uri_says_what_was_meant(tracking: str) -> None:
    """A URI whose scheme is misspelled (model:/, run:/) is not taken for a missing folder
    without a word, and a run-id prefix (as `gyre runs show` takes) is named as one."""
    with pytest.raises(NotFound, match="did you mean 'models:/churn@champion'"):
        gyre.load_model("model:/churn@champion")
    with pytest.raises(NotFound, match="did you mean 'runs:/abc/model'"):
        gyre.load_model("run:/abc/model")
    with pytest.raises(InvalidArgument) as short:
        gyre.load_model("runs:/f3b877eb/model")
    assert short.value.message == (
        "model URI 'runs:/f3b877eb/model' names run 'f3b877eb', 8 of the 32 characters of a run id"
    )
    assert short.value.hint == "`gyre runs show f3b877eb` shows the full id"


def holdout_file(tmp_path: Path, seed: int = 1) -> Path:
    path = tmp_path / f"holdout-{seed}.parquet"
    make_data(seed).to_parquet(path)
    return path


def test_validate_blesses_records_numbers_and_promote_follows(
    tracking: str, tmp_path: Path
) -> None:
    uri, _ = train_and_log(1.0)
    v = gyre.register_model(uri, "churn")
    reg = Registry(tracking)
    report = validate(
        reg,
        "churn",
        v.version,
        holdout_file(tmp_path),
        "y",
        policy={
            "thresholds": {"accuracy": {"min": 0.7}, "roc_auc": {"min": 0.8}},
            "latency": {"single_p99_ms": 10_000},
            "slices": {"columns": ["region"], "thresholds": {"accuracy": {"min": 0.5}}},
        },
    )
    assert report["verdict"] == "blessed", report["summary"]
    assert 0.7 <= report["metrics"]["accuracy"] <= 1.0
    assert set(report["slices"]) == {"region=north", "region=south"}
    assert report["latency"]["single_p50_ms"] > 0
    stored = reg.store.get_model_version("churn", v.version)
    assert stored.gate_verdict == "blessed"
    assert stored.gate_report is not None
    assert stored.gate_report["metrics"]["accuracy"] == report["metrics"]["accuracy"]
    entry = reg.promote("churn", v.version)
    assert (entry.to_version, entry.reason) == (v.version, "blessed by the gate")
    reg.close()


def test_a_worse_challenger_is_rejected_and_not_promoted(tracking: str, tmp_path: Path) -> None:
    reg = Registry(tracking)
    good_uri, _ = train_and_log(1.0)
    good = gyre.register_model(good_uri, "churn")
    reg.set_alias("churn", "champion", good.version)
    # A model that sees only a noise feature is clearly worse.
    bad_uri, _ = train_and_log(1.0, features=["visits"])
    bad = gyre.register_model(bad_uri, "churn")
    report = validate(
        reg,
        "churn",
        bad.version,
        holdout_file(tmp_path),
        "y",
        policy={
            "against_champion": {"f1": {"max_regression": 0.01}},
            "require_signature_match": False,
        },
    )
    assert report["verdict"] == "rejected"
    failed = [c for c in report["checks"] if not c["ok"]]
    assert failed[0]["check"] == "vs champion: f1 regression"
    assert failed[0]["champion"] > failed[0]["value"]
    with pytest.raises(GateFailed, match=f"churn/{bad.version}.*rejected"):
        reg.promote("churn", bad.version)
    assert reg.get_model("churn").aliases["champion"] == good.version
    forced = reg.promote("churn", bad.version, force=True, reason="demo")
    assert forced.reason.startswith("FORCED past the gate (rejected)")
    reg.close()


def test_signature_change_against_the_champion_fails_the_gate(
    tracking: str, tmp_path: Path
) -> None:
    reg = Registry(tracking)
    champion = gyre.register_model(train_and_log(1.0, features=["age", "income"])[0], "churn")
    reg.set_alias("churn", "champion", champion.version)
    candidate = gyre.register_model(train_and_log(1.0)[0], "churn")
    report = validate(
        reg,
        "churn",
        candidate.version,
        holdout_file(tmp_path),
        "y",
        policy={"against_champion": {}},
    )
    sig = next(c for c in report["checks"] if c["check"] == "signature vs champion")
    assert not sig["ok"] and "'visits'" in sig["detail"]
    reg.close()


def test_a_bad_policy_names_the_field(tracking: str, tmp_path: Path) -> None:
    uri, _ = train_and_log(1.0)
    v = gyre.register_model(uri, "churn")
    reg = Registry(tracking)
    with pytest.raises(InvalidArgument, match="thresholds.f1.minimum"):
        validate(
            reg,
            "churn",
            v.version,
            holdout_file(tmp_path),
            "y",
            policy={"thresholds": {"f1": {"minimum": 0.8}}},
        )
    with pytest.raises(InvalidArgument, match="'label'"):
        validate(reg, "churn", v.version, holdout_file(tmp_path), "label")
    reg.close()


def gyre_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gyre", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_the_models_cli_end_to_end(tracking: str, tmp_path: Path) -> None:
    uri, _ = train_and_log(1.0)
    t = ["--tracking-uri", tracking]
    out = gyre_cli("models", "register", uri, "churn", *t, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["version"] == 1
    policy = tmp_path / "gate.yaml"
    policy.write_text("thresholds:\n  accuracy: {min: 0.99}\n")
    holdout = str(holdout_file(tmp_path))
    rejected = gyre_cli(
        "models",
        "validate",
        "churn/1",
        "--data",
        holdout,
        "--target",
        "y",
        "--policy",
        str(policy),
        *t,
    )
    assert rejected.returncode == 2 and "rejected" in rejected.stderr
    assert "FAIL" in rejected.stdout
    refused = gyre_cli("models", "promote", "churn/1", *t)
    assert refused.returncode == 2 and "not promoted" in refused.stderr
    policy.write_text("thresholds:\n  accuracy: {min: 0.6}\n")
    blessed = gyre_cli(
        "models",
        "validate",
        "churn/1",
        "--data",
        holdout,
        "--target",
        "y",
        "--policy",
        str(policy),
        *t,
    )
    assert blessed.returncode == 0, blessed.stderr
    assert gyre_cli("models", "promote", "churn/1", *t).returncode == 0
    shown = json.loads(gyre_cli("models", "show", "churn", *t, "--json").stdout)
    assert shown["aliases"] == {"champion": 1}
    assert shown["versions"][0]["gate_verdict"] == "blessed"
    lineage = gyre_cli("models", "lineage", "churn@champion", *t)
    assert lineage.returncode == 0 and "customers" in lineage.stdout and "C = 1.0" in lineage.stdout
    deleted = gyre_cli("models", "delete", "churn/1", *t)
    assert deleted.returncode == 2 and "champion" in deleted.stderr
    audit = json.loads(gyre_cli("models", "audit", "churn", *t, "--json").stdout)
    assert [e["action"] for e in audit][:3] == ["alias.set", "gate", "gate"]


def test_models_registered_over_http_load_through_the_server(live_server: LiveServer) -> None:
    gyre.set_tracking_uri(live_server.url)
    try:
        uri, model = train_and_log(1.0)
        gyre.register_model(uri, "remote")
        holdout = make_data(2)[FEATURES]
        loaded = gyre.load_model("models:/remote/1")
        assert np.array_equal(loaded.predict(holdout), model.predict(holdout))  # type: ignore[attr-defined]
    finally:
        gyre.set_tracking_uri(None)
