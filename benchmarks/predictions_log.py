"""The prediction log's costs on this machine: append, writer throughput, sync lag, compaction.

    python benchmarks/predictions_log.py [--records 200000] [--batches-only]

- append: the request path, per record, with one record per call (one request) and 100 per
  call (a batch), measured while the writer thread runs;
- writer throughput: records/s appended in a burst until all are written and fsync'd;
- sync lag under a steady load: how old the oldest not-yet-fsync'd record gets (sampled),
  against the contract of ``sync_interval_ms``;
- compaction and query: a full spool file to a Parquet segment in a folder store, and a
  DuckDB query over it;
- batches (what the prediction server logs: one PredictionBatch per request, a 2-D float64
  array of 20 columns and an int64 prediction, with or without a 2-wide ``proba``): the cost
  of ``append`` per call (the writer running, best of five rounds), the bytes of a 64-row
  spool line, the cost per request of ``append`` of a ``PredictionGroup`` of 64 one-row
  requests (how the server logs a loop turn's requests), and compaction per row of 64-row
  and 1-row requests (with ``proba``; 1-row ones a line each, and 64 a line),
  wall-clock and CPU of all threads, after a first small compaction (pyarrow imported, as
  in a server that has compacted before), best of three (one round for 500k rows).

``--batches-only`` skips the record measurements; the batch table is printed first, as
Markdown.

Everything lives in a temporary folder removed at the end.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gyre.artifacts import open_artifact_store
from gyre.predictions import (
    PredictionBatch,
    PredictionGroup,
    PredictionLog,
    PredictionRecord,
    query,
)

NOW_MS = time.time_ns() // 1_000_000


def record(i: int) -> PredictionRecord:
    return PredictionRecord(
        request_id=f"{i:032x}",
        timestamp_ms=NOW_MS + i,
        model="churn",
        version=3,
        inputs={"age": 20 + i % 50, "visits": i % 20, "city": "oslo", "income": 51234.5},
        outputs={"prediction": i % 2, "proba": [0.2, 0.8]},
        latency_ms=1.25,
    )


def append_cost(folder: Path, n: int, batch: int) -> float:
    """Microseconds per record of append(), the writer running alongside."""
    recs = [record(i) for i in range(n)]
    with PredictionLog(folder, sync_interval_ms=50) as log:
        start = time.perf_counter()
        for i in range(0, n, batch):
            log.append(recs[i : i + batch])
        elapsed = time.perf_counter() - start
    return elapsed / n * 1e6


def writer_throughput(folder: Path, n: int) -> float:
    """Records/s from the first append until the writer has fsync'd all ``n``."""
    recs = [record(i) for i in range(n)]
    with PredictionLog(folder, sync_interval_ms=50, segment_rows=10**9) as log:
        start = time.perf_counter()
        for i in range(0, n, 100):
            log.append(recs[i : i + 100])
        while log.stats()["synced_records"] < n:
            time.sleep(0.001)  # poll
        elapsed = time.perf_counter() - start
    return n / elapsed


def sync_lag(folder: Path, rate: int, seconds: float) -> tuple[float, float, float]:
    """p50, p99 and max of the oldest unsynced record's age (ms) at ``rate`` records/s."""
    samples: list[float] = []
    with PredictionLog(folder) as log:  # the default interval
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append(log.stats()["oldest_unsynced_ms"])
                time.sleep(0.002)

        sampler = threading.Thread(target=sample)
        sampler.start()
        start = time.perf_counter()
        sent = 0
        while (elapsed := time.perf_counter() - start) < seconds:
            due = int(elapsed * rate)
            if due > sent:
                log.append([record(i) for i in range(sent, due)])
                sent = due
            time.sleep(0.0005)
        stop.set()
        sampler.join()
    samples.sort()
    return (
        statistics.median(samples),
        samples[int(len(samples) * 0.99)],
        samples[-1],
    )


def compaction(folder: Path, rows: int) -> tuple[float, float]:
    """Seconds to compact ``rows`` records into a folder store, and to query them."""
    store = open_artifact_store(str(folder / "artifacts"))
    with PredictionLog(folder / "spool", store, segment_rows=rows) as log:
        log.append([record(i) for i in range(rows)])
        log.flush()
        start = time.perf_counter()
        log.compact()
        compact_s = time.perf_counter() - start
    start = time.perf_counter()
    table = query(store, "churn", cache_dir=folder / "cache")
    assert table.num_rows == rows
    return compact_s, time.perf_counter() - start


COLUMNS = tuple(f"f{i}" for i in range(20))


def batches(calls: int, rows: int, *, proba: bool, prefix: str = "r") -> list[PredictionBatch]:
    """``calls`` requests of ``rows`` rows as the server logs them, each with its own arrays."""
    rng = np.random.default_rng(7)
    x = rng.random((calls * rows, 20))
    predictions = rng.integers(0, 2, calls * rows)
    p = rng.random(calls * rows)
    made = []
    for i in range(calls):
        rows_of = slice(i * rows, (i + 1) * rows)
        outputs = {"prediction": predictions[rows_of].copy()}
        if proba:
            outputs["proba"] = np.stack([1 - p[rows_of], p[rows_of]], axis=1)
        made.append(
            PredictionBatch(
                f"{prefix}{i:032x}",
                NOW_MS + i,
                "churn",
                3,
                x[rows_of].copy(),
                outputs,
                1.25,
                columns=COLUMNS,
            )
        )
    return made


def batch_append_cost(folder: Path, rows: int, calls: int, *, proba: bool) -> float:
    """Microseconds per ``append([batch])`` of ``rows`` rows, the writer running alongside:
    the best of five rounds of ``calls`` calls."""
    return _best_append(
        folder, lambda round_: batches(calls, rows, proba=proba, prefix=f"r{round_}-"), calls
    )


def group_append_cost(folder: Path, requests: int, calls: int) -> float:
    """Microseconds per request of ``append([group])``, a group of ``requests`` one-row
    requests (their arrays joined, as the server logs the requests of one loop turn), the
    writer running alongside: the best of five rounds of ``calls`` calls."""

    def made(round_: int) -> list[PredictionGroup]:
        return [
            _group(batches(requests, 1, proba=True, prefix=f"r{round_}-{c}-")) for c in range(calls)
        ]

    return _best_append(folder, made, calls * requests)


def _best_append(folder: Path, make: Callable[[int], Sequence[Any]], per: int) -> float:
    """Microseconds per ``per`` of appending what ``make(round)`` makes, one call each:
    the best of five rounds (made before each is timed), the writer running alongside."""
    best = float("inf")
    with PredictionLog(folder, segment_rows=10**9) as log:
        for round_ in range(5):
            made = make(round_)
            append = log.append
            start = time.perf_counter()
            for record in made:
                append((record,))
            best = min(best, time.perf_counter() - start)
            log.flush()
    return best / per * 1e6


def _group(made: list[PredictionBatch]) -> PredictionGroup:
    return PredictionGroup(
        [b.request_id for b in made],
        [b.timestamp_ms for b in made],
        "churn",
        3,
        np.concatenate([b.inputs for b in made]),
        {k: np.concatenate([b.outputs[k] for b in made]) for k in made[0].outputs},
        [b.latency_ms for b in made],
        columns=COLUMNS,
    )


def line_bytes(folder: Path, rows: int, *, proba: bool) -> int:
    """The bytes of one spool line holding a request of ``rows`` rows."""
    with PredictionLog(folder) as log:
        log.append(batches(1, rows, proba=proba))
    (path,) = folder.glob("*.jsonl")
    return len(path.read_bytes().splitlines(keepends=True)[1])


def batch_compaction(
    folder: Path, rows: int, per_request: int, rounds: int, per_call: int = 1
) -> tuple[float, float]:
    """Microseconds per row, wall-clock and CPU (all threads), to compact about ``rows`` rows
    logged as requests of ``per_request`` rows (20 float64 inputs, an int64 prediction and
    a 2-wide proba each), ``per_call`` requests per ``append`` call (one spool line per
    call), into a folder store: the best of ``rounds``, after a first small compaction
    (pyarrow imported, as in a server that has compacted once)."""
    store = open_artifact_store(str(folder / "artifacts"))
    best_wall = best_cpu = float("inf")
    with PredictionLog(folder / "spool", store, segment_rows=10**9) as log:
        log.append(batches(10, per_request, proba=True, prefix="warm-"))
        log.compact()
        for round_ in range(rounds):
            logged = 0
            while logged < rows:
                calls = min(50_000, rows - logged) // per_request or 1
                prefix = f"c{round_}-{logged}-"
                made = batches(calls, per_request, proba=True, prefix=prefix)
                for i in range(0, len(made), per_call):
                    log.append(made[i : i + per_call])
                log.flush()
                logged += calls * per_request
            before = log.stats()["compacted_records"]
            wall, cpu = time.perf_counter(), time.process_time()
            log.compact()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            assert log.stats()["compacted_records"] - before == logged
            best_wall = min(best_wall, wall / logged * 1e6)
            best_cpu = min(best_cpu, cpu / logged * 1e6)
    return best_wall, best_cpu


def batch_table(root: Path) -> list[tuple[str, str]]:
    def compaction(name: str, rows: int, per_request: int, rounds: int, per_call: int = 1) -> str:
        wall, cpu = batch_compaction(root / name, rows, per_request, rounds, per_call)
        return f"{wall:.2f} µs/row ({cpu:.2f} µs CPU)"

    return [
        ("append, 1-row batch", f"{batch_append_cost(root / 'b1', 1, 20_000, proba=False):.2f} µs"),
        (
            "append, 64-row batch",
            f"{batch_append_cost(root / 'b64', 64, 2_000, proba=False):.1f} µs",
        ),
        (
            "append, 64-row batch + proba",
            f"{batch_append_cost(root / 'b64p', 64, 2_000, proba=True):.1f} µs",
        ),
        ("bytes of a 64-row line", f"{line_bytes(root / 'l64', 64, proba=False):,}"),
        ("bytes of a 64-row line + proba", f"{line_bytes(root / 'l64p', 64, proba=True):,}"),
        ("compact 50k rows, 64-row requests", compaction("c1", 50_000, 64, 3)),
        ("compact 500k rows, 64-row requests", compaction("c2", 500_000, 64, 1)),
        ("compact 50k rows, 1-row requests", compaction("c3", 50_000, 1, 3)),
        (
            "append, 64 1-row requests as a group + proba",
            f"{group_append_cost(root / 'g64', 64, 300):.2f} µs/request",
        ),
        (
            "compact 50k rows, 1-row requests, 64 a line",
            compaction("c4", 50_000, 1, 3, per_call=64),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batches-only", action="store_true")
    args = parser.parse_args()
    n = args.records
    with tempfile.TemporaryDirectory(prefix="gyre-bench-pl-") as tmp:
        root = Path(tmp)
        table = batch_table(root)
        width = max(len(name) for name, _ in table)
        print(f"| {'batches (20 float64 columns, int64 prediction)':<{width}} | result |")
        print(f"|{'-' * (width + 2)}|--------|")
        for name, value in table:
            print(f"| {name:<{width}} | {value} |")
        if args.batches_only:
            return
        one = append_cost(root / "a1", n, 1)
        hundred = append_cost(root / "a100", n, 100)
        throughput = writer_throughput(root / "w", n)
        p50, p99, worst = sync_lag(root / "lag", rate=5000, seconds=5.0)
        compact_s, query_s = compaction(root / "c", 50_000)
    print(f"append, 1 record per call:     {one:6.2f} µs/record")
    print(f"append, 100 records per call:  {hundred:6.2f} µs/record")
    print(f"writer throughput (+fsync):    {throughput:,.0f} records/s")
    print(
        f"oldest unsynced at 5k rec/s:   p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
        f"max {worst:.1f} ms (contract: 100 ms)"
    )
    print(f"compact 50k records:           {compact_s:.2f} s")
    print(f"query 50k records (cold):      {query_s:.2f} s")


if __name__ == "__main__":
    main()
