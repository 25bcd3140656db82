"""``gyre predictions query`` and ``gyre sync``."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from gyre.artifacts import open_artifact_store
from gyre.cli._predictions_cmds import check_central, parse_moment, register
from gyre.errors import InvalidArgument, NotFound
from gyre.predictions import PredictionLog, query
from gyre.store._sql import SqlStore
from tests.fixtures.predictions import records

NOW_MS = time.time_ns() // 1_000_000


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


@pytest.fixture
def logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Predictions of churn v1 and v2 in the last half hour, older ones, some labels."""
    artifacts = tmp_path / "artifacts"
    monkeypatch.setenv("GYRE_ARTIFACT_URI", str(artifacts))
    monkeypatch.setenv("GYRE_TRACKING_URI", f"sqlite:///{tmp_path / 'gyre.db'}")
    store = open_artifact_store(str(artifacts))
    recent = NOW_MS - 30 * 60_000
    with PredictionLog(tmp_path / "spool", store) as log:
        log.append(records(12, version=1, start_ms=recent, step_ms=60_000, prefix="v1"))
        log.append(records(6, version=2, start_ms=recent, step_ms=60_000, prefix="v2"))
        log.append(records(5, version=1, start_ms=NOW_MS - 3 * 3_600_000, prefix="old"))
        log.append_feedback("churn", [("v1-0", 1), ("v1-1", 0), ("v2-0", 1), ("ghost", 1)])
    return artifacts


def _invoke(app: typer.Typer, *args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_query_json_counts_the_window_and_limits_the_rows(app: typer.Typer, logged: Path) -> None:
    out = json.loads(
        _invoke(
            app, "predictions", "query", "models:/churn", "--since", "1h", "--json", "--limit", "5"
        )
    )
    assert out["model"] == "churn" and out["version"] is None
    assert out["total"] == 18 and out["versions"] == [1, 2]
    assert len(out["rows"]) == 5, "the newest 5"
    assert out["rows"][-1]["request_id"] == "v1-11"
    assert datetime.fromisoformat(out["rows"][-1]["timestamp"]).tzinfo is not None
    assert out["rows"][0]["out_proba"] == [0.25, 0.75]
    assert out["coverage"] == {
        "predictions": 18,
        "labelled": 3,
        "coverage": pytest.approx(3 / 18),
        "unknown_labels": 1,
    }
    assert out["latency_ms"]["p50"] is not None
    wider = json.loads(_invoke(app, "predictions", "query", "churn", "--since", "4h", "--json"))
    assert wider["total"] == 23
    for far in ("99999999d", "0001-01-02T00:00:00Z"):  # from the start: every row
        everything = json.loads(_invoke(app, "predictions", "query", "churn", "--since", far,
                                        "--json"))  # fmt: skip
        assert everything["total"] == wider["total"], far
    before = CliRunner().invoke(app, ["predictions", "query", "churn", "--until", "99999999d"])
    assert "--until '99999999d' is not after 1970-01-01" in str(before.exception)


def test_query_by_version_and_by_alias(app: typer.Typer, logged: Path, tmp_path: Path) -> None:
    out = json.loads(_invoke(app, "predictions", "query", "models:/churn/2", "--json"))
    assert (out["version"], out["total"]) == (2, 6)
    registry = SqlStore(f"sqlite:///{tmp_path / 'gyre.db'}")
    try:
        for _ in range(2):
            registry.create_model_version("churn", "file:///nowhere")
        registry.set_alias("churn", "champion", 2)
    finally:
        registry.close()
    out = json.loads(_invoke(app, "predictions", "query", "models:/churn@champion", "--json"))
    assert (out["version"], out["total"]) == (2, 6)


def test_query_table_and_csv(app: typer.Typer, logged: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    out = _invoke(
        app, "predictions", "query", "models:/churn", "--limit", "3", "--csv", str(target)
    )
    assert "predictions of churn" in out
    assert "18 predictions in" in out and "versions 1, 2" in out
    assert "labelled 3/18 (16.7%)" in out and "matching no prediction: 1" in out
    assert f"wrote 18 rows to {target}" in out.replace("\n", "")
    with open(target, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 18
    assert json.loads(rows[0]["out_proba"]) == [0.25, 0.75]
    assert rows[0]["label"] in ("", "0", "1")


def _refused(app: typer.Typer, *args: str) -> NotFound | InvalidArgument:
    result = CliRunner().invoke(app, list(args))
    assert isinstance(result.exception, NotFound | InvalidArgument), result.output
    return result.exception


def test_query_of_an_unknown_model_or_version_says_so_instead_of_an_empty_table(
    app: typer.Typer, logged: Path, tmp_path: Path
) -> None:
    typo = _refused(app, "predictions", "query", "models:/chrun")
    assert "'chrun'" in typo.message
    assert typo.hint is not None and "did you mean models:/churn?" in typo.hint
    missing = _refused(app, "predictions", "query", "models:/churn/9", "--json")
    assert "version 9" in missing.message and "'churn'" in missing.message
    assert missing.hint is not None and "versions logged: 2, 1" in missing.hint
    # A model or version the registry knows, or the log holds, with nothing in the window,
    # is an empty answer, as before.
    registry = SqlStore(f"sqlite:///{tmp_path / 'gyre.db'}")
    try:
        registry.create_model_version("fraud", "file:///nowhere")
        for _ in range(3):
            registry.create_model_version("churn", "file:///nowhere")
    finally:
        registry.close()
    for uri in ("models:/fraud", "models:/churn/3", "models:/churn/2"):
        out = json.loads(_invoke(app, "predictions", "query", uri, "--since", "1m", "--json"))
        assert out["total"] == 0, uri
    old = ["--since", "2024-01-01", "--until", "2024-01-02", "--json"]
    assert json.loads(_invoke(app, "predictions", "query", "models:/churn", *old))["total"] == 0
    still = _refused(app, "predictions", "query", "models:/churn/9")
    assert still.hint is not None and "registered: 3, 2, 1" in still.hint
    assert "'fraud'" in _refused(app, "predictions", "query", "models:/fraud/2").message


@pytest.fixture
def edge(tmp_path: Path) -> Path:
    """An edge server's --log-dir: the spool and, in store/, the compacted log."""
    with PredictionLog(
        tmp_path / "log" / "spool", open_artifact_store(str(tmp_path / "log" / "store"))
    ) as log:
        log.append(records(3))
    return tmp_path / "log"


def test_sync_refuses_a_folder_that_is_not_a_prediction_log(
    app: typer.Typer, edge: Path, tmp_path: Path
) -> None:
    central = str(tmp_path / "central")
    gone = _refused(app, "sync", "--from", str(tmp_path / "nowhere"), "--to", central)
    assert isinstance(gone, NotFound) and repr(str(tmp_path / "nowhere")) in gone.message
    wrong = _refused(app, "sync", "--from", str(edge), "--to", central, "--json")
    assert repr(str(edge)) in wrong.message
    assert f"did you mean {str(edge / 'store')!r}?" in wrong.message
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("x")
    other = _refused(app, "sync", "--from", str(tmp_path / "notes"), "--to", central)
    assert "not an artifact store" in other.message
    assert not (tmp_path / "central").exists(), "nothing was synced"
    # A genuine store with nothing logged yet has nothing to copy; that is no error.
    (tmp_path / "fresh").mkdir()
    fresh = _invoke(app, "sync", "--from", str(tmp_path / "fresh"), "--to", central, "--json")
    assert json.loads(fresh)["entries"] == 0
    done = _invoke(app, "sync", "--from", str(edge / "store"), "--to", central, "--json")
    assert json.loads(done)["entries"] > 0 and json.loads(done)["models"] == ["churn"]
    # A sync service (--interval) started before the edge box's first compaction waits for
    # its store to appear instead of refusing to start.
    from gyre.cli._predictions_cmds import _check_source

    not_yet = open_artifact_store(str(tmp_path / "edge2" / "store"))
    _check_source(not_yet, "--from", missing_ok=True)
    with pytest.raises(NotFound):
        _check_source(not_yet, "--from")


def test_sync_carries_what_a_stopped_edge_server_left_in_its_spool(
    app: typer.Typer, tmp_path: Path
) -> None:
    """An edge box's server killed before it compacted: its answered predictions are in
    ``spool/`` beside ``store/``. ``gyre sync --from .../store`` compacts them and carries
    them to central (it used to sync the store alone: "0 entries", the rows stranded)."""
    log = PredictionLog(tmp_path / "log" / "spool")  # no store: nothing compacted
    log.append(records(5))
    log.close()
    central = tmp_path / "central"
    store = str(tmp_path / "log" / "store")
    done = json.loads(_invoke(app, "sync", "--from", store, "--to", str(central), "--json"))
    assert done["spool_rows_compacted"] == 5 and done["models"] == ["churn"]
    assert query(open_artifact_store(str(central)), "churn").num_rows == 5
    assert not list((tmp_path / "log" / "spool").glob("*.jsonl"))
    again = json.loads(_invoke(app, "sync", "--from", store, "--to", str(central), "--json"))
    assert (again["spool_rows_compacted"], again["entries"]) == (0, 0)
    assert query(open_artifact_store(str(central)), "churn").num_rows == 5


def test_sync_says_so_when_it_cannot_take_the_spool_left_beside(
    app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spool the syncing user cannot write (the server ran as another user) cannot be
    compacted: the sync says so, naming the folder, instead of reporting the store alone
    as if nothing were left behind. (The tests run as root, for whom every folder is
    writable: the permission check is what is replaced.)"""
    log = PredictionLog(tmp_path / "log" / "spool")
    log.append(records(3))
    log.close()
    spool = tmp_path / "log" / "spool"
    allowed = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != spool and allowed(p, mode))
    store = str(tmp_path / "log" / "store")
    shown = CliRunner().invoke(app, ["sync", "--from", store, "--to", str(tmp_path / "c")])
    said = " ".join(shown.output.split())
    assert f"the spool {spool} holds predictions not compacted yet" in said, shown.output
    assert "cannot write it" in said and list(spool.glob("*.jsonl")), "the files stay"


@pytest.mark.parametrize(
    ("to", "guess"),
    [("127.0.0.1:5050", "http://127.0.0.1:5050"), ("gyre.internal", "http://gyre.internal"),
     ("http//gyre.internal", None), ("relative/folder", None), ("./central", None)],
)  # fmt: skip
def test_sync_refuses_a_central_that_would_be_a_folder_here(
    app: typer.Typer,
    logged: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    to: str,
    guess: str | None,
) -> None:
    """``--to host:port`` or a bare host name would be a folder of that name in the working
    directory, and the sync would "succeed" into it."""
    monkeypatch.chdir(tmp_path)
    refused = _refused(app, "sync", "--to", to)
    assert isinstance(refused, InvalidArgument)
    assert refused.message == f"--to {to!r} names neither a server nor an absolute folder"
    assert refused.hint is not None
    if guess is not None:
        assert f"did you mean {guess!r}?" in refused.hint
    else:
        assert "did you mean" not in refused.hint
    assert not (tmp_path / to.removeprefix("./").split("/")[0]).exists(), "nothing made here"
    for fine in (f"file:{tmp_path / 'c1'}", "~/gyre-central-test-never-made"):
        check_central(fine, "--to")  # forms the folder store takes: not refused


def test_a_sync_service_says_it_waits_for_a_store_not_made_yet(
    app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--interval`` with a store that does not exist yet (a box before its first
    compaction, or a typo): each pass says it waits for that folder, rather than
    "synced ... 0 entries" as if all were well."""
    from gyre.cli import _predictions_cmds

    def stop(seconds: float) -> None:
        raise KeyboardInterrupt  # Ctrl-C during the first pause

    monkeypatch.setattr(_predictions_cmds.time, "sleep", stop)
    store = tmp_path / "edge" / "stroe"
    out = _invoke(
        app, "sync", "--from", str(store), "--to", str(tmp_path / "central"), "--interval", "5"
    )
    assert f"waiting for {store}" in " ".join(out.split()), out
    assert "synced" not in out and not (tmp_path / "central").exists()


def test_sync_command_copies_then_finds_nothing_new(
    app: typer.Typer, logged: Path, tmp_path: Path
) -> None:
    central = tmp_path / "central"
    first = json.loads(_invoke(app, "sync", "--to", str(central), "--json"))
    assert first["entries"] > 0 and first["models"] == ["churn"]
    again = json.loads(_invoke(app, "sync", "--to", str(central), "--from", str(logged), "--json"))
    assert again["entries"] == 0
    assert query(open_artifact_store(str(central)), "churn").num_rows == 23
    assert "synced" in _invoke(app, "sync", "--to", str(central))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["predictions", "query", "churn", "--since", "yesterday"], "--since 'yesterday'"),
        (["predictions", "query", "churn", "--until", "5 parsecs"], "--until '5 parsecs'"),
        (["predictions", "query", "models:/a/b/c"], "model 'models:/a/b/c'"),
        (["predictions", "query", "churn", "--limit", "-1"], "--limit -1"),
        (["sync", "--to", "/tmp/x", "--interval", "0"], "--interval 0"),
    ],
)
def test_bad_arguments_raise_naming_them(
    app: typer.Typer, logged: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, InvalidArgument)
    assert message in str(result.exception)


def test_parse_moment() -> None:
    now = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
    assert parse_moment("30m", "--since", now) == now - timedelta(minutes=30)
    assert parse_moment("2d", "--since", now) == now - timedelta(days=2)
    assert parse_moment("1.5h", "--since", now) == now - timedelta(minutes=90)
    assert parse_moment("2024-03-09T08:00:00Z", "--since", now) == datetime(
        2024, 3, 9, 8, tzinfo=UTC
    )
    assert parse_moment("2024-03-09", "--since", now) == datetime(2024, 3, 9, tzinfo=UTC)
    # however far back (past year 1 even): from the start of the log's time, 1970
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for far in ("99999999d", "740000d", "0001-01-02T00:00:00Z", "1969-07-20"):
        assert parse_moment(far, "--since", now) == epoch, far


# The real `gyre` entry point, with these commands registered if cli/_app.py does not yet.
GYRE = """
import sys
from gyre.cli import _app, _predictions_cmds, main
if not any(g.name == "predictions" for g in _app.app.registered_groups):
    _predictions_cmds.register(_app.app)
sys.exit(main(sys.argv[1:]))
"""


def test_query_table_fits_80_columns_without_cutting_cells(logged: Path, tmp_path: Path) -> None:
    features = [f"feature_{i}" for i in range(12)]
    with PredictionLog(tmp_path / "spool", open_artifact_store(str(logged))) as log:
        log.append(records(3, model="wide", start_ms=NOW_MS - 60_000,
                           inputs=lambda i: dict.fromkeys(features, 0.5 + i)))  # fmt: skip
    outputs = {}
    for model in ("models:/churn", "models:/wide"):
        run = subprocess.run(
            [sys.executable, "-c", GYRE, "predictions", "query", model],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": "80"},
        )
        assert run.returncode == 0, run.stderr
        assert "…" not in run.stdout, run.stdout
        assert max(map(len, run.stdout.splitlines())) <= 80, run.stdout
        outputs[model] = run.stdout
    churn = outputs["models:/churn"]
    newest = datetime.fromtimestamp((NOW_MS - 30 * 60_000 + 11 * 60_000) / 1000, UTC)
    assert "v1-11" in churn and f"{newest:%H:%M:%S}" in churn
    for model, columns in (
        ("models:/churn", ["prediction", "label", "proba", "age", "city"]),
        ("models:/wide", ["prediction", "proba", *features]),
    ):
        header = outputs[model].splitlines()[2]
        note = outputs[model].partition("not shown at this width:")[2].partition("(--json")[0]
        hidden = {name.strip() for name in note.replace("\n", " ").split(",")}
        assert " prediction " in header, "the answer is shown first"
        for column in columns:  # each one either shown or named below the table
            assert (f" {column} " in header) != (column in hidden), (model, column)
    assert "feature_11" in outputs["models:/wide"].split("\n", 3)[3], "wide still shows rows"


def test_errors_are_one_red_line_and_an_exit_code(logged: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", GYRE, "predictions", "query", "models:/churn", "--since", "soon"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "--since 'soon'" in lines[0] and "1h" in lines[0], run.stderr
    typo = subprocess.run(
        [sys.executable, "-c", GYRE, "predictions", "query", "models:/chrun"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert typo.returncode == 2 and not typo.stdout, typo.stdout
    lines = typo.stderr.strip().splitlines()
    assert len(lines) == 1 and "'chrun'" in lines[0] and "models:/churn" in lines[0], typo.stderr
    ok = subprocess.run(
        [sys.executable, "-c", GYRE, "predictions", "query", "models:/churn", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["total"] == 18
