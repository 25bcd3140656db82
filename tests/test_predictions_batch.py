"""PredictionBatch: one request's rows logged column-wise as one spool line, compacted into
exactly the rows the equivalent PredictionRecords give."""

from __future__ import annotations

import signal
import subprocess
import sys
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
    PredictionLog,
    PredictionRecord,
    query,
)
from tests.fixtures.predictions import BASE_MS, records


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
    nan = float("nan")
    inputs = np.array([[1.0, nan], [nan, 2.0]])
    outputs = {
        "score": np.array([nan, 0.5], dtype=np.float32),
        "proba": np.array([[nan, 1.0], [0.5, 0.5]]),
    }
    b = batch("n", inputs, outputs, columns=["a", "b"])
    line = _line_of(b, tmp_path / "line")
    assert b'"in":[[1.0,null],[null,2.0]]' in line
    table = assert_same_as_records(tmp_path, [b])
    assert table.column("in_a").to_pylist() == [1.0, None]
    assert table.column("in_b").to_pylist() == [None, 2.0]
    assert table.column("out_score").to_pylist() == [None, 0.5]
    assert table.column("out_proba").to_pylist() == [[None, 1.0], [0.5, 0.5]]


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
    assert len(decoded["in"]) == 64 and decoded["out"]["prediction"] == [0] * 64


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
        log.append([batch(f"b{i}", four, {"p": np.arange(4)}) for i in range(5)])  # 20 rows
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
        assert log.append_feedback("churn", strangers) == FeedbackResult(9, 0, 9)


def test_the_last_100_000_rows_are_remembered_a_batch_counting_its_rows(spool: Path) -> None:
    def rows(rid: str, n: int) -> PredictionBatch:
        return batch(rid, np.zeros((n, 2)), {"p": np.zeros(n, np.int8)})

    with PredictionLog(spool, sync_interval_ms=10) as log:
        log.append([rows("old", 3), rows("mid", 60_000)])
        assert log.append_feedback("churn", [("old:1", 0), ("mid:5", 1)]).matched == 2
        log.append([rows("new", 45_000)])  # 105,003 rows: the oldest batches are forgotten
        labels = [("old:1", 0), ("mid:5", 1), ("new:0", 1), ("new:44999", 1)]
        assert log.append_feedback("churn", labels) == FeedbackResult(4, 2, 2)


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
    with PredictionLog(spool) as log:
        log.append([batch("before")])
        log.flush()
        (path,) = spool.glob("*.jsonl")
        good = orjson.loads(_line_of(batch("bad"), spool.parent / "other"))
        bad_lines = []
        for field, value in [
            ("n", 4),
            ("in", good["in"][:2]),
            ("out", {"prediction": [1]}),
            ("cols", ["age"]),
            ("n", 0),
        ]:
            bad_lines.append(orjson.dumps({**good, field: value}) + b"\n")
        with open(path, "ab") as f:
            f.write(b"".join(bad_lines))
        log.append([batch("after", timestamp_ms=BASE_MS + 1)])
    with PredictionLog(spool, store) as log:
        log.compact()
        assert log.stats()["damaged_lines"] == 5
    ids = query(store, "churn").column("request_id").to_pylist()
    assert ids == [f"{rid}:{i}" for rid in ("before", "after") for i in range(3)]


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

for i in range(n):
    log.append([request(f"acked-{i}", 1 + i % 64)])
last_append = time.monotonic()
while time.monotonic() - last_append < interval_ms / 1000:  # the contract's interval
    time.sleep(0.001)
print("acked", flush=True)
i = 0
while True:  # keep the writer busy until the kill: a write may be cut in half
    log.append([request(f"extra-{i}", 64)])
    i += 1
    time.sleep(0.0005)
"""


def test_acked_batches_survive_kill_9(tmp_path: Path, store: ArtifactStore) -> None:
    spool = tmp_path / "spool"
    n = 2000
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_BATCH_WRITER, str(spool), str(n), "50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        line = proc.stdout.readline()
        assert line.strip() == "acked", proc.stderr.read()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
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
