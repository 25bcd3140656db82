"""The app as uvicorn imports it in each worker process (``factory=True``).

``gyre serve`` resolves the model URIs once, in the parent process, and hands the result to
its workers as JSON in ``_GYRE_SERVE_SPEC``: the models (name, version, local package
folder, source URI) and their challengers (canary or shadow), batching, limits, whether
auth is on, the tracking URI holding the tokens and the registry to follow aliases in, the
reload interval, the prediction-log spool folder (absent with ``--no-log``) and its sync
and compaction intervals, and in edge mode (``--bundle``) the local artifact folder the log
compacts into and where to sync it. Each worker then loads the packages in its lifespan
start-up. The workers' logs do not compact in the background: ``gyre serve`` runs one
compactor process for the spool folder (``gyre.predictions._compactor``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gyre.errors import InvalidArgument
from gyre.predictions import PredictionLog as Log
from gyre.serving._app import Limits, create_app
from gyre.serving._auth import TokenVerifier
from gyre.serving._front import Front
from gyre.serving._peers import Peers
from gyre.serving._reload import alias_of
from gyre.serving._slots import Batching, Challenger, ModelSpec

if TYPE_CHECKING:
    from gyre.registry import Registry
    from gyre.serving._edge import EdgeSync

__all__ = ["SPEC_ENV", "app_from_env"]

SPEC_ENV = "_GYRE_SERVE_SPEC"

logger = logging.getLogger("gyre.serving")


def _open_log(spool_dir: str, store_dir: str | None, settings: dict[str, Any]) -> Log:
    """The worker's log. It compacts only when asked (``compact``, ``close``, an edge
    sync): ``gyre serve`` compacts the spool folder in a process of its own."""
    from gyre import config
    from gyre.artifacts import open_artifact_store

    artifacts = open_artifact_store(store_dir or config.get("GYRE_ARTIFACT_URI"))
    return Log(
        spool_dir,
        artifacts,
        sync_interval_ms=int(settings.get("sync_interval_ms", 100)),
        compact_interval_s=float(settings.get("compact_interval_s", 30.0)),
        background_compaction=False,
    )


def _model(m: dict[str, Any], batching: Batching) -> ModelSpec:
    return ModelSpec(m["name"], m["version"], m["path"], m.get("source", ""), batching)


def app_from_env() -> Front:
    """Build the app from ``_GYRE_SERVE_SPEC`` (set by ``gyre serve``)."""
    raw = os.environ.get(SPEC_ENV)
    if not raw:
        raise InvalidArgument(
            f"{SPEC_ENV} is not set", hint="start the prediction server with `gyre serve`"
        )
    spec: dict[str, Any] = json.loads(raw)
    # Python warnings (numpy's overflow in a model's predict, ...) as JSON log lines, like
    # everything else the server writes on standard error, not raw text between them.
    logging.captureWarnings(True)

    batching = Batching(**spec.get("batching", {}))
    models = [_model(m, batching) for m in spec["models"]]
    challengers = [
        Challenger(_model(c, batching), c["mode"], float(c.get("percent", 0.0)))
        for c in spec.get("challengers", [])
    ]
    closers: list[Callable[[], None]] = []
    verifier: TokenVerifier | None = None
    if spec.get("auth"):
        from gyre.store import open_store

        store = open_store(spec["tracking_uri"])
        closers.append(store.close)
        if not isinstance(store, TokenVerifier):
            store.close()
            raise InvalidArgument(
                f"auth needs a tracking store that keeps API tokens; {store.uri!r} does not",
                hint="point --tracking-uri at the sqlite:/// or postgresql:// database",
            )
        verifier = store
    registry: Registry | None = None
    sources = [m.source for m in models] + [c.model.source for c in challengers]
    if any(alias_of(source) is not None for source in sources):
        from gyre.registry import Registry

        registry = Registry(spec["tracking_uri"])  # opened on first use (the first check)
        closers.append(registry.close)
    edge: dict[str, Any] = spec.get("edge") or {}
    log = None
    if spec.get("spool_dir"):
        log = _open_log(spec["spool_dir"], edge.get("store"), spec.get("log") or {})
    edge_sync: EdgeSync | None = None
    if edge.get("sync_to") and log is not None and log.artifacts is not None:
        from gyre.serving._edge import EdgeSync

        edge_sync = EdgeSync(
            log, log.artifacts, edge["sync_to"], interval=float(edge.get("sync_interval", 60))
        )
        closers.append(edge_sync.close)
    # the other workers: POST /admin/reload and /admin/sync tell them, GET /admin/status
    # ?workers=all asks them
    peers = None
    control: dict[str, Any] | None = spec.get("control")  # (set with --workers 2 or more)
    if control is not None:
        try:
            peers = Peers(control["dir"], int(control["workers"]))
            closers.append(peers.close)
        except OSError as exc:  # its folder removed under the server (a /tmp cleaner)
            logger.warning(
                "the workers' admin folder %s cannot be used (%s): admin requests this "
                "worker answers reach it alone",
                control["dir"],
                exc.strerror or exc,
            )
    return create_app(
        models,
        prediction_log=log,
        auth=verifier,
        limits=Limits.from_dict(spec.get("limits", {})),
        access_log=bool(spec.get("access_log", True)),
        on_close=closers,
        challengers=challengers,
        registry=registry,
        reload_interval=float(spec.get("reload_interval", 0.0)),
        edge_sync=edge_sync,
        peers=peers,
    )
