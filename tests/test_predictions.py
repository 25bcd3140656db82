"""The prediction log: spool, compaction into Parquet segments, query, feedback.

The round trip runs over every artifact backend (folder, S3, gyre server); the rest over a
folder, which behaves the same through the ArtifactStore seam.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from gyre.artifacts import ArtifactStore, open_artifact_store
from gyre.artifacts._http import HttpArtifactStore
from gyre.errors import BackendUnavailable, InvalidArgument
from gyre.predictions import (
    Compaction,
    FeedbackResult,
    PredictionLog,
    PredictionRecord,
    _layout,
    _spool,
    compact_folder,
    feedback_coverage,
    query,
    query_frame,
)
from tests.fixtures.predictions import BASE_MS, kill_9_after_ack, records
from tests.fixtures.server import LiveServer


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return open_artifact_store(str(tmp_path / "artifacts"))


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3), "http"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    if request.param == "local":
        yield open_artifact_store(str(tmp_path / "artifacts"))
    elif request.param == "s3":
        s3 = open_artifact_store(request.getfixturevalue("s3_uri"))
        yield s3
        s3.close()  # type: ignore[attr-defined]
    else:
        server: LiveServer = request.getfixturevalue("live_server")
        http = HttpArtifactStore(server.url, retry_seconds=5.0)
        yield http
        http.close()


# -- round trip ----------------------------------------------------------------------------


def test_append_flush_compact_query_round_trip(any_store: ArtifactStore, spool: Path) -> None:
    with PredictionLog(spool, any_store) as log:
        log.append(records(120))
        log.flush()
        assert log.stats()["unsynced_records"] == 0
        segments = log.compact()
    assert segments == [f"predictions/churn/3/2024-03-09/{_spool_id(segments[0])}.parquet"], (
        "one spool file, one partition: one segment"
    )
    table = query(any_store, "churn")
    assert table.num_rows == 120
    assert table.column_names == [
        "request_id",
        "timestamp",
        "model",
        "version",
        "variant",
        "latency_ms",
        "in_age",
        "in_city",
        "out_prediction",
        "out_proba",
        "label",
        "label_timestamp",
    ]
    assert table.schema.field("timestamp").type == pa.timestamp("ms", tz="UTC")
    assert table.schema.field("in_age").type == pa.int64()
    assert table.schema.field("out_proba").type == pa.list_(pa.float64())
    first = table.slice(0, 1).to_pylist()[0]
    assert first["request_id"] == "req-0"
    assert first["timestamp"] == datetime(2024, 3, 9, 12, 0, tzinfo=UTC)
    assert (first["model"], first["version"], first["variant"]) == ("churn", 3, "primary")
    assert first["out_proba"] == [0.25, 0.75] and first["label"] is None
    assert table.column("request_id").to_pylist() == [f"req-{i}" for i in range(120)]
    assert list(spool.glob("*.jsonl")) == [], "compacted spool files are deleted"


def _spool_id(segment: str) -> str:
    return segment.rsplit("/", 1)[1].removesuffix(".parquet")


def test_query_filters_by_version_and_the_pandas_form_matches(
    store: ArtifactStore, spool: Path
) -> None:
    with PredictionLog(spool, store) as log:
        log.append(records(10, version=1, prefix="a") + records(5, version=2, prefix="b"))
    assert query(store, "churn", version=2).column("request_id").to_pylist() == [
        f"b-{i}" for i in range(5)
    ]
    assert query(store, "churn", version=7).num_rows == 0
    assert query(store, "nobody").num_rows == 0
    frame = query_frame(store, "churn", version=1, with_feedback=False)
    assert len(frame) == 10 and "label" not in frame.columns
    assert str(frame["timestamp"].dt.tz) == "UTC"


def test_segment_rows_rotates_the_spool_file(store: ArtifactStore, spool: Path) -> None:
    with PredictionLog(spool, store, segment_rows=10) as log:
        log.append(records(25))
        log.flush()
        assert len(list(spool.glob("*.jsonl"))) == 3
        assert len(log.compact()) == 3
    assert query(store, "churn").num_rows == 25


def test_background_compaction_makes_records_queryable(store: ArtifactStore, spool: Path) -> None:
    with PredictionLog(spool, store, compact_interval_s=0.05) as log:
        log.append(records(30))
        deadline = time.monotonic() + 20
        while query(store, "churn").num_rows < 30:
            assert time.monotonic() < deadline, f"not compacted: {log.stats()}"
            time.sleep(0.02)  # poll interval
        assert log.stats()["segments_written"] >= 1


def test_a_log_without_background_compaction_leaves_its_files_to_another_compactor(
    store: ArtifactStore, spool: Path
) -> None:
    counts = Compaction()
    with PredictionLog(spool, store, compact_interval_s=0.05, background_compaction=False) as log:
        log.append(records(30))
        deadline = time.monotonic() + 20
        # The log finishes its file on its own (every 0.05 s); compacting it is another's job.
        while counts.rows < 30:
            assert time.monotonic() < deadline, f"no finished spool file: {log.stats()}"
            compact_folder(spool, store, counts)
            time.sleep(0.02)  # poll interval
        stats = log.stats()
        assert stats["segments_written"] == 0 and stats["compacted_records"] == 0
        assert stats["spool_files"] == 0
        log.append(records(5, prefix="late"))
    # close() still compacts what is left, in the calling thread
    assert query(store, "churn").num_rows == 35
    assert counts.segments >= 1 and not list(spool.glob("*.jsonl"))


def test_close_compacts_and_refuses_later_appends(store: ArtifactStore, spool: Path) -> None:
    log = PredictionLog(spool, store)
    log.append(records(3))
    log.close()
    log.close()  # twice is harmless
    assert query(store, "churn").num_rows == 3
    with pytest.raises(InvalidArgument, match="closed"):
        log.append(records(1))


def test_bad_records_fail_the_call_naming_them(spool: Path) -> None:
    with PredictionLog(spool) as log:
        with pytest.raises(InvalidArgument, match="'sideways'"):
            log.append([records(1)[0].__class__("r", BASE_MS, "m", 1, {}, {}, 1.0, "sideways")])
        with pytest.raises(InvalidArgument, match="not JSON-able"):
            log.append([PredictionRecord("r", BASE_MS, "m", 1, {"x": object()}, {}, 1.0)])
        with pytest.raises(InvalidArgument, match="must be dicts, got list"):
            log.append([PredictionRecord("r", BASE_MS, "m", 1, [1, 2], {}, 1.0)])  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument, match="timestamp_ms 1.5"):
            log.append([PredictionRecord("r", 1.5, "m", 1, {}, {}, 1.0)])  # type: ignore[arg-type]
        assert log.stats()["appended_records"] == 0


def test_numpy_values_are_logged_as_numbers(store: ArtifactStore, spool: Path) -> None:
    np = pytest.importorskip("numpy")
    with PredictionLog(spool, store) as log:
        log.append(
            [
                PredictionRecord(
                    "r1",
                    BASE_MS,
                    "churn",
                    1,
                    {"age": np.int64(41), "score": np.float32(0.5)},
                    {"prediction": np.int64(1), "proba": np.array([0.1, 0.9])},
                    latency_ms=0.3,
                )
            ]
        )
    row = query(store, "churn").to_pylist()[0]
    assert (row["in_age"], row["in_score"], row["out_proba"]) == (41, 0.5, [0.1, 0.9])


def test_a_model_name_with_slashes_and_spaces_stays_in_its_own_scope(
    store: ArtifactStore, spool: Path
) -> None:
    with PredictionLog(spool, store) as log:
        log.append(records(2, model="team/churn v2") + records(3, model="_index"))
    assert query(store, "team/churn v2").num_rows == 2
    assert query(store, "_index").num_rows == 3
    assert _layout.models_in(store, "predictions") == ["_index", "team/churn v2"]


# -- durability ----------------------------------------------------------------------------

KILLED_WRITER = """
import sys, time
from gyre.predictions import PredictionLog, PredictionRecord
spool, n, interval_ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
log = PredictionLog(spool, sync_interval_ms=interval_ms)

def batch(prefix, start, count):
    return [PredictionRecord(f"{prefix}-{i}", 1_710_000_000_000 + i, "churn", 1,
                             {"x": i, "pad": "p" * 200}, {"prediction": i % 2}, 0.5)
            for i in range(start, start + count)]

for start in range(0, n, 250):
    log.append(batch("acked", start, min(250, n - start)))
last_append = time.monotonic()
# The contract: sync_interval_ms after append returned, the records are on disk.
while time.monotonic() - last_append < interval_ms / 1000:
    time.sleep(0.001)
print("acked", flush=True)
i = 0
while True:  # keep the writer busy until the kill: a write may be cut in half
    log.append(batch("extra", i, 50))
    i += 50
    time.sleep(0.0005)
"""


def test_acked_records_survive_kill_9(tmp_path: Path, store: ArtifactStore) -> None:
    spool = tmp_path / "spool"
    n = 20_000
    kill_9_after_ack(KILLED_WRITER, str(spool), str(n), "50")
    with PredictionLog(spool, store) as log:  # a fresh process on the same folder
        log.compact()
        stats = log.stats()
    ids = query(store, "churn", with_feedback=False).column("request_id").to_pylist()
    acked = [i for i in ids if i.startswith("acked-")]
    assert sorted(acked) == sorted(f"acked-{i}" for i in range(n))
    assert len(ids) == len(set(ids)), "no record recovered twice"
    assert stats["torn_records"] in (0, 1)
    assert list(spool.glob("*.jsonl")) == []


def test_a_torn_spool_tail_is_cut_counted_and_the_rest_recovered(
    store: ArtifactStore, spool: Path
) -> None:
    with PredictionLog(spool) as log:  # no artifact store: the file stays in the spool
        log.append(records(5))
    (path,) = spool.glob("*.jsonl")
    with open(path, "ab") as f:  # what a writer killed mid-write leaves behind
        f.write(b'{"k":"p","id":"req-torn","ts":17099856000')
    with PredictionLog(spool, store) as log:
        log.compact()
        assert log.stats()["torn_records"] == 1
    assert query(store, "churn").column("request_id").to_pylist() == [f"req-{i}" for i in range(5)]
    assert not path.exists()


def test_a_damaged_line_in_the_middle_is_skipped_and_counted(
    store: ArtifactStore, spool: Path
) -> None:
    with PredictionLog(spool) as log:
        log.append(records(2))
        log.flush()
        (path,) = spool.glob("*.jsonl")
        with open(path, "ab") as f:
            f.write(b'{"k":"p","id":"bro\x00ken\n')
        log.append(records(2, prefix="after"))
    with PredictionLog(spool, store) as log:
        log.compact()
        assert log.stats()["damaged_lines"] == 1
    assert sorted(query(store, "churn").column("request_id").to_pylist()) == [
        "after-0",
        "after-1",
        "req-0",
        "req-1",
    ]


def test_recompaction_after_a_crash_between_upload_and_delete_adds_no_rows(
    store: ArtifactStore, spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with PredictionLog(spool) as log:
        log.append(records(50) + records(20, version=4, prefix="v4"))

    def crash(self: _spool.ClaimedSpool) -> None:
        raise RuntimeError("killed before the spool file was deleted")

    with monkeypatch.context() as patched:
        patched.setattr(_spool.ClaimedSpool, "remove", crash)
        log = PredictionLog(spool, store)
        with pytest.raises(RuntimeError, match="killed"):
            log.compact()
    assert query(store, "churn").num_rows == 70, "uploaded and recorded"
    assert len(list(spool.glob("*.jsonl"))) == 1, "but the spool file is still there"
    with PredictionLog(spool, store) as again:
        again.compact()
    log.close()
    table = query(store, "churn")
    assert table.num_rows == 70
    assert len(set(table.column("request_id").to_pylist())) == 70
    scope = _layout.Partition("predictions", "churn", 3, table.to_pylist()[0]["timestamp"].date())
    assert len(store.read_manifest(scope.scope)) == 1, "same path: the entry was replaced"
    assert list(spool.glob("*.jsonl")) == []


def test_a_crash_before_the_index_is_written_is_repaired_by_the_rerun(
    store: ArtifactStore, spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with PredictionLog(spool) as log:
        log.append(records(10))

    def crash(*args: object) -> None:
        raise RuntimeError("killed before the index")

    log = PredictionLog(spool, store)
    with monkeypatch.context() as patched:
        patched.setattr("gyre.predictions._log.record_partitions", crash)
        with pytest.raises(RuntimeError):
            log.compact()
    assert query(store, "churn").num_rows == 0, "not announced yet"
    log.close()  # the final compaction is the rerun
    assert query(store, "churn").num_rows == 10


def test_an_unwritable_spool_never_fails_append_and_keeps_the_records(
    store: ArtifactStore, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    spool.write_text("a file where the spool folder should be")
    log = PredictionLog(spool, store, sync_interval_ms=10)
    try:
        log.append(records(4))  # returns: no I/O on this path
        with pytest.raises(BackendUnavailable, match="spool"):
            log.flush()
        assert log.stats()["unsynced_records"] == 4
        spool.unlink()
        log.flush()
        assert log.stats()["unsynced_records"] == 0
    finally:
        log.close()
    assert query(store, "churn").num_rows == 4


def test_spool_lines_reach_the_file_whole_across_short_and_many_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer hands the kernel the lines as they are; a write that takes only part of
    them (a signal, a pipe-like file system) is continued where it stopped, and more lines
    than one ``writev`` takes go in several."""
    real = os.writev
    calls: list[int] = []

    def seven_bytes_at_most(fd: int, buffers: list[bytes]) -> int:
        calls.append(len(buffers))
        return real(fd, [b"".join(bytes(b) for b in buffers)[:7]])

    writer = _spool.SpoolWriter(tmp_path / "spool")
    lines = [b'{"k":"x","n":%d}\n' % i for i in range(3)]
    with monkeypatch.context() as patched:
        patched.setattr(os, "writev", seven_bytes_at_most)
        writer.write(lines, 3)
    many = [b"%d\n" % i for i in range(2_500)]
    writer.write(many, 2_500)
    assert writer.path is not None
    body = writer.path.read_bytes()
    assert body.endswith(b"".join(lines + many)), "every line, whole and in order"
    assert len(calls) > len(lines), "short writes were continued"
    assert writer.rows == 2_503
    writer.close()


def test_a_spool_write_that_fails_half_way_leaves_none_of_its_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write the disk refuses after some of its lines went in is undone: the file holds
    what it held before, so that the requeued lines are not written twice."""
    real = os.writev
    writer = _spool.SpoolWriter(tmp_path / "spool")
    writer.write([b'{"k":"x","n":0}\n'], 1)
    assert writer.path is not None
    before = writer.path.read_bytes()

    def full_after_one_line(fd: int, buffers: list[bytes]) -> int:
        if len(buffers) > 1:
            return real(fd, buffers[:1])  # then the next call finds the disk full
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(os, "writev", full_after_one_line)
        with pytest.raises(OSError, match="No space left"):
            writer.write([b'{"k":"x","n":1}\n', b'{"k":"x","n":2}\n'], 2)
    assert writer.path.read_bytes() == before
    writer.write([b'{"k":"x","n":3}\n'], 1)  # and the file goes on from there
    assert writer.path.read_bytes() == before + b'{"k":"x","n":3}\n'
    assert writer.rows == 2
    writer.close()


def test_two_logs_share_a_spool_folder_without_taking_each_others_active_file(
    store: ArtifactStore, spool: Path
) -> None:
    first = PredictionLog(spool, store)
    second = PredictionLog(spool, store)
    try:
        first.append(records(5, prefix="first"))
        first.flush()  # first's active file is locked by first
        second.append(records(3, prefix="second"))
        second.compact()
        assert query(store, "churn").num_rows == 3
        first.compact()
        assert query(store, "churn").num_rows == 8
    finally:
        first.close()
        second.close()


# -- schema and time -----------------------------------------------------------------------


def test_schema_drift_across_segments_is_queryable(store: ArtifactStore, spool: Path) -> None:
    with PredictionLog(spool, store) as log:
        log.append(records(3, prefix="old", inputs=lambda i: {"age": i, "city": "oslo"}))
        log.compact()
        log.append(
            records(
                2,
                prefix="new",
                start_ms=BASE_MS + 10_000,
                inputs=lambda i: {"age": f"{i}y", "tenure": 1.5 * i},  # age now a string
            )
        )
        log.append(
            records(1, prefix="mixed", start_ms=BASE_MS + 20_000, inputs=lambda i: {"city": 7})
        )
        log.append(
            records(1, prefix="mixed2", start_ms=BASE_MS + 21_000, inputs=lambda i: {"city": "x"})
        )
    table = query(store, "churn")
    rows = {r["request_id"]: r for r in table.to_pylist()}
    assert len(rows) == 7
    assert (rows["old-1"]["in_age"], rows["new-1"]["in_age"]) == ("1", "1y")
    assert rows["old-1"]["in_tenure"] is None and rows["new-1"]["in_tenure"] == 1.5
    assert (rows["mixed-0"]["in_city"], rows["mixed2-0"]["in_city"]) == ("7", "x")


def test_values_that_change_shape_between_segments_are_read_as_json(
    store: ArtifactStore, spool: Path
) -> None:
    shapes: list[object] = [3, [1.5, 2.5], {"a": 1}, "text", True]
    with PredictionLog(spool, store) as log:
        for i, shape in enumerate(shapes):
            log.append(
                records(1, prefix=f"s{i}", start_ms=BASE_MS + i, inputs=lambda _, v=shape: {"x": v})
            )
            log.append_feedback("churn", [(f"s{i}-0", shape)], BASE_MS + 100)
            log.compact()  # one segment each
        log.append(records(1, prefix="n", start_ms=BASE_MS + 10, inputs=lambda _: {"n": 1}))
        log.append(records(1, prefix="m", start_ms=BASE_MS + 11, inputs=lambda _: {"n": 2.5}))
    table = query(store, "churn")
    assert table.column("in_x").to_pylist() == [
        "3",
        "[1.5,2.5]",
        '{"a":1}',
        "text",
        "true",
        None,
        None,
    ]
    assert table.column("label").to_pylist() == [
        "3",
        "[1.5,2.5]",
        '{"a":1}',
        "text",
        "true",
        None,
        None,
    ]
    assert table.schema.field("in_n").type == pa.float64(), "numbers widen"
    assert table.column("in_n").to_pylist()[-2:] == [1.0, 2.5]


def test_time_filters_across_midnight(store: ArtifactStore, spool: Path) -> None:
    midnight = datetime(2024, 3, 10, tzinfo=UTC)
    start = _ms(midnight) - 3000
    with PredictionLog(spool, store) as log:  # one spool file spanning midnight
        log.append(records(6, start_ms=start, step_ms=1000))
        segments = log.compact()
    assert sorted(s.split("/")[3] for s in segments) == ["2024-03-09", "2024-03-10"]

    def ids(**window: object) -> list[str]:
        return query(store, "churn", **window).column("request_id").to_pylist()  # type: ignore[arg-type]

    assert ids() == [f"req-{i}" for i in range(6)]
    assert ids(since=midnight) == ["req-3", "req-4", "req-5"]
    assert ids(until=midnight) == ["req-0", "req-1", "req-2"], "until is exclusive"
    assert ids(since=midnight - timedelta(seconds=1), until=midnight + timedelta(seconds=1)) == [
        "req-2",
        "req-3",
    ]
    assert ids(since=_ms(midnight) + 2000) == ["req-5"], "milliseconds work too"
    assert ids(since=datetime(2024, 3, 10, 0, 0, 1)) == ["req-4", "req-5"], "naive is UTC"
    with pytest.raises(InvalidArgument, match="not after since"):
        query(store, "churn", since=midnight, until=midnight)


# -- feedback ------------------------------------------------------------------------------


def test_feedback_joins_the_latest_label_and_counts_unknown_ids(
    store: ArtifactStore, spool: Path
) -> None:
    day = timedelta(days=1)
    with PredictionLog(spool, store) as log:
        log.append(records(4))
        result = log.append_feedback(
            "churn", [("req-0", 1), ("req-1", 0), ("ghost", 1)], BASE_MS + 60_000
        )
        assert result == FeedbackResult(accepted=3, matched=2, unmatched=1)
        log.compact()
        # Two days later, a correction for req-1 and a late first label for req-2.
        later = BASE_MS + 2 * _ms_of(day)
        assert log.append_feedback("churn", [("req-1", 1), ("req-2", 0)], later).accepted == 2
    table = query(store, "churn")
    labels = {r["request_id"]: (r["label"], r["label_timestamp"]) for r in table.to_pylist()}
    first_time = datetime(2024, 3, 9, 12, 1, tzinfo=UTC)
    later_time = datetime(2024, 3, 11, 12, 0, tzinfo=UTC)
    assert labels["req-0"] == (1, first_time)
    assert labels["req-1"] == (1, later_time), "the latest label wins"
    assert labels["req-2"] == (0, later_time)
    assert labels["req-3"] == (None, None)
    assert table.num_rows == 4, "labels never add prediction rows"

    coverage = feedback_coverage(store, "churn")
    assert (coverage.predictions, coverage.labelled, coverage.unknown_labels) == (4, 3, 1)
    assert coverage.coverage == 0.75
    window = feedback_coverage(store, "churn", since=BASE_MS, until=BASE_MS + 2000)
    assert (window.predictions, window.labelled, window.unknown_labels) == (2, 2, 0)
    # Labels given in a window are matched against predictions made up to
    # max_label_delay before it: only the ghost is unknown.
    later = feedback_coverage(store, "churn", since=BASE_MS + 30_000, until=BASE_MS + 90_000)
    assert (later.predictions, later.unknown_labels, later.coverage) == (0, 1, None)
    assert feedback_coverage(store, "other").coverage is None


def _ms_of(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1000)


def test_equal_label_timestamps_resolve_to_the_one_given_last(
    store: ArtifactStore, spool: Path
) -> None:
    with PredictionLog(spool, store) as log:
        log.append(records(1))
        log.append_feedback("churn", [("req-0", "cat"), ("req-0", "dog")], BASE_MS + 5)
        log.compact()
        log.append_feedback("churn", [("req-0", "emu")], BASE_MS + 5)
    assert query(store, "churn").column("label").to_pylist() == ["emu"]


def test_feedback_is_validated(spool: Path) -> None:
    with PredictionLog(spool) as log:
        with pytest.raises(InvalidArgument, match="request_id 5"):
            log.append_feedback("churn", [(5, 1)])  # type: ignore[list-item]
        with pytest.raises(InvalidArgument, match="not a .request_id, label. pair"):
            log.append_feedback("churn", ["req-1"])  # type: ignore[list-item]
        assert log.append_feedback("churn", []) == FeedbackResult(0, 0, 0)


def test_stats_report_the_spool_lag(spool: Path) -> None:
    with PredictionLog(spool, sync_interval_ms=60_000) as log:  # the writer waits 30 s
        log.append(records(10))
        stats = log.stats()
        assert stats["unsynced_records"] == 10 and stats["oldest_unsynced_ms"] >= 0
        log.flush()
        stats = log.stats()
        assert stats["unsynced_records"] == 0 and stats["oldest_unsynced_ms"] == 0
        assert stats["spool_files"] == 1 and stats["spool_bytes"] > 0
    assert os.listdir(spool)  # no artifact store: the spool is kept for a later compaction
