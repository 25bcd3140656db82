"""The serving fast path for float64 matrices (``gyre.serving._slots.NumericInput``).

A model whose input is all float64 (a column signature of float64 columns, or one float64
tensor) gets its batch as one array built in a few vectorised steps instead of column by
column, value by value. It must answer exactly as the checked path does: the same
predictions and probabilities, the same 400s for wrong input, and models it does not
apply to (mixed columns) must be unaffected.
"""

from __future__ import annotations

import asyncio
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from gyre.models import Model, load_model, save_model
from gyre.serving import ServedModel
from gyre.serving._slots import Deployment, NumericInput
from tests.test_serving_app import FakeLog, oip_matrix, serving

pytestmark = pytest.mark.anyio

COLUMNS = [f"f{i}" for i in range(6)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(COLUMNS)))
    return X, (X[:, 0] - X[:, 1] + 0.3 * X[:, 2] > 0).astype(int)


@pytest.fixture(scope="module")
def named(tmp_path_factory: pytest.TempPathFactory) -> Model:
    """Fitted on a DataFrame: the estimator knows its feature names."""
    from sklearn.linear_model import LogisticRegression

    X, y = _data(300)
    frame = pd.DataFrame(X, columns=COLUMNS)
    path = tmp_path_factory.mktemp("fast") / "named"
    save_model(LogisticRegression().fit(frame, y), path, input_example=frame[:5])
    return load_model(path)


@pytest.fixture(scope="module")
def unnamed(tmp_path_factory: pytest.TempPathFactory) -> Model:
    """Fitted on an array, saved with a DataFrame example: a column signature, and an
    estimator without feature names."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = _data(300, seed=1)
    path = tmp_path_factory.mktemp("fast") / "unnamed"
    fitted = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X, y)
    save_model(fitted, path, input_example=pd.DataFrame(X[:5], columns=COLUMNS))
    return load_model(path)


@pytest.fixture(scope="module")
def tensor(tmp_path_factory: pytest.TempPathFactory) -> Model:
    from sklearn.linear_model import LogisticRegression

    X, y = _data(300, seed=2)
    path = tmp_path_factory.mktemp("fast") / "tensor"
    save_model(LogisticRegression().fit(X, y), path, input_example=X[:5])
    return load_model(path)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Model:
    """A float column and a string column: a Pipeline that needs a DataFrame."""
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {"x": rng.normal(size=200), "city": rng.choice(["oslo", "rome", "lima"], 200)}
    )
    y = ((frame["x"] > 0) ^ (frame["city"] == "rome")).astype(int)
    pipe = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["city"]), remainder="passthrough"),
        LogisticRegression(),
    ).fit(frame, y)
    path = tmp_path_factory.mktemp("fast") / "mixed"
    save_model(pipe, path, input_example=frame[:5])
    return load_model(path)


def _quietly(call: Any, *args: Any) -> Any:
    """The checked path gives a DataFrame to an estimator fitted without feature names,
    which makes scikit-learn warn (an error under this suite's warning filter)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return call(*args)


def _records(X: np.ndarray) -> list[dict[str, float]]:
    return [{c: float(v) for c, v in zip(COLUMNS, row, strict=True)} for row in X]


# -- which models take it ----------------------------------------------------------------


def test_numeric_signatures_take_the_fast_path(
    named: Model, unnamed: Model, tensor: Model, mixed: Model
) -> None:
    by_name = NumericInput.of(named)
    assert by_name is not None and by_name.frame  # fitted with names: a DataFrame
    no_names = NumericInput.of(unnamed)
    assert no_names is not None and not no_names.frame  # the array itself
    assert NumericInput.of(tensor) is not None
    assert NumericInput.of(mixed) is None


@pytest.mark.parametrize("which", ["named", "unnamed", "tensor"])
def test_fast_input_is_what_the_checked_path_makes(
    which: str, request: pytest.FixtureRequest
) -> None:
    model: Model = request.getfixturevalue(which)
    fast = NumericInput.of(model)
    assert fast is not None
    X, _ = _data(7, seed=4)
    rows = _records(X)
    inputs: list[Any] = [X, rows, [{k: r[k] for k in reversed(COLUMNS)} for r in rows]]
    if which != "tensor":
        inputs.append({c: X[:, j].tolist() for j, c in enumerate(COLUMNS)})
        inputs.append([{**r, "extra": "ignored"} for r in rows])
    else:
        inputs = inputs[:2]  # a tensor takes records' columns in the order they come in
    for data in inputs:
        converted = fast.convert(data)
        assert converted is not None, data
        got, matrix, names = converted
        want = model.prepare_input(data)
        # the matrix the log takes, named only when the input named exactly its columns
        np.testing.assert_array_equal(matrix, np.asarray(want, dtype=np.float64))
        extra = isinstance(data, list) and "extra" in data[0]
        named_input = not isinstance(data, np.ndarray) and not extra
        assert names == (COLUMNS if named_input else None), data
        if fast.frame:
            assert isinstance(got, pd.DataFrame)
            pd.testing.assert_frame_equal(got, want)
        else:  # the DataFrame's values, or the array itself
            if isinstance(want, pd.DataFrame):
                want = want.to_numpy()
            assert isinstance(got, np.ndarray)
            np.testing.assert_array_equal(got, want)
            assert got.dtype == want.dtype
        np.testing.assert_array_equal(
            model.predict(got, checked=True), _quietly(model.predict, data)
        )


def test_fast_input_leaves_everything_else_to_the_checked_path(unnamed: Model) -> None:
    fast = NumericInput.of(unnamed)
    assert fast is not None
    row = _records(_data(1)[0])[0]
    for bad in (
        [{**row, "f0": "1.5"}],  # a string
        [{**row, "f0": True}],  # a bool is not a number here
        [{**row, "f0": None}],  # a missing value
        [{k: v for k, v in row.items() if k != "f3"}],  # a missing column
        [{**row, "f0": 2**70}],  # an int past int64
        [],  # no rows
        np.zeros((1, len(COLUMNS)), dtype=np.float32),  # another dtype
        np.full((1, len(COLUMNS)), np.nan),  # NaN where the signature allows none
        np.zeros((1, 3)),  # the wrong width
        {c: 1.0 for c in COLUMNS},  # a dict of scalars
        {c: [1.0] if c == "f3" else [1.0, 2.0] for c in COLUMNS},  # columns of two lengths
        "nonsense",
    ):
        assert fast.convert(bad) is None, bad


def test_ints_are_taken_as_the_checked_path_takes_them(unnamed: Model) -> None:
    fast = NumericInput.of(unnamed)
    assert fast is not None
    rows = [{c: i + j for j, c in enumerate(COLUMNS)} for i in range(3)]
    rows[1]["f2"] = 0.25  # ints and floats in one batch
    converted = fast.convert(rows)
    assert converted is not None
    np.testing.assert_array_equal(converted[0], unnamed.prepare_input(rows))


# -- served ------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["named", "unnamed", "tensor"])
async def test_served_answers_equal_the_checked_path(
    which: str, request: pytest.FixtureRequest
) -> None:
    model: Model = request.getfixturevalue(which)
    X, _ = _data(40, seed=5)
    frame = pd.DataFrame(X, columns=COLUMNS)
    expected = _quietly(model.predict, frame if which != "tensor" else X).tolist()
    proba = _quietly(model.predict_proba, frame if which != "tensor" else X)
    rows = _records(X)
    log = FakeLog()
    # a feature-names warning in the predict thread would be an error here, hence a 500
    async with serving([ServedModel("m", "1", model)], prediction_log=log) as client:
        one_by_one = await asyncio.gather(
            *(client.post("/predict/m?proba=true", json=[row]) for row in rows)
        )
        infer = await asyncio.gather(
            *(client.post("/v2/models/m/infer", json=oip_matrix(X[i : i + 1]))
              for i in range(len(X)))
        )  # fmt: skip
        whole = await client.post("/predict/m", json={"records": rows})
    assert [a.json()["predictions"][0] for a in one_by_one] == expected
    got_proba = np.array([a.json()["probabilities"][0] for a in one_by_one])
    np.testing.assert_allclose(got_proba, proba, rtol=1e-12)
    assert [a.json()["outputs"][0]["data"][0] for a in infer] == expected
    assert whole.json()["predictions"] == expected
    assert len(log.records) == 3 * len(X)  # every prediction is still logged


@pytest.mark.parametrize("which", ["unnamed", "tensor"])
async def test_records_are_logged_as_the_matrix_the_model_took(
    which: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """/predict records for a float64 model (columns, or a tensor whose columns the
    records' keys name): logged from the matrix the fast path built (one spool line for
    requests answered together, never the records read again), with the values the model
    took: ints as floats. A record with a key a column model does not take is logged with
    it."""
    model: Model = request.getfixturevalue(which)
    from gyre.artifacts import open_artifact_store
    from gyre.predictions import PredictionLog, query

    store = open_artifact_store(str(tmp_path / "store"))
    log = PredictionLog(tmp_path / "spool", store, compact_interval_s=3600)
    X, _ = _data(24, seed=6)
    rows = _records(X)
    rows[3] = {c: int(i) for i, c in enumerate(COLUMNS)}  # ints for float columns
    extra_row = {**rows[0], "note": "kept"} if which != "tensor" else rows[0]
    async with serving([ServedModel("m", "1", model)], prediction_log=log) as client:
        answers = await asyncio.gather(
            *(client.post("/predict/m", json=[row], headers={"X-Request-ID": f"q{i}"})
              for i, row in enumerate(rows))
        )  # fmt: skip
        extra = await client.post("/predict/m", json=[extra_row], headers={"X-Request-ID": "x"})
        log.flush()
        lines = [
            json.loads(raw)
            for path in (tmp_path / "spool").glob("*.jsonl")
            for raw in path.read_bytes().splitlines()[1:]
        ]
    assert [a.status_code for a in answers] + [extra.status_code] == [200] * 25
    assert len(lines) < 25 and any(isinstance(line["id"], list) for line in lines)
    by_id = {r["request_id"]: r for r in query(store, "m").to_pylist()}
    assert sorted(by_id) == sorted([f"q{i}" for i in range(24)] + ["x"])
    for i, row in enumerate(rows):
        logged = by_id[f"q{i}"]
        assert [logged["in_" + c] for c in COLUMNS] == [float(row[c]) for c in COLUMNS]
        assert all(type(logged["in_" + c]) is float for c in COLUMNS)
        assert logged["out_prediction"] == answers[i].json()["predictions"][0]
    assert by_id["x"].get("in_note") == ("kept" if which != "tensor" else None)
    assert by_id["x"]["in_f0"] == rows[0]["f0"]


async def test_mixed_signature_is_still_answered_correctly(mixed: Model) -> None:
    rows = [{"x": 0.4, "city": "rome"}, {"x": -1.2, "city": "oslo"}, {"x": 2.0, "city": "lima"}]
    expected = mixed.predict(pd.DataFrame(rows)).tolist()
    async with serving([ServedModel("m", "1", mixed)]) as client:
        answers = await asyncio.gather(*(client.post("/predict/m", json=[r]) for r in rows))
        bad = await client.post("/predict/m", json=[{"x": "high", "city": "rome"}])
    assert [a.json()["predictions"][0] for a in answers] == expected
    assert bad.status_code == 400
    assert bad.json()["message"] == "column 'x' expects float64, got string 'high' at row 0"


async def test_wrong_input_is_still_a_clear_400(unnamed: Model) -> None:
    row = _records(_data(1)[0])[0]
    cases = {
        "string": (
            [{**row, "f1": "abc"}],
            "column 'f1' expects float64, got string 'abc' at row 0",
        ),
        "bool": ([{**row, "f4": True}], "column 'f4' expects float64, got bool True at row 0"),
        "null": (
            [row, {**row, "f2": None}],
            "column 'f2' has a missing value at row 1, and the signature does not allow "
            "missing values there",
        ),
    }
    async with serving([ServedModel("m", "1", unnamed)]) as client:
        for body, message in cases.values():
            answer = await client.post("/predict/m", json=body)
            assert answer.status_code == 400, body
            assert answer.json()["message"] == message
        good = await client.post("/predict/m", json=[row])
    assert good.status_code == 200


def test_deployment_uses_the_fast_path_only_for_numeric_models(
    named: Model, mixed: Model, tmp_path: Path
) -> None:
    assert Deployment(ServedModel("a", "1", named)).numeric is not None
    assert Deployment(ServedModel("b", "1", mixed)).numeric is None


# -- a lone request on a cheap model is predicted on the event loop ----------------------


async def test_lone_cheap_jobs_run_on_the_event_loop_others_in_the_predict_thread() -> None:
    import threading

    from gyre.serving._batcher import Job, MicroBatcher

    threads: list[str] = []

    def run(jobs: list[Job[int]]) -> list[int]:
        threads.append(threading.current_thread().name)
        return [job.payload * 2 for job in jobs]

    loop_thread = threading.current_thread().name
    for inline_below, expect_inline in ((1000.0, True), (0.0, False)):
        threads.clear()
        batcher: MicroBatcher[int] = MicroBatcher(run, name="t", inline_below_ms=inline_below)
        batcher.start()
        try:
            answers = [await batcher.submit(i, 1, f"r{i}") for i in range(4)]
        finally:
            await batcher.stop()
        assert answers == [0, 2, 4, 6]
        # the first lone job's cost is not known yet: it always goes to the thread
        assert threads[0] != loop_thread
        assert all((t == loop_thread) == expect_inline for t in threads[1:]), threads


async def test_full_jobs_taken_alone_under_load_run_on_the_loop_once_known_cheap() -> None:
    """A job of ``max_batch_size`` rows is a batch of its own even while others wait (64-row
    requests at concurrency 8): it is timed as a batch, so cheap ones stop paying two
    thread hand-offs each."""
    import asyncio
    import threading

    from gyre.serving._batcher import Job, MicroBatcher

    threads: list[str] = []

    def run(jobs: list[Job[int]]) -> list[int]:
        threads.append(threading.current_thread().name)
        return [job.payload for job in jobs]

    loop_thread = threading.current_thread().name
    batcher: MicroBatcher[int] = MicroBatcher(
        run, name="t", max_batch_size=4, inline_below_ms=1000.0
    )
    batcher.start()
    try:
        futures = [batcher.submit(i, 4, f"r{i}") for i in range(8)]  # all queued at once
        assert await asyncio.gather(*futures) == list(range(8))
    finally:
        await batcher.stop()
    assert len(threads) == 8
    assert threads[0] != loop_thread  # its cost was not known yet
    # the next six were taken while others waited: batches, known cheap, on the loop
    assert all(t == loop_thread for t in threads[1:7]), threads
    assert threads[7] != loop_thread  # the last one was lone: lone jobs' cost is not known


async def test_a_challenger_never_predicts_on_the_event_loop(named: Model) -> None:
    from gyre.serving._slots import ModelSlot

    slot = ModelSlot("m")
    primary = Deployment(ServedModel("m", "1", named))
    shadow = Deployment(ServedModel("m", "2", named))
    await slot.deploy(primary)
    await slot.deploy(shadow, "challenger")
    try:
        assert primary.batcher.inline_below > 0
        assert shadow.batcher.inline_below == 0
    finally:
        await slot.close()


async def test_a_predict_that_holds_the_loop_pauses_predicting_on_it_and_thrice_ends_it() -> None:
    """A model whose calls are cheap in CPU but one of which blocks (a sleep, a wait, one
    slow input, the machine pausing the process) is not predicted on the event loop for a
    while after that call: the next calls go to its thread. One hold is as likely the
    machine's doing, so the loop is tried again after the pause; the third hold within two
    minutes ends it for good, so health checks and timeouts are not stalled again."""
    import threading
    import time

    from gyre.serving._batcher import Job, MicroBatcher

    threads: list[str] = []

    def run(jobs: list[Job[int]]) -> list[int]:
        threads.append(threading.current_thread().name)
        if jobs[0].payload >= 90:
            time.sleep(0.05)  # no CPU time: only the wall clock shows it
        return [job.payload for job in jobs]

    loop_thread = threading.current_thread().name
    batcher: MicroBatcher[int] = MicroBatcher(run, name="t", inline_below_ms=2.0)
    batcher.start()
    try:
        for payload in (1, 2, 91, 3, 4):
            assert await batcher.submit(payload, 1, f"r{payload}") == payload
        # 1: cost unknown, thread; 2 and 91: cheap so far, on the loop; 91 held it 50 ms:
        # the next ones in the thread, for the pause
        assert [t == loop_thread for t in threads] == [False, True, True, False, False]
        assert batcher.inline_below > 0, "one hold does not end it"

        batcher.hold_pause_s = 0.0  # (the pause over at once)
        threads.clear()
        for payload in (5, 92, 6, 93, 7, 8):
            assert await batcher.submit(payload, 1, f"r{payload}") == payload
    finally:
        await batcher.stop()
    # 5, 92: back on the loop; 92 the second hold, 6 and 93 on the loop again (no pause
    # left); 93 the third hold: 7 and 8 in the thread for good
    assert [t == loop_thread for t in threads] == [True, True, True, True, False, False]
    assert batcher.inline_below == 0.0


async def test_a_python_flavor_model_never_predicts_on_the_event_loop(tmp_path: Path) -> None:
    """A python-flavor model is code of its own that may sleep or wait on I/O, which its
    CPU time does not show: it always predicts in its thread; library flavors may not."""
    from tests.test_serving_app import save_doubler

    python_model = Deployment(ServedModel("d", "1", load_model(save_doubler(tmp_path / "d"))))
    assert python_model.batcher.inline_below == 0.0


async def test_cancelled_requests_give_their_queue_place_back_at_once(named: Model) -> None:
    """Requests that time out while queued behind a slow call stop counting against the
    queue limit (and the queue metric) when they are cancelled, not when the slow call
    ends: a new request is taken, not refused with 429."""
    import threading

    from gyre.serving import Batching

    release = threading.Event()
    started = threading.Event()
    deployment = Deployment(ServedModel("m", "1", named, batching=Batching(1, 0.0, 2)))
    real = deployment._run_batch

    def slow(jobs: Any) -> Any:  # the first call blocks until released
        started.set()
        release.wait(30)
        return real(jobs)

    deployment.batcher._run_batch = slow
    await deployment.start()
    try:
        x = deployment.admit(pd.DataFrame(_data(1)[0], columns=COLUMNS))
        first = asyncio.ensure_future(deployment.predict(x, "r0", proba=False))
        await asyncio.to_thread(started.wait, 30)
        queued = [asyncio.ensure_future(deployment.predict(x, f"r{i}", proba=False))
                  for i in (1, 2)]  # fmt: skip
        await asyncio.sleep(0)  # (let them queue)
        assert deployment.batcher.queued_rows == 2
        for task in queued:
            task.cancel()
        await asyncio.gather(*queued, return_exceptions=True)
        assert deployment.batcher.queued_rows == 0
        late = asyncio.ensure_future(deployment.predict(x, "r3", proba=False))
        await asyncio.sleep(0)
        assert not late.done() or late.exception() is None  # queued, not refused
        release.set()
        assert (await first) and (await late)
    finally:
        release.set()
        await deployment.stop()
