"""Pipelines on the local executor: wiring, typed artifacts, caching, retries, failures,
tracking."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import gyre
from gyre.entities import RunStatus
from gyre.errors import InvalidArgument
from gyre.pipelines import Pipeline, register, step
from gyre.pipelines._cache import code_fingerprint
from gyre.registry import Registry
from gyre.tracking import Client
from tests.fixtures.server import LiveServer

CALLS: Counter[str] = Counter()


@step
def load(path: Path) -> pd.DataFrame:
    CALLS["load"] += 1
    return pd.read_csv(path)


@step(outputs=("train", "test"))
def split(df: pd.DataFrame, fraction: float = 0.5) -> tuple[pd.DataFrame, pd.DataFrame]:
    CALLS["split"] += 1
    cut = int(len(df) * fraction)
    return df.iloc[:cut], df.iloc[cut:]


@step
def fit(train: pd.DataFrame, c: float = 1.0) -> Any:
    CALLS["fit"] += 1
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c).fit(train[["x1", "x2"]], train["y"])


@step
def evaluate(model: Any, test: pd.DataFrame) -> float:
    CALLS["evaluate"] += 1
    assert isinstance(model, gyre.models.Model)  # downstream gets the loaded package
    return float((model.predict(test[["x1", "x2"]]) == test["y"]).mean())


@Pipeline(experiment="pipes")
def churn(data: Path = Path("data.csv"), c: float = 1.0):  # type: ignore[no-untyped-def]
    train, test = split(load(data))
    model = fit(train, c=c)
    return {"accuracy": evaluate(model, test), "version": register(model, "churn")}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    frame = pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "y": (x.sum(axis=1) > 0).astype(int)})
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    CALLS.clear()
    return path


def statuses(result: Any) -> dict[str, tuple[str, bool]]:
    return {name: (s.status, s.cache_hit) for name, s in result.steps.items()}


def test_the_dag_is_inferred_from_how_outputs_feed_inputs_without_running(data: Path) -> None:
    assert churn.dag({"data": data}) == {
        "load": [],
        "split": ["load"],
        "fit": ["split"],
        "evaluate": ["fit", "split"],
        "register": ["fit"],
    }
    assert not CALLS


def test_a_run_is_tracked_with_nested_step_runs_and_lineage_to_the_model_version(
    data: Path, sqlite_uri: str
) -> None:
    result = churn.run({"data": data}, tracking_uri=sqlite_uri)
    assert result.ok and result.status == "FINISHED"
    assert result.load("accuracy") > 0.8
    assert result.load("version") == {"name": "churn", "version": 1}
    client = Client(sqlite_uri)
    parent = client.get_run(result.run_id)
    assert parent.status is RunStatus.FINISHED
    assert parent.params == {"data": str(data), "c": "1.0"}
    assert parent.tags["gyre.pipeline.registered"] == "churn/1"
    assert parent.metrics["evaluate"] == pytest.approx(result.load("accuracy"))
    children = client.search_runs("pipes", f"parent_run_id = '{result.run_id}'").items
    assert sorted(r.name for r in children) == sorted(result.steps)
    assert all(r.status is RunStatus.FINISHED for r in children)
    client.close()

    registry = Registry(sqlite_uri)
    lineage = registry.lineage("churn", 1)
    registry.close()
    assert lineage["run"]["run_id"] == result.steps["fit"].run_id
    (dataset,) = lineage["datasets"]
    assert dataset["name"] == "split.train" and dataset["rows"] == 100
    # ... and the external input file is on the pipeline run, by content digest
    (file_input,) = Client(sqlite_uri).get_run(result.run_id).inputs
    assert file_input.dataset.name == "path" and file_input.dataset.source_type == "file"


def test_a_second_run_comes_from_the_cache_and_changes_invalidate_only_downstream(
    data: Path, sqlite_uri: str
) -> None:
    first = churn.run({"data": data}, tracking_uri=sqlite_uri)
    CALLS.clear()
    again = churn.run({"data": data}, tracking_uri=sqlite_uri)
    assert statuses(again) == {
        "load": ("FINISHED", True),
        "split": ("FINISHED", True),
        "fit": ("FINISHED", True),
        "evaluate": ("FINISHED", True),
        "register": ("FINISHED", False),  # looks the version up again: the same one
    }
    assert not CALLS
    assert again.steps["fit"].cached_from == first.steps["fit"].run_id
    assert again.load("version") == {"name": "churn", "version": 1}
    assert again.load("accuracy") == first.load("accuracy")

    # a parameter of one step: it and what depends on it re-run
    changed = churn.run({"data": data, "c": 0.01}, tracking_uri=sqlite_uri)
    assert [n for n, s in changed.steps.items() if not s.cache_hit] == [
        "fit",
        "evaluate",
        "register",
    ]
    assert changed.load("version") == {"name": "churn", "version": 2}

    # the content of an input file (same path): everything downstream re-runs
    CALLS.clear()
    frame = pd.read_csv(data)
    frame.loc[0, "x1"] = 42.0
    frame.to_csv(data, index=False)
    edited = churn.run({"data": data}, tracking_uri=sqlite_uri)
    assert not edited.cache_hits
    assert CALLS["load"] == 1


def test_cache_can_be_disabled_per_run_and_per_step(data: Path, sqlite_uri: str) -> None:
    churn.run({"data": data}, tracking_uri=sqlite_uri)
    CALLS.clear()
    fresh = churn.run({"data": data}, tracking_uri=sqlite_uri, cache=False)
    assert not fresh.cache_hits and CALLS["load"] == 1

    @step(cache=False)
    def stamp(x: int) -> int:
        CALLS["stamp"] += 1
        return x

    @step
    def plus_one(x: int) -> int:
        CALLS["plus_one"] += 1
        return x + 1

    @Pipeline
    def stamped(x: int = 1):  # type: ignore[no-untyped-def]
        return plus_one(stamp(x))

    stamped.run(tracking_uri=sqlite_uri)
    second = stamped.run(tracking_uri=sqlite_uri)
    assert statuses(second) == {"stamp": ("FINISHED", False), "plus_one": ("FINISHED", True)}
    assert CALLS["stamp"] == 2 and CALLS["plus_one"] == 1


def test_independent_steps_run_in_parallel(sqlite_uri: str) -> None:
    barrier = threading.Barrier(2, timeout=20)

    @step
    def left(x: int) -> int:
        barrier.wait()  # passes only if the other branch is running at the same time
        return x + 1

    @step
    def right(x: int) -> int:
        barrier.wait()
        return x + 2

    @step
    def join(a: int, b: int) -> int:
        return a * b

    @Pipeline
    def diamond(x: int = 1):  # type: ignore[no-untyped-def]
        return join(left(x), right(x))

    result = diamond.run(tracking_uri=sqlite_uri, cache=False)
    assert result.load("join") == 6


def test_typed_artifacts_round_trip(tmp_path: Path, sqlite_uri: str) -> None:
    frame = pd.DataFrame(
        {"i": np.arange(3, dtype="int32"), "f": [0.1, np.nan, 2.5], "s": ["a", None, "c"]},
        index=pd.Index([10, 20, 30], name="key"),
    )
    array = np.arange(12, dtype="float32").reshape(3, 4)
    value = {"n": 3, "x": float("nan"), "t": (1, 2), "nested": {"ok": True, "none": None}}

    @step(outputs=("frame", "array", "value", "file", "folder"))
    def produce() -> tuple[Any, ...]:
        (tmp_path / "report.txt").write_text("hello")
        (tmp_path / "plots").mkdir()
        (tmp_path / "plots" / "a.svg").write_text("<svg/>")
        return frame, array, value, tmp_path / "report.txt", tmp_path / "plots"

    @step
    def consume(frame: pd.DataFrame, array: np.ndarray, value: Any, file: Path, folder: Path):  # type: ignore[no-untyped-def]
        pd.testing.assert_frame_equal(frame, frame_expected)
        np.testing.assert_array_equal(array, array_expected)
        assert array.dtype == np.float32
        assert value["t"] == [1, 2] and np.isnan(value["x"]) and value["nested"]["none"] is None
        assert file.read_text() == "hello" and (folder / "a.svg").read_text() == "<svg/>"
        return "ok"

    frame_expected, array_expected = frame, array

    @Pipeline
    def roundtrip():  # type: ignore[no-untyped-def]
        f, a, v, file, folder = produce()
        return {"frame": f, "checked": consume(f, a, v, file, folder)}

    result = roundtrip.run(tracking_uri=sqlite_uri)
    assert result.load("checked") == "ok"
    pd.testing.assert_frame_equal(result.load("frame"), frame)
    kinds = {name: ref.kind for name, ref in result.steps["produce"].outputs.items()}
    assert kinds == {
        "frame": "dataframe",
        "array": "array",
        "value": "value",
        "file": "path",
        "folder": "path",
    }


def test_an_output_that_cannot_be_stored_fails_the_step_naming_its_type(sqlite_uri: str) -> None:
    @step
    def weird() -> object:
        return threading.Lock()

    @Pipeline
    def bad():  # type: ignore[no-untyped-def]
        return weird()

    result = bad.run(tracking_uri=sqlite_uri, raise_on_failure=False)
    assert result.status == "FAILED"
    assert "weird" in (result.error or "") and "lock" in (result.error or "")


def test_retries_rerun_a_failing_step(sqlite_uri: str) -> None:
    attempts: list[int] = []

    @step(retries=2)
    def flaky(x: int) -> int:
        attempts.append(x)
        if len(attempts) < 3:
            raise ConnectionError(f"attempt {len(attempts)} lost the connection")
        return x

    @Pipeline
    def retried(x: int = 5):  # type: ignore[no-untyped-def]
        return flaky(x)

    result = retried.run(tracking_uri=sqlite_uri)
    assert result.ok and result.steps["flaky"].attempts == 3 and result.load("flaky") == 5
    run = Client(sqlite_uri).get_run(result.steps["flaky"].run_id)
    assert "attempt 1 lost the connection" in run.tags["gyre.step.attempt.1.error"]


def test_a_failing_step_fails_the_run_skips_dependents_and_a_rerun_resumes_from_cache(
    sqlite_uri: str,
) -> None:
    broken = {"on": True}
    ran: Counter[str] = Counter()

    @step
    def prepare(x: int) -> int:
        ran["prepare"] += 1
        return x * 10

    @step
    def side(x: int) -> int:
        ran["side"] += 1
        return x + 1

    @step
    def train(x: int) -> int:
        ran["train"] += 1
        if broken["on"]:
            raise ValueError(f"learning rate {x} is too high")
        return x + 1

    @step
    def publish(x: int) -> int:
        ran["publish"] += 1
        return x

    @Pipeline
    def fragile(x: int = 3):  # type: ignore[no-untyped-def]
        return {"published": publish(train(prepare(x))), "side": side(x)}

    with pytest.raises(ValueError, match="learning rate 30 is too high") as info:
        fragile.run(tracking_uri=sqlite_uri)
    assert any("in step 'train'" in note for note in info.value.__notes__)

    result = fragile.run(tracking_uri=sqlite_uri, raise_on_failure=False, cache=False)
    assert result.status == "FAILED" and result.failed_step == "train"
    assert result.error == "step 'train' failed: ValueError: learning rate 30 is too high"
    assert statuses(result) == {
        "prepare": ("FINISHED", False),
        "train": ("FAILED", False),
        "publish": ("SKIPPED", False),
        "side": ("FINISHED", False),  # independent of the failure: still runs
    }
    assert ran["publish"] == 0 and result.steps["publish"].run_id is None
    client = Client(sqlite_uri)
    parent = client.get_run(result.run_id)
    assert parent.status is RunStatus.FAILED and parent.error == result.error
    assert client.get_run(result.steps["train"].run_id).status is RunStatus.FAILED
    client.close()

    broken["on"] = False
    ran.clear()
    fixed = fragile.run(tracking_uri=sqlite_uri)
    assert statuses(fixed) == {
        "prepare": ("FINISHED", True),
        "train": ("FINISHED", False),
        "publish": ("FINISHED", False),
        "side": ("FINISHED", True),
    }
    assert ran == Counter({"train": 1, "publish": 1})
    assert fixed.load("published") == 31


def test_bad_parameters_are_refused_before_anything_runs(sqlite_uri: str) -> None:
    with pytest.raises(InvalidArgument, match="has no parameter 'depth'") as info:
        churn.run({"depth": 3}, tracking_uri=sqlite_uri)
    assert info.value.hint and "data, c" in info.value.hint
    assert churn.parse_params({"c": "0.5", "data": "x.csv"}) == {"c": 0.5, "data": Path("x.csv")}
    with pytest.raises(InvalidArgument, match="'c' value 'high' is not a valid float"):
        churn.parse_params({"c": "high"})


def _write(path: Path, text: str) -> None:
    path.write_text(textwrap.dedent(text))


def test_editing_a_helper_invalidates_the_cache_and_an_unrelated_edit_does_not(
    tmp_path: Path, sqlite_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    helpers = tmp_path / "pl_helpers.py"
    _write(
        helpers,
        """
        SCALE = 2

        def clean(x):
            return x * SCALE

        def unrelated():
            return "a"
        """,
    )
    _write(
        tmp_path / "pl_steps.py",
        """
        import pl_helpers
        from pl_helpers import clean
        from gyre.pipelines import Pipeline, step

        @step
        def double(x: int) -> int:
            return clean(x) + pl_helpers.clean(0)

        @Pipeline
        def helped(x: int = 4):
            return double(x)
        """,
    )
    for name in ("pl_helpers", "pl_steps"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    steps = importlib.import_module("pl_steps")
    before = code_fingerprint(steps.double)
    assert "pl_helpers:clean" in before.functions and "gyre" not in " ".join(before.modules)
    assert steps.helped.run(tracking_uri=sqlite_uri).load("double") == 8
    assert steps.helped.run(tracking_uri=sqlite_uri).cache_hits == ["double"]

    def reload_all() -> Any:
        importlib.reload(sys.modules["pl_helpers"])
        return importlib.reload(sys.modules["pl_steps"])

    # an unrelated function in the same module, and a comment: still a cache hit
    _write(
        helpers,
        """
        SCALE = 2

        def clean(x):
            # a comment changes nothing
            return x * SCALE

        def unrelated():
            return "b, edited"
        """,
    )
    steps = reload_all()
    assert code_fingerprint(steps.double).digest == before.digest
    assert steps.helped.run(tracking_uri=sqlite_uri).cache_hits == ["double"]

    # the helper's body: a miss, and the new result
    _write(
        helpers,
        """
        SCALE = 2

        def clean(x):
            return x * SCALE + 1

        def unrelated():
            return "b, edited"
        """,
    )
    steps = reload_all()
    assert code_fingerprint(steps.double).digest != before.digest
    edited = steps.helped.run(tracking_uri=sqlite_uri)
    assert edited.cache_hits == [] and edited.load("double") == 10

    # a module constant the helper reads: a miss too
    _write(helpers, helpers.read_text().replace("SCALE = 2", "SCALE = 3"))
    steps = reload_all()
    assert steps.helped.run(tracking_uri=sqlite_uri).load("double") == 14


def test_the_process_executor_gives_the_same_results(
    tmp_path: Path, sqlite_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    _write(
        tmp_path / "pl_proc.py",
        """
        import os
        import pandas as pd
        from gyre.pipelines import Pipeline, step

        @step
        def make(n: int) -> pd.DataFrame:
            return pd.DataFrame({"v": range(n)})

        @step
        def total(df: pd.DataFrame) -> dict:
            return {"sum": int(df["v"].sum()), "pid": os.getpid()}

        @Pipeline
        def summed(n: int = 10):
            return total(make(n))
        """,
    )
    monkeypatch.delitem(sys.modules, "pl_proc", raising=False)
    module = importlib.import_module("pl_proc")
    threads = module.summed.run(tracking_uri=sqlite_uri, cache=False).load("total")
    procs = module.summed.run(
        tracking_uri=sqlite_uri, cache=False, executor="processes", max_workers=1
    )
    assert procs.executor == "processes"
    assert procs.load("total")["sum"] == threads["sum"] == 45
    assert procs.load("total")["pid"] != threads["pid"]


def gyre_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gyre", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_cli_runs_a_pipeline_lists_its_runs_and_reports_a_failing_step(
    tmp_path: Path, sqlite_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GYRE_TRACKING_URI", sqlite_uri)
    _write(
        tmp_path / "cli_pipes.py",
        """
        from gyre.pipelines import Pipeline, step

        @step
        def square(x: int) -> int:
            return x * x

        @step
        def check(y: int) -> int:
            if y > 50:
                raise ValueError(f"{y} is too big")
            return y

        @Pipeline
        def squares(x: int = 3):
            return check(square(x))
        """,
    )
    ok = gyre_cli("pipeline", "run", "cli_pipes:squares", "--param", "x=4", "--json", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    body = json.loads(ok.stdout)
    assert body["status"] == "FINISHED" and [s["name"] for s in body["steps"]] == [
        "square",
        "check",
    ]
    again = gyre_cli("pipeline", "run", "cli_pipes:squares", "-p", "x=4", cwd=tmp_path)
    assert again.returncode == 0 and "(cached)" in again.stderr and "2 from cache" in again.stdout

    failed = gyre_cli("pipeline", "run", "cli_pipes:squares", "--param", "x=9", cwd=tmp_path)
    assert failed.returncode == 1
    assert "step 'check' failed: ValueError: 81 is too big" in failed.stderr

    runs = gyre_cli("pipeline", "runs", "squares", "--json", cwd=tmp_path)
    rows = json.loads(runs.stdout)["runs"]
    assert [r["status"] for r in rows] == ["FAILED", "FINISHED", "FINISHED"]
    assert [r["cache_hits"] for r in rows] == [0, 2, 0]

    bad = gyre_cli("pipeline", "run", "cli_pipes:squares", "--param", "x=big", cwd=tmp_path)
    assert bad.returncode == 2 and "'x' value 'big' is not a valid int" in bad.stderr


def test_tune_marks_the_best_trial_and_nests_every_trial(sqlite_uri: str) -> None:
    from gyre.pipelines._tune import Range, tune

    def objective(depth: int, lr: float = 0.1) -> dict[str, float]:
        return {"loss": (depth - 4) ** 2 + lr}

    grid = tune(
        objective,
        {"depth": [2, 4, 8], "lr": [0.1, 0.2]},
        metric="loss",
        mode="min",
        tracking_uri=sqlite_uri,
        experiment="tune",
    )
    assert len(grid.trials) == 6 and grid.best.params == {"depth": 4, "lr": 0.1}
    client = Client(sqlite_uri)
    trials = client.search_runs("tune", f"parent_run_id = '{grid.run_id}'").items
    assert len(trials) == 6
    assert [r.run_id for r in trials if r.tags.get("gyre.tune.best") == "true"] == [
        grid.best.run_id
    ]
    parent = client.get_run(grid.run_id)
    assert parent.params["best.depth"] == "4" and parent.metrics["best_loss"] == 0.1

    rand = tune(
        objective,
        {"depth": Range(1, 8), "lr": Range(0.0, 1.0)},
        metric="loss",
        mode="min",
        search="random",
        num_samples=5,
        seed=3,
        tracking_uri=sqlite_uri,
    )
    assert len(rand.trials) == 5 and all(1 <= t.params["depth"] <= 8 for t in rand.trials)
    with pytest.raises(InvalidArgument, match="grid search cannot enumerate the range of 'lr'"):
        tune(objective, {"lr": Range(0.0, 1.0)}, metric="loss", tracking_uri=sqlite_uri)


def test_pipelines_load_neither_ray_nor_data_libraries_until_a_step_needs_them() -> None:
    code = (
        "import sys, gyre\n"
        "assert gyre.step is not None and gyre.Pipeline is not None\n"
        "print(sorted(m for m in ('ray', 'pandas', 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_predict_names_an_unknown_engine(tmp_path: Path) -> None:
    (tmp_path / "in.parquet").write_bytes(b"")
    out = gyre_cli(
        "predict", "models:/m/1", "-i", "in.parquet", "-o", "out.parquet", "--engine", "spark",
        cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 2 and "engine 'spark' is not known" in out.stderr


def test_a_pipeline_against_a_tracking_server_leaves_no_connection_open_at_exit(
    live_server: LiveServer, tmp_path: Path
) -> None:
    # step outputs go to the server's artifact store over HTTP, from the steps' threads
    _write(
        tmp_path / "remote_flow.py",
        f"""
        from gyre.pipelines import Pipeline, step

        @step
        def double(x: int) -> int:
            return 2 * x

        def twice(x: int = 3):
            return double(double(x))

        result = Pipeline(twice, name="twice", experiment="p").run(tracking_uri={live_server.url!r})
        print(result.load("double_2"))
        """,
    )
    out = subprocess.run(
        [sys.executable, "-W", "always::ResourceWarning", "remote_flow.py"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "12"
    assert "ResourceWarning" not in out.stderr, out.stderr
