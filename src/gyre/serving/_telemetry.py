"""Prometheus metrics of the prediction server.

Series (labels in brackets)::

    gyre_serving_requests_total{model,version,endpoint,status}   every answered request
    gyre_serving_errors_total{model,version,endpoint,status}     those answered >= 400
    gyre_serving_request_seconds{model,version,endpoint}         latency histogram
    gyre_serving_batch_rows{model,version}                       rows per predict call
    gyre_serving_queue_rows{model,version}                       rows waiting to be batched
    gyre_serving_inflight_requests                               requests being handled
    gyre_serving_rows_total{model,version,endpoint}              rows scored
    gyre_serving_variant_requests_total{model,version,variant}   requests routed, by variant
                                                                 (primary, canary, shadow)
    gyre_serving_shadow_total{model,version,outcome}             mirrored requests: ok, failed,
                                                                 timeout, dropped
    gyre_serving_reloads_total{model,alias,outcome}              alias moves: swapped, failed
    gyre_serving_reload_failing{model,alias}                     1 while the alias points at a
                                                                 version that failed to load
    gyre_serving_sync_total{outcome}                             edge syncs: ok, failed
    gyre_prediction_log{stat,pid}                                numbers from PredictionLog.stats()

``model`` is empty for requests that named no served model, so unknown names cannot blow
up the label set.

The per-request and per-batch series (requests, errors, latency, rows per batch, routing,
queue and in-flight gauges) are counted in plain Python on the event loop and handed to
the Prometheus client in bulk by :meth:`Telemetry.flush`: before every scrape of this
process, and every second by the app (so other workers' numbers are at most a second old
in a scrape). A Prometheus update costs about a microsecond, several per request; the
local count a tenth of that.

With ``PROMETHEUS_MULTIPROC_DIR`` set (``gyre serve --workers N`` sets it to a fresh
folder), counters and histograms are summed over all workers; the two gauges are summed
over live workers, and ``gyre_prediction_log`` reports the worker that answered the scrape
(its ``pid`` label says which).
"""

from __future__ import annotations

import os
import re
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "Telemetry"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

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


class _LogStats(Collector):
    """Reads ``stats()`` of the prediction log at scrape time."""

    def __init__(self, stats: Callable[[], Mapping[str, Any]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "gyre_prediction_log",
            "Prediction log spool statistics (PredictionLog.stats()), per worker.",
            labels=["stat", "pid"],
        )
        try:
            stats = self._stats()
        except Exception:  # a scrape must not fail because the log could not answer
            stats = {}
        pid = str(os.getpid())
        for key, value in stats.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            family.add_metric([re.sub(r"[^a-zA-Z0-9_]", "_", str(key)), pid], float(value))
        yield family


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
        self._log_stats = _LogStats(log_stats) if log_stats is not None else None
        if self._log_stats is not None:
            reg.register(self._log_stats)
        self._cache: dict[tuple[object, ...], Any] = {}
        # Counted since the last flush (event loop thread only), see the module docstring.
        self._done: dict[tuple[str, str, str, int], _Observed] = {}
        self._batches: dict[tuple[str, str], _Observed] = {}
        self._routes: dict[tuple[str, str, str], int] = {}
        self._queues: dict[tuple[str, str], int] = {}
        self._inflight_now = 0
        self._inflight_seen = 0

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._cache.get(key)
        if child is None:
            child = self._cache[key] = metric.labels(*labels)
        return child

    def request_done(
        self, model: str, version: str, endpoint: str, status: int, seconds: float
    ) -> None:
        key = (model, version, endpoint, status)
        seen = self._done.get(key)
        if seen is None:
            seen = self._done[key] = _Observed(len(_LATENCY_BUCKETS))
        seen.count += 1
        seen.total += seconds
        seen.buckets[bisect_left(_LATENCY_BUCKETS, seconds)] += 1

    def rows_scored(self, model: str, version: str, endpoint: str, rows: int) -> None:
        self._child(self._rows, model, version, endpoint).inc(rows)

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
        for (model, version, endpoint, status), seen in done.items():
            code = str(status)
            self._child(self._requests, model, version, endpoint, code).inc(seen.count)
            if status >= 400:
                self._child(self._errors, model, version, endpoint, code).inc(seen.count)
            seen.add_to(self._child(self._latency, model, version, endpoint))
        for (model, version), seen in batches.items():
            seen.add_to(self._child(self._batch_rows, model, version))
        for (model, version, variant), count in routes.items():
            self._child(self._variants, model, version, variant).inc(count)
        for (model, version), rows in queues.items():
            self._child(self._queue_rows, model, version).set(rows)
        if self._inflight_now != self._inflight_seen:
            self._inflight.set(self._inflight_now)
            self._inflight_seen = self._inflight_now

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
        """The exposition text: this process's series, or every worker's in multiprocess mode."""
        if not os.environ.get(MULTIPROC_ENV):
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        if self._log_stats is not None:
            registry.register(self._log_stats)
        return generate_latest(registry)

    @staticmethod
    def process_exited() -> None:
        """Drop this worker's live gauges from the shared folder (multiprocess mode)."""
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
