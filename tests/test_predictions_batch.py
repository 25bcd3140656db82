"""PredictionBatch: one request's rows logged column-wise as one spool line, compacted into
exactly the rows the equivalent PredictionRecords give."""

from __future__ import annotations

import base64
import dataclasses
import gc
import secrets
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pytest

from gyre.artifacts import ArtifactStore, open_artifact_store
from gyre.errors import BackendUnavailable, InvalidArgument
from gyre.predictions import (
    FeedbackResult,
    PredictionBatch,
    PredictionGroup,
    PredictionLog,
    PredictionRecord,
    query,
)
from gyre.predictions._record import (
    _encode_batch,
    encode_batch,
    encode_header,
    encode_prediction,
)
from tests.fixtures.predictions import BASE_MS, kill_9_after_ack, records


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return open_artifact_store(str(tmp_path / "artifacts"))


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool"


def batch(
    request_id: str = "req",
    inputs: Any = None,
    outputs: Mapping[str, Any] | None = None,
    *,
    columns: Any = ("age", "score"),
    timestamp_ms: int = BASE_MS,
    model: str = "churn",
    version: int = 3,
    variant: str = "primary",
    latency_ms: float = 2.5,
) -> PredictionBatch:
    """A batch of 3 rows (2 input columns, a prediction and a probability vector each) unless
    told otherwise."""
    if inputs is None:
        inputs = np.array([[41.0, 0.5], [42.0, 0.25], [43.0, 0.125]])
    if outputs is None:
        outputs = {
            "prediction": np.array([1, 0, 1]),
            "proba": np.array([[0.25, 0.75], [0.5, 0.5], [0.0, 1.0]]),
        }
    return PredictionBatch(
        request_id,
        timestamp_ms,
        model,
        version,
        inputs,
        outputs,
        latency_ms,
        variant,
        None if isinstance(inputs, Mapping) else columns,
    )


def as_records(b: PredictionBatch) -> list[PredictionRecord]:
    """The PredictionRecords a server logs today for the request ``b`` holds."""
    if isinstance(b.inputs, Mapping):
        names = list(b.inputs)
        cols = [_plain(b.inputs[name]) for name in names]
        rows = [dict(zip(names, values, strict=True)) for values in zip(*cols, strict=True)]
    else:
        assert b.columns is not None
        rows = [dict(zip(b.columns, row, strict=True)) for row in _plain(b.inputs)]
    keys = list(b.outputs)
    outs = [_plain(b.outputs[k]) for k in keys]
    answers = [dict(zip(keys, values, strict=True)) for values in zip(*outs, strict=True)]
    n = len(rows)
    return [
        PredictionRecord(
            b.request_id if n == 1 else f"{b.request_id}:{i}",
            b.timestamp_ms,
            b.model,
            b.version,
            row,
            answer,
            b.latency_ms,
            b.variant,
        )
        for i, (row, answer) in enumerate(zip(rows, answers, strict=True))
    ]


def _plain(values: Any) -> list[Any]:
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def compacted(tmp_path: Path, name: str, appended: list[Any]) -> pa.Table:
    """What ``appended`` (one append call per item) compacts into, in a store of its own."""
    store = open_artifact_store(str(tmp_path / name / "artifacts"))
    with PredictionLog(tmp_path / name / "spool", store) as log:
        for item in appended:
            log.append(item if isinstance(item, list) else [item])
    return query(store, "churn", with_feedback=False)


def assert_same_as_records(tmp_path: Path, batches: list[PredictionBatch]) -> pa.Table:
    from_batches = compacted(tmp_path, "batches", list(batches))
    from_records = compacted(tmp_path, "records", [as_records(b) for b in batches])
    assert from_batches.schema == from_records.schema
    assert from_batches.to_pylist() == from_records.to_pylist()
    return from_batches


# -- what a batch compacts into ------------------------------------------------------------


def test_a_batch_compacts_to_the_table_its_rows_as_records_give(tmp_path: Path) -> None:
    table = assert_same_as_records(
        tmp_path, [batch("a"), batch("b", variant="shadow", latency_ms=7.0)]
    )
    assert table.column("request_id").to_pylist() == ["a:0", "a:1", "a:2", "b:0", "b:1", "b:2"]
    assert table.schema.field("in_age").type == pa.float64()
    assert table.schema.field("out_prediction").type == pa.int64()
    assert table.schema.field("out_proba").type == pa.list_(pa.float64())
    first, last = table.to_pylist()[0], table.to_pylist()[-1]
    assert (first["in_age"], first["in_score"], first["out_proba"]) == (41.0, 0.5, [0.25, 0.75])
    assert (last["variant"], last["latency_ms"], last["out_proba"]) == ("shadow", 7.0, [0.0, 1.0])
    assert {r["timestamp"] for r in table.to_pylist()} == {first["timestamp"]}


def test_batches_and_records_mix_in_one_call_and_one_segment(tmp_path: Path) -> None:
    one = batch("solo", np.array([[40.0, 0.1]]), {"prediction": np.array([0])})
    mixed = [*records(2, prefix="rec"), batch("b"), one]
    table = compacted(tmp_path, "mixed", [mixed])
    assert table.column("request_id").to_pylist() == [
        "b:0",
        "b:1",
        "b:2",
        "rec-0",
        "solo",
        "rec-1",  # a second later
    ], "a one-row batch keeps its request id, without a suffix"
    rows = {r["request_id"]: r for r in table.to_pylist()}
    assert rows["rec-1"]["in_city"] == "rome" and rows["rec-1"]["in_score"] is None
    assert rows["b:2"]["in_city"] is None and rows["b:2"]["in_score"] == 0.125
    assert rows["solo"]["out_proba"] is None and rows["rec-0"]["out_proba"] == [0.25, 0.75]


def test_dict_of_columns_inputs(tmp_path: Path) -> None:
    inputs = {
        "age": np.array([41, 42]),
        "city": ["oslo", "rome"],
        "score": np.array([0.5, 0.75], dtype=np.float32),
    }
    table = assert_same_as_records(
        tmp_path, [batch("d", inputs, {"prediction": [1, 0], "proba": np.eye(2)})]
    )
    assert table.column("in_city").to_pylist() == ["oslo", "rome"]
    assert table.schema.field("in_age").type == pa.int64()
    assert table.column("out_proba").to_pylist() == [[1.0, 0.0], [0.0, 1.0]]


@pytest.mark.parametrize(
    "inputs",
    [
        pytest.param(np.arange(12, dtype=np.int64).reshape(3, 4)[:, ::2], id="strided"),
        pytest.param(np.asfortranarray(np.arange(6.0).reshape(3, 2)), id="fortran-order"),
        pytest.param(np.arange(6.0).reshape(2, 3).T, id="transposed"),
        pytest.param(np.array([[1, 2], [3, 4], [5, 6]], dtype=np.int32), id="int32"),
        pytest.param(np.array([[True, False], [False, True], [True, True]]), id="bool"),
        pytest.param(np.array([["a", "b"], ["cc", "d"], ["e", "ff"]]), id="str"),
        pytest.param(np.array([[1, "x"], [2.5, None], [None, "z"]], dtype=object), id="object"),
        pytest.param(np.array([[1.5, 2], [3, 4], [5, 6]], dtype=np.float16), id="float16"),
        pytest.param(np.array([[1, 2], [3, 4], [5, 6]], dtype=np.uint8)[::-1], id="reversed"),
    ],
)
def test_arrays_of_every_layout_and_dtype(tmp_path: Path, inputs: Any) -> None:
    outputs = {"prediction": np.array(["yes", "no", "yes"]), "rank": np.arange(3)[::-1]}
    table = assert_same_as_records(tmp_path, [batch("x", inputs, outputs, columns=["a", "b"])])
    if inputs.dtype != object:  # (a column of mixed types is text, as for records)
        assert table.column("in_a").to_pylist() == [row[0] for row in inputs.tolist()]
    assert table.column("out_prediction").to_pylist() == ["yes", "no", "yes"]
    assert table.column("out_rank").to_pylist() == [2, 1, 0]


def test_nan_is_logged_as_null_as_records_log_it(tmp_path: Path) -> None:
    nan, inf = float("nan"), float("inf")
    inputs = np.array([[1.0, nan], [-inf, 2.0]])
    outputs = {
        "score": np.array([nan, 0.5], dtype=np.float32),
        "proba": np.array([[nan, 1.0], [0.5, inf]]),
    }
    b = batch("n", inputs, outputs, columns=["a", "b"])
    line = orjson.loads(_line_of(b, tmp_path / "line"))
    assert line["in"]["dt"] == "<f8" and line["out"]["score"]["dt"] == "<f4"  # binary blocks
    table = assert_same_as_records(tmp_path, [b])
    assert table.column("in_a").to_pylist() == [1.0, None]
    assert table.column("in_b").to_pylist() == [None, 2.0]
    assert table.column("out_score").to_pylist() == [None, 0.5]
    assert table.column("out_proba").to_pylist() == [[None, 1.0], [0.5, None]]
    assert table.column("in_a").null_count == 1


def test_a_float_column_null_in_every_row_is_left_out_as_for_records(tmp_path: Path) -> None:
    nan = float("nan")
    b = batch("n", np.array([[nan, 1.0], [nan, 2.0]]), {"p": np.array([nan, nan])})
    table = assert_same_as_records(tmp_path, [b])
    assert "in_age" not in table.column_names and "out_p" not in table.column_names


def _line_of(b: PredictionBatch, spool: Path) -> bytes:
    """The spool line ``b`` is written as."""
    with PredictionLog(spool) as log:
        log.append([b])
    (path,) = spool.glob("*.jsonl")
    header, line = path.read_bytes().splitlines()
    assert orjson.loads(header)["k"] == "h"
    return line


def test_a_batch_is_one_spool_line(tmp_path: Path) -> None:
    big = batch("big", np.arange(128.0).reshape(64, 2), {"prediction": np.zeros(64, int)})
    line = _line_of(big, tmp_path / "spool")
    decoded = orjson.loads(line)
    assert (decoded["k"], decoded["id"], decoded["n"], decoded["cols"]) == (
        "b",
        "big",
        64,
        ["age", "score"],
    )
    assert decoded["in"]["dt"] == "<f8" and decoded["in"]["sh"] == [64, 2]
    assert base64.b64decode(decoded["in"]["b64"]) == np.arange(128.0).astype("<f8").tobytes()
    assert decoded["out"]["prediction"]["sh"] == [64]
    raw = 64 * 2 * 8 + 64 * 8  # the arrays' bytes
    assert len(line) < raw * 4 / 3 + 250, "the arrays as their bytes in base64, and the head"


def test_numeric_arrays_are_binary_blocks_and_anything_else_json(tmp_path: Path) -> None:
    inputs = {"age": np.array([41, 42], np.int16), "city": ["oslo", "rome"], "n": np.arange(2)}
    outputs = {
        "label": np.array(["yes", "no"]),
        "ok": np.array([True, False]),
        "at": np.array(["2024-03-09", "2024-03-10"], dtype="datetime64[D]"),
        "tags": [["a"], []],
        "empty": np.zeros((2, 0)),
    }
    line = orjson.loads(_line_of(batch("d", inputs, outputs), tmp_path / "spool"))
    assert line["cols"] is None
    assert line["in"]["age"]["dt"] == "<i2" and line["in"]["n"]["dt"] == "<i8"
    assert line["in"]["city"] == ["oslo", "rome"]
    assert line["out"]["ok"] == {"dt": "|b1", "sh": [2], "b64": "AQA="}
    assert line["out"]["label"] == ["yes", "no"]
    assert line["out"]["at"] == ["2024-03-09T00:00:00", "2024-03-10T00:00:00"]
    assert line["out"]["tags"] == [["a"], []] and line["out"]["empty"] == [[], []]


def test_the_inputs_may_be_changed_after_append(store: ArtifactStore, spool: Path) -> None:
    inputs = np.array([[1.0, 2.0], [3.0, 4.0]])
    columns = ["a", "b"]
    with PredictionLog(spool, store) as log:
        log.append([batch("r", inputs, {"p": [0, 1]}, columns=columns)])
        inputs[:] = -1
        columns[0] = "changed"
    assert query(store, "churn").column("in_a").to_pylist() == [1.0, 3.0]


def test_batches_are_partitioned_by_their_timestamp(store: ArtifactStore, spool: Path) -> None:
    day_ms = 86_400_000
    with PredictionLog(spool, store) as log:
        log.append([batch("d1"), batch("d2", timestamp_ms=BASE_MS + day_ms), batch("v", version=4)])
        segments = log.compact()
    assert sorted(s.rsplit("/", 1)[0] for s in segments) == [
        "predictions/churn/3/2024-03-09",
        "predictions/churn/3/2024-03-10",
        "predictions/churn/4/2024-03-09",
    ]
    assert query(store, "churn", version=3, since=BASE_MS + day_ms).num_rows == 3


# -- validation ----------------------------------------------------------------------------

PROBA = np.array([[0.5, 0.5], [0.25, 0.75], [1.0, 0.0]])


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: batch(""), "request_id"),
        (lambda: batch(model=""), "model"),
        (lambda: batch(version=-1), "version"),
        (lambda: batch(version="3"), "version"),
        (lambda: batch(timestamp_ms=1.5), "timestamp_ms"),
        (lambda: batch(variant="sideways"), "variant"),
        (lambda: batch(inputs=np.arange(3.0)), "inputs"),
        (lambda: batch(inputs=[[1.0, 2.0]]), "inputs"),
        (lambda: batch(inputs=np.zeros((0, 2)), outputs={}), "inputs"),
        (lambda: batch(columns=None), "columns"),
        (lambda: batch(columns=["age"]), "columns"),
        (lambda: batch(columns="ab"), "columns"),
        (lambda: batch(columns=["age", "age"]), "columns"),
        (lambda: batch(columns=["age", 2]), "columns"),
        (lambda: batch(inputs={}), "inputs"),
        (lambda: batch(inputs={"age": 41}), "input column 'age'"),
        (lambda: batch(inputs={"age": [1, 2, 3], "city": ["a", "b"]}), "input column 'city'"),
        (lambda: batch(inputs={"age": [1, 2, 3]}, outputs={"p": [1, 0]}), "output 'p'"),
        (lambda: batch(outputs={"prediction": [1, 0]}), "output 'prediction'"),
        (lambda: batch(outputs={"proba": PROBA.T}), "output 'proba'"),
        (lambda: batch(outputs={"prediction": np.int64(1)}), "output 'prediction'"),
        (lambda: batch(outputs={"label": "yes"}), "output 'label'"),
        (lambda: batch(outputs=[1, 0, 1]), "outputs"),
        (lambda: batch(outputs={"p": np.array([1j, 2j, 3j])}), "not JSON-able"),
        (lambda: batch(outputs={"p": [object(), 1, 2]}), "not JSON-able"),
        (lambda: batch(inputs=np.array([[1j, 1], [2, 2], [3, 3]])), "not JSON-able"),
    ],
)
def test_a_bad_batch_fails_the_call_naming_the_request_and_the_field(
    spool: Path, make: Any, field: str
) -> None:
    bad = make()
    with PredictionLog(spool) as log:
        with pytest.raises(InvalidArgument) as caught:
            log.append([*records(2), bad])  # the good records before it are not queued either
        assert log.stats()["appended_records"] == 0
    message = caught.value.message
    assert field in message, message
    assert repr(bad.request_id) in message, message


def test_every_structural_error_carries_a_hint(spool: Path) -> None:
    cases = [
        batch(columns=None),
        batch(inputs=np.arange(3.0)),
        batch(outputs={"prediction": [1, 0]}),
        batch(inputs={"age": [1, 2, 3], "city": ["a"]}),
        batch(outputs={"p": [object(), 1, 2]}),
    ]
    with PredictionLog(spool) as log:
        for bad in cases:
            with pytest.raises(InvalidArgument) as caught:
                log.append([bad])
            assert caught.value.hint, caught.value.message


def test_something_else_than_a_record_or_batch_is_refused(spool: Path) -> None:
    with PredictionLog(spool) as log, pytest.raises(InvalidArgument, match="PredictionBatch"):
        log.append([{"request_id": "r"}])  # type: ignore[list-item]


# -- counts, files, feedback ---------------------------------------------------------------


def test_stats_count_rows_not_lines(store: ArtifactStore, spool: Path) -> None:
    big = batch("big", np.arange(128.0).reshape(64, 2), {"prediction": np.zeros(64, int)})
    with PredictionLog(spool, store, sync_interval_ms=60_000) as log:  # the writer waits
        log.append([big, *records(2)])
        log.append([batch("three")])
        stats = log.stats()
        assert (stats["appended_records"], stats["unsynced_records"]) == (69, 69)
        log.flush()
        stats = log.stats()
        assert (stats["synced_records"], stats["unsynced_records"]) == (69, 0)
        log.compact()
        assert log.stats()["compacted_records"] == 69
    assert query(store, "churn").num_rows == 69


def test_spool_files_are_cut_by_rows_never_inside_a_batch(
    store: ArtifactStore, spool: Path
) -> None:
    four = np.arange(8.0).reshape(4, 2)
    with PredictionLog(spool, store, segment_rows=10) as log:
        for i in range(5):  # 20 rows, a line each (one call would make them one line)
            log.append([batch(f"b{i}", four, {"p": np.arange(4)})])
        log.append(records(3))
        log.append([batch("huge", np.zeros((25, 2)), {"p": np.zeros(25)})])
        log.flush()
        rows = sorted(_rows_in(path) for path in spool.glob("*.jsonl"))
        assert rows == [7, 8, 8, 25], "4+4, 4+4, then 4 + 3 records; a batch of 25 alone"
        log.compact()
    assert query(store, "churn").num_rows == 48


def _rows_in(path: Path) -> int:
    lines = [orjson.loads(raw) for raw in path.read_bytes().splitlines()[1:]]
    return sum(line["n"] if line["k"] == "b" else 1 for line in lines)


def test_an_unwritable_spool_keeps_the_batches_and_counts_their_rows(
    store: ArtifactStore, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    spool.write_text("a file where the spool folder should be")
    log = PredictionLog(spool, store, sync_interval_ms=10)
    try:
        log.append([batch("a"), *records(1), batch("b")])
        with pytest.raises(BackendUnavailable, match="spool"):
            log.flush()
        assert log.stats()["unsynced_records"] == 7
        spool.unlink()
        log.flush()
        assert log.stats()["unsynced_records"] == 0
    finally:
        log.close()
    assert query(store, "churn").num_rows == 7


def test_feedback_for_a_row_of_a_batch_counts_as_matched(spool: Path) -> None:
    rows64 = batch("big", np.arange(128.0).reshape(64, 2), {"prediction": np.zeros(64, int)})
    solo = batch("solo", np.array([[1.0, 2.0]]), {"prediction": [1]})
    with PredictionLog(spool) as log:
        log.append([rows64, solo, *records(1)])
        labels = [
            ("big:3", 1),
            ("big:0", 0),
            ("big:63", 1),
            ("solo", 1),
            ("req-0", 1),
        ]
        assert log.append_feedback("churn", labels) == FeedbackResult(5, 5, 0)
        strangers = [
            ("big:64", 1),  # past its rows
            ("big:03", 1),  # not an id the batch has
            ("big:-1", 1),
            ("big", 1),  # a batch of several rows has no row by its bare id
            ("solo:0", 1),  # ... and a one-row batch none with a suffix
            ("other:3", 1),
            ("big:٣", 1),  # an Arabic-Indic three
            ("big:" + "1" * 5000, 1),  # more digits than int() takes
            ("big:", 1),
        ]
        # the bare id of a batch of several rows is named, with its row count
        assert log.append_feedback("churn", strangers) == FeedbackResult(9, 0, 9, {"big": 64})


def test_the_last_100_000_rows_are_remembered_a_batch_counting_its_rows(spool: Path) -> None:
    def rows(rid: str, n: int) -> PredictionBatch:
        return batch(rid, np.zeros((n, 2)), {"p": np.zeros(n, np.int8)})

    with PredictionLog(spool, sync_interval_ms=10) as log:
        log.append([rows("old", 3), rows("mid", 60_000)])
        assert log.append_feedback("churn", [("old:1", 0), ("mid:5", 1)]).matched == 2
        log.append([rows("new", 45_000)])  # 105,003 rows: the oldest batches are forgotten
        labels = [("old:1", 0), ("mid:5", 1), ("new:0", 1), ("new:44999", 1)]
        assert log.append_feedback("churn", labels) == FeedbackResult(4, 2, 2)


def test_remembered_ids_give_the_garbage_collector_nothing_to_walk(spool: Path) -> None:
    """A loaded server's worker collects in full several times a second (its own objects
    frozen out of the collector): ids remembered in a set made every full collection walk
    100,000 strings, which cost one-row requests some 4% of their throughput."""
    step = 4000
    with PredictionLog(spool, sync_interval_ms=10) as log:
        for start in range(0, 120_000, step):
            ids = [f"r{i}" for i in range(start, start + step)]
            log.append([PredictionGroup(ids, [BASE_MS] * step, "churn", 3, np.zeros((step, 2)),
                                        {"p": np.zeros(step, np.int8)}, [0.5] * step,
                                        columns=["age", "score"])])  # fmt: skip
        labels = [("r0", 1), ("r5000", 1), ("r30000", 0), ("r119999", 1)]
        assert log.append_feedback("churn", labels).matched == 2, "the last 100,000 only"
        gc.collect()  # (the collector stops tracking what it finds holding only atoms)
        seen: set[int] = set()
        todo: list[Any] = list(vars(log).values())
        walked = []
        while todo:  # the containers the log keeps, and theirs
            obj = todo.pop()
            if id(obj) in seen or not isinstance(obj, list | tuple | dict | set | deque):
                continue
            seen.add(id(obj))
            if gc.is_tracked(obj):
                walked.append(len(gc.get_referents(obj)))
            todo += obj.values() if isinstance(obj, dict) else obj
        assert walked and max(walked) < 5000, "no tracked container holding the ids"


# -- damage and crashes --------------------------------------------------------------------


def test_a_torn_batch_line_at_the_end_is_cut_and_counted(store: ArtifactStore, spool: Path) -> None:
    with PredictionLog(spool) as log:  # no artifact store: the file stays in the spool
        log.append([*records(2), batch("whole")])
    (path,) = spool.glob("*.jsonl")
    torn = _line_of(batch("torn"), spool.parent / "other")
    with open(path, "ab") as f:  # what a writer killed mid-write leaves behind
        f.write(torn[: len(torn) // 2])
    with PredictionLog(spool, store) as log:
        log.compact()
        stats = log.stats()
    assert (stats["torn_records"], stats["damaged_lines"], stats["compacted_records"]) == (1, 0, 5)
    assert query(store, "churn").column("request_id").to_pylist() == [
        "req-0",
        "whole:0",
        "whole:1",
        "whole:2",
        "req-1",  # a second later
    ]
    assert not path.exists()


def test_a_batch_line_whose_columns_miss_rows_is_damaged(store: ArtifactStore, spool: Path) -> None:
    good = orjson.loads(_line_of(batch("bad"), spool.parent / "other"))
    old = orjson.loads(old_line(batch("bad")))  # JSON numbers, as lines were written before
    bad_lines = [
        {**line, field: value}
        for line in (good, old)
        for field, value in [
            ("n", 4),
            ("out", {"prediction": [1]}),
            ("cols", ["age"]),
            ("n", 0),
        ]
    ]
    bad_lines.append({**old, "in": old["in"][:2]})
    assert_damaged_between_good_lines(store, spool, bad_lines)


def assert_damaged_between_good_lines(
    store: ArtifactStore, spool: Path, damaged: list[dict[str, Any]]
) -> None:
    """``damaged`` lines between two good batches in a dead process's spool file: each is
    counted as damaged, the compaction does not fail, the good rows are all there."""
    _write_spool(spool, [batch("before")], damaged, [batch("after", timestamp_ms=BASE_MS + 1)])
    with PredictionLog(spool, store) as log:
        log.compact()
        stats = log.stats()
    assert (stats["damaged_lines"], stats["compaction_failures"]) == (len(damaged), 0)
    ids = query(store, "churn").column("request_id").to_pylist()
    assert ids == [f"{rid}:{i}" for rid in ("before", "after") for i in range(3)]
    assert list(spool.glob("*.jsonl")) == []


def _block(line: dict[str, Any], where: str) -> dict[str, Any]:
    """The binary block at ``where`` (``"in"`` or ``"out.<key>"``) of a parsed line."""
    return line["in"] if where == "in" else line["out"][where.split(".", 1)[1]]


B64_OF_3_INTS = base64.b64encode(np.arange(3).tobytes()).decode()


@pytest.mark.parametrize(
    ("where", "change"),
    [
        ("in", {"b64": "!!!!" + "A" * 60}),  # not base64
        ("in", {"b64": "é" * 64}),  # not even ASCII
        ("out.prediction", {"b64": B64_OF_3_INTS[:-4]}),  # fewer bytes than the shape holds
        ("out.prediction", {"b64": B64_OF_3_INTS + "AAAA"}),  # more
        ("out.prediction", {"b64": B64_OF_3_INTS[:-1]}),  # bad padding
        ("out.prediction", {"dt": "<i4"}),  # twice the values its shape holds
        ("out.prediction", {"dt": "<c16"}),  # not a dtype blocks are written in
        ("out.prediction", {"dt": ">i8"}),
        ("out.prediction", {"dt": 8}),
        ("out.prediction", {"sh": [4]}),  # rows != n
        ("out.prediction", {"sh": [3, 1, 1]}),
        ("out.prediction", {"sh": [3.0]}),
        ("out.prediction", {"sh": "3"}),
        ("out.proba", {"sh": [3, 3]}),  # the bytes of 3 x 2
        ("in", {"sh": [3, 1]}),  # the columns are 2
        ("in", {"sh": [6]}),
        ("in", {"dt": None}),
        ("in", {"extra": 1}),
        ("in", {"b64": None}),
    ],
)
def test_a_damaged_binary_block_makes_its_line_damaged_not_the_compaction_fail(
    store: ArtifactStore, spool: Path, where: str, change: dict[str, Any]
) -> None:
    line = orjson.loads(_line_of(batch("bad"), spool.parent / "other"))
    block = _block(line, where)
    block.update(change)
    for key in [k for k, v in change.items() if v is None]:
        del block[key]
    assert_damaged_between_good_lines(store, spool, [line])


def test_a_torn_binary_line_is_cut_wherever_it_tears(store: ArtifactStore, spool: Path) -> None:
    line = _line_of(batch("torn", np.arange(128.0).reshape(64, 2), {"p": np.arange(64)}), spool)
    assert line.index(b'"b64"') < len(line) // 2
    for cut, name in [(len(line) // 2, "a"), (len(line) - 1, "b"), (len(line), "c")]:
        # the last: a line all there but its \n
        folder = spool.parent / name
        _write_spool(folder, [batch("whole")], [])
        (path,) = folder.glob("*.jsonl")
        with open(path, "ab") as f:
            f.write(line[:cut])
        with PredictionLog(folder, store) as log:
            log.compact()
            stats = log.stats()
        assert (stats["torn_records"], stats["damaged_lines"], stats["compacted_records"]) == (
            1,
            0,
            3,
        )


# -- binary blocks and the lines written before them ---------------------------------------


def old_line(b: PredictionBatch) -> bytes:
    """``b``'s spool line as it was written before binary blocks: every array to orjson."""
    inputs = dict(b.inputs) if isinstance(b.inputs, Mapping) else b.inputs
    line = {
        "k": "b",
        "id": b.request_id,
        "ts": b.timestamp_ms,
        "m": b.model,
        "v": b.version,
        "var": b.variant,
        "lat": b.latency_ms,
        "n": len(next(iter(inputs.values()))) if isinstance(inputs, dict) else len(inputs),
        "cols": None if b.columns is None else list(b.columns),
        "in": inputs,
        "out": dict(b.outputs),
    }
    option = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE
    return orjson.dumps(line, _old_fallback, option)


def _old_fallback(value: Any) -> Any:
    if isinstance(value, np.ndarray) and not value.flags.c_contiguous:
        return np.ascontiguousarray(value)
    return value.tolist()


def _write_spool(folder: Path, *parts: list[Any]) -> Path:
    """A spool file of a process that died, in ``folder``: each part a list of batches
    (appended, so binary), of parsed lines (written as they are) or of encoded lines."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [encode_header()]
    for part in parts:
        for item in part:
            if isinstance(item, PredictionBatch | PredictionRecord):
                line, _ = (
                    encode_batch(item)
                    if isinstance(item, PredictionBatch)
                    else (
                        encode_prediction(item),
                        1,
                    )
                )
            elif isinstance(item, dict):
                line = orjson.dumps(item) + b"\n"
            else:
                line = item
            lines.append(line)
    path = folder / f"{time.time_ns():020d}-999999-{secrets.token_hex(4)}.jsonl"
    path.write_bytes(b"".join(lines))
    return path


def compacted_spool(tmp_path: Path, name: str, *parts: list[Any]) -> pa.Table:
    store = open_artifact_store(str(tmp_path / name / "artifacts"))
    _write_spool(tmp_path / name / "spool", *parts)
    with PredictionLog(tmp_path / name / "spool", store) as log:
        log.compact()
        assert log.stats()["damaged_lines"] == 0
    return query(store, "churn", with_feedback=False)


def assert_same_tables(*tables: pa.Table) -> None:
    first = tables[0]
    for other in tables[1:]:
        assert other.schema == first.schema
        assert other.to_pylist() == first.to_pylist()


MANY_DTYPES = {
    "f8": np.float64,
    "f4": np.float32,
    "f2": np.float16,
    "i8": np.int64,
    "i4": np.int32,
    "i2": np.int16,
    "i1": np.int8,
    "u8": np.uint64,
    "u4": np.uint32,
    "u2": np.uint16,
    "u1": np.uint8,
    "b1": np.bool_,
}


def _requests(dtype: Any, count: int = 3) -> list[PredictionBatch]:
    """Requests of 1 to ``count`` rows of ``dtype`` inputs and outputs, of values exactly
    representable in every dtype (so the JSON of a float32 is the same number)."""
    made = []
    for i in range(count):
        rows = i + 1
        values = (
            (np.arange(rows * 3).reshape(rows, 3) % 2 == 0)
            if dtype is np.bool_
            else (
                np.arange(rows * 3).reshape(rows, 3) * 0.5
                if np.dtype(dtype).kind == "f"
                else np.arange(rows * 3).reshape(rows, 3) + 250
            )
        )
        x = values.astype(dtype)
        made.append(
            PredictionBatch(
                f"q{i}",
                BASE_MS + i,
                "churn",
                3,
                x,
                {"prediction": x[:, 0].copy(), "proba": x[:, 1:].copy(), "tail": x[::-1, 2]},
                0.5,
                columns=("a", "b", "c"),
            )
        )
    return made


@pytest.mark.parametrize("name", list(MANY_DTYPES))
def test_binary_and_json_lines_compact_to_the_table_records_give(tmp_path: Path, name: str) -> None:
    requests = _requests(MANY_DTYPES[name])
    binary = compacted_spool(tmp_path, "binary", requests)
    json = compacted_spool(tmp_path, "json", [old_line(b) for b in requests])
    records = compacted_spool(tmp_path, "records", [r for b in requests for r in as_records(b)])
    assert_same_tables(binary, json, records)
    kind = np.dtype(MANY_DTYPES[name]).kind
    expected = {"f": pa.float64(), "b": pa.bool_()}.get(kind, pa.int64())
    assert binary.schema.field("in_a").type == expected
    assert binary.schema.field("out_proba").type == pa.list_(expected)
    assert binary.num_rows == 6 and binary.column("request_id").to_pylist()[:2] == [
        "q0",
        "q1:0",
    ]


def test_float32_values_are_kept_exactly_as_doubles(tmp_path: Path) -> None:
    x = np.array([[0.1, 1 / 3]], dtype=np.float32)
    b = PredictionBatch("f", BASE_MS, "churn", 3, x, {"p": x[:, 0]}, 0.5, columns=("a", "b"))
    table = assert_same_as_records(tmp_path, [b])  # records from .tolist(): the same doubles
    assert table.column("in_a").to_pylist() == [float(np.float32(0.1))] == [0.10000000149011612]
    assert table.schema.field("in_a").type == pa.float64()


def test_uint64_beyond_int64_takes_the_path_records_take(tmp_path: Path) -> None:
    big = np.array([[2**64 - 1], [1]], dtype=np.uint64)
    b = PredictionBatch("u", BASE_MS, "churn", 3, big, {"p": big[:, 0]}, 0.5, columns=("a",))
    binary = compacted_spool(tmp_path, "binary", [b])
    json = compacted_spool(tmp_path, "json", [old_line(b)])
    assert_same_tables(binary, json)
    assert binary.column("in_a").to_pylist() == [str(2**64 - 1), "1"]  # as text, as before


def test_mixed_partitions_compact_as_their_rows_as_records_do(tmp_path: Path) -> None:
    """Binary and JSON batch lines, "p" records, a column that is int in one block and
    float in another, columns and outputs that some lines lack, 2-D blocks of several
    column lists, one-row batches: one partition, the same table as records give."""
    floats = np.arange(8.0).reshape(4, 2) / 4
    ints = np.arange(6).reshape(3, 2)
    nan = float("nan")
    requests = [
        batch("f", floats, {"prediction": np.arange(4), "proba": floats}),
        batch("i", ints, {"prediction": np.array([1.5, nan, 2.5])}),  # float after int
        batch("s", floats[:1], {"prediction": np.array([7])}),  # one row
        batch("o", floats[:2], {"other": np.array([True, False])}, columns=("score", "x")),
        batch("d", {"age": np.array([1, 2]), "city": ["a", "b"]}, {"proba": np.eye(2)[:, :1]}),
        batch("w", floats[:2], {"proba": np.ones((2, 3)), "prediction": np.zeros(2, np.int8)}),
    ]
    extra = records(2, prefix="rec", inputs=lambda i: {"age": 30 + i, "score": 0.5})
    old = [old_line(b) for b in requests[:3]]
    mixed = compacted_spool(tmp_path, "mixed", requests[:2], old, extra, requests[2:], old[1:])
    as_rows = [
        *[r for b in requests[:2] for r in as_records(b)],
        *[r for b in requests[:3] for r in as_records(b)],
        *extra,
        *[r for b in requests[2:] for r in as_records(b)],
        *[r for b in requests[1:3] for r in as_records(b)],
    ]
    expected = compacted_spool(tmp_path, "records", as_rows)
    assert_same_tables(mixed, expected)
    assert mixed.schema.field("out_prediction").type == pa.float64()
    assert mixed.schema.field("out_proba").type == pa.list_(pa.float64())


def test_binary_columns_missing_in_some_lines_are_null_there(tmp_path: Path) -> None:
    requests = [
        batch("a", np.ones((2, 2)), {"p": np.array([1, 2]), "proba": np.eye(2)}),
        batch("b", np.ones((3, 2)), {"q": np.array([0.5, float("nan"), 1.5])}),
        batch("c", np.ones((1, 1)), {"p": np.array([3])}, columns=("age",)),
        batch("d", np.zeros((2, 2)), {"proba": np.ones((2, 2)) / 2}, columns=("x", "y")),
    ]
    table = assert_same_as_records(tmp_path, requests)
    assert table.column("out_p").to_pylist() == [1, 2, None, None, None, 3, None, None]
    assert table.column("out_q").to_pylist()[2:5] == [0.5, None, 1.5]
    assert table.column("out_proba").to_pylist()[:3] == [[1.0, 0.0], [0.0, 1.0], None]
    assert table.column("in_x").to_pylist() == [None] * 6 + [0.0, 0.0]


def test_many_one_row_requests_compact_as_records(tmp_path: Path) -> None:
    """Hundreds of one-row requests (their arrays joined in bulk), some lacking an output,
    some of another dtype, one float NaN: the table their rows as records give."""
    rng = np.random.default_rng(3)
    requests = []
    for i in range(600):
        outputs: dict[str, Any] = {"prediction": rng.integers(0, 3, 1)}
        if i % 5 == 0:
            outputs["prediction"] = outputs["prediction"] / 2  # a float, in some lines
        if i % 7:
            outputs["proba"] = rng.random((1, 2))
        if i % 3 == 0:
            outputs["flag"] = np.array([i % 2 == 0])
        inputs = rng.random((1, 2))
        if i == 99:
            inputs[0, 1] = float("nan")
        requests.append(batch(f"r{i}", inputs, outputs, timestamp_ms=BASE_MS + i))
    table = assert_same_as_records(tmp_path, requests)
    assert table.schema.field("out_flag").type == pa.bool_()
    assert table.schema.field("out_prediction").type == pa.float64()
    assert table.column("in_score").null_count == 1


def test_integers_and_vectors_of_several_dtypes_in_one_column_keep_their_values(
    tmp_path: Path,
) -> None:
    big = 2**62 + 1  # a double cannot hold it
    requests = [
        batch(
            f"r{i}",
            np.ones((2, 2)),
            {
                "id": np.array([big, i], np.uint64 if i % 2 else np.int64),
                "proba": np.ones((2, 2), np.float32 if i % 3 else np.float64) / 4,
            },
        )
        for i in range(300)
    ]
    table = assert_same_as_records(tmp_path, requests)
    ids = {row["request_id"]: row["out_id"] for row in table.to_pylist()}
    assert (ids["r0:0"], ids["r0:1"], ids["r1:0"], ids["r1:1"]) == (big, 0, big, 1)
    assert table.schema.field("out_id").type == pa.int64()


def test_many_one_row_requests_of_one_kind_take_the_array_path(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    requests = [
        batch(
            f"r{i}",
            rng.random((1, 2)),
            {"prediction": rng.integers(0, 3, 1), "proba": rng.random((1, 2))},
            timestamp_ms=BASE_MS + i,
        )
        for i in range(400)
    ]
    table = assert_same_as_records(tmp_path, requests)
    assert table.schema.field("out_prediction").type == pa.int64()


# -- requests logged in one call: group lines ----------------------------------------------


def _spool_lines(spool: Path) -> list[dict[str, Any]]:
    return [
        orjson.loads(raw)
        for path in sorted(spool.glob("*.jsonl"))
        for raw in path.read_bytes().splitlines()[1:]
    ]


def _server_turn(n: int, *, prefix: str = "r", start_ms: int = BASE_MS) -> list[PredictionBatch]:
    """``n`` requests as a server answers them in one turn: one row each, but every fifth
    request has three; each its own latency and timestamp."""
    rng = np.random.default_rng(n)
    made = []
    for i in range(n):
        rows = 3 if i % 5 == 4 else 1
        outputs = {"prediction": rng.integers(0, 2, rows), "proba": rng.random((rows, 2))}
        made.append(
            batch(
                f"{prefix}{i}",
                rng.random((rows, 2)),
                outputs,
                timestamp_ms=start_ms + i // 7,
                latency_ms=0.25 * (i % 9),
            )
        )
    return made


def test_requests_logged_in_one_call_share_a_line_and_compact_as_records(
    tmp_path: Path,
) -> None:
    turn = _server_turn(40)
    other = batch("other-dtype", np.ones((2, 2), np.float32), {"prediction": np.arange(2)})
    canary = batch("canary", np.ones((1, 2)), {"prediction": np.arange(1)}, variant="canary")
    dicts = batch("dict", {"age": np.array([1.0]), "score": [0.5]}, {"prediction": np.ones(1)})
    call = [*turn[:20], other, canary, dicts, *turn[20:]]
    store = open_artifact_store(str(tmp_path / "grouped" / "artifacts"))
    spool = tmp_path / "grouped" / "spool"
    with PredictionLog(spool, store, sync_interval_ms=60_000) as log:
        log.append([batch("first")])  # (a kind of batch is checked alone the first time)
        log.append(call)
        assert log.stats()["appended_records"] == 3 + 56 + 2 + 1 + 1
        log.flush()
        lines = _spool_lines(spool)
        grouped = [line for line in lines if isinstance(line["id"], list)]
        assert len(grouped) == 1 and len(lines) == 5, "the 40 requests of one kind: one line"
        (group,) = grouped
        assert group["id"] == [b.request_id for b in turn]
        assert group["rq"] == [len(b.inputs) for b in turn]
        assert group["n"] == sum(group["rq"]) == 56
        assert group["lat"] == [b.latency_ms for b in turn]
        assert group["ts"] == [b.timestamp_ms for b in turn]
    from_call = query(store, "churn", with_feedback=False)
    from_records = compacted(tmp_path, "records", [as_records(b) for b in [batch("first"), *call]])
    assert_same_tables(from_call, from_records)
    rows = {r["request_id"]: r for r in from_call.to_pylist()}
    assert rows["r4:2"]["latency_ms"] == 1.0 and rows["r5"]["latency_ms"] == 1.25
    assert "r4" not in rows and "r0" in rows, "ids as the requests' own rows would have"


def test_requests_with_inputs_by_name_share_a_line_and_compact_as_records(
    tmp_path: Path,
) -> None:
    """A model whose signature names no columns logs its input tensor by name."""
    rng = np.random.default_rng(9)
    call = [
        batch(
            f"t{i}",
            {"input-0": rng.random((3 if i % 4 == 0 else 1, 5))},
            {"prediction": rng.integers(0, 2, 3 if i % 4 == 0 else 1)},
        )
        for i in range(12)
    ]
    store = open_artifact_store(str(tmp_path / "grouped" / "artifacts"))
    spool = tmp_path / "grouped" / "spool"
    with PredictionLog(spool, store) as log:
        log.append(call[:1])
        log.append(call[1:])
        log.flush()
        assert len(_spool_lines(spool)) == 2
    assert_same_tables(
        query(store, "churn", with_feedback=False),
        compacted(tmp_path, "records", [as_records(b) for b in call]),
    )


def _as_group(batches: list[PredictionBatch]) -> PredictionGroup:
    """The requests of ``batches`` (2-D inputs of one kind) as one group."""
    first = batches[0]
    return PredictionGroup(
        [b.request_id for b in batches],
        [b.timestamp_ms for b in batches],
        first.model,
        first.version,
        np.concatenate([b.inputs for b in batches]),
        {k: np.concatenate([b.outputs[k] for b in batches]) for k in first.outputs},
        [b.latency_ms for b in batches],
        first.variant,
        first.columns,
        [len(b.inputs) for b in batches],
    )


def test_a_group_logs_what_its_requests_as_batches_log(tmp_path: Path) -> None:
    turn = _server_turn(30)
    store = open_artifact_store(str(tmp_path / "group" / "artifacts"))
    spool = tmp_path / "group" / "spool"
    with PredictionLog(spool, store) as log:
        log.append([_as_group(turn[:10])])  # the first of its kind: checked, as batches
        log.append([_as_group(turn[10:])])
        log.flush()
        requests = [len(line["id"]) if isinstance(line["id"], list) else 1
                    for line in _spool_lines(spool)]  # fmt: skip
        # (the first group of a kind the process has not logged before is checked request
        # by request: its first request alone, the others a group)
        assert requests[-1] == 20 and sum(requests) == 30 and len(requests) <= 3
        labels = [("r10", 1), ("r14:2", 0), ("r14", 1), ("r29:0", 1)]
        assert log.append_feedback("churn", labels) == FeedbackResult(4, 3, 1, {"r14": 3})
    assert_same_tables(
        query(store, "churn", with_feedback=False),
        compacted(tmp_path, "records", [as_records(b) for b in turn]),
    )


def test_a_group_of_json_values_or_of_two_days_is_logged_as_its_requests(
    tmp_path: Path,
) -> None:
    midnight = BASE_MS - BASE_MS % 86_400_000 + 86_400_000
    late = _server_turn(14, prefix="late", start_ms=midnight - 1)
    words = PredictionGroup(
        ["w0", "w1"], [BASE_MS, BASE_MS], "churn", 3,
        {"city": ["oslo", "rome"]}, {"prediction": [1, 0]}, [0.5, 0.75],
    )  # fmt: skip
    store = open_artifact_store(str(tmp_path / "g" / "artifacts"))
    with PredictionLog(tmp_path / "g" / "spool", store) as log:
        log.append([_as_group(late), words])
        segments = log.compact()
    assert len({s.rsplit("/", 1)[0] for s in segments}) == 2, "two days"
    expected = [*late, batch("w0", {"city": ["oslo"]}, {"prediction": [1]}, latency_ms=0.5),
                batch("w1", {"city": ["rome"]}, {"prediction": [0]}, latency_ms=0.75)]  # fmt: skip
    assert_same_tables(
        query(store, "churn", with_feedback=False),
        compacted(tmp_path, "records", [as_records(b) for b in expected]),
    )


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"request_ids": ["a"]}, "1 request ids, 2 timestamps"),
        ({"latencies_ms": [1.0]}, "and 1 latencies"),
        ({"rows": [1, 1]}, "hold 3 rows, its requests 2"),
        ({"rows": [1, 1], "request_ids": ["a", 7]}, "hold 3 rows, its requests 2"),
        ({"rows": [2, 0, 1]}, "not one positive count"),
        ({"rows": [3]}, "not one positive count"),
    ],
)
def test_a_group_whose_parts_do_not_fit_is_refused_naming_it(
    spool: Path, change: dict[str, Any], words: str
) -> None:
    group = PredictionGroup(
        ["a", "b"], [BASE_MS, BASE_MS], "churn", 3, np.ones((3, 2)),
        {"prediction": np.zeros(3)}, [1.0, 2.0], columns=("age", "score"), rows=[1, 2],
    )  # fmt: skip
    with PredictionLog(spool) as log:
        with pytest.raises(InvalidArgument) as caught:
            log.append([batch("fine"), dataclasses.replace(group, **change)])
        assert words in caught.value.message and "'a'" in caught.value.message
        assert log.stats()["appended_records"] == 0, "nothing of the call is kept"


def test_batches_of_one_call_are_all_logged_when_their_kind_is_forgotten_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cached kinds of batch are cleared when full; a kind forgotten while a call is
    encoded (by a new kind in the same call) costs its batches nothing: each is a line."""
    monkeypatch.setattr("gyre.predictions._record._CACHE_SIZE", 1)
    turn = _server_turn(6)
    other = batch("other", model="fraud")  # a new kind: the cache is cleared for it
    store = open_artifact_store(str(tmp_path / "g" / "artifacts"))
    with PredictionLog(tmp_path / "g" / "spool", store) as log:
        log.append(turn[:1])
        log.append([*turn[1:], other])
        assert log.stats()["appended_records"] == sum(len(b.inputs) for b in turn) + 3
    assert_same_tables(
        query(store, "churn", with_feedback=False),
        compacted(tmp_path, "records", [as_records(b) for b in turn]),
    )
    assert query(store, "fraud").num_rows == 3


def test_a_group_of_one_row_requests_has_no_row_counts(spool: Path) -> None:
    one_row = [b for b in _server_turn(30) if len(b.inputs) == 1]
    with PredictionLog(spool) as log:
        log.append(one_row[:1])
        log.append(one_row[1:])
    group = _spool_lines(spool)[1]
    assert group["n"] == len(group["id"]) == len(one_row) - 1 and "rq" not in group


def test_feedback_for_requests_of_a_group_line_counts_as_matched(spool: Path) -> None:
    turn = _server_turn(10)
    with PredictionLog(spool) as log:
        log.append(turn[:1])
        log.append(turn[1:])
        labels = [("r1", 1), ("r4:0", 0), ("r4:2", 1), ("r9:1", 1), ("r9", 0), ("r4:3", 1)]
        assert log.append_feedback("churn", labels) == FeedbackResult(6, 4, 2, {"r9": 3})


def test_requests_of_two_utc_days_in_one_call_go_to_their_own_days(
    store: ArtifactStore, spool: Path
) -> None:
    midnight = BASE_MS - BASE_MS % 86_400_000 + 86_400_000
    late = _server_turn(14, prefix="late", start_ms=midnight - 1)  # 7 of them a ms later
    with PredictionLog(spool, store) as log:
        log.append(late[:1])
        log.append(late[1:])
        segments = log.compact()
    assert sorted(s.rsplit("/", 1)[0] for s in segments) == [
        "predictions/churn/3/2024-03-09",
        "predictions/churn/3/2024-03-10",
    ]
    after = query(store, "churn", since=midnight).column("request_id").to_pylist()
    assert sorted({rid.split(":")[0] for rid in after}) == sorted(
        b.request_id for b in late if b.timestamp_ms >= midnight
    )


@pytest.mark.parametrize(
    "change",
    [
        {"id": ["a", "b"]},  # fewer ids than requests
        {"id": ["a", "", "c", "d", "e"]},
        {"id": ["a", 2, "c", "d", "e"]},
        {"ts": [BASE_MS] * 4},
        {"ts": [BASE_MS, BASE_MS, BASE_MS, BASE_MS, BASE_MS + 86_400_000]},  # two days
        {"ts": [BASE_MS, BASE_MS, BASE_MS, BASE_MS, float(BASE_MS)]},
        {"lat": [1.0, 1.0]},
        {"lat": [1.0, 1.0, "slow", 1.0, 1.0]},
        {"rq": [1, 1, 1, 2, 3]},  # more rows than n
        {"rq": [1, 1, 1, 0, 3]},
        {"rq": [1, 1, 1, 3]},
        {"rq": None},  # none: as many rows as requests
        {"rq": [1, 1, 1, 1, True, 2]},
        {"lat": None},
    ],
)
def test_a_damaged_group_line_is_skipped_not_the_compaction_failed(
    store: ArtifactStore, spool: Path, change: dict[str, Any]
) -> None:
    turn = _server_turn(5, prefix="g")  # 7 rows: g4 has 3
    with PredictionLog(spool.parent / "other") as log:
        log.append(turn[:1])
        log.append(turn)
    line = _spool_lines(spool.parent / "other")[1]
    assert line["rq"] == [1, 1, 1, 1, 3]
    line.update(change)
    for key in [k for k, v in change.items() if v is None]:
        del line[key]
    assert_damaged_between_good_lines(store, spool, [line])


def test_models_of_other_columns_taking_turns_in_one_spool_file_compact(
    store: ArtifactStore, spool: Path
) -> None:
    """Two models with their own columns, their requests alternating in one spool file
    (as a server of two models writes): hundreds of lines of each compact, every value in
    its place."""
    rng = np.random.default_rng(5)
    sent: dict[str, list[float]] = {}
    with PredictionLog(spool, store) as log:
        for i in range(300):
            for model, columns in (("churn", ("age", "score")), ("fraud", ("amount", "hour"))):
                x = rng.random((2, 2))
                rid = f"{model}-{i}"
                sent[rid] = x[:, 1].tolist()
                log.append([batch(rid, x, {"p": np.arange(2)}, model=model, columns=columns)])
    for model, column in (("churn", "in_score"), ("fraud", "in_hour")):
        rows = query(store, model).to_pylist()
        assert len(rows) == 600
        for r in rows:
            rid, i = r["request_id"].rsplit(":", 1)
            assert r[column] == sent[rid][int(i)]


@pytest.mark.parametrize(
    "make",
    [
        lambda: batch("a"),
        lambda: batch("b", np.array([[1, 2]], np.int32), {"p": np.array([True])}),
        lambda: batch("c", np.ones((64, 2)), {"p": np.zeros(64, int), "q": np.ones((64, 2))}),
        lambda: batch("d", np.ones((2, 2)), {}, columns=["age", "score"]),
        lambda: batch("e", np.ones((2, 2)), {"p": np.zeros(2)}, latency_ms=float("nan")),
        lambda: batch('f\n"é', np.ones((1, 2)), {'k"\n': np.zeros(1)}, model='m"\n'),
        lambda: batch("g", {"age": np.array([1, 2]), "score": np.array([0.5, 0.25])}, {}),
        lambda: batch("h", {"input-0": np.ones((2, 20))}, {"p": np.zeros(2, np.int8)}),
    ],
)
def test_the_fast_encoding_writes_what_the_general_one_writes(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = make()
    general = _encode_batch(b)  # (which caches the pieces of its kind)

    def refused(b: PredictionBatch) -> Any:
        raise AssertionError("not encoded by the fast path")

    monkeypatch.setattr("gyre.predictions._record._encode_batch", refused)
    fast = encode_batch(b)
    assert fast == general
    inputs = orjson.loads(fast[0])["in"]
    assert "dt" in inputs or all("dt" in block for block in inputs.values())  # binary


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"timestamp_ms": 2**70}, "not JSON-able"),
        ({"version": True}, "version"),
        ({"model": type("Name", (str,), {})("churn")}, "model"),
        ({"request_id": ""}, "request_id"),
        ({"variant": ["primary"]}, "variant"),
        ({"latency_ms": object()}, "not JSON-able"),
        ({"columns": "ab"}, "columns"),
        ({"columns": ("age", "age")}, "columns"),
    ],
)
def test_a_batch_like_one_seen_before_is_checked_all_the_same(
    change: dict[str, Any], field: str
) -> None:
    good = batch("good", np.ones((1, 2)), {"p": np.zeros(1)})
    encode_batch(good)  # its pieces are cached now
    bad = dataclasses.replace(good, **change)
    with pytest.raises((InvalidArgument, TypeError)) as caught:
        encode_batch(bad)
    assert isinstance(caught.value, InvalidArgument), caught.value
    assert field in caught.value.message


def test_appending_one_row_requests_remembers_about_the_last_100_000(spool: Path) -> None:
    with PredictionLog(spool, sync_interval_ms=10) as log:
        x = np.ones((1, 2))
        for i in range(110_000):
            log.append([batch(f"r{i}", x, {"p": np.zeros(1)})])
        labels = [("r0", 1), ("r9000", 1), ("r20000", 1), ("r109999", 1), ("r109999:0", 1)]
        result = log.append_feedback("churn", labels)
    assert result == FeedbackResult(5, 2, 3)


KILLED_BATCH_WRITER = """
import sys, time
import numpy as np
from gyre.predictions import PredictionBatch, PredictionLog
spool, n, interval_ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
log = PredictionLog(spool, sync_interval_ms=interval_ms)
x = np.arange(64 * 20, dtype=np.float64).reshape(64, 20)
columns = [f"f{i}" for i in range(20)]

def request(rid, rows):
    return PredictionBatch(rid, 1_710_000_000_000, "churn", 1, x[:rows],
                           {"prediction": np.arange(rows) % 2}, 0.5, columns=columns)

for start in range(0, n, 8):  # as a server logs them: a call (so a line) per 8 requests
    log.append([request(f"acked-{i}", 1 + i % 64) for i in range(start, min(start + 8, n))])
last_append = time.monotonic()
while time.monotonic() - last_append < interval_ms / 1000:  # the contract's interval
    time.sleep(0.001)
print("acked", flush=True)
i = 0
while True:  # keep the writer busy until the kill: a write may be cut in half
    log.append([request(f"extra-{i}-{j}", 64) for j in range(4)])
    i += 1
    time.sleep(0.0005)
"""


def test_acked_batches_survive_kill_9(tmp_path: Path, store: ArtifactStore) -> None:
    spool = tmp_path / "spool"
    n = 2000
    kill_9_after_ack(KILLED_BATCH_WRITER, str(spool), str(n), "50")
    with PredictionLog(spool, store) as log:  # a fresh process on the same folder
        log.compact()
        stats = log.stats()
    ids = query(store, "churn", with_feedback=False).column("request_id").to_pylist()
    acked = [i for i in ids if i.startswith("acked-")]
    expected = []
    for i in range(n):
        rows = 1 + i % 64
        expected += [f"acked-{i}"] if rows == 1 else [f"acked-{i}:{r}" for r in range(rows)]
    assert sorted(acked) == sorted(expected)
    assert len(ids) == len(set(ids)), "no row recovered twice"
    assert stats["torn_records"] in (0, 1)
    assert list(spool.glob("*.jsonl")) == []
