"""PredictionLog: the request path appends to memory; threads make it durable, then Parquet.

Durability contract: :meth:`PredictionLog.append` encodes the records on the caller's thread
(about two microseconds per :class:`PredictionRecord`; a :class:`PredictionBatch`, one
request's rows, is one spool line whatever its row count, its numeric arrays copied as
their bytes: about three microseconds for one row of 20 floats) and puts them
on an in-memory queue; it never waits for I/O. A writer thread appends everything queued
to the active spool file and fsyncs it (``fdatasync``: the data and the file's size) once
the oldest queued record has waited ``sync_interval_ms / 2`` (sooner when the queue grows
large). A record whose ``append`` returned is therefore on
disk, fsync'd, at most ``sync_interval_ms`` later (as long as one write and fsync take well
under the interval; ``stats()`` shows the age of the oldest record not yet synced), and
from then on survives kill -9 of the process and a power cut. :meth:`flush` writes and
fsyncs in the calling thread at once.

Compaction: the active spool file is finished when it holds ``segment_rows`` records (a
batch counts its rows and is never split: a file holds more only when one batch alone
does), when :meth:`compact` is called, or every ``compact_interval_s`` by the compaction
thread, which then compacts the finished files when the log has an artifact store and
``background_compaction`` is on. Off, the finished files wait for another process to
compact them (:func:`compact_folder`; ``gyre serve`` runs one such process beside its
workers, see ``gyre.predictions._compactor``), and :meth:`compact` and :meth:`close`
still compact in the calling thread. Each finished file becomes one Parquet
segment per partition, uploaded as a blob and recorded under a path derived from the file's
id; the file is deleted only after the manifests say so. A compaction that dies half-way is simply
run again: it produces the same paths, which replace the entries, never add rows. Spool
files of a process that died are picked up by the next compaction of any log on the same
folder, a torn last line cut off and counted.
"""

from __future__ import annotations

import atexit
import bisect
import collections
import contextlib
import gc
import io
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from gyre.artifacts import ArtifactStore
from gyre.errors import BackendUnavailable, GyreError, InvalidArgument
from gyre.predictions import _spool
from gyre.predictions._layout import Partition, record_partitions, segment_path
from gyre.predictions._record import (
    FeedbackResult,
    PredictionBatch,
    PredictionRecord,
    encode_batch,
    encode_feedback,
    encode_records,
)
from gyre.predictions._status import read_status

__all__ = ["Compaction", "PredictionLog", "compact_folder", "retried_later"]

logger = logging.getLogger("gyre.predictions")

_WAKE_BYTES = 4 * 1024 * 1024  # queued bytes that wake the writer before its tick
# Queued bytes at which append refuses: the disk has stopped keeping up.
_MAX_PENDING_BYTES = 256 * 1024 * 1024
_RECENT_IDS = 100_000  # rows whose ids are remembered to tell matched from unmatched labels
_REMEMBER_ROWS = 4096  # rows whose ids are gathered before they are remembered, in bulk


class PredictionLog:
    """The prediction log of one serving process, spooled in ``spool_dir``.

    ``artifacts``: where compaction puts the Parquet segments; without it the log only
    spools (compact later, from any process, with a log that has one).
    ``background_compaction``: whether the log's own thread compacts every
    ``compact_interval_s``; off, it only finishes the active file at that pace, for a
    process of its own to compact (it then takes nothing of this process's GIL).

    >>> log = PredictionLog("/var/spool/gyre", open_artifact_store("s3://ml/gyre"))
    >>> log.append([PredictionRecord("req-1", now_ms, "churn", 3, {"age": 42},
    ...                              {"prediction": 1, "proba": [0.2, 0.8]}, latency_ms=1.7)])
    >>> log.append_feedback("churn", [("req-1", 0)])
    FeedbackResult(accepted=1, matched=1, unmatched=0)
    >>> log.close()  # flush, compact, stop the threads
    """

    def __init__(
        self,
        spool_dir: str | Path,
        artifacts: ArtifactStore | None = None,
        *,
        sync_interval_ms: int = 100,
        segment_rows: int = 50_000,  # memory, not speed: see docs/predictions.md
        compact_interval_s: float = 30.0,
        background_compaction: bool = True,
    ) -> None:
        if isinstance(sync_interval_ms, bool) or not isinstance(sync_interval_ms, int):
            raise InvalidArgument(f"sync_interval_ms {sync_interval_ms!r} is not a whole number")
        if sync_interval_ms < 1:
            raise InvalidArgument(f"sync_interval_ms {sync_interval_ms!r} must be at least 1")
        if isinstance(segment_rows, bool) or not isinstance(segment_rows, int) or segment_rows < 1:
            raise InvalidArgument(f"segment_rows {segment_rows!r} must be a positive whole number")
        if not compact_interval_s > 0:
            raise InvalidArgument(f"compact_interval_s {compact_interval_s!r} must be positive")
        self.spool_dir = Path(spool_dir)
        self.artifacts = artifacts
        self.sync_interval_ms = sync_interval_ms
        self.segment_rows = segment_rows
        self.compact_interval_s = compact_interval_s

        self._lock = threading.Lock()  # the queue, the counters, the recent ids
        self._io_lock = threading.Lock()  # the spool writer: one write/fsync/rotation at a time
        self._compact_lock = threading.Lock()
        self._queue: list[bytes] = []
        self._queue_rows: list[int] = []  # the records each queued line holds
        self._queued_bytes = 0
        self._queued_since: float | None = None  # monotonic time of the oldest queued record
        self._writing_since: float | None = None  # ... of the oldest record being written
        self._appended = 0  # records (rows), like every count here; lines are not counted
        self._synced = 0
        # Recently logged ids: one-row ones as they are, a batch of n rows as its request id
        # and n (its rows are "<id>:<i>"), so that a batch costs one entry, not n strings.
        # append gathers them in _new_ids / _new_batches; every _REMEMBER_ROWS records
        # appended (and before labels are matched) they join the remembered ones as one
        # chunk, and the oldest chunks are forgotten while more than _RECENT_IDS rows are
        # remembered. They are kept in what Python's cyclic garbage collector leaves alone
        # (a dict of strings to None or ints, tuples of strings): a set of 100,000 ids costs
        # every full collection ~2.5 ms to walk, and a loaded server's worker, whose own
        # objects are frozen out of the collector, collects in full several times a second.
        self._recent: dict[str, None] = {}
        self._recent_batches: dict[str, int] = {}
        self._recent_chunks: collections.deque[tuple[tuple[str, ...], Any, int]]
        self._recent_chunks = collections.deque()
        self._recent_rows = 0
        self._new_ids: list[str] = []
        self._new_batches: list[tuple[str, int]] = []
        self._remember_at = _REMEMBER_ROWS  # the _appended count at which to remember them
        self._closed = False
        self._write_error: GyreError | None = None
        self._counts = Compaction()

        self._spool = _spool.SpoolWriter(self.spool_dir)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._writer = threading.Thread(
            target=self._write_loop, name="gyre-spool-writer", daemon=True
        )
        self.background_compaction = background_compaction and artifacts is not None
        # Finishes the active file every compact_interval_s, and compacts the finished
        # ones when background_compaction is on (else another process compacts them).
        self._compactor = threading.Thread(
            target=self._compact_loop, name="gyre-spool-compactor", daemon=True
        )
        self._writer.start()
        self._compactor.start()
        # At interpreter exit, write what is queued (a weak reference: never keeps us alive).
        self._atexit = _flush_at_exit(weakref.ref(self))
        atexit.register(self._atexit)

    def __repr__(self) -> str:
        return f"PredictionLog({str(self.spool_dir)!r}, {self.artifacts!r})"

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the request path ------------------------------------------------------------------

    def append(self, records: Sequence[PredictionRecord | PredictionBatch]) -> None:
        """Queue ``records`` for the spool and return at once (no I/O).

        A :class:`PredictionBatch` (one request's rows, column-wise) is one spool line,
        expanded into its rows only at compaction; it may be mixed with
        :class:`PredictionRecord` s. Batches of one call that share their model, version,
        variant, columns and array types share a line (see ``_record.encode_records``):
        log the requests answered together in one call. A :class:`PredictionGroup` (several
        requests, their arrays joined already) is one line too, and costs least.

        InvalidArgument naming a record that cannot be logged (nothing of the call is
        queued then); BackendUnavailable when the spool is far behind (the disk has stopped
        keeping up, or is full) rather than queueing without bound."""
        if len(records) == 1 and type(records[0]) is PredictionBatch:  # one request
            r = records[0]
            line, n = encode_batch(r)
            rid = r.request_id
            self._enqueue([line], [n], [rid] if n == 1 else [], None if n == 1 else [(rid, n)])
            return
        lines, counts, ids, batches = encode_records(records)
        if lines:
            self._enqueue(lines, counts, ids, batches)

    def append_feedback(
        self, model: str, labels: Sequence[tuple[str, Any]], timestamp_ms: int | None = None
    ) -> FeedbackResult:
        """Queue ground-truth ``labels`` (``(request_id, label)`` pairs) for ``model``'s
        earlier predictions; ``timestamp_ms`` (default: now) is when they were given.

        Labels are stored apart from the predictions (never rewriting them) and joined at
        query time, the latest label per request winning."""
        if not isinstance(model, str) or not model:
            raise InvalidArgument(f"model {model!r} of the labels is empty")
        if timestamp_ms is None:
            timestamp_ms = time.time_ns() // 1_000_000
        elif type(timestamp_ms) is not int:
            raise InvalidArgument(
                f"timestamp_ms {timestamp_ms!r} is not an int",
                hint="milliseconds since the epoch, e.g. time.time_ns() // 1_000_000",
            )
        pairs = list(labels)
        for pair in pairs:
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise InvalidArgument(f"label {pair!r} is not a (request_id, label) pair")
        lines = [encode_feedback(model, rid, label, timestamp_ms) for rid, label in pairs]
        if lines:
            self._enqueue(lines, [1] * len(lines), None, None)
        with self._lock:
            self._remember()
            missed = [rid for rid, _ in pairs if not self._seen(rid)]
            batches = self._recent_batches
            several = {rid: batches[rid] for rid in missed if rid in batches}
        matched = len(pairs) - len(missed)
        return FeedbackResult(len(lines), matched, len(lines) - matched, several)

    def _seen(self, request_id: str) -> bool:
        """Whether ``request_id`` names a remembered row: a one-row record or batch by its
        id, row i of a batch as ``<id>:<i>``. Called with the lock held."""
        if request_id in self._recent:
            return True
        batches = self._recent_batches
        if not batches:
            return False
        base, colon, index = request_id.rpartition(":")
        # Row numbers as the rows' ids spell them: ASCII digits, no leading zero.
        if not colon or not index.isascii() or not index.isdigit() or len(index) > 18:
            return False
        if index[0] == "0" and index != "0":
            return False
        rows = batches.get(base)
        return rows is not None and int(index) < rows

    def _enqueue(
        self,
        lines: list[bytes],
        counts: list[int],
        request_ids: list[str] | None,
        batches: list[tuple[str, int]] | None,
    ) -> None:
        """Queue ``lines`` holding ``counts`` records each; remember the ids of the one-row
        records and the ``(request id, rows)`` of the batches."""
        size = sum(map(len, lines))
        rows = sum(counts)
        with self._lock:
            if self._closed or self._queued_bytes + size > _MAX_PENDING_BYTES:
                self._refuse()
            if not self._queue:
                self._queued_since = time.monotonic()
            self._queue += lines
            self._queue_rows += counts
            self._queued_bytes += size
            self._appended += rows
            wake = self._queued_bytes >= _WAKE_BYTES
            if request_ids is not None:
                self._new_ids += request_ids
                if batches:
                    self._new_batches += batches
                if self._appended >= self._remember_at:
                    self._remember()
        if wake:
            self._wake.set()

    def _refuse(self) -> None:
        """Why nothing more can be queued: the log is closed, or the spool far behind.
        Called with the lock held."""
        if self._closed:
            raise InvalidArgument(
                f"the prediction log in {str(self.spool_dir)!r} is closed",
                hint="append before close()",
            )
        raise BackendUnavailable(
            f"the prediction spool in {str(self.spool_dir)!r} is "
            f"{self._queued_bytes // (1024 * 1024)} MiB behind"
            + (f": {self._write_error.message}" if self._write_error else ""),
            hint="the disk is full, failing or too slow; see PredictionLog.stats()",
        )

    def _remember(self) -> None:
        """Add the ids gathered since the last call to the remembered ones, as one chunk;
        forget the oldest chunks while more than ``_RECENT_IDS`` rows are remembered (a
        batch counts its rows). Called with the lock held."""
        self._remember_at = self._appended + _REMEMBER_ROWS
        ids, batches = self._new_ids, self._new_batches
        if not ids and not batches:
            return
        self._new_ids, self._new_batches = [], []
        rows = len(ids) + sum(n for _, n in batches)
        self._recent.update(dict.fromkeys(ids))
        if batches:
            self._recent_batches.update(batches)
        chunks = self._recent_chunks
        chunks.append((tuple(ids), tuple(batches), rows))
        self._recent_rows += rows
        while self._recent_rows > _RECENT_IDS and len(chunks) > 1:
            old_ids, old_batches, old_rows = chunks.popleft()
            forget_id = self._recent.pop
            for rid in old_ids:
                forget_id(rid, None)
            forget_batch = self._recent_batches.pop
            for rid, _ in old_batches:
                forget_batch(rid, None)
            self._recent_rows -= old_rows

    # -- the writer --------------------------------------------------------------------------

    def _write_loop(self) -> None:
        while not self._stop.is_set():
            due = self._due()
            if due > 0 and not self._wake.wait(due):
                continue  # (timed out: look again)
            self._wake.clear()
            try:
                self._write_queued()
                self._write_error = None
            except GyreError as exc:
                if self._write_error is None or exc.message != self._write_error.message:
                    logger.error("prediction spool: %s", exc)
                self._write_error = exc
                self._stop.wait(self.sync_interval_ms / 4000)  # then retry
            except Exception:  # never let the writer die: it is the durability
                logger.exception("prediction spool writer failed; retrying")
                self._stop.wait(self.sync_interval_ms / 4000)

    def _due(self) -> float:
        """Seconds until what is queued must be written: when the oldest of it has waited
        half the sync interval (the other half is headroom for the write, the fsync and a
        busy machine's scheduling). With nothing queued, a quarter interval: when to look
        again. (Every write ends in an fsync, whose cost on a busy server is mostly the
        file system's journal: writing every half interval rather than every quarter took
        a third of the prediction log's cost off a one-row load at 10,000 requests/s.)"""
        interval = self.sync_interval_ms / 1000
        with self._lock:
            since = self._queued_since
        if since is None:
            return interval / 4
        return since + interval / 2 - time.monotonic()

    def _write_queued(self, *, rotate: bool = False) -> None:
        """Write and fsync everything queued; finish the file if asked or full."""
        with self._io_lock:
            with self._lock:
                batch, self._queue = self._queue, []
                counts, self._queue_rows = self._queue_rows, []
                self._writing_since, self._queued_since = self._queued_since, None
                self._queued_bytes = 0
            # ends[i]: the records in lines 0..i, so that files are cut by records.
            ends = list(itertools.accumulate(counts))
            rows = ends[-1] if ends else 0
            done = 0  # lines written
            try:
                # File by file, so that none holds more than segment_rows records (unless
                # one batch alone does: a line is never split).
                while done < len(batch):
                    before = ends[done - 1] if done else 0
                    room = self.segment_rows - self._spool.rows
                    end = bisect.bisect_right(ends, before + room, lo=done)
                    if end == done:  # the next line does not fit
                        if self._spool.rows:
                            self._spool.close()  # fsyncs; the line starts the next file
                            continue
                        end = done + 1
                    self._spool.write(batch[done:end], ends[end - 1] - before)
                    done = end
                    if self._spool.rows >= self.segment_rows:
                        self._spool.close()  # fsyncs
                if rotate:
                    self._spool.close()
                elif batch:
                    self._spool.sync()
            except OSError as exc:
                if isinstance(exc, _spool.WriteFailed):
                    done += exc.written
                self._requeue(batch[done:], counts[done:], ends[done - 1] if done else 0)
                raise BackendUnavailable(
                    f"cannot write the prediction spool in {str(self.spool_dir)!r}: {exc}",
                    hint="check free space and permissions; queued records are kept",
                ) from None
            with self._lock:
                self._synced += rows
                self._writing_since = None

    def _requeue(self, lines: list[bytes], counts: list[int], done: int) -> None:
        """Put back the ``lines`` not written; ``done`` records were."""
        with self._lock:
            self._queue[:0] = lines
            self._queue_rows[:0] = counts
            self._queued_bytes += sum(map(len, lines))
            self._synced += done
            if self._writing_since is not None:
                self._queued_since = min(self._writing_since, self._queued_since or float("inf"))
            self._writing_since = None

    def flush(self) -> None:
        """Write and fsync everything appended so far, in this thread; when this returns
        it is on disk. BackendUnavailable if the spool cannot be written."""
        self._write_queued()

    def rotate(self) -> None:
        """:meth:`flush`, and finish the active spool file: the next compaction of the
        spool folder, by this process or another (a server's compactor, another worker's
        sync), takes what was appended so far."""
        with self._compact_lock:
            self._write_queued(rotate=True)

    # -- compaction ----------------------------------------------------------------------

    def compact(self) -> list[str]:
        """Finish the active spool file and turn every finished one in the spool folder
        (this log's, and those of processes that died) into Parquet segments in the
        artifact store; the segments' ``<scope>/<path>``.

        Queries see compacted segments only: call this first to include everything."""
        if self.artifacts is None:
            raise InvalidArgument(
                f"the prediction log in {str(self.spool_dir)!r} has no artifact store",
                hint="pass one to PredictionLog(spool_dir, artifacts) to compact",
            )
        with self._compact_lock:
            self._write_queued(rotate=True)
            return self._compact_finished(self.artifacts)

    def _compact_loop(self) -> None:
        while not self._stop.wait(self.compact_interval_s):
            with self._compact_lock, retried_later(self._counts):
                self._write_queued(rotate=True)
                if self.background_compaction and self.artifacts is not None:
                    self._compact_finished(self.artifacts)

    def _compact_finished(self, store: ArtifactStore) -> list[str]:
        return compact_folder(self.spool_dir, store, self._counts)

    # -- state -----------------------------------------------------------------------------

    def stats(self) -> dict[str, float]:
        """The spool's lag and counters, for metrics endpoints.

        - ``unsynced_records``: appended, not yet fsync'd; ``oldest_unsynced_ms``: how long
          the oldest of them has waited (0 when none). Past ``sync_interval_ms`` means the
          durability contract is not being met.
        - ``spool_files`` / ``spool_bytes``: what waits in the spool folder for compaction.
        - ``appended_records``, ``synced_records``, ``compacted_records``,
          ``segments_written``, ``torn_records``, ``damaged_lines``, ``compaction_failures``:
          totals since this log was opened.

        Records are rows (labels included): a batch of 64 rows counts 64. ``torn_records``
        and ``damaged_lines`` count spool lines, so a lost batch counts once.

        Where a compactor process compacts the folder (``gyre serve``; this log then has
        ``background_compaction=False`` and its own compaction counts stay 0 until it
        closes), its numbers are added as ``compactor_*`` (see
        :func:`gyre.predictions._status.read_status`).
        """
        now = time.monotonic()
        with self._lock:
            since = [t for t in (self._queued_since, self._writing_since) if t is not None]
            unsynced = self._appended - self._synced
            appended, synced = self._appended, self._synced
        files = _spool.spool_files(self.spool_dir)
        size = 0
        for f in files:
            with contextlib.suppress(FileNotFoundError):  # compacted meanwhile
                size += f.stat().st_size
        return {
            "unsynced_records": float(unsynced),
            "oldest_unsynced_ms": (now - min(since)) * 1000 if since else 0.0,
            "spool_files": float(len(files)),
            "spool_bytes": float(size),
            "appended_records": float(appended),
            "synced_records": float(synced),
            "compacted_records": float(self._counts.rows),
            "segments_written": float(self._counts.segments),
            "torn_records": float(self._counts.torn),
            "damaged_lines": float(self._counts.damaged),
            "compaction_failures": float(self._counts.failures),
            **(read_status(self.spool_dir) if not self.background_compaction else {}),
        }

    def close(self) -> None:
        """Stop taking records, flush, stop the threads and, with an artifact store, compact
        everything. If that compaction fails (the store is unreachable) the error is raised
        and the spool files stay for the next log on this folder to compact."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self._atexit)
        self._stop.set()
        self._wake.set()
        self._compactor.join()
        self._writer.join()
        with self._compact_lock:
            try:
                self._write_queued(rotate=True)
            finally:
                self._spool.abandon()  # closed already, unless writing failed
            if self.artifacts is not None:
                self._compact_finished(self.artifacts)


class Compaction:
    """What compactions of a spool folder did, added up (see :func:`compact_folder`)."""

    __slots__ = ("damaged", "failing", "failures", "indexed", "rows", "segments", "streak", "torn")

    def __init__(self) -> None:
        self.segments = 0  # Parquet segments written
        self.rows = 0  # records they hold
        self.torn = 0  # torn last lines cut off (a writer died mid-line)
        self.damaged = 0  # damaged lines skipped
        self.failures = 0  # compactions that failed (see retried_later)
        self.failing: str | None = None  # what the failing ones in a row failed with
        self.streak = 0  # how many failed in a row
        self.indexed: set[tuple[str, str]] = set()  # index entries known to be recorded


@contextlib.contextmanager
def retried_later(counts: Compaction) -> Iterator[None]:
    """Around a background compaction: a failure is logged and counted, not raised; the
    spool files stay for the next one. The same failure again (a store down for an hour)
    is one line each time, without the traceback; the first success after failures says
    so."""
    try:
        yield
    except Exception as exc:
        counts.failures += 1
        counts.streak += 1
        what = str(exc) if isinstance(exc, GyreError) else f"{type(exc).__name__}: {exc}"
        if what == counts.failing:
            logger.warning(
                "prediction log compaction failed again (%d in a row), will retry: %s",
                counts.streak,
                what,
            )
        elif isinstance(exc, GyreError):
            logger.warning("prediction log compaction failed, will retry: %s", what)
        else:
            logger.exception("prediction log compaction failed, will retry")
        counts.failing = what
    else:
        if counts.failing is not None:
            logger.info("prediction log compaction works again after %d failures", counts.streak)
        counts.failing, counts.streak = None, 0


def compact_folder(
    spool_dir: Path, store: ArtifactStore, counts: Compaction | None = None
) -> list[str]:
    """Turn every finished spool file in ``spool_dir`` (and those of processes that died)
    into Parquet segments in ``store``, deleting each file once its segments are recorded;
    the segments' ``<scope>/<path>``. Files other processes hold are left to them. Adds
    what it did to ``counts``, file by file (a failure half-way keeps what was counted)."""
    counts = Compaction() if counts is None else counts
    written: list[str] = []
    # closing(): a failure mid-way releases the file being compacted at once.
    with contextlib.closing(_spool.claim_finished(spool_dir)) as claimed_files:
        for claimed in claimed_files:
            written += _compact_one(store, claimed, counts)
    return written


def _compact_one(
    store: ArtifactStore, claimed: _spool.ClaimedSpool, counts: Compaction
) -> list[str]:
    from gyre.predictions._segments import build_segments, parquet_bytes

    with _collector_paused():  # (see there)
        contents = claimed.read()  # (a torn line is cut off the file here: count it now)
        counts.torn += contents.torn
        counts.damaged += contents.damaged
        segments = build_segments(claimed.spool_id, contents.lines)
        # The parsed lines, freed before the segments are written, and before the
        # collector resumes: freed objects leave its count, so it does not start by
        # walking all of them.
        del contents
    path = segment_path(claimed.spool_id)
    written: list[str] = []
    partitions: list[Partition] = []
    rows = 0
    for partition, table in segments:
        ref = store.put_blob(io.BytesIO(parquet_bytes(table)))
        store.append_manifest(partition.scope, {path: ref})
        written.append(f"{partition.scope}/{path}")
        partitions.append(partition)
        rows += table.num_rows
    record_partitions(store, partitions, counts.indexed)
    claimed.remove()  # only now: every segment is recorded
    counts.segments += len(written)
    counts.rows += rows
    return written


_paused = 0  # compactions running with the cyclic garbage collector paused
_paused_lock = threading.Lock()
_resume = False  # whether the collector was enabled when the first of them paused it


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a spool file is parsed and turned into
    tables: that makes some 100,000 objects per 50,000 one-row requests that all live until
    the end, and each of the collector's passes meanwhile walks every object of the
    process (a quarter of the compaction's time, measured). They hold no cycles: reference
    counting frees them. Other threads' cyclic garbage waits the fraction of a second."""
    global _paused, _resume
    with _paused_lock:
        if not _paused:
            _resume = gc.isenabled()
            gc.disable()
        _paused += 1
    try:
        yield
    finally:
        with _paused_lock:
            _paused -= 1
            if not _paused and _resume:
                gc.enable()


def _flush_at_exit(ref: weakref.ref[PredictionLog]) -> Callable[[], None]:
    def flush() -> None:
        log = ref()
        if log is not None:
            try:
                log.flush()
            except GyreError as exc:
                logger.error("prediction log: records lost at exit: %s", exc)

    return flush
