"""The app as uvicorn imports it in each worker process (``factory=True``).

``gyre serve`` resolves the model URIs once, in the parent process, and hands the result to
its workers as JSON in ``_GYRE_SERVE_SPEC``: the models (name, version, local package
folder), batching, limits, whether auth is on, the tracking URI holding the tokens, and
the prediction-log spool folder (absent with ``--no-log``). Each worker then loads the
packages in its lifespan start-up.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import Any

from gyre.errors import InvalidArgument
from gyre.predictions import PredictionLog as Log
from gyre.serving._app import Limits, PredictionLog, create_app
from gyre.serving._auth import TokenVerifier
from gyre.serving._front import Front
from gyre.serving._slots import Batching, ModelSpec

__all__ = ["SPEC_ENV", "app_from_env"]

SPEC_ENV = "_GYRE_SERVE_SPEC"

logger = logging.getLogger("gyre.serving")


def _open_log(spool_dir: str) -> PredictionLog:
    from gyre import config
    from gyre.artifacts import open_artifact_store

    artifacts = open_artifact_store(config.get("GYRE_ARTIFACT_URI"))
    return Log(spool_dir, artifacts)


def app_from_env() -> Front:
    """Build the app from ``_GYRE_SERVE_SPEC`` (set by ``gyre serve``)."""
    raw = os.environ.get(SPEC_ENV)
    if not raw:
        raise InvalidArgument(
            f"{SPEC_ENV} is not set", hint="start the prediction server with `gyre serve`"
        )
    spec: dict[str, Any] = json.loads(raw)

    batching = Batching(**spec.get("batching", {}))
    models = [
        ModelSpec(m["name"], m["version"], m["path"], m.get("source", ""), batching)
        for m in spec["models"]
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
    log = _open_log(spec["spool_dir"]) if spec.get("spool_dir") else None
    return create_app(
        models,
        prediction_log=log,
        auth=verifier,
        limits=Limits.from_dict(spec.get("limits", {})),
        access_log=bool(spec.get("access_log", True)),
        on_close=closers,
    )
