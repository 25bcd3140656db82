"""Prometheus metrics of the prediction server.

Series (labels in brackets)::

    gyre_serving_requests_total{model,version,endpoint,status}   every answered request
    gyre_serving_errors_total{model,version,endpoint,status}     those answered >= 400
    gyre_serving_request_seconds{model,version,endpoint}         latency histogram
    gyre_serving_batch_rows{model,version}                       rows per predict call
    gyre_serving_queue_rows{model,version}                       rows waiting to be batched
    gyre_serving_inflight_requests                               requests being handled
    gyre_serving_rows_total{model,version,endpoint}              rows scored (predict, infer, batch)
    gyre_serving_variant_requests_total{model,version,variant}   requests routed, by variant
                                                                 (primary, canary, shadow)
    gyre_serving_shadow_total{model,version,outcome}             mirrored requests: ok, failed,
                                                                 timeout, dropped
    gyre_serving_reloads_total{model,alias,outcome}              alias moves: swapped, failed
    gyre_serving_reload_failing{model,alias}                     1 while the alias points at a
                                                                 version that failed to load
    gyre_serving_sync_total{outcome}                             edge syncs: ok, failed
    gyre_prediction_log_unsynced_records                         logged, not yet synced to disk
    gyre_prediction_log_oldest_unsynced_seconds                  the sync lag (the worst worker)
    gyre_prediction_log_spool_files, ..._spool_bytes             the backlog of compaction
    gyre_prediction_log_{appended,synced}_records_total          totals of the workers' logs
    gyre_prediction_log_compactor_compacted_records_total        the compactor process's work
                                                                 (and its other numbers)

``model`` is empty for requests that named no served model, so unknown names cannot blow
up the label set.

The per-request and per-batch series (requests, errors, latency, rows per batch, routing,
queue and in-flight gauges) are counted in plain Python on the event loop and handed to
the Prometheus client in bulk by :meth:`Telemetry.flush`: before every scrape of this
process, and every second by the app (so other workers' numbers are at most a second old
in a scrape). A Prometheus update costs about a microsecond, several per request; the
local count a tenth of that.

With ``PROMETHEUS_MULTIPROC_DIR`` set (``gyre serve --workers N`` sets it to a fresh
folder), counters and histograms are summed over all workers; the gauges are summed over
the live workers (the log's lag and the spool folder they share: the largest); the gauges of
a worker that died without stopping (SIGKILL) are dropped at the next scrape. The
compactor's numbers come from its status file, the same whichever worker answers.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from typing import Any, cast

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from gyre.predictions._status import process_alive

__all__ = ["CONTENT_TYPE", "Telemetry"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_SCORING = frozenset({"predict", "infer", "batch"})  # endpoints whose rows are predictions
_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
)  # fmt: skip
_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)


class _Observed:
    """Observations of one histogram child since the last flush: how many, their sum, and
    how many fell in each bucket (the last one: above every bound)."""

    __slots__ = ("buckets", "count", "total")

    def __init__(self, bounds: int) -> None:
        self.count = 0
        self.total = 0.0
        self.buckets = [0] * (bounds + 1)

    def add_to(self, child: Any) -> None:
        """Add these observations to a ``prometheus_client`` histogram child at once: its
        sum and per-bucket values (``_sum``, ``_buckets``: what ``observe`` increments; the
        client has no public bulk update, and the serving tests read the series back)."""
        child._sum.inc(self.total)
        for value, count in zip(child._buckets, self.buckets, strict=True):
            if count:
                value.inc(count)


# PredictionLog.stats() of each worker, as series summed (or, for the spool folder the
# workers share and for lag, the largest) over the live workers: key -> (name, help, mode,
# scale to base units).
_LOG_GAUGES = {
    "unsynced_records": ("gyre_prediction_log_unsynced_records",
                         "Predictions logged and not yet synced to disk.", "livesum", 1.0),
    "oldest_unsynced_ms": ("gyre_prediction_log_oldest_unsynced_seconds",
                           "How long the oldest prediction not yet synced to disk has waited "
                           "(the longest of the workers).", "livemax", 0.001),
    "spool_files": ("gyre_prediction_log_spool_files",
                    "Spool files waiting to be compacted into Parquet segments.", "livemax", 1.0),
    "spool_bytes": ("gyre_prediction_log_spool_bytes",
                    "Bytes of the spool files waiting to be compacted.", "livemax", 1.0),
}  # fmt: skip
# Totals of each worker's log, summed over all workers: key -> help.
_LOG_TOTALS = {
    "appended_records": "Predictions (rows) and labels appended to the prediction log.",
    "synced_records": "Predictions (rows) and labels synced to disk.",
    "compacted_records": "Records compacted by the workers themselves (gyre serve leaves "
    "compaction to its compactor process: see gyre_prediction_log_compactor_*).",
    "segments_written": "Parquet segments written by the workers themselves.",
    "torn_records": "Records lost in a torn spool line (a crash mid-write).",
    "damaged_lines": "Spool lines that could not be read at compaction.",
    "compaction_failures": "Compactions by the workers that failed (retried later).",
}
# The compactor process's numbers (from its status file, the same whichever worker is
# asked): stats() key -> (name, help, counter or gauge).
_COMPACTOR = {
    "compactor_compacted_records": ("gyre_prediction_log_compactor_compacted_records",
                                    "Records the compactor process wrote into Parquet "
                                    "segments.", "counter"),
    "compactor_segments_written": ("gyre_prediction_log_compactor_segments_written",
                                   "Parquet segments the compactor process wrote.", "counter"),
    "compactor_torn_records": ("gyre_prediction_log_compactor_torn_records",
                               "Torn spool records the compactor process found.", "counter"),
    "compactor_damaged_lines": ("gyre_prediction_log_compactor_damaged_lines",
                                "Damaged spool lines the compactor process found.", "counter"),
    "compactor_failures": ("gyre_prediction_log_compactor_failures",
                           "Compaction runs that failed (retried later).", "counter"),
    "compactor_runs": ("gyre_prediction_log_compactor_runs",
                       "Compaction runs of the compactor process.", "counter"),
    "compactor_last_run_age_s": ("gyre_prediction_log_compactor_last_run_age_seconds",
                                 "Seconds since the compactor process last ran.", "gauge"),
    "compactor_last_run_failed": ("gyre_prediction_log_compactor_last_run_failed",
                                  "1 when the compactor's last run failed (the artifact store "
                                  "unreachable, say).", "gauge"),
    "compactor_processes": ("gyre_prediction_log_compactor_processes",
                            "Compactor processes reporting for this spool folder.", "gauge"),
}  # fmt: skip


class _CompactorStats(Collector):
    """The compactor process's numbers as of the last :meth:`Telemetry.flush_log` (which
    runs before every scrape), read from its status file: the same in every worker, so they are
    reported by whichever answers rather than summed."""

    def __init__(self) -> None:
        self.latest: Mapping[str, Any] = {}

    def collect(self) -> Iterator[Metric]:
        for key, (name, doc, kind) in _COMPACTOR.items():
            value = self.latest.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            family = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(name, doc)
            family.add_metric([], float(value))
            yield family


class _WithoutCreated:
    """``registry``'s families without their ``*_created`` samples (what
    ``prometheus_client.disable_created_metrics`` does, for this registry alone: that switch
    is the whole process's)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family


def _dead_worker_pids(folder: str) -> set[int]:
    """The processes that left live gauge files in the multiprocess ``folder`` and are gone
    (a worker killed with SIGKILL never removes its own)."""
    pids = set()
    for entry in os.scandir(folder):
        found = _LIVE_FILE.fullmatch(entry.name)
        if found is None:
            continue
        pid = int(found.group(1))
        if not process_alive(pid):
            pids.add(pid)
    return pids


_LIVE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


class Telemetry:
    """The app's metrics; children are cached so the hot path skips ``labels()``."""

    def __init__(self, log_stats: Callable[[], Mapping[str, Any]] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self._requests = Counter(
            "gyre_serving_requests",
            "Requests answered.",
            ["model", "version", "endpoint", "status"],
            registry=reg,
        )
        self._errors = Counter(
            "gyre_serving_errors",
            "Requests answered with a status >= 400.",
            ["model", "version", "endpoint", "status"],
            registry=reg,
        )
        self._latency = Histogram(
            "gyre_serving_request_seconds",
            "Time from receiving a request to its last response byte.",
            ["model", "version", "endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self._batch_rows = Histogram(
            "gyre_serving_batch_rows",
            "Rows in each predict call (micro-batches of coalesced requests).",
            ["model", "version"],
            buckets=_ROW_BUCKETS,
            registry=reg,
        )
        self._queue_rows = Gauge(
            "gyre_serving_queue_rows",
            "Rows waiting for a predict call.",
            ["model", "version"],
            registry=reg,
            multiprocess_mode="livesum",
        )
        self._inflight = Gauge(
            "gyre_serving_inflight_requests",
            "Requests being handled.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self._rows = Counter(
            "gyre_serving_rows",
            "Rows scored.",
            ["model", "version", "endpoint"],
            registry=reg,
        )
        self._variants = Counter(
            "gyre_serving_variant_requests",
            "Prediction requests routed to each version, by variant (primary, canary, shadow).",
            ["model", "version", "variant"],
            registry=reg,
        )
        self._shadow = Counter(
            "gyre_serving_shadow",
            "Requests mirrored to a shadow version, by outcome (ok, failed, timeout, dropped).",
            ["model", "version", "outcome"],
            registry=reg,
        )
        self._reloads = Counter(
            "gyre_serving_reloads",
            "Versions loaded after an alias moved, by outcome (swapped, failed).",
            ["model", "alias", "outcome"],
            registry=reg,
        )
        self._reload_failing = Gauge(
            "gyre_serving_reload_failing",
            "1 while an alias points at a version that failed to load (the old one serves).",
            ["model", "alias"],
            registry=reg,
            multiprocess_mode="livemax",
        )
        self._syncs = Counter(
            "gyre_serving_sync",
            "Edge syncs of the prediction log to the central store, by outcome (ok, failed).",
            ["outcome"],
            registry=reg,
        )
        self._log_source = log_stats
        self._log_lock = threading.Lock()  # (flush_log runs in threads: totals by deltas)
        self._log_gauges: dict[str, Any] = {}
        self._log_totals: dict[str, Any] = {}
        self._log_seen: dict[str, float] = {}  # the totals as last handed over
        self._compactor: _CompactorStats | None = None
        if log_stats is not None:
            for key, (name, doc, mode, _) in _LOG_GAUGES.items():
                self._log_gauges[key] = Gauge(
                    name, doc, registry=reg, multiprocess_mode=cast(Any, mode)
                )
            for key, doc in _LOG_TOTALS.items():
                self._log_totals[key] = Counter(f"gyre_prediction_log_{key}", doc, registry=reg)
            self._compactor = _CompactorStats()
            reg.register(self._compactor)
        self._cache: dict[tuple[object, ...], Any] = {}
        # Counted since the last flush (event loop thread only), see the module docstring.
        self._done: dict[tuple[str, str, str, int], _Observed] = {}
        self._batches: dict[tuple[str, str], _Observed] = {}
        self._routes: dict[tuple[str, str, str], int] = {}
        self._queues: dict[tuple[str, str], int] = {}
        self._scored: dict[tuple[str, str, str], int] = {}
        self._inflight_now = 0
        self._inflight_seen = 0

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._cache.get(key)
        if child is None:
            child = self._cache[key] = metric.labels(*labels)
        return child

    def request_done(
        self, model: str, version: str, endpoint: str, status: int, seconds: float, rows: int = 0
    ) -> None:
        """A request answered; ``rows``: the rows it had scored (predictions, not labels),
        counted when it succeeded."""
        key = (model, version, endpoint, status)
        seen = self._done.get(key)
        if seen is None:
            seen = self._done[key] = _Observed(len(_LATENCY_BUCKETS))
        seen.count += 1
        seen.total += seconds
        seen.buckets[bisect_left(_LATENCY_BUCKETS, seconds)] += 1
        if rows and status < 400 and endpoint in _SCORING:
            where = (model, version, endpoint)
            self._scored[where] = self._scored.get(where, 0) + rows

    def batch(self, model: str, version: str, rows: int) -> None:
        key = (model, version)
        seen = self._batches.get(key)
        if seen is None:
            seen = self._batches[key] = _Observed(len(_ROW_BUCKETS))
        seen.count += 1
        seen.total += rows
        seen.buckets[bisect_left(_ROW_BUCKETS, rows)] += 1

    def queue(self, model: str, version: str, rows: int) -> None:
        self._queues[(model, version)] = rows

    def routed(self, model: str, version: str, variant: str) -> None:
        key = (model, version, variant)
        self._routes[key] = self._routes.get(key, 0) + 1

    def flush(self) -> None:
        """Hand what was counted since the last flush to the Prometheus client. Call it on
        the event loop's thread (where the counting happens)."""
        done, self._done = self._done, {}
        batches, self._batches = self._batches, {}
        routes, self._routes = self._routes, {}
        queues, self._queues = self._queues, {}
        scored, self._scored = self._scored, {}
        for (model, version, endpoint, status), seen in done.items():
            code = str(status)
            self._child(self._requests, model, version, endpoint, code).inc(seen.count)
            if status >= 400:
                self._child(self._errors, model, version, endpoint, code).inc(seen.count)
            seen.add_to(self._child(self._latency, model, version, endpoint))
        for (model, version), seen in batches.items():
            seen.add_to(self._child(self._batch_rows, model, version))
        for (model, version, endpoint), rows in scored.items():
            self._child(self._rows, model, version, endpoint).inc(rows)
        for (model, version, variant), count in routes.items():
            self._child(self._variants, model, version, variant).inc(count)
        for (model, version), rows in queues.items():
            self._child(self._queue_rows, model, version).set(rows)
        if self._inflight_now != self._inflight_seen:
            self._inflight.set(self._inflight_now)
            self._inflight_seen = self._inflight_now

    def flush_log(self) -> None:
        """Hand the prediction log's numbers (``stats()``: it lists the spool folder) to the
        Prometheus client. File I/O: call it off the event loop; any thread may."""
        if self._log_source is None:
            return
        with self._log_lock:
            try:
                stats = self._log_source()
            except Exception:  # metrics must not fail because the log could not answer
                return
            self._hand_over(stats)

    def _hand_over(self, stats: Mapping[str, Any]) -> None:
        for key, (_, _, _, scale) in _LOG_GAUGES.items():
            value = stats.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                self._log_gauges[key].set(float(value) * scale)
        seen = self._log_seen
        for key, counter in self._log_totals.items():
            value = stats.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                if value > seen.get(key, 0.0):
                    counter.inc(value - seen.get(key, 0.0))
                seen[key] = float(value)
        if self._compactor is not None:
            self._compactor.latest = stats

    def shadowed(self, model: str, version: str, outcome: str) -> None:
        self._child(self._shadow, model, version, outcome).inc()

    def reloaded(self, model: str, alias: str, outcome: str) -> None:
        self._child(self._reloads, model, alias, outcome).inc()

    def reload_failing(self, model: str, alias: str, failing: bool) -> None:
        self._child(self._reload_failing, model, alias).set(1 if failing else 0)

    def synced(self, outcome: str) -> None:
        self._child(self._syncs, outcome).inc()

    def inflight(self, delta: int) -> None:
        self._inflight_now += delta

    def render(self) -> bytes:
        """The exposition text: this process's series, or every worker's in multiprocess
        mode; either way without ``*_created`` series (the client's multiprocess mode has
        none, and a scrape must list the same series whatever the number of workers)."""
        if not os.environ.get(MULTIPROC_ENV):
            return generate_latest(_WithoutCreated(self.registry))
        from prometheus_client import multiprocess

        for pid in _dead_worker_pids(os.environ[MULTIPROC_ENV]):
            # (two workers scraped at once may both remove the same files)
            with contextlib.suppress(FileNotFoundError):
                multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        if self._compactor is not None:
            registry.register(self._compactor)
        return generate_latest(_WithoutCreated(registry))

    @staticmethod
    def process_exited() -> None:
        """Drop this worker's live gauges from the shared folder (multiprocess mode)."""
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
