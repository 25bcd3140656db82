"""The gyre command as people and scripts use it: tables, --json, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import gyre


def gyre_cli(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [sys.executable, "-m", "gyre", *args], capture_output=True, text=True, timeout=120
    )
    if check:
        assert out.returncode == 0, out.stderr
    return out


@pytest.fixture
def populated(sqlite_uri: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("GYRE_TRACKING_URI", sqlite_uri)
    client = gyre.Client(sqlite_uri)
    ids = {}
    for name, model, rmse in [("a", "rf", 0.2), ("b", "gbm", 0.4), ("c", "rf", 0.3)]:
        run = client.create_run("cli", name=name)
        client.log_params(run.run_id, {"model": model})
        client.log_metric(run.run_id, "rmse", rmse)
        client.set_terminated(run.run_id)
        ids[name] = run.run_id
    client.close()
    return ids


def assert_one_line_error(out: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert out.returncode == 2, out
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_runs_list_filters_and_orders_in_the_table_and_json(populated: dict[str, str]) -> None:
    table = gyre_cli("runs", "list", "-e", "cli", "-f", "params.model = 'rf'", check=True)
    assert "a" in table.stdout and "rf" in table.stdout and "gbm" not in table.stdout
    data = json.loads(
        gyre_cli(
            "runs", "list", "-e", "cli", "-o", "metrics.rmse DESC", "--json", check=True
        ).stdout
    )
    assert [r["name"] for r in data["runs"]] == ["b", "c", "a"]
    assert data["next_page_token"] is None


def test_runs_show_accepts_a_prefix(populated: dict[str, str]) -> None:
    out = gyre_cli("runs", "show", populated["b"][:8], check=True)
    assert "gbm" in out.stdout and populated["b"] in out.stdout
    data = json.loads(gyre_cli("runs", "show", populated["b"], "--json", check=True).stdout)
    assert data["params"] == {"model": "gbm"} and data["metrics"] == {"rmse": 0.4}


def test_runs_compare_shows_both_runs(populated: dict[str, str]) -> None:
    out = gyre_cli("runs", "compare", populated["a"], populated["b"], check=True)
    assert "param model" in out.stdout and "metric rmse" in out.stdout
    assert_one_line_error(gyre_cli("runs", "compare", populated["a"]), "compare needs two")


def test_unknown_run_is_one_red_line_naming_it(populated: dict[str, str]) -> None:
    assert_one_line_error(gyre_cli("runs", "show", "f" * 32), "f" * 32, "not found")
    assert_one_line_error(gyre_cli("runs", "list", "-e", "missing-exp"), "'missing-exp'")


def test_a_bad_filter_points_at_the_token(populated: dict[str, str]) -> None:
    assert_one_line_error(
        gyre_cli("runs", "list", "-f", "metrics.rmse ~ 0.3"), "'~'", "position 14"
    )


def test_experiments_create_and_list(populated: dict[str, str]) -> None:
    gyre_cli("experiments", "create", "fresh", "--tag", "team=x", check=True)
    data = json.loads(gyre_cli("experiments", "list", "--json", check=True).stdout)
    assert {"cli", "fresh"} <= {e["name"] for e in data}
    assert_one_line_error(gyre_cli("experiments", "create", "fresh"), "'fresh'", "already exists")
    assert_one_line_error(gyre_cli("experiments", "create", "x", "--tag", "nope"), "'nope'")


def test_config_show_says_where_each_value_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GYRE_PORT", "6123")
    monkeypatch.setenv("GYRE_TOKEN", "gyre_topsecret")
    rows = {
        r["name"]: r for r in json.loads(gyre_cli("config", "show", "--json", check=True).stdout)
    }
    assert rows["GYRE_PORT"] == {"name": "GYRE_PORT", "value": "6123", "source": "env"}
    assert rows["GYRE_HOST"]["source"] == "default"
    assert "topsecret" not in json.dumps(rows)


def test_help_teaches() -> None:
    out = gyre_cli("runs", "list", "--help", check=True).stdout
    assert "metrics.rmse < 0.3" in out


def test_a_usage_error_is_one_red_line() -> None:
    """Usage errors (an unknown option, a value out of range, a missing argument) are one
    line naming the problem and the command's --help, exit 2."""
    assert_one_line_error(
        gyre_cli("runs", "list", "--no-such-flag"),
        "No such option: --no-such-flag",
        "(see gyre runs list --help)",
    )
    assert_one_line_error(
        gyre_cli("serve", "models:/m@champion", "--workers", "0"),
        "Invalid value for '--workers'",
        "(got '0')",
        "(see gyre serve --help)",
    )
    assert_one_line_error(gyre_cli("predict"), "Missing argument", "(see gyre predict --help)")


@pytest.mark.slow
def test_demo_runs_the_whole_loop_end_to_end(
    sqlite_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = gyre_cli("demo", "--fast", "--tracking-uri", sqlite_uri, check=True)
    assert sqlite_uri in out.stdout, "the demo says where the metadata lives"
    for stage in (
        "track",
        "register and gate",
        "serve and monitor",
        "detect",
        "retrain",
        "canary",
        "summary",
    ):
        assert stage in out.stdout, stage
    client = gyre.Client(sqlite_uri)
    runs = [r for r in client.search_runs("demo").items if r.params.get("learning_rate")]
    assert len(runs) == 2
    for run in runs:
        assert run.status is gyre.RunStatus.FINISHED
        assert {"accuracy", "roc_auc", "val_log_loss"} <= set(run.metrics)
        assert [i.context for i in run.inputs] == ["train", "test"]
        assert len(client.get_metric_history(run.run_id, "val_log_loss")) == 60
        paths = [p for p, _ in client.list_artifacts(run.run_id)]
        assert "feature_importance.csv" in paths and "model/gyre-model.yaml" in paths
    client.close()
    from gyre.registry import Registry
    from gyre.store._sql import SqlStore

    registry = Registry(sqlite_uri)
    # v1 was blessed and released; drift opened an incident; the retrained v2 was blessed,
    # canaried on live traffic and promoted; the incident was resolved.
    best = max(runs, key=lambda r: r.metrics["roc_auc"])
    v1 = registry.store.get_model_version("churn", 1)
    assert v1.run_id == best.run_id and v1.gate_verdict == "blessed"
    assert registry.get_model("churn").aliases == {"champion": 2, "challenger": 2}
    actions = [e.action for e in reversed(registry.audit_log("churn"))]
    assert actions.index("retrain.challenger") < actions.index("canary.promote")
    registry.close()
    store = SqlStore(sqlite_uri)
    resolved = store.list_incidents(model="churn", status="resolved")
    assert store.list_incidents(model="churn", status="open") == []
    checks = {a.check for i in resolved for a in store.list_alerts(incident_id=i.incident_id)}
    assert checks >= {"data_drift", "error_drift"}
    store.close()
    assert "labelled predictions after the change" in out.stdout
    report = Path(os.environ["GYRE_HOME"]) / "demo-drift-report.html"
    assert "<svg" in report.read_text(), "the demo leaves its drift report, with charts"
    [said] = [line for line in out.stdout.splitlines() if line.startswith("drift report:")]
    drifted = int(said.split(" predictions, ")[1].split(" drifted")[0])
    assert drifted >= 1 and "monthly_charges in" in said, (
        "the report counts as drifted the windows the monitor alerted on, by column: " + said
    )
    monkeypatch.setenv("GYRE_HOME", str(tmp_path / "another-home"))
    again = gyre_cli("demo", "--fast", check=True)
    split = [line for line in out.stdout.splitlines() if "predictions (v" in line]
    assert split == [line for line in again.stdout.splitlines() if "predictions (v" in line], (
        "the same seed gives the same demo: the same traffic, split and accuracy"
    )


def test_no_help_text_loses_a_placeholder_to_the_help_renderer() -> None:
    """The help renderer takes ``<name>`` for markup and drops it (``gyre models alias
    --help`` read "/ or @"): placeholders are written NAME, or inside backticks."""
    import re

    import typer

    from gyre.cli._app import app

    def texts(command: Any, path: str) -> list[tuple[str, str]]:
        found = [(path, command.help or "")]
        found += [(f"{path} {p.name}", getattr(p, "help", None) or "") for p in command.params]
        for name, sub in getattr(command, "commands", {}).items():  # (a group)
            found += texts(sub, f"{path} {name}")
        return found

    eaten = [
        (where, text)
        for where, text in texts(typer.main.get_command(app), "gyre")
        if re.search(r"<[A-Za-z_]+>", re.sub(r"`[^`]*`", "", text))
    ]
    assert len(texts(typer.main.get_command(app), "gyre")) > 200, "every command was read"
    assert eaten == []


def test_every_command_help_reads_whole_in_80_columns() -> None:
    """In an 80-column terminal the help renderer shortened what did not fit with "…"
    (`gyre serve --help` showed "--max-request-by…"): no option name, default or help text
    of any command is cut."""
    import typer
    from typer.testing import CliRunner

    from gyre.cli._app import app

    def commands(command: Any, path: list[str]) -> list[list[str]]:
        subs = getattr(command, "commands", None)
        if not subs:
            return [path]
        return [p for name, sub in subs.items() for p in commands(sub, [*path, name])]

    found = commands(typer.main.get_command(app), [])
    assert ["serve"] in found and len(found) > 30, "every command was read"
    cut = {}
    for path in found:
        shown = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
        assert shown.exit_code == 0, shown.output
        lines = shown.output.splitlines()
        assert max(len(line) for line in lines) <= 80
        if any("…" in line for line in lines):
            cut[" ".join(path)] = [line for line in lines if "…" in line]
    assert cut == {}


def test_an_error_whose_source_message_has_line_breaks_is_still_one_line() -> None:
    """The database driver's message for a server that is not there spans two lines ("Is
    the server running on that host...?"); the error stays one line."""
    out = gyre_cli("runs", "list", "--tracking-uri", "postgresql://postgres@127.0.0.1:1/nowhere")
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert "cannot open metadata store" in lines[0] and "Traceback" not in out.stderr
