"""The app factory of ``gyre server``: the versioned REST API over a store and an artifact store.

The caller opens the stores; the app closes them when it shuts down (``lifespan``)::

    from gyre.artifacts import open_artifact_store
    from gyre.server import create_app
    from gyre.store import open_store

    app = create_app(open_store("sqlite:///gyre.db"), open_artifact_store("artifacts"), auth=True)

Every error leaves as ``{"error_code", "message", "hint"?}`` built by
:func:`gyre.errors.error_body`, with the class's HTTP status.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any, cast

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from gyre import config
from gyre.artifacts import close_artifact_store
from gyre.artifacts._protocol import ArtifactStore
from gyre.errors import (
    Forbidden,
    GyreError,
    InvalidArgument,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    error_body,
)
from gyre.server._artifacts import BLOBS_PATH, artifacts_router
from gyre.server._auth import TokenCache, TokenVerifier, scope_dependency
from gyre.server._dashboard import dashboard_router
from gyre.server._deployments import deployments_router
from gyre.server._guard import GuardMiddleware
from gyre.server._history import history_router
from gyre.server._monitoring import monitoring_router
from gyre.server._monitoring_views import monitoring_views_router
from gyre.server._pipelines_views import pipelines_views_router
from gyre.server._registry import registry_router
from gyre.server._responses import JSON
from gyre.server._tracking import tracking_router
from gyre.server._triggers import triggers_router
from gyre.server._ui import ui_router
from gyre.store._protocol import MetadataStore, MonitoringStore, RegistryStore, TriggerStore

__all__ = ["API_PREFIX", "create_app"]

API_PREFIX = "/api/v1"

logger = logging.getLogger("gyre.server")


def create_app(
    store: MetadataStore,
    artifacts: ArtifactStore,
    *,
    auth: bool,
    max_request_bytes: int | None = None,
    token_ttl: float = 1.0,
    monitors: bool = False,
    monitor_poll_s: float = 5.0,
    triggers: bool | None = None,
    trigger_poll_s: float | None = None,
    canary_poll_s: float = 30.0,
) -> FastAPI:
    """Build the server app.

    ``auth``: require ``Authorization: Bearer <token>`` (the store must keep tokens, as
    SqlStore does). ``max_request_bytes``: JSON body limit, by default the setting
    ``GYRE_MAX_REQUEST_BYTES``. ``token_ttl``: seconds a verified token is trusted without
    asking the store again, i.e. the longest a revoked token keeps working. ``monitors``:
    run the store's due monitors in the background (checked every ``monitor_poll_s``).
    ``triggers``: fire the store's due triggers in the background (default: as ``monitors``),
    checked every ``trigger_poll_s`` (default: ``monitor_poll_s``), on worker threads; with
    them, canaries (challenger vs champion) are stepped every ``canary_poll_s``.
    """
    if triggers is None:
        triggers = monitors
    if max_request_bytes is None:
        max_request_bytes = config.get_int("GYRE_MAX_REQUEST_BYTES")

    cache: TokenCache | None = None
    if auth:
        if not isinstance(store, TokenVerifier):
            raise InvalidArgument(
                f"auth needs a store that keeps API tokens; {store.uri!r} does not",
                hint="serve a sqlite:/// or postgresql:// tracking URI, or turn auth off",
            )
        cache = TokenCache(store.verify_token, ttl=token_ttl)
        read = [Depends(scope_dependency(cache, "read"))]
        write = [Depends(scope_dependency(cache, "write"))]
    else:
        read, write = [], []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        scheduler = None
        if monitors and isinstance(store, MonitoringStore):
            from gyre.monitoring import MonitorScheduler

            scheduler = MonitorScheduler(store, artifacts, poll_s=monitor_poll_s)
            scheduler.start()
        trigger_scheduler = None
        if triggers and isinstance(store, TriggerStore):
            from gyre.loop import TriggerScheduler

            poll = monitor_poll_s if trigger_poll_s is None else trigger_poll_s
            trigger_scheduler = TriggerScheduler(store, poll_s=poll)
            trigger_scheduler.start()
        canary = None
        if triggers and isinstance(store, RegistryStore):
            from gyre.loop import CanaryController
            from gyre.registry import Registry

            canary = CanaryController(
                Registry.of(cast(Any, store), artifacts), poll_s=canary_poll_s
            )
            canary.start()
        try:
            yield
        finally:
            try:
                if canary is not None:
                    canary.stop()
                if trigger_scheduler is not None:
                    trigger_scheduler.stop()
                if scheduler is not None:
                    scheduler.stop()
                store.close()
            finally:
                close_artifact_store(artifacts)

    app = FastAPI(
        title="gyre",
        version=_version(),
        summary="Tracking, artifacts and more for the whole ML lifecycle.",
        lifespan=lifespan,
    )
    app.include_router(tracking_router(store, read=read, write=write), prefix=API_PREFIX)
    app.include_router(artifacts_router(artifacts, read=read, write=write), prefix=API_PREFIX)
    if isinstance(store, RegistryStore):
        app.include_router(registry_router(store, read=read, write=write), prefix=API_PREFIX)
    if isinstance(store, MonitoringStore):
        app.include_router(monitoring_router(store, read=read, write=write), prefix=API_PREFIX)
    if isinstance(store, TriggerStore):
        app.include_router(triggers_router(store, read=read, write=write), prefix=API_PREFIX)
    app.include_router(history_router(store, read=read), prefix=API_PREFIX)
    app.include_router(dashboard_router(store, cache=cache, read=read), prefix=API_PREFIX)
    if isinstance(store, RegistryStore):  # the dashboard's deployments and monitoring views
        app.include_router(deployments_router(store, artifacts, read=read), prefix=API_PREFIX)
        app.include_router(monitoring_views_router(store, artifacts, read=read), prefix=API_PREFIX)
    app.include_router(pipelines_views_router(store, read=read), prefix=API_PREFIX)
    app.add_api_route("/healthz", _healthz, methods=["GET"], tags=["health"])
    app.include_router(ui_router())  # the dashboard at /: page paths and /ui/ assets
    app.add_exception_handler(GyreError, _gyre_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_middleware(
        GuardMiddleware,
        max_body=max_request_bytes,
        unlimited_prefixes=(API_PREFIX + BLOBS_PATH,),
    )
    return app


def _version() -> str:
    try:
        return version("gyreml")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0+unknown"


async def _healthz() -> dict[str, str]:
    """Liveness: 200 ``{"status": "ok"}``, no auth needed."""
    return {"status": "ok"}


def _error_response(err: GyreError, status: int | None = None) -> JSON:
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(err, Unauthorized) else None
    return JSON(error_body(err), status_code=status or err.http_status, headers=headers)


async def _gyre_error(request: Request, exc: Exception) -> JSON:
    assert isinstance(exc, GyreError)
    if exc.http_status >= 500:
        logger.error("%s %s: %s", request.method, request.url.path, exc)
    return _error_response(exc)


async def _validation_error(request: Request, exc: Exception) -> JSON:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first: dict[str, Any] = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        detail = first.get("ctx", {}).get("error", "not JSON")
        err = InvalidArgument(
            f"malformed JSON body: {detail}", hint="send a JSON object as the request body"
        )
        return _error_response(err)
    where = _field_name(first.get("loc", ()))
    message = f"invalid {where}: {first.get('msg', 'invalid value')}"
    if first.get("type") != "missing" and "input" in first:
        message += f" (got {_short_repr(first['input'])})"
    if len(errors) > 1:
        message += f"; and {len(errors) - 1} more problem(s)"
    return _error_response(InvalidArgument(message, hint="see /docs for the request schema"))


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "metrics", 0, "value")`` -> ``"body field 'metrics[0].value'"``."""
    if not loc:
        return "request"
    where, *path = loc
    name = ""
    for part in path:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    kind = {"body": "body field", "query": "query parameter", "path": "path parameter"}
    if not name:
        return "request body" if where == "body" else str(where)
    return f"{kind.get(str(where), str(where))} {name!r}"


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


async def _http_error(request: Request, exc: Exception) -> JSON:
    """Starlette's own errors (unknown route, wrong method...) in gyre's error shape."""
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    target = f"{request.method} {request.url.path}"
    err: GyreError
    if status == 404:
        err = NotFound(f"no such API route: {target!r}", hint="see /docs for the routes")
    elif status == 405:
        err = InvalidArgument(f"method not allowed: {target!r}", hint="see /docs for the routes")
    elif status == 401:
        err = Unauthorized(str(exc.detail))
    elif status == 403:
        err = Forbidden(str(exc.detail))
    elif status == 413:
        err = PayloadTooLarge(str(exc.detail))
    elif status < 500:
        err = InvalidArgument(str(exc.detail))
    else:
        err = GyreError(str(exc.detail))
    response = _error_response(err, status)
    if exc.headers:
        response.headers.update(exc.headers)
    return response
