"""The prediction server's app factory: Open Inference Protocol v2, simple JSON, batch files.

>>> from gyre.models import load_model
>>> app = create_app([ServedModel("churn", "3", load_model("churn-model"))])  # doctest: +SKIP

Routes (``{name}`` a served model; ``/versions/{v}`` pins a version where shown):

=======  ===========================================  ==========================================
GET      ``/v2/health/live``, ``/v2/health/ready``    ``{"live": true}`` / ``{"ready": true}``
GET      ``/v2``                                      server metadata
GET      ``/v2/models/{name}[/versions/{v}]``         model metadata (typed tensors)
GET      ``/v2/models/{name}[/versions/{v}]/ready``   model readiness
POST     ``/v2/models/{name}[/versions/{v}]/infer``   inference on typed tensors
POST     ``/predict/{name}[/versions/{v}]``           ``{"records"|"columns"|"instances"}``
POST     ``/batch/{name}``                            score a CSV / JSON Lines / Parquet upload
POST     ``/feedback/{name}``                         ground-truth labels for logged predictions
GET      ``/metrics``                                 Prometheus
GET      ``/admin/status``                            versions served, reload and sync status
                                                      (``?workers=all``: of every worker)
POST     ``/admin/reload``                            check the registry for moved aliases now
                                                      (every worker; ``{"retry": true}``)
POST     ``/admin/sync``                              edge mode: sync the prediction log now
=======  ===========================================  ==========================================

Every answer names the version that produced it (``X-Gyre-Model-Version``, and the
``version`` / ``model_version`` fields); the prediction log records it too. A model may
have a challenger (:class:`Challenger`): a canary answers its share of the requests, a
shadow answers a copy of every request into the log only, in a background task that can
neither fail nor slow the primary's answer. Models served from ``models:/NAME@ALIAS``
follow the alias (:mod:`gyre.serving._reload`).

The app is a Starlette router behind one pure-ASGI front (:mod:`gyre.serving._front`): the
hot path builds no pydantic models and no per-row DataFrames; JSON goes through orjson.
Models listed as :class:`ModelSpec` are loaded in the ``lifespan`` start-up, once per worker
process; every model's micro-batcher starts there and drains when the server stops.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import shutil
import tempfile
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route, Router

from gyre.errors import DeadlineExceeded, GyreError, InvalidArgument, NotFound, Overloaded
from gyre.predictions import PredictionBatch, PredictionGroup
from gyre.serving import _json
from gyre.serving._auth import TokenGate, TokenVerifier
from gyre.serving._deadlines import Deadlines
from gyre.serving._front import CONTEXT_KEY, Front, RequestInfo, Scope
from gyre.serving._logging import ACCESS_LOGGER
from gyre.serving._oip import BINARY_HEADER, decode_request, encode_outputs, input_metadata
from gyre.serving._oip import model_input as oip_model_input
from gyre.serving._peers import Peers
from gyre.serving._reload import Reloader, Watch, alias_of
from gyre.serving._slots import (
    Answered,
    Challenger,
    Deployment,
    ModelSlot,
    ModelSpec,
    Outputs,
    Prepared,
    Retired,
    ServedModel,
)
from gyre.serving._telemetry import CONTENT_TYPE as METRICS_CONTENT_TYPE
from gyre.serving._telemetry import Telemetry

if TYPE_CHECKING:
    from gyre.registry import Registry
    from gyre.serving._edge import EdgeSync
    from gyre.serving.batch import Format

__all__ = ["Limits", "PredictionLog", "create_app"]

logger = logging.getLogger("gyre.serving")

# Bodies up to this size are parsed and checked on the event loop; larger ones in a thread,
# so one big request cannot stall every other connection.
_INLINE_BYTES = 64 * 1024
_UPLOAD_CHUNK = 1 << 20
# Shadow requests in flight per worker; past it new ones are dropped (and counted).
_MAX_SHADOWS = 1024
_LOG_NAMES = {"predict": "prediction", "predict_proba": "proba"}  # outputs in the log
# How long POST /admin/reload waits for the other workers' checks (each may load a model).
_PEER_TIMEOUT_S = 60.0
# How long GET /admin/status?workers=all waits for the other workers' states, and POST
# /admin/sync for them to finish their spool files (a poll or two each).
_STATUS_TIMEOUT_S = 5.0
_PREDICT_ONLY = ("predict",)  # what an inference request without "outputs" gets
# Container allocations between the cyclic collector's young passes while serving (Python's
# default: 700). A loaded worker allocates a few dozen a request and keeps up to a batch of
# requests alive, so at the default it ran a young pass every ~20 requests, each walking
# every request in flight: ~5% of a worker's time. See docs/adr/0003-serving-hot-path.md.
_GC_YOUNG = 10_000
_METRICS_FLUSH_S = 1.0  # how often request counts reach the Prometheus client (see _telemetry)

Parse = Callable[[Deployment, bytes], tuple[Prepared, Any]]


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-worker limits. Past each, a request is refused at once with a clear status.

    ``max_request_bytes``: JSON bodies (413). ``max_upload_bytes``: ``/batch`` uploads,
    spooled to disk (413). ``request_timeout_s``: a ``/predict`` or ``/infer`` request not
    answered in time gets 504 (batch uploads are not timed). ``max_inflight``: concurrent
    requests per worker (503 + Retry-After). ``max_inflight_bytes``: the declared bodies
    (Content-Length) of the requests a worker holds at once, uploads to ``/batch`` aside
    (503 + Retry-After past it; a request is never refused by it alone): a body parsed
    takes several times its size in memory. Queued rows per model are bounded by
    :class:`~gyre.serving.Batching` ``max_queue_rows`` (429 + Retry-After).
    ``shadow_cpu``: the CPU a shadow's predict calls may take in a worker, as a share of one
    core (copies past it are dropped, counted ``dropped``): a shadow shares the worker's
    interpreter with the primary, and one that costs more than the primary would
    otherwise slow every answer.
    """

    max_request_bytes: int = 16 * 1024 * 1024
    max_upload_bytes: int = 4 * 1024 * 1024 * 1024
    request_timeout_s: float = 30.0
    max_inflight: int = 2048
    max_inflight_bytes: int = 64 * 1024 * 1024
    max_batch_file_chunk: int = 100_000
    shadow_cpu: float = 0.2

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Limits:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@runtime_checkable
class PredictionLog(Protocol):
    """What the server needs of :class:`gyre.predictions.PredictionLog`."""

    def append(self, records: Sequence[Any]) -> None: ...

    def append_feedback(self, model: str, labels: Sequence[tuple[str, Any]]) -> Any: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...

    def stats(self) -> Mapping[str, Any]: ...


def _gyre_version() -> str:
    try:
        return version("gyreml")
    except PackageNotFoundError:  # pragma: no cover - a bare checkout
        return "0+unknown"


class _JsonBody(Response):
    """A 200 with a JSON body already encoded: its headers made directly (Starlette's
    ``Response.__init__`` renders and inspects them, on every prediction)."""

    media_type = "application/json"

    def __init__(self, body: bytes) -> None:
        self.status_code = 200
        self.background = None
        self.body = body
        self.raw_headers = [
            (b"content-length", b"%d" % len(body)),
            (b"content-type", b"application/json"),
        ]


def _json_response(body: Any, status: int = 200) -> Response:
    return Response(_json.dumps(body), status_code=status, media_type="application/json")


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def _truthy(value: str | None, name: str = "proba") -> bool:
    """A yes/no query parameter (absent: no); anything else is refused, naming it."""
    if value is None:
        return False
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise InvalidArgument(
        f"query parameter {name}={value!r} is not true or false",
        hint=f"?{name}=true or ?{name}=false",
    )


def _log_inputs(prepared: Prepared, columns: list[str] | None) -> tuple[Any, list[str] | None]:
    """A request's input as :class:`~gyre.predictions.PredictionBatch` takes it: a 2-D
    array and its column names, or a dict of columns (one value per row each)."""
    if prepared.matrix is not None:  # records or columns, as the model saw them
        return prepared.matrix
    data = prepared.data
    if isinstance(data, np.ndarray):
        if columns and data.ndim == 2 and data.shape[1] == len(columns):
            return data, columns
        return {"input-0": data if data.ndim else data.reshape(1)}, None
    if isinstance(data, dict):
        return data, None
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        keys = list(dict.fromkeys(k for record in data for k in record))
        return {k: [record.get(k) for record in data] for k in keys}, None
    return {"input": [data]}, None


def _log_outputs(outputs: Outputs, rows: int) -> dict[str, Any]:
    """The outputs under their log names, one value per row (an output that is not one
    value per row is logged whole, on every row)."""
    named: dict[str, Any] = {}
    whole = False
    for key, arr in outputs.items():
        named[_LOG_NAMES.get(key, key)] = arr
        whole = whole or arr.ndim == 0 or arr.shape[0] != rows
    if whole:
        return {k: [v] * rows for k, v in named.items()}
    return named


def _log_group(dep: Deployment, variant: str, items: list[tuple[Any, ...]]) -> Any:
    """``items`` (pending log entries of ``dep`` and ``variant``) as one
    :class:`~gyre.predictions.PredictionGroup`, when every input is an array and every
    output an array of one value per row, of one dtype and shape but the rows; else None.

    (Once per turn of the event loop under load, for dozens of requests: checked a list at
    a time, the arrays' trailing shapes by ``concatenate`` itself. When ``items`` are the
    requests of one predict call, all of them in the call's order, which is how a loaded
    server's turns go, the call's own arrays are the group's.)"""
    columns = dep.column_names
    whole = _answered_whole(items)
    if whole is not None:
        x = whole.inputs
        names = columns if whole.names is None else whole.names
        joined: dict[str, Any] = {_LOG_NAMES.get(k, k): v for k, v in whole.outputs.items()}
        rows = None if x.shape[0] == len(items) else [item[3].rows for item in items]
    else:
        found = _joined_items(items, columns)
        if found is None:
            return None
        x, names, joined, rows = found
    if names and x.ndim == 2 and x.shape[1] == len(names):
        inputs: Any = x
    else:
        inputs, names = {"input-0": x}, None
    ids = [item[0] for item in items]
    stamps = [item[1] for item in items]
    latencies = [item[5] for item in items]
    return PredictionGroup(ids, stamps, dep.name, dep.log_version, inputs, joined, latencies,
                           variant, names, rows)  # fmt: skip


def _answered_whole(items: list[tuple[Any, ...]]) -> Answered | None:
    """The :class:`~gyre.serving._slots.Answered` of the one predict call that answered
    every request of ``items``, in its order, when its input is an array; else None."""
    first = items[0][3].answered
    if first is None:
        return None
    whole: Answered = first[0]
    if whole.requests != len(items) or type(whole.inputs) is not np.ndarray:
        return None
    for place, item in enumerate(items):
        mine = item[3].answered
        if mine is None or mine[0] is not whole or mine[1] != place:
            return None
    return whole


def _joined_items(
    items: list[tuple[Any, ...]], columns: list[str] | None
) -> tuple[Any, Any, dict[str, Any], list[int] | None] | None:
    """The arrays of ``items`` joined (see :func:`_log_group`): the input, its column names,
    the outputs under their log names and the rows of each request (None: one each); None
    when they do not join."""
    ndarray = np.ndarray
    xs: list[Any] = []
    head = items[0][3].matrix
    names = columns if head is None else head[1]  # every request's must be the same
    for item in items:
        prepared = item[3]
        seen = prepared.matrix  # records the fast path made a matrix of: that, named
        x, named = (prepared.data, columns) if seen is None else seen
        if named is not names and named != names:
            return None
        xs.append(x)
    if any(type(x) is not ndarray for x in xs) or len({x.dtype for x in xs}) != 1:
        return None
    rows = [x.shape[0] if x.ndim else -1 for x in xs]
    first = items[0][4]
    if any(len(item[4]) != len(first) for item in items):
        return None
    joined: dict[str, Any] = {}
    try:
        for key in first:
            values = [item[4].get(key) for item in items]
            if any(type(v) is not ndarray for v in values) or len({v.dtype for v in values}) != 1:
                return None
            if [v.shape[0] if v.ndim else -1 for v in values] != rows:
                return None  # (an output not one value per row is logged whole, per request)
            joined[_LOG_NAMES.get(key, key)] = np.concatenate(values)
        x = np.concatenate(xs)
    except ValueError:  # trailing shapes differ, or 0-d arrays
        return None
    return x, names, joined, None if sum(rows) == len(rows) else rows


def _log_batches(items: list[tuple[Any, ...]]) -> list[PredictionBatch]:
    """Pending log entries as one :class:`~gyre.predictions.PredictionBatch` each."""
    batches = []
    for rid, now_ms, dep, prepared, outputs, latency, variant in items:
        try:
            inputs, columns = _log_inputs(prepared, dep.column_names)
            rows = len(inputs) if columns is not None else len(next(iter(inputs.values())))
            batches.append(PredictionBatch(rid, now_ms, dep.name, dep.log_version, inputs,
                                           _log_outputs(outputs, rows), latency, variant,
                                           columns))  # fmt: skip
        except Exception:  # the log must never fail a prediction that was answered
            logger.exception("could not log prediction %s", rid)
    return batches


class _Server:
    """Everything the routes share: the slots, limits, log and metrics of one app."""

    def __init__(
        self,
        models: Sequence[ServedModel | ModelSpec],
        *,
        prediction_log: PredictionLog | None,
        limits: Limits,
        telemetry: Telemetry | None,
        on_close: Sequence[Callable[[], None]],
        challengers: Sequence[Challenger] = (),
        registry: Registry | None = None,
        reload_interval: float = 0.0,
        edge_sync: EdgeSync | None = None,
        peers: Peers | None = None,
    ) -> None:
        names = [m.name for m in models]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate is not None:
            raise InvalidArgument(
                f"model name {duplicate!r} is served twice",
                hint="give each model its own name (NAME=URI on the command line)",
            )
        self.models = list(models)
        self.slots: dict[str, ModelSlot] = {name: ModelSlot(name) for name in names}
        self.log = prediction_log
        self.limits = limits
        self.telemetry = telemetry
        self.on_close = list(on_close)
        self.started = False
        self.challengers: dict[str, Challenger] = {}
        for challenger in challengers:
            cname = challenger.model.name
            if cname not in self.slots:
                raise InvalidArgument(
                    f"challenger {cname!r} version {challenger.model.version} names no served "
                    "model",
                    hint=f"served models: {', '.join(self.slots) or 'none'}",
                )
            if cname in self.challengers:
                raise InvalidArgument(
                    f"model {cname!r} has two challengers", hint="give each model at most one"
                )
            self.challengers[cname] = challenger
        if reload_interval < 0:
            raise InvalidArgument(
                f"reload interval {reload_interval!r} is negative", hint="0 turns polling off"
            )
        self.registry = registry
        self.reload_interval = reload_interval
        self.reloader: Reloader | None = None
        self.edge_sync = edge_sync
        self.peers = peers
        self._tasks: list[asyncio.Task[None]] = []
        self._shadows: set[asyncio.Task[None]] = set()
        self._shadow_budget = _CpuBudget(limits.shadow_cpu)
        self.deadlines = Deadlines(limits.request_timeout_s)
        self._log_pending: list[tuple[Any, ...]] = []  # see log_prediction

    # -- lifespan -----------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        thresholds = gc.get_threshold()
        try:
            watches: list[Watch] = []
            roles = [(item, "primary") for item in self.models] + [
                (c.model, "challenger") for c in self.challengers.values()
            ]
            for item, role in roles:
                served = await run_in_threadpool(item.load) if isinstance(item, ModelSpec) else item
                slot = self.slots[served.name]
                await slot.deploy(Deployment(served, self.telemetry), "challenger"
                                  if role == "challenger" else "primary")  # fmt: skip
                ref = alias_of(served.source)
                if ref is not None:
                    watches.append(Watch(served.name, "challenger" if role == "challenger"
                                         else "primary", served.source, ref, served.version,
                                         served.batching))  # fmt: skip
                logger.info(
                    "serving model %r version %s as %s", served.name, served.version, role,
                    extra={"model": served.name, "version": served.version},
                )  # fmt: skip
            for cname, challenger in self.challengers.items():
                self.slots[cname].configure(challenger.mode, challenger.percent)
            self._start_background(watches)
            if self.reloader is not None:  # (a restarted worker: the aliases may have moved)
                await self.reloader.catch_up(_CATCH_UP_S)
            # Everything loaded so far (libraries, models) lives as long as the process:
            # keep it out of the collector's full passes, which otherwise walk it all
            # (hundreds of thousands of objects) and stall every request meanwhile.
            gc.collect()
            gc.freeze()
            gc.set_threshold(max(thresholds[0], _GC_YOUNG), *thresholds[1:])
            self.started = True
            yield
        finally:
            gc.set_threshold(*thresholds)
            self.started = False
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._shadows:  # let mirrored requests finish (each has its own timeout)
                await asyncio.wait(set(self._shadows), timeout=self.limits.request_timeout_s)
            await asyncio.gather(*(slot.close() for slot in self.slots.values()))
            if self.log is not None:
                self.append_pending()  # answered in the loop's last turn
                try:
                    await run_in_threadpool(self.log.close)
                except Exception as exc:  # (the spool is on disk: compacted at next start)
                    logger.error(
                        "the prediction log could not be compacted at shutdown; its spool "
                        "files are kept for the next start to compact (%s: %s)",
                        type(exc).__name__,
                        exc,
                    )
            for close in self.on_close:
                close()
            if self.telemetry is not None:
                self.telemetry.flush()
                self.telemetry.flush_log()
                self.telemetry.process_exited()
            for handler in logging.getLogger(ACCESS_LOGGER).handlers:
                handler.flush()  # buffered access lines (a worker process skips atexit)

    def _start_background(self, watches: list[Watch]) -> None:
        """The metrics flush, the alias poller and the edge sync, as tasks of this worker's
        event loop."""
        loop = asyncio.get_running_loop()
        if self.telemetry is not None:
            self._tasks.append(loop.create_task(self._flush_metrics(), name="gyre-metrics"))
        if watches and (self.registry is not None or self.reload_interval > 0):
            if self.registry is None:
                from gyre.registry import Registry

                self.registry = Registry()
                self.on_close.append(self.registry.close)
            self.reloader = Reloader(watches, self.slots, self.registry,
                                     interval=self.reload_interval,
                                     telemetry=self.telemetry)  # fmt: skip
            if self.reload_interval > 0:
                self._tasks.append(loop.create_task(self.reloader.run(), name="gyre-reload"))
        if self.peers is not None:  # admin requests another worker answered
            follow = self.peers.follow(self._peer_request)
            self._tasks.append(loop.create_task(follow, name="gyre-peers"))
        if self.edge_sync is not None:
            self.edge_sync.telemetry = self.telemetry
            if self.edge_sync.interval > 0:
                self._tasks.append(loop.create_task(self.edge_sync.run(), name="gyre-sync"))

    async def _peer_request(self, action: str, args: dict[str, Any]) -> Any:
        """An admin request another worker of this server answered (see ``_peers``); what
        this worker answers it with."""
        if action == "reload" and self.reloader is not None:
            return await self.reloader.check(retry=args.get("retry") is True)
        if action == "status":
            return self.status()
        if action == "rotate" and self.log is not None:  # POST /admin/sync in another worker
            # (rotate is not part of the PredictionLog protocol: a log passed to create_app
            # that has none writes what it has)
            await asyncio.to_thread(getattr(self.log, "rotate", self.log.flush))
            return True
        return None

    async def rotate_peers(self) -> str | None:
        """Have the other workers finish their spool files (see ``POST /admin/sync``); how
        many of all did, as ``k/N`` (None: one worker, or no log)."""
        if self.peers is None or self.log is None:
            return None
        others = await self.peers.answered(self.peers.ask("rotate", {}), _STATUS_TIMEOUT_S)
        done = 1 + sum(1 for a in others.values() if a.get("ok") and a.get("result"))
        return f"{done}/{self.peers.workers}"

    def status(self) -> dict[str, Any]:
        """This worker's ``GET /admin/status``: its models, reload and sync state."""
        body: dict[str, Any] = {
            "models": {name: self.model_status(name) for name in self.slots},
            "reload": {"enabled": self.reloader is not None, "interval_s": self.reload_interval},
        }
        if self.edge_sync is not None:
            body["sync"] = self.edge_sync.status()
        return body

    async def _flush_metrics(self) -> None:
        assert self.telemetry is not None
        while True:
            await asyncio.sleep(_METRICS_FLUSH_S)
            self.telemetry.flush()
            await asyncio.to_thread(self.telemetry.flush_log)  # (it lists the spool folder)

    # -- helpers ------------------------------------------------------------------------

    def slot(self, name: str) -> ModelSlot:
        slot = self.slots.get(name)
        if slot is None:
            raise NotFound(
                f"model {name!r} is not served here",
                hint=f"served models: {', '.join(self.slots) or 'none'}",
            )
        return slot

    def route(
        self, request: Request, endpoint: str, *, split: bool = False
    ) -> tuple[RequestInfo, Deployment]:
        """The deployment answering ``request`` (``split``: a canary may take it), bound to
        the request's info (the version header, the access log and the metrics)."""
        info: RequestInfo = request.scope[CONTEXT_KEY]
        params = request.path_params
        slot = self.slot(params["name"])
        if split:
            deployment, variant = slot.pick(info.request_id, params.get("version"))
            if self.telemetry is not None:
                self.telemetry.routed(deployment.name, deployment.version, variant)
        else:
            deployment, variant = slot.route(params.get("version")), "primary"
        info.bind(deployment.name, deployment.version, endpoint, variant)
        return info, deployment

    async def body_json(self, request: Request) -> Any:
        body = await request.body()
        try:
            if len(body) > _INLINE_BYTES:
                return await run_in_threadpool(_json.loads, body)
            return _json.loads(body)
        except ValueError as exc:
            raise InvalidArgument(
                f"malformed JSON body: {exc}", hint="send a JSON object as the request body"
            ) from None

    async def run(
        self,
        request: Request,
        deployment: Deployment,
        info: RequestInfo,
        parse: Parse,
        *,
        proba: Callable[[Any], bool],
    ) -> tuple[Deployment, Prepared, Any, Outputs]:
        """Validate, queue and predict one request, within the request timeout."""
        watch = self.deadlines.watch()
        try:
            batcher = deployment.batcher
            batcher.arrive()
            try:
                prepared, parsed = await self._parse(request, deployment, parse)
            finally:
                batcher.depart()
            info.rows = prepared.rows
            try:
                outputs = await deployment.predict(prepared, info.request_id, proba=proba(parsed))
            except Retired:  # swapped while this request was being read: use the new one
                slot = self.slot(deployment.name)
                deployment, variant = slot.pick(info.request_id, request.path_params.get("version"))
                info.bind(deployment.name, deployment.version, info.endpoint, variant)
                prepared, parsed = await self._parse(request, deployment, parse)
                outputs = await deployment.predict(prepared, info.request_id, proba=proba(parsed))
        except asyncio.CancelledError:
            if watch.expired():
                timeout = self.limits.request_timeout_s
                raise DeadlineExceeded(
                    f"request {info.request_id} was not answered within {timeout:g} s",
                    hint="retry later; the server or the model is overloaded",
                ) from None
            raise
        finally:
            watch.finish()
        return deployment, prepared, parsed, outputs

    async def _parse(
        self,
        request: Request,
        deployment: Deployment,
        parse: Parse,
    ) -> tuple[Prepared, Any]:
        body = await request.body()
        if len(body) > _INLINE_BYTES:
            return await run_in_threadpool(parse, deployment, body)
        return parse(deployment, body)

    def log_prediction(
        self,
        info: RequestInfo,
        deployment: Deployment,
        prepared: Prepared,
        outputs: Outputs,
        *,
        variant: str | None = None,
        started: float | None = None,
    ) -> None:
        """Append the request to the prediction log as one batch (a row per input row,
        ids ``<request id>:<row>`` when it holds several), with the version that answered
        and its variant. Never raises: the answer is already computed."""
        if self.log is None:
            return
        since = info.started if started is None else started
        latency = round((time.perf_counter() - since) * 1000, 3)
        # Made into a batch and appended together with the other requests answered in this
        # turn of the event loop (a batch's worth under load): one loop over them runs
        # several times faster per request than the same work between everything else.
        pending = self._log_pending
        pending.append((info.request_id, time.time_ns() // 1_000_000, deployment, prepared,
                        outputs, latency, variant or info.variant))  # fmt: skip
        if len(pending) == 1:
            asyncio.get_running_loop().call_soon(self.append_pending)

    def chunk_logger(
        self, info: RequestInfo, deployment: Deployment
    ) -> Callable[[int, Any, dict[str, Any]], None] | None:
        """What logs the scored chunks of a ``/batch`` upload (None without a log): each
        chunk one group, row i of the file logged as request ``<request id>:<i>``, its
        columns as the file held them, ``prediction*`` and, when asked for, ``proba``."""
        log = self.log
        if log is None:
            return None
        rid = info.request_id

        def log_chunk(first: int, frame: Any, columns: dict[str, Any]) -> None:
            n = len(frame)
            try:
                probas = [v for k, v in columns.items() if k.startswith("proba_")]
                outputs = {k: v for k, v in columns.items() if not k.startswith("proba_")}
                if probas:
                    outputs["proba"] = np.column_stack(probas)
                latency = round((time.perf_counter() - info.started) * 1000, 3)
                log.append([PredictionGroup(
                    [f"{rid}:{i}" for i in range(first, first + n)],
                    [time.time_ns() // 1_000_000] * n, deployment.name, deployment.log_version,
                    {str(c): frame[c].to_numpy() for c in frame.columns}, outputs,
                    [latency] * n, info.variant,
                )])  # fmt: skip
            except Exception:  # the log must never fail a prediction that was answered
                logger.exception("could not log rows %d.. of batch request %s", first, rid)

        return log_chunk

    def append_pending(self) -> None:
        pending, self._log_pending = self._log_pending, []
        if self.log is None or not pending:
            return
        # The requests of one version and variant, their arrays joined, are one group (one
        # spool line); what does not join is logged request by request.
        by_kind: dict[tuple[Any, str], list[tuple[Any, ...]]] = {}
        for item in pending:
            kind = (item[2], item[6])
            found = by_kind.get(kind)
            if found is None:
                by_kind[kind] = [item]
            else:
                found.append(item)
        records: list[PredictionGroup | PredictionBatch] = []
        grouped: dict[int, list[tuple[Any, ...]]] = {}  # records[i] is a group of these
        for (dep, variant), items in by_kind.items():
            group = None
            if len(items) > 1:
                try:
                    group = _log_group(dep, variant, items)
                except Exception:  # (the batches below say what is wrong)
                    group = None
            if group is not None:
                grouped[len(records)] = items
                records.append(group)
            else:
                records += _log_batches(items)
        try:
            self.log.append(records)
        except InvalidArgument:
            # one request the log refuses must not cost its neighbours their records
            for i, record in enumerate(records):
                ones = _log_batches(grouped[i]) if i in grouped else [record]
                for one in cast(list[PredictionBatch], ones):  # (groups were split)
                    try:
                        self.log.append((one,))
                    except InvalidArgument as exc:
                        logger.error("could not log prediction %s: %s", one.request_id, exc)
        except Exception as exc:  # the spool is behind or failing: it says why, once
            logger.error("could not log %d predictions: %s", len(pending), exc)

    # -- shadow ---------------------------------------------------------------------------

    def mirror(
        self, request: Request, info: RequestInfo, parse: Parse, proba: Callable[[Any], bool]
    ) -> None:
        """Send a copy of an answered request to the slot's shadow, in the background."""
        if info.variant != "primary" or "version" in request.path_params:
            return
        shadow = self.slots[info.model].shadow
        if shadow is None:
            return
        if len(self._shadows) >= _MAX_SHADOWS or not self._shadow_budget.allows(shadow):
            if self.telemetry is not None:
                self.telemetry.shadowed(shadow.name, shadow.version, "dropped")
            return
        task = asyncio.get_running_loop().create_task(
            self._shadow(request, shadow, info, parse, proba)
        )
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)
        task.add_done_callback(lambda _: self._shadow_budget.done(shadow))

    async def _shadow(
        self,
        request: Request,
        shadow: Deployment,
        info: RequestInfo,
        parse: Parse,
        proba: Callable[[Any], bool],
    ) -> None:
        started = time.perf_counter()
        outcome = "ok"
        if self.telemetry is not None:
            self.telemetry.routed(shadow.name, shadow.version, "shadow")
        try:
            async with asyncio.timeout(self.limits.request_timeout_s):
                prepared, parsed = await self._parse(request, shadow, parse)
                outputs = await shadow.predict(prepared, info.request_id, proba=proba(parsed))
            self.log_prediction(info, shadow, prepared, outputs, variant="shadow",
                                started=started)  # fmt: skip
        except TimeoutError:
            outcome = "timeout"
        except (Overloaded, Retired):
            outcome = "dropped"
        except Exception as exc:  # a shadow's failure is its own: log it, count it
            outcome = "failed"
            logger.warning(
                "shadow version %s of model %r failed on request %s: %s",
                shadow.version, shadow.name, info.request_id, exc,
                extra={"request_id": info.request_id, "model": shadow.name,
                       "version": shadow.version},
            )  # fmt: skip
        if self.telemetry is not None:
            self.telemetry.shadowed(shadow.name, shadow.version, outcome)

    # -- status ---------------------------------------------------------------------------

    def model_status(self, name: str) -> dict[str, Any]:
        slot = self.slot(name)
        primary, challenger = slot.primary, slot.challenger
        status: dict[str, Any] = {
            "version": primary.version if primary is not None else None,
            "ready": slot.ready,
        }
        if challenger is not None:
            status["challenger"] = {
                "version": challenger.version,
                "mode": slot.mode,
                "percent": slot.percent if slot.mode == "canary" else None,
                "active": slot.active_challenger is not None,
            }
        if self.reloader is not None:
            status["reload"] = self.reloader.status(name)
        return status


# -- OIP routes --------------------------------------------------------------------------


def _oip_routes(server: _Server) -> list[Route]:
    server_meta = _json.dumps(
        {"name": "gyre", "version": _gyre_version(), "extensions": ["binary_tensor_data"]}
    )

    async def live(request: Request) -> Response:
        return _json_response({"live": True})

    async def ready(request: Request) -> Response:
        ok = server.started and all(slot.ready for slot in server.slots.values())
        return _json_response({"ready": ok}, 200 if ok else 503)

    async def metadata(request: Request) -> Response:
        return Response(server_meta, media_type="application/json")

    async def model_metadata(request: Request) -> Response:
        _, dep = server.route(request, "metadata")
        signature = dep.signature
        return _json_response(
            {
                "name": dep.name,
                "versions": server.slot(dep.name).versions,
                "platform": dep.model.flavor,
                "inputs": input_metadata(signature.inputs if signature else None),
                "outputs": dep.output_metadata(),
                "parameters": {
                    "task": dep.model.task.kind,
                    "version": dep.version,
                    "serving": server.model_status(dep.name),
                },
            }
        )

    async def model_ready(request: Request) -> Response:
        params = request.path_params
        slot = server.slot(params["name"])
        info: RequestInfo = request.scope[CONTEXT_KEY]  # counted under the model
        try:
            dep = slot.route(params.get("version"))
        except NotFound:
            raise
        except GyreError:
            info.bind(slot.name, "", "metadata")
            return _json_response({"name": slot.name, "ready": False}, 503)
        info.bind(dep.name, dep.version, "metadata")
        return _json_response({"name": slot.name, "ready": True})

    async def infer(request: Request) -> Response:
        info, dep = server.route(request, "infer", split=True)
        header = request.headers.get(BINARY_HEADER)
        try:
            header_length = None if header is None else int(header)
        except ValueError:
            raise InvalidArgument(
                f"Inference-Header-Content-Length {header!r} is not a number"
            ) from None
        requested: list[str] = []

        def parse(d: Deployment, body: bytes) -> tuple[Prepared, Any]:
            req = decode_request(body, header_length, _json.loads)
            if req.outputs is None:
                requested[:] = _PREDICT_ONLY
            else:
                names = [n for n, _ in req.outputs]
                # the outputs its metadata lists ("predict" when they are not known)
                known = set(d.output_shapes) or {"predict"}
                if d.has_proba:
                    known.add("predict_proba")
                for name in names:
                    if name not in known:
                        raise InvalidArgument(
                            f"output {name!r} is not an output of model {d.name!r}",
                            hint=f"its outputs: {', '.join(sorted(known))}",
                        )
                requested[:] = names
            signature = d.signature
            data = oip_model_input(signature.inputs if signature else None, req.inputs)
            return d.admit(data), req

        def wants_proba(r: Any) -> bool:
            return "predict_proba" in requested

        dep, prepared, req, outputs = await server.run(request, dep, info, parse,
                                                       proba=wants_proba)  # fmt: skip
        if "predict" in requested and "predict" not in outputs:
            requested = [n for n in requested if n != "predict"] + [
                k for k in outputs if k != "predict_proba"
            ]
        chosen = {name: outputs[name] for name in requested if name in outputs}
        binary: set[str] = set()
        if req.outputs or req.parameters:
            wanted = {name: params for name, params in (req.outputs or [])}
            binary_default = bool(req.parameters.get("binary_data_output", False))
            binary = {
                name
                for name in chosen
                if wanted.get(name, {}).get("binary_data", binary_default) is True
            }
        extra = dep.output_parameters
        encoded, chunks = encode_outputs(chosen, extra, binary, _json.jsonable)
        body = _json.dumps(
            {
                "model_name": dep.name,
                "model_version": dep.version,
                "id": req.id if req.id is not None else info.request_id,
                "outputs": encoded,
            }
        )
        server.log_prediction(info, dep, prepared, outputs)
        server.mirror(request, info, parse, wants_proba)
        if not chunks:
            return _JsonBody(body)
        return Response(
            b"".join([body, *chunks]),
            media_type="application/octet-stream",
            headers={BINARY_HEADER: str(len(body))},
        )

    model = "/v2/models/{name}"
    versioned = "/v2/models/{name}/versions/{version}"
    return [
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2", metadata, methods=["GET"]),
        Route(model, model_metadata, methods=["GET"]),
        Route(versioned, model_metadata, methods=["GET"]),
        Route(model + "/ready", model_ready, methods=["GET"]),
        Route(versioned + "/ready", model_ready, methods=["GET"]),
        Route(model + "/infer", infer, methods=["POST"]),
        Route(versioned + "/infer", infer, methods=["POST"]),
    ]


# -- gyre's own routes -------------------------------------------------------------------


def _predict_input(doc: Any) -> tuple[Any, bool]:
    """The data and the ``return_proba`` flag of a /predict body."""
    if isinstance(doc, list):
        return doc, False
    if not isinstance(doc, dict):
        raise InvalidArgument(
            f"the request body must be a JSON object or list, got {type(doc).__name__}",
            hint='send {"records": [{...}, ...]} or {"columns": {"name": [...]}}',
        )
    proba = doc.get("return_proba", False)
    if not isinstance(proba, bool):
        raise InvalidArgument(f"'return_proba' must be true or false, got {proba!r}")
    present = [key for key in ("records", "columns", "instances") if key in doc]
    if len(present) != 1:
        raise InvalidArgument(
            "the request must hold exactly one of 'records', 'columns', 'instances'"
            + (f" (it holds {', '.join(present)})" if present else ""),
            hint='send {"records": [{...}, ...]} or {"columns": {"name": [...]}}',
        )
    data = doc[present[0]]
    if present[0] == "records" and not (
        isinstance(data, list) and all(isinstance(r, dict) for r in data)
    ):
        raise InvalidArgument("'records' must be a list of objects", hint='[{"age": 41}, ...]')
    if present[0] == "columns" and not isinstance(data, dict):
        raise InvalidArgument("'columns' must be an object of lists", hint='{"age": [41, 37]}')
    return data, proba


def _gyre_routes(server: _Server) -> list[Route]:
    async def predict(request: Request) -> Response:
        info, dep = server.route(request, "predict", split=True)
        query_proba = _truthy(request.query_params.get("proba"))

        def parse(d: Deployment, body: bytes) -> tuple[Prepared, Any]:
            try:
                doc = _json.loads(body)
            except ValueError as exc:
                raise InvalidArgument(
                    f"malformed JSON body: {exc}", hint="send a JSON object as the request body"
                ) from None
            data, proba = _predict_input(doc)
            proba = proba or query_proba
            if proba and not d.has_proba:
                raise InvalidArgument(
                    f"model {d.name!r} ({d.model.task.kind}) has no predict_proba",
                    hint="ask for predictions only; probabilities exist for classifiers",
                )
            return d.admit(data), proba

        dep, prepared, proba, outputs = await server.run(request, dep, info, parse, proba=bool)
        predictions = {k: v for k, v in outputs.items() if k != "predict_proba"}
        body: dict[str, Any] = {
            "predictions": _json.jsonable(predictions["predict"])
            if list(predictions) == ["predict"]
            else {k: _json.jsonable(v) for k, v in predictions.items()},
            "model": dep.name,
            "version": dep.version,
            "request_id": info.request_id,
        }
        if proba:
            body["probabilities"] = _json.jsonable(outputs["predict_proba"])
            body["classes"] = dep.classes
        response = _JsonBody(_json.dumps(body))
        server.log_prediction(info, dep, prepared, outputs)
        server.mirror(request, info, parse, bool)
        return response

    async def feedback(request: Request) -> Response:
        info: RequestInfo = request.scope[CONTEXT_KEY]
        name = request.path_params["name"]
        server.slot(name)
        info.bind(name, "", "feedback")
        doc = await server.body_json(request)
        pairs: list[tuple[str, Any]]
        if isinstance(doc, dict) and "labels" in doc:
            raw = doc["labels"]
            if not isinstance(raw, list) or not all(
                isinstance(p, list | tuple) and len(p) == 2 and isinstance(p[0], str) for p in raw
            ):
                raise InvalidArgument(
                    "'labels' must be a list of [request_id, label] pairs",
                    hint='{"labels": [["3f2a...", 1], ["9c1b...", 0]]}',
                )
            pairs = [(p[0], p[1]) for p in raw]
        elif isinstance(doc, dict) and "request_id" in doc and "label" in doc:
            if not isinstance(doc["request_id"], str):
                raise InvalidArgument(f"'request_id' must be a string, got {doc['request_id']!r}")
            pairs = [(doc["request_id"], doc["label"])]
        else:
            raise InvalidArgument(
                "feedback needs 'request_id' and 'label', or 'labels'",
                hint='{"request_id": "3f2a...", "label": 1}',
            )
        if server.log is None:
            raise NotFound(
                "feedback is not recorded: the prediction log is off",
                hint="start `gyre serve` without --no-log",
            )
        slot = server.slot(name)
        tasks = [d.model.task for d in (slot.primary, slot.challenger) if d is not None]
        if tasks:  # (a canary or shadow may know classes the primary does not)
            _check_labels(name, tasks, pairs)
        server.append_pending()  # predictions answered this turn first: labels may name them
        result = server.log.append_feedback(name, pairs)
        info.rows = len(pairs)
        body = {"model": name, "accepted": len(pairs)}
        for key in ("matched", "unmatched"):
            if isinstance(getattr(result, key, None), int):
                body[key] = getattr(result, key)
        several = getattr(result, "several_rows", None)
        if several:
            rid, rows = next(iter(several.items()))
            body["hint"] = (
                f"request {rid!r} had {rows} rows, logged as {rid + ':0'!r} .. "
                f"{rid + ':' + str(rows - 1)!r}: label each row by its id"
            )
        return _json_response(body, 202)

    async def batch(request: Request) -> Response:
        from gyre.serving.batch import (
            CONTENT_TYPES,
            ModelFailed,
            check_format,
            format_for_content_type,
        )

        info, dep = server.route(request, "batch")
        query = request.query_params
        requested = query.get("format")
        fmt = (
            check_format(requested)
            if requested
            else format_for_content_type(request.headers.get("content-type"))
        )
        if fmt is None:
            raise InvalidArgument(
                f"cannot tell the upload's format from Content-Type "
                f"{request.headers.get('content-type')!r}",
                hint="send text/csv, application/x-ndjson or application/vnd.apache.parquet, "
                "or add ?format=csv|jsonl|parquet",
            )
        limit = server.limits.max_batch_file_chunk
        try:
            batch_size = int(query.get("batch_size", "10000"))
        except ValueError:
            raise InvalidArgument(
                f"batch_size {query.get('batch_size')!r} is not a number"
            ) from None
        if not 1 <= batch_size <= limit:
            raise InvalidArgument(f"batch_size must be between 1 and {limit}, got {batch_size}")
        proba = _truthy(query.get("proba"))
        if proba and not dep.has_proba:
            raise InvalidArgument(f"model {dep.name!r} has no predict_proba")

        folder = tempfile.mkdtemp(prefix="gyre-batch-")
        try:
            upload = os.path.join(folder, f"upload.{fmt}")
            with open(upload, "wb") as spool:  # small sequential writes: fine on the loop
                try:
                    async for piece in request.stream():
                        spool.write(piece)
                except ClientDisconnect:
                    raise InvalidArgument("upload interrupted: the client disconnected") from None
            # Scored whole before the answer starts: a bad value in the last chunk is a
            # 400 naming it, not a 200 whose body stops short.
            scored = os.path.join(folder, f"scored.{fmt}")
            log_chunk = server.chunk_logger(info, dep)
            try:
                rows = await run_in_threadpool(
                    _score_upload, dep.model, upload, fmt, batch_size, proba, scored, log_chunk
                )
            except ModelFailed as exc:  # a 500 naming the rows; the details in the log only
                logger.error(
                    "predict failed for batch request %s (model %r version %s): %s",
                    info.request_id, dep.name, dep.version, exc,
                    exc_info=exc.__cause__,
                    extra={"request_id": info.request_id, "model": dep.name,
                           "version": dep.version},
                )  # fmt: skip
                raise GyreError(
                    f"{exc.message} in request {info.request_id}",
                    hint="the server log has the details under this request id",
                ) from None
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        info.rows = rows

        async def stream() -> AsyncIterator[bytes]:
            try:
                with open(scored, "rb") as result:
                    while piece := await run_in_threadpool(result.read, _STREAM_BYTES):
                        yield piece
            finally:
                shutil.rmtree(folder, ignore_errors=True)

        return StreamingResponse(
            stream(),
            media_type=CONTENT_TYPES[fmt],
            headers={
                "content-disposition": f'attachment; filename="scored.{fmt}"',
                "content-length": str(os.path.getsize(scored)),
            },
        )

    async def metrics(request: Request) -> Response:
        if server.telemetry is None:
            raise NotFound("metrics are off on this server")
        telemetry = server.telemetry
        telemetry.flush()

        def render() -> bytes:
            telemetry.flush_log()
            return telemetry.render()

        body = await run_in_threadpool(render)
        return Response(body, media_type=METRICS_CONTENT_TYPE)

    async def status(request: Request) -> Response:
        every = request.query_params.get("workers")
        if every not in (None, "all"):
            raise InvalidArgument(
                f"workers={every!r} is not known", hint="ask ?workers=all, or leave it out"
            )
        mine = server.status()
        peers = server.peers
        if peers is None:
            return _json_response(mine)
        # Another worker may serve another version for a moment (a reload under way, or one
        # that failed there only): ?workers=all asks each of them (at most a few seconds).
        workers: dict[str, Any] = {"count": peers.workers, "answering": os.getpid()}
        if every == "all":
            others = await peers.answered(peers.ask("status", {}), timeout=_STATUS_TIMEOUT_S)
            each = {str(os.getpid()): mine}
            each.update({str(pid): a["result"] for pid, a in sorted(others.items())
                         if a.get("ok") and isinstance(a.get("result"), dict)})  # fmt: skip
            workers.update(answered=len(each), status=each)
        return _json_response({**mine, "workers": workers})

    async def reload(request: Request) -> Response:
        if server.reloader is None:
            raise NotFound(
                "hot reload is off: no model here is served from a registry alias",
                hint="serve models:/NAME@ALIAS to follow the alias as it moves",
            )
        doc = await server.body_json(request) if await request.body() else {}
        retry = isinstance(doc, dict) and doc.get("retry") is True
        peers = server.peers
        asked = peers.ask("reload", {"retry": retry}) if peers is not None else None
        mine = await server.reloader.check(retry=retry)
        answer = _json_response({name: server.model_status(name) for name in server.slots})
        if peers is not None and asked is not None:
            # The other workers check too. The answer says how many did, and how many serve
            # where every alias points now (a worker whose load failed keeps its version).
            others = await peers.answered(asked, timeout=_PEER_TIMEOUT_S)
            checked = [mine] + [a.get("result") for a in others.values() if a.get("ok")]
            current = sum(1 for status in checked if _current(status))
            answer.headers["x-gyre-workers-checked"] = f"{len(checked)}/{peers.workers}"
            answer.headers["x-gyre-workers-current"] = f"{current}/{peers.workers}"
            if current < peers.workers:
                behind = {pid: a.get("result") for pid, a in others.items()
                          if not (a.get("ok") and _current(a.get("result")))}  # fmt: skip
                logger.warning(
                    "POST /admin/reload: %d of %d workers serve where the aliases point "
                    "(%d answered within %g s; the others: %s)",
                    current, peers.workers, len(checked), _PEER_TIMEOUT_S, behind or "none",
                )  # fmt: skip
        return answer

    async def sync_now(request: Request) -> Response:
        if server.edge_sync is None:
            raise NotFound(
                "no sync is configured on this server",
                hint="start an edge server with `gyre serve --bundle FILE --sync-to URL`",
            )
        # every worker finishes its spool file first, so this sync takes their records too,
        # not just this worker's (theirs would wait for their compaction interval)
        flushed = await server.rotate_peers()
        report = await run_in_threadpool(server.edge_sync.run_once)
        answer = _json_response({"report": report, "sync": server.edge_sync.status()})
        if flushed is not None:
            answer.headers["x-gyre-workers-flushed"] = flushed
        return answer

    return [
        Route("/predict/{name}", predict, methods=["POST"]),
        Route("/predict/{name}/versions/{version}", predict, methods=["POST"]),
        Route("/feedback/{name}", feedback, methods=["POST"]),
        Route("/batch/{name}", batch, methods=["POST"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/admin/status", status, methods=["GET"]),
        Route("/admin/reload", reload, methods=["POST"]),
        Route("/admin/sync", sync_now, methods=["POST"]),
    ]


def _current(status: Any) -> bool:
    """Whether a worker's reload status (:meth:`Reloader.status`) serves where every alias
    points, with nothing failing."""
    if not isinstance(status, list):
        return False
    return all(
        isinstance(w, dict) and not w.get("failing")
        and w.get("serving_version") == w.get("alias_version")
        for w in status
    )  # fmt: skip


def _check_labels(model: str, tasks: list[Any], pairs: list[tuple[str, Any]]) -> None:
    """Labels no served classifier has among its classes, or a regressor's that are not
    numbers, are refused (InvalidArgument naming the first): the log keeps every label of
    a model in one column, which a stray ``"yes"`` among integers would turn into text.
    ``tasks``: those of the versions served under the name (primary, then challenger); a
    label is accepted when one of them knows it."""
    classes = list(  # in order, each once
        dict.fromkeys(
            c
            for task in tasks
            if task.kind == "classifier" and task.classes is not None
            for c in np.asarray(task.classes).tolist()
        )
    )
    unknown = any(t.kind == "classifier" and t.classes is None for t in tasks)
    if classes and not unknown and all(t.kind == "classifier" for t in tasks):
        known = set(classes)
        for rid, label in pairs:
            if isinstance(label, list | dict) or label not in known:
                raise InvalidArgument(
                    f"label {label!r} for request {rid!r} is not one of model {model!r}'s "
                    f"classes {classes}",
                    hint="send the true class, as /predict answers it",
                )
    elif all(t.kind == "regressor" for t in tasks):
        for rid, label in pairs:
            if isinstance(label, bool) or not isinstance(label, int | float):
                raise InvalidArgument(
                    f"label {label!r} for request {rid!r} is not a number, and model "
                    f"{model!r} is a regressor",
                    hint="send the true value as a JSON number",
                )


_CATCH_UP_S = 5.0  # how long a starting worker waits for the registry to resolve an alias


class _CpuBudget:
    """How much CPU the shadows of a worker may take: ``share`` of one core, refilled as
    time passes (at most a second's worth saved up), spent by the CPU time their predict
    calls took. A copy is sent while what is left covers the copies already sent and not
    yet answered, at what one of its calls has been costing (the cost of a call is known
    only once it ends: without that, a burst would be admitted while the first ran)."""

    def __init__(self, share: float) -> None:
        self.share = share
        # per shadow's batcher: (when, its CPU seconds then, budget left then, pending)
        self._state: weakref.WeakKeyDictionary[Any, list[float]] = weakref.WeakKeyDictionary()

    def allows(self, shadow: Deployment) -> bool:
        """Whether a copy may go to ``shadow`` now; if so it counts as pending until
        :meth:`done`."""
        if self.share <= 0:
            return False
        batcher = shadow.batcher
        now, cpu = time.monotonic(), batcher.cpu_seconds
        state = self._state.get(batcher)
        if state is None:
            state = self._state[batcher] = [now, cpu, self.share, 0.0]
        at, seen, left, pending = state
        left = min(self.share, left + (now - at) * self.share) - (cpu - seen)
        state[:3] = [now, cpu, left]
        per_call = batcher.call_cost
        if (per_call is None and pending) or left - pending * (per_call or 0) <= 0:
            return False  # (a cost not known yet: one copy at a time until it is)
        state[3] = pending + 1
        return True

    def done(self, shadow: Deployment) -> None:
        state = self._state.get(shadow.batcher)
        if state is not None:
            state[3] = max(0.0, state[3] - 1)


_LOG_HOLD_ROWS = 100_000  # rows of a /batch upload held back from the log until it scored
_STREAM_BYTES = 1 << 20  # a scored file is sent back in pieces of this size


def _score_upload(
    model: Any,
    upload: str,
    fmt: Format,
    batch_size: int,
    proba: bool,
    output: str,
    on_chunk: Callable[[int, Any, dict[str, Any]], None] | None,
) -> int:
    """Score ``upload`` into ``output`` chunk by chunk; the rows scored."""
    from gyre.serving.batch import score_chunks

    # Chunks are logged once the whole upload has scored (an upload refused half-way was
    # not answered, so none of its rows is logged), held up to _LOG_HOLD_ROWS rows; past
    # that they are logged as they are scored (bounded memory: see docs/serving.md).
    held: list[tuple[int, Any, dict[str, Any]]] = []
    held_rows = 0
    passing = False  # past _LOG_HOLD_ROWS: chunks are logged as they come

    def hold(first: int, frame: Any, columns: dict[str, Any]) -> None:
        nonlocal held_rows, passing
        assert on_chunk is not None
        held.append((first, frame, columns))
        held_rows += len(frame)
        if passing or held_rows > _LOG_HOLD_ROWS:
            passing = True
            for chunk in held:
                on_chunk(*chunk)
            held.clear()

    total = 0
    with open(output, "wb") as sink:
        for rows, data in score_chunks(
            model, upload, fmt, batch_size=batch_size, proba=proba,
            on_chunk=hold if on_chunk is not None else None, upload=True,
        ):  # fmt: skip
            sink.write(data)
            total += rows
    for chunk in held:
        assert on_chunk is not None
        on_chunk(*chunk)
    return total


# -- the factory -------------------------------------------------------------------------

Endpoint = Callable[[Request], Any]


class _FastRoutes:
    """``POST /v2/models/{name}[/versions/{v}]/infer`` and ``POST /predict/{name}[/versions/
    {v}]`` matched by splitting the path (what the router's routes match, a path segment
    per parameter), for :class:`~gyre.serving._front.Front` to call without the router."""

    __slots__ = ("infer", "predict")

    def __init__(self, infer: Endpoint, predict: Endpoint) -> None:
        self.infer, self.predict = infer, predict

    def match(self, scope: Scope) -> Endpoint | None:
        if scope.get("root_path"):
            return None  # the router strips a root path first: leave such apps to it
        path: str = scope["path"]
        if path.startswith("/v2/models/"):
            parts, endpoint, last = path[11:].split("/"), self.infer, "infer"
        elif path.startswith("/predict/"):
            parts, endpoint, last = path[9:].split("/"), self.predict, ""
            parts.append("")
        else:
            return None
        if len(parts) == 2 and parts[1] == last and parts[0]:
            scope["path_params"] = {"name": parts[0]}
            return endpoint
        if len(parts) == 4 and parts[1] == "versions" and parts[3] == last and all(parts[::2]):
            scope["path_params"] = {"name": parts[0], "version": parts[2]}
            return endpoint
        return None


def create_app(
    models: Sequence[ServedModel | ModelSpec],
    *,
    prediction_log: PredictionLog | None = None,
    auth: TokenVerifier | None = None,
    limits: Limits | None = None,
    metrics: bool = True,
    access_log: bool = True,
    token_ttl: float = 1.0,
    on_close: Sequence[Callable[[], None]] = (),
    challengers: Sequence[Challenger] = (),
    registry: Registry | None = None,
    reload_interval: float = 0.0,
    edge_sync: EdgeSync | None = None,
    peers: Peers | None = None,
) -> Front:
    """The serving ASGI app over ``models`` (see the module docstring for the routes).

    ``challengers``: at most one per model name, a canary or a shadow (:class:`Challenger`).
    ``registry`` / ``reload_interval``: models (and challengers) whose ``source`` is a
    ``models:/NAME@ALIAS`` URI follow the alias: checked every ``reload_interval`` seconds
    (0: only on ``POST /admin/reload``) against ``registry`` (default: the configured one,
    when ``reload_interval`` > 0). ``edge_sync``: the edge's background sync
    (:class:`gyre.serving._edge.EdgeSync`), run every its ``interval`` and on
    ``POST /admin/sync``. ``peers``: the other worker processes of this server
    (:class:`gyre.serving._peers.Peers`), which ``POST /admin/reload`` tells to check too.

    ``prediction_log``: every answered prediction is appended to it (after the response
    is computed; the response never waits on the write), and ``/feedback`` writes to it.
    ``auth``: when given, every route but the health probes needs a bearer token with the
    ``predict`` scope, checked with ``auth.verify_token``. ``on_close``: called when the
    app shuts down, after the batchers drained and the log closed.
    """
    limits = limits or Limits()
    telemetry = (
        Telemetry(prediction_log.stats if prediction_log is not None else None) if metrics else None
    )
    server = _Server(
        models,
        prediction_log=prediction_log,
        limits=limits,
        telemetry=telemetry,
        on_close=on_close,
        challengers=challengers,
        registry=registry,
        reload_interval=reload_interval,
        edge_sync=edge_sync,
        peers=peers,
    )
    routes = [*_oip_routes(server), *_gyre_routes(server)]
    router = Router(routes=routes, lifespan=server.lifespan)
    endpoints = {route.path: route.endpoint for route in routes}
    fast = _FastRoutes(endpoints["/v2/models/{name}/infer"], endpoints["/predict/{name}"])
    return Front(
        router,
        telemetry=telemetry,
        gate=TokenGate(auth, ttl=token_ttl) if auth is not None else None,
        max_body=limits.max_request_bytes,
        max_upload=limits.max_upload_bytes,
        max_inflight=limits.max_inflight,
        max_inflight_bytes=limits.max_inflight_bytes,
        access_log=access_log,
        fast=fast,
        models=server.slots,
    )
