"""The prediction log's costs on this machine: append, writer throughput, sync lag, compaction.

    python benchmarks/predictions_log.py [--records 200000]

- append: the request path, per record, with one record per call (one request) and 100 per
  call (a batch), measured while the writer thread runs;
- writer throughput: records/s appended in a burst until all are written and fsync'd;
- sync lag under a steady load: how old the oldest not-yet-fsync'd record gets (sampled),
  against the contract of ``sync_interval_ms``;
- compaction and query: a full spool file to a Parquet segment in a folder store, and a
  DuckDB query over it.

Everything lives in a temporary folder removed at the end.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from gyre.artifacts import open_artifact_store
from gyre.predictions import PredictionLog, PredictionRecord, query

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
    with PredictionLog(folder, sync_interval_ms=50) as log:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    args = parser.parse_args()
    n = args.records
    with tempfile.TemporaryDirectory(prefix="gyre-bench-pl-") as tmp:
        root = Path(tmp)
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
        f"max {worst:.1f} ms (contract: 50 ms)"
    )
    print(f"compact 50k records:           {compact_s:.2f} s")
    print(f"query 50k records (cold):      {query_s:.2f} s")


if __name__ == "__main__":
    main()
