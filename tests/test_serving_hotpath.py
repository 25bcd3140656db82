"""The bookkeeping every request pays for, done cheaply: request deadlines from one timer
(``gyre.serving._deadlines``) and metrics counted locally, handed to the Prometheus client
in bulk (``Telemetry.flush``). Both must say exactly what the per-request versions said."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from gyre.errors import InvalidArgument
from gyre.models import load_model
from gyre.serving import ServedModel
from gyre.serving._deadlines import Deadlines
from gyre.serving._logging import ACCESS_LOGGER, AccessLogHandler, fast_access_handler
from gyre.serving._telemetry import _LATENCY_BUCKETS, Telemetry
from tests.test_serving_app import (
    COLUMNS,
    FakeLog,
    classifier_data,
    oip_matrix,
    save_classifier,
    save_doubler,
    serving,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _series(text: str, prefix: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        if line.startswith(prefix):
            key, value = line.rsplit(" ", 1)
            found[key] = float(value)
    return found


def test_bulk_flush_equals_observing_one_by_one() -> None:
    telemetry = Telemetry()
    reference = Histogram(
        "gyre_serving_request_seconds",
        "x",
        ["endpoint", "model", "version"],
        buckets=_LATENCY_BUCKETS,
        registry=(registry := CollectorRegistry()),
    ).labels("infer", "m", "3")
    # on every bound, between bounds, past the last one
    values = [*_LATENCY_BUCKETS, 0.0, 0.0007, 0.003, 0.7, 31.0, 100.0, 0.0007]
    for i, seconds in enumerate(values):
        telemetry.request_done("m", "3", "infer", 200 if i % 3 else 503, seconds)
        reference.observe(seconds)
    before = _series(telemetry.render().decode(), "gyre_serving_request_seconds_count")
    assert before == {}, "nothing reaches the client before a flush"
    telemetry.flush()
    telemetry.flush()  # a second flush adds nothing
    ours = _series(telemetry.render().decode(), "gyre_serving_request_seconds")
    theirs = _series(generate_latest(registry).decode(), "gyre_serving_request_seconds")
    ours = {k: v for k, v in ours.items() if "_created" not in k}
    theirs = {k: v for k, v in theirs.items() if "_created" not in k}
    sum_key = next(k for k in ours if "_sum" in k)
    assert ours.pop(sum_key) == pytest.approx(theirs.pop(sum_key), rel=1e-12)  # added in bulk
    assert ours == theirs and len(ours) == len(_LATENCY_BUCKETS) + 2
    counts = _series(telemetry.render().decode(), "gyre_serving_requests_total")
    assert counts == {
        'gyre_serving_requests_total{endpoint="infer",model="m",status="200",version="3"}': 14.0,
        'gyre_serving_requests_total{endpoint="infer",model="m",status="503",version="3"}': 8.0,
    }
    errors = _series(telemetry.render().decode(), "gyre_serving_errors_total")
    assert list(errors.values()) == [8.0]


def test_gauges_report_the_level_at_the_flush() -> None:
    telemetry = Telemetry()
    telemetry.inflight(1)
    telemetry.inflight(1)
    telemetry.queue("m", "1", 40)
    telemetry.queue("m", "1", 7)
    telemetry.inflight(-1)
    telemetry.flush()
    text = telemetry.render().decode()
    assert "gyre_serving_inflight_requests 1.0" in text
    assert 'gyre_serving_queue_rows{model="m",version="1"} 7.0' in text


async def test_a_request_past_its_deadline_is_cancelled_and_told_so() -> None:
    deadlines = Deadlines(0.05)
    outcomes: list[str] = []

    async def request(work: float) -> None:
        watch = deadlines.watch()
        try:
            await asyncio.sleep(work)
            outcomes.append("answered")
        except asyncio.CancelledError:
            outcomes.append("deadline" if watch.expired() else "cancelled")
            if not watch.cut:
                raise
        finally:
            watch.finish()

    fast = asyncio.create_task(request(0.0))
    slow = asyncio.create_task(request(30.0))
    await asyncio.wait_for(asyncio.gather(fast, slow), timeout=10)
    assert sorted(outcomes) == ["answered", "deadline"]
    assert slow.cancelling() == 0, "the deadline's cancellation is taken back"


async def test_another_cancellation_is_not_a_deadline() -> None:
    deadlines = Deadlines(30.0)
    outcome: list[bool] = []
    started = asyncio.Event()

    async def request() -> None:
        watch = deadlines.watch()
        try:
            started.set()
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            outcome.append(watch.expired())
            raise
        finally:
            watch.finish()

    task = asyncio.create_task(request())
    await started.wait()
    task.cancel()  # e.g. the server shutting down
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outcome == [False]


# -- access lines ---------------------------------------------------------------------------


def _access_logger(name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers.clear()
    logger.filters.clear()
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def test_fast_access_line_is_the_line_the_formatter_writes() -> None:
    fields = {"request_id": "r1", "method": "POST", "path": "/predict/m", "status": 200,
              "latency_ms": 1.25, "model": "m", "version": "3", "rows": 2,
              "client": "10.0.0.1"}  # fmt: skip
    stream = io.StringIO()
    handler = AccessLogHandler(stream, interval=3600)
    try:
        handler.write_fields("POST /predict/m 200", fields)
        record = logging.getLogger(ACCESS_LOGGER).makeRecord(
            ACCESS_LOGGER, logging.INFO, __file__, 0, "%s %s %d",
            ("POST", "/predict/m", 200), None, extra=fields,
        )  # fmt: skip
        handler.emit(record)
        assert stream.getvalue() == "", "lines wait in the buffer"
        handler.flush()
    finally:
        handler.close()
    fast, slow = (json.loads(line) for line in stream.getvalue().splitlines())
    assert fast.pop("ts")[:10] == slow.pop("ts")[:10]
    assert fast == slow
    assert fast["msg"] == "POST /predict/m 200" and fast["logger"] == ACCESS_LOGGER


def test_access_lines_are_written_when_the_buffer_fills_and_at_close() -> None:
    stream = io.StringIO()
    handler = AccessLogHandler(stream, interval=3600, max_bytes=1000)
    for i in range(30):  # ~100 bytes each
        handler.write_fields(f"GET /x/{i} 200", {"request_id": f"r{i:04d}", "n": i})
    written = stream.getvalue().splitlines()
    assert 9 <= len(written) < 30, "a full buffer is written without waiting"
    handler.close()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["n"] for line in lines] == list(range(30)), "every line, in order"


def test_access_lines_go_through_logging_unless_the_handler_is_alone() -> None:
    handler = AccessLogHandler(io.StringIO(), interval=3600)
    try:
        logger = _access_logger("gyre.test.access")
        logger.addHandler(handler)
        assert fast_access_handler(logger) is handler
        logger.propagate = True  # records also go elsewhere: they must exist
        assert fast_access_handler(logger) is None
        logger.propagate = False
        extra = logging.StreamHandler(io.StringIO())
        logger.addHandler(extra)
        assert fast_access_handler(logger) is None
        logger.removeHandler(extra)
        handler.addFilter(logging.Filter("other"))
        assert fast_access_handler(logger) is None
    finally:
        handler.close()
        _access_logger("gyre.test.access")


# -- the prediction log ----------------------------------------------------------------------


def _ids(record: Any) -> list[str]:
    return list(getattr(record, "request_ids", None) or [record.request_id])


class _Refusing(FakeLog):
    """A log that refuses any call holding request ``r3`` (nothing of that call is kept, as
    PredictionLog does with a record it cannot log)."""

    groups = 0  # calls that held a group of requests

    def append(self, records: Sequence[Any]) -> None:
        self.groups += any(hasattr(r, "request_ids") for r in records)
        if any("r3" in _ids(r) for r in records):
            raise InvalidArgument("request 'r3' holds a value that is not JSON-able")
        super().append(records)


async def test_a_refused_prediction_costs_no_other_its_record(tmp_path: Path) -> None:
    doubler = load_model(save_doubler(tmp_path / "doubler"))
    log = _Refusing()
    async with serving([ServedModel("dbl", "1", doubler)], prediction_log=log) as client:
        answers = await asyncio.gather(
            *(
                client.post("/predict/dbl", json=[{"x": float(i)}],
                            headers={"X-Request-ID": f"r{i}"})
                for i in range(6)
            )
        )  # fmt: skip
    assert [a.status_code for a in answers] == [200] * 6, "answers never wait on the log"
    assert sorted(r.request_id for r in log.records) == ["r0", "r1", "r2", "r4", "r5"]


async def test_a_refused_group_is_logged_request_by_request(tmp_path: Path) -> None:
    clf = load_model(save_classifier(tmp_path / "clf"))
    log = _Refusing()
    frame, _ = classifier_data(8, seed=3)
    rows = frame.to_numpy()
    async with serving([ServedModel("clf", "1", clf)], prediction_log=log) as client:
        answers = await asyncio.gather(
            *(
                client.post("/v2/models/clf/infer", json=oip_matrix(rows[i : i + 1]),
                            headers={"X-Request-ID": f"r{i}"})
                for i in range(8)
            )
        )  # fmt: skip
    assert [a.status_code for a in answers] == [200] * 8
    assert log.groups, "the requests were answered together, and logged as a group"
    assert sorted(r.request_id for r in log.records) == [f"r{i}" for i in range(8) if i != 3]


async def test_requests_answered_together_are_one_spool_line(tmp_path: Path) -> None:
    """Concurrent one-row (and a three-row) OIP requests: the server logs them as a group
    (fewer spool lines than requests), and each comes back with its own id, rows,
    prediction and latency."""
    from gyre.artifacts import open_artifact_store
    from gyre.predictions import PredictionLog, query

    clf = load_model(save_classifier(tmp_path / "clf"))
    store = open_artifact_store(str(tmp_path / "store"))
    log = PredictionLog(tmp_path / "spool", store, compact_interval_s=3600)
    frame, _ = classifier_data(40, seed=4)
    rows = frame.to_numpy()
    sizes = [3 if i == 5 else 1 for i in range(24)]
    starts = [sum(sizes[:i]) for i in range(24)]
    async with serving([ServedModel("clf", "1", clf)], prediction_log=log) as client:
        answers = await asyncio.gather(
            *(
                client.post("/v2/models/clf/infer",
                            json=oip_matrix(rows[start : start + n]),
                            headers={"X-Request-ID": f"q{i}"})
                for i, (start, n) in enumerate(zip(starts, sizes, strict=True))
            )
        )  # fmt: skip
        log.flush()
        lines = [
            json.loads(raw)
            for path in (tmp_path / "spool").glob("*.jsonl")
            for raw in path.read_bytes().splitlines()[1:]
        ]
    assert [a.status_code for a in answers] == [200] * 24
    assert len(lines) < 24 and any(isinstance(line["id"], list) for line in lines)
    table = query(store, "clf").to_pylist()  # (the log was compacted at shutdown)
    by_id = {r["request_id"]: r for r in table}
    expected = [f"q{i}" for i in range(24) if i != 5] + ["q5:0", "q5:1", "q5:2"]
    assert sorted(by_id) == sorted(expected)
    for i, (start, n) in enumerate(zip(starts, sizes, strict=True)):
        predicted = answers[i].json()["outputs"][0]["data"]
        for j in range(n):
            row = by_id[f"q{i}" if n == 1 else f"q{i}:{j}"]
            assert row["in_" + COLUMNS[0]] == rows[start + j, 0]
            assert row["out_prediction"] == predicted[j]
            assert row["latency_ms"] > 0


def test_requests_join_a_log_group_only_when_their_arrays_do() -> None:
    """The requests of one turn are one log group when their inputs and outputs are arrays
    of one dtype and trailing shape, an output value per row; anything else is logged
    request by request (None here), never converted to fit."""
    from types import SimpleNamespace

    import numpy as np

    from gyre.serving._app import _log_group
    from gyre.serving._slots import Prepared

    dep = SimpleNamespace(name="m", log_version=3, column_names=["a", "b"])

    def item(rid: str, x: Any, outputs: dict[str, Any], matrix: Any = None) -> tuple[Any, ...]:
        return (rid, 1_700_000_000_000, dep, Prepared(x, len(x), matrix=matrix), outputs, 0.5,
                "primary")  # fmt: skip

    one = np.array([[1.0, 2.0]])
    three = np.array([[3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])
    good = [item("r0", one, {"predict": np.array([1])}),
            item("r1", three, {"predict": np.array([0, 1, 0])})]  # fmt: skip
    group = _log_group(dep, "primary", good)
    assert group is not None
    assert group.request_ids == ["r0", "r1"] and group.rows == [1, 3]
    np.testing.assert_array_equal(group.inputs, np.vstack([one, three]))
    np.testing.assert_array_equal(group.outputs["prediction"], [1, 0, 1, 0])
    assert group.columns == ["a", "b"] and group.version == 3

    p1 = {"predict": np.array([1])}
    refused = {
        "an int input beside floats": item("r2", np.array([[1, 2]]), p1),
        "another width": item("r2", np.array([[1.0, 2.0, 3.0]]), p1),
        "an output not per row": item("r2", one, {"predict": np.array([1, 0])}),
        "a 0-d output": item("r2", one, {"predict": np.array(1)}),
        "another output key": item("r2", one, {"score": np.array([0.5])}),
        "an extra output": item("r2", one, {**p1, "x": np.array([2])}),
        "outputs of two dtypes": item("r2", one, {"predict": np.array([1.5])}),
        "a list input": item("r2", [[1.0, 2.0]], p1),
        "records named otherwise": item(
            "r2", [{"b": 1.0, "a": 2.0}], p1, matrix=(np.array([[1.0, 2.0]]), ["b", "a"])
        ),
    }
    for why, other in refused.items():
        assert _log_group(dep, "primary", [good[0], other]) is None, why
    # records named as the model's columns join the arrays sent as OIP tensors
    named = item("r3", [{"a": 1.0, "b": 2.0}], {"predict": np.array([0])},
                 matrix=(np.array([[1.0, 2.0]]), ["a", "b"]))  # fmt: skip
    joined = _log_group(dep, "primary", [*good, named])
    assert joined is not None and joined.request_ids == ["r0", "r1", "r3"]


def test_a_log_group_takes_only_what_its_own_requests_were_answered() -> None:
    """Requests answered by one predict call are logged from that call's arrays only when
    all of them are logged together, in the call's order; a request missing (its answer
    failed after the predict) or the order changed, each request keeps its own rows."""
    from types import SimpleNamespace

    import numpy as np

    from gyre.serving._app import _log_group
    from gyre.serving._slots import Answered, Prepared

    dep = SimpleNamespace(name="m", log_version=1, column_names=["a", "b"])
    xs = [np.array([[1.0, 2.0]]), np.array([[3.0, 4.0], [5.0, 6.0]]), np.array([[7.0, 8.0]])]
    predicted = np.array([10, 11, 12, 13])
    call = Answered(np.vstack(xs), None, {"predict": predicted}, 3)
    starts = [0, 1, 3]

    def item(i: int) -> tuple[Any, ...]:
        mine = predicted[starts[i] : starts[i] + len(xs[i])]
        prepared = Prepared(xs[i], len(xs[i]), answered=(call, i))
        return (f"r{i}", 1_700_000_000_000 + i, dep, prepared, {"predict": mine}, 0.5, "primary")

    for order in ([0, 1, 2], [0, 2], [2, 0, 1], [1, 2]):
        group = _log_group(dep, "primary", [item(i) for i in order])
        assert group is not None, order
        assert group.request_ids == [f"r{i}" for i in order]
        np.testing.assert_array_equal(group.inputs, np.vstack([xs[i] for i in order]))
        expected = np.concatenate([predicted[starts[i] : starts[i] + len(xs[i])] for i in order])
        np.testing.assert_array_equal(group.outputs["prediction"], expected)
        rows = [len(xs[i]) for i in order]
        assert group.rows == (None if set(rows) == {1} else rows)
        assert group.timestamps_ms == [1_700_000_000_000 + i for i in order]


# -- the garbage collector -------------------------------------------------------------------


async def test_a_serving_app_runs_young_collections_rarely_and_restores_the_setting(
    tmp_path: Path,
) -> None:
    """A loaded worker keeps a batch of requests alive and allocates a few dozen containers
    each: at Python's default (a young pass every 700) the collector walked every request in
    flight every ~20 requests, about 5% of the worker's time."""
    doubler = load_model(save_doubler(tmp_path / "doubler"))
    before = gc.get_threshold()
    async with serving([ServedModel("dbl", "1", doubler)]) as client:
        assert (await client.post("/predict/dbl", json=[{"x": 1.0}])).status_code == 200
        young, *older = gc.get_threshold()
        assert young >= 10_000 and older == list(before[1:])
    assert gc.get_threshold() == before, "the process's own setting once the app stops"
