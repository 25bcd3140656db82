"""Deployments for the dashboard: traffic of a registered model, from its prediction log.

``GET /deployments/{name}?since_ms=&until_ms=&bucket_s=`` reads the model's logged
predictions in ``[since, until)`` (``gyre.predictions.query``, compacted segments only) and
answers, per version and variant (``primary``, ``canary``, ``shadow``): requests, requests
per second, latency percentiles (p50/p95/p99 of ``latency_ms``, numpy's linear
interpolation), and requests and p95 latency per time bucket; plus the canary's share of
the answered requests (primary + canary; shadow copies are never answered).

The log holds answered predictions only: failed requests are not in it. Error rates come
from the serving processes themselves: with ``GYRE_SERVING_URLS`` set, the endpoint reads
each server's ``/metrics`` (``gyre_serving_requests_total`` and ``gyre_serving_errors_total``,
counted since that process started) and answers requests, errors and the error rate per
version of the model (``errors.versions``; version ``""``: requests refused before a version
took them, such as a body over the limit), and each server's state (``errors.servers``: a
server that cannot be read is listed with why, never counted as zero). Without servers
configured, ``errors.recorded`` is false and ``errors.note`` says where errors are counted.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query
from fastapi.params import Depends

from gyre import config
from gyre.artifacts._protocol import ArtifactStore
from gyre.errors import InvalidArgument
from gyre.server._responses import JSON
from gyre.store._protocol import RegistryStore

__all__ = [
    "ERRORS_NOTE",
    "MAX_BUCKETS",
    "deployments_router",
    "serving_errors",
    "time_range",
]

MAX_BUCKETS = 2000
DEFAULT_RANGE_MS = 3_600_000
PERCENTILES = (50, 95, 99)
SCRAPE_TIMEOUT_S = 2.0
ERRORS_NOTE = (
    "The prediction log records answered predictions only, so failed requests are not in it "
    "and no error rate can be computed from it. Each serving process counts them in "
    "gyre_serving_errors_total{model,version,endpoint,status} at its /metrics endpoint; "
    "set GYRE_SERVING_URLS to read them here."
)


def serving_errors(model: str, urls: list[str]) -> dict[str, Any]:
    """Requests and errors per version of ``model``, summed over the serving processes at
    ``urls`` (their Prometheus counters, since each process started)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    if not urls:
        return {"recorded": False, "note": ERRORS_NOTE}
    versions: dict[str, dict[str, float | None]] = {}
    servers: list[dict[str, Any]] = []
    for url in urls:
        try:
            answer = httpx.get(url.rstrip("/") + "/metrics", timeout=SCRAPE_TIMEOUT_S)
            answer.raise_for_status()
            families = list(text_string_to_metric_families(answer.text))
        except (httpx.HTTPError, ValueError) as exc:
            servers.append({"url": url, "ok": False, "error": f"{type(exc).__name__}: {exc}"})
            continue
        servers.append({"url": url, "ok": True})
        for family in families:
            if family.name not in ("gyre_serving_requests", "gyre_serving_errors"):
                continue
            key = "requests" if family.name == "gyre_serving_requests" else "errors"
            for sample in family.samples:
                if not sample.name.endswith("_total") or sample.labels.get("model") != model:
                    continue
                row = versions.setdefault(
                    sample.labels.get("version", "?"), {"requests": 0.0, "errors": 0.0}
                )
                row[key] = (row[key] or 0.0) + sample.value
    for row in versions.values():
        requests, errors = row["requests"] or 0.0, row["errors"] or 0.0
        row["error_rate"] = errors / requests if requests else None
    return {
        "recorded": any(s["ok"] for s in servers),
        "note": "Counted by the serving processes since each started (their /metrics).",
        "servers": servers,
        "versions": versions,
    }


def time_range(
    since_ms: int | None, until_ms: int | None, default_ms: int = DEFAULT_RANGE_MS
) -> tuple[int, int]:
    """``[since, until)`` in ms: until defaults to now, since to ``default_ms`` before it."""
    until = int(time.time() * 1000) if until_ms is None else until_ms
    since = until - default_ms if since_ms is None else since_ms
    if until <= since:
        raise InvalidArgument(
            f"until_ms {until} is not after since_ms {since}",
            hint="the range is since_ms <= timestamp < until_ms (milliseconds since the epoch)",
        )
    return since, until


def _percentiles(values: np.ndarray) -> dict[str, float | None]:
    finite = values[np.isfinite(values)]
    if not len(finite):
        empty: dict[str, float | None] = {f"p{p}": None for p in PERCENTILES}
        return empty | {"mean": None, "max": None}
    qs = np.percentile(finite, PERCENTILES)
    out: dict[str, float | None] = {f"p{p}": float(q) for p, q in zip(PERCENTILES, qs, strict=True)}
    out["mean"] = float(finite.mean())
    out["max"] = float(finite.max())
    return out


def traffic(table: Any, since: int, until: int, bucket_ms: int) -> dict[str, Any]:
    """The numbers of ``GET /deployments/{name}`` from a ``query()`` table."""
    import pyarrow as pa

    n = table.num_rows
    ts = table.column("timestamp").cast(pa.int64()).to_numpy() if n else np.zeros(0, dtype=np.int64)
    versions = table.column("version").to_pylist() if n else []
    variants = table.column("variant").to_pylist() if n else []
    latency = (
        np.asarray(table.column("latency_ms").to_pylist(), dtype=np.float64).reshape(-1)
        if n
        else np.zeros(0)
    )
    buckets = int(-(-(until - since) // bucket_ms))
    starts = [since + i * bucket_ms for i in range(buckets)]
    index = (ts - since) // bucket_ms
    seconds = (until - since) / 1000
    keys = sorted({(int(v), str(w)) for v, w in zip(versions, variants, strict=True)})
    version_arr = np.asarray(versions, dtype=np.int64) if n else np.zeros(0, dtype=np.int64)
    variant_arr = np.asarray(variants, dtype=object) if n else np.zeros(0, dtype=object)
    groups = []
    for version, variant in keys:
        mask = (version_arr == version) & (variant_arr == variant)
        lat = latency[mask]
        where = index[mask]
        counts = np.bincount(where, minlength=buckets)[:buckets]
        p95: list[float | None] = [None] * buckets
        finite = np.isfinite(lat)
        by_bucket, lat_ok = where[finite], lat[finite]
        order = np.argsort(by_bucket, kind="stable")
        by_bucket, lat_ok = by_bucket[order], lat_ok[order]
        bounds = np.searchsorted(by_bucket, np.arange(buckets + 1))
        for b in np.flatnonzero(np.diff(bounds)):
            p95[b] = float(np.percentile(lat_ok[bounds[b] : bounds[b + 1]], 95))
        groups.append(
            {
                "version": version,
                "variant": variant,
                "requests": int(mask.sum()),
                "requests_per_s": float(mask.sum()) / seconds,
                "latency_ms": _percentiles(lat),
                "counts": counts.astype(int).tolist(),
                "p95_ms": p95,
            }
        )
    answered = {
        v: sum(g["requests"] for g in groups if g["variant"] == v) for v in ("primary", "canary")
    }
    total_answered = answered["primary"] + answered["canary"]
    return {
        "since": since,
        "until": until,
        "bucket_ms": bucket_ms,
        "buckets": starts,
        "total": n,
        "groups": groups,
        "canary": {
            "primary_requests": answered["primary"],
            "canary_requests": answered["canary"],
            "share": answered["canary"] / total_answered if total_answered else None,
        },
        "errors": {"recorded": False, "note": ERRORS_NOTE},
        "last_prediction": int(ts.max()) if n else None,
    }


def deployments_router(
    store: RegistryStore, artifacts: ArtifactStore, *, read: list[Depends]
) -> APIRouter:
    """``GET /deployments/{name}``: a registered model's traffic from its prediction log."""
    router = APIRouter(tags=["dashboard"])

    @router.get("/deployments/{name}", dependencies=read)
    def deployment(
        name: str,
        since_ms: int | None = None,
        until_ms: int | None = None,
        bucket_s: Annotated[float, Query(gt=0, le=86_400 * 31)] = 60,
    ) -> JSON:
        """Requests, requests/s, latency percentiles per version and variant, per-bucket
        requests and p95 latency, and the canary share, over ``[since_ms, until_ms)``
        (default: the last hour). 404 for a model that is not registered."""
        from gyre.predictions import query

        model = store.get_registered_model(name)  # 404 naming it
        since, until = time_range(since_ms, until_ms)
        bucket_ms = max(1, int(bucket_s * 1000))
        if (until - since) / bucket_ms > MAX_BUCKETS:
            raise InvalidArgument(
                f"{(until - since) // bucket_ms + 1} buckets of {bucket_s} s in this range; "
                f"at most {MAX_BUCKETS}",
                hint="use a longer bucket_s or a shorter range",
            )
        table = query(artifacts, name, since=since, until=until, with_feedback=False)
        body = traffic(table, since, until, bucket_ms)
        body["model"] = name
        body["aliases"] = dict(model.aliases)
        urls = [u.strip() for u in config.get("GYRE_SERVING_URLS").split(",") if u.strip()]
        body["errors"] = serving_errors(name, urls)
        return JSON(body)

    return router
