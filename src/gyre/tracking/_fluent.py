"""The module-level API: ``with gyre.start_run(): gyre.log_metric(...)``.

Runs started inside another active run become its children. Leaving the ``with`` block
ends the run: FINISHED, FAILED (an exception escaped; its message is recorded) or KILLED
(KeyboardInterrupt). At interpreter exit everything buffered is written and runs still
open are ended (FAILED if the program died of an uncaught exception, else FINISHED).
"""

from __future__ import annotations

import atexit
import sys
import threading
import types
from pathlib import Path
from typing import Any

from gyre.artifacts import BlobRef
from gyre.entities import Dataset, Page, Run, RunStatus
from gyre.errors import InvalidArgument
from gyre.tracking._client import Client, ModelInfo
from gyre.tracking._context import source_tags

__all__ = [
    "ActiveRun",
    "active_run",
    "end_run",
    "flush",
    "get_client",
    "get_tracking_uri",
    "log_artifact",
    "log_artifacts",
    "log_dataset",
    "log_metric",
    "log_metrics",
    "log_model",
    "log_param",
    "log_params",
    "search_runs",
    "set_tag",
    "set_tags",
    "set_tracking_uri",
    "start_run",
]

_lock = threading.RLock()
_client: Client | None = None
_tracking_uri: str | None = None
_stack: list[ActiveRun] = []
_hooks_installed = False
_uncaught: list[BaseException] = []


class ActiveRun:
    """The run a ``with gyre.start_run()`` block logs into."""

    def __init__(self, run: Run, client: Client) -> None:
        self.run = run
        self.client = client
        self.run_id = run.run_id
        self.experiment_id = run.experiment_id
        self.name = run.name
        self._source: threading.Thread | None = None

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        if exc_type is None:
            end_run(RunStatus.FINISHED, run=self)
        elif issubclass(exc_type, KeyboardInterrupt):
            end_run(RunStatus.KILLED, error="KeyboardInterrupt", run=self)
        else:
            end_run(RunStatus.FAILED, error=f"{exc_type.__name__}: {exc}", run=self)

    def __repr__(self) -> str:
        return f"ActiveRun(run_id={self.run_id!r}, name={self.name!r})"


def set_tracking_uri(uri: str | None) -> None:
    """Point the module-level API at another store (None: back to GYRE_TRACKING_URI)."""
    global _client, _tracking_uri
    with _lock:
        if _stack:
            raise InvalidArgument(
                f"cannot switch tracking URI to {uri!r} while run {_stack[-1].run_id!r} is active",
                hint="end the run first",
            )
        if _client is not None:
            _client.close()
        _client, _tracking_uri = None, uri


def get_tracking_uri() -> str:
    return get_client().tracking_uri


def get_client() -> Client:
    global _client
    with _lock:
        if _client is None:
            _client = Client(_tracking_uri)
            _install_hooks()
        return _client


def start_run(
    experiment: str | None = None,
    name: str | None = None,
    tags: dict[str, Any] | None = None,
) -> ActiveRun:
    """Start a run (a child of the active run, if there is one) and make it active.

    >>> with gyre.start_run(experiment="churn", name="rf-depth-8") as run:
    ...     gyre.log_param("max_depth", 8)
    ...     gyre.log_metric("rmse", 0.27)
    """
    client = get_client()
    with _lock:
        parent = _stack[-1] if _stack else None
        run = client.create_run(
            experiment,
            name=name,
            tags=tags,
            parent_run_id=parent.run_id if parent else None,
            # a child run stays in its parent's experiment unless told otherwise
            experiment_id=parent.experiment_id if parent and experiment is None else None,
        )
        active = ActiveRun(run, client)
        _stack.append(active)
    # git and package versions: gathered off the caller's path, logged as tags.
    active._source = threading.Thread(
        target=_record_source, args=(client, run.run_id), name="gyre-source-tags", daemon=True
    )
    active._source.start()
    return active


def _record_source(client: Client, run_id: str) -> None:
    client.set_tags(run_id, source_tags())


def active_run() -> ActiveRun | None:
    with _lock:
        return _stack[-1] if _stack else None


def _require_run() -> ActiveRun:
    with _lock:
        if not _stack:
            raise InvalidArgument(
                "no active run", hint="wrap the logging in `with gyre.start_run():`"
            )
        return _stack[-1]


def end_run(
    status: RunStatus | str = RunStatus.FINISHED,
    *,
    error: str | None = None,
    run: ActiveRun | None = None,
) -> None:
    """End the active run (and any children still open inside it)."""
    with _lock:
        if not _stack:
            return
        target = run if run is not None and run in _stack else _stack[-1]
        while _stack:
            top = _stack.pop()
            if top._source is not None:
                top._source.join(timeout=10)  # its tags belong to the run
            top.client.set_terminated(top.run_id, status, error)
            if top is target:
                return


def flush() -> None:
    """Write everything logged so far. When it returns, a kill -9 loses nothing."""
    if _client is not None:
        _client.flush()


def log_metric(key: str, value: float, step: int = 0, timestamp: int | None = None) -> None:
    a = _require_run()
    a.client.log_metric(a.run_id, key, value, step, timestamp)


def log_metrics(metrics: dict[str, float], step: int = 0, timestamp: int | None = None) -> None:
    a = _require_run()
    a.client.log_metrics(a.run_id, metrics, step, timestamp)


def log_param(key: str, value: Any) -> None:
    a = _require_run()
    a.client.log_param(a.run_id, key, value)


def log_params(params: dict[str, Any]) -> None:
    a = _require_run()
    a.client.log_params(a.run_id, params)


def set_tag(key: str, value: Any) -> None:
    a = _require_run()
    a.client.set_tag(a.run_id, key, value)


def set_tags(tags: dict[str, Any]) -> None:
    a = _require_run()
    a.client.set_tags(a.run_id, tags)


def log_artifact(local_path: str | Path, artifact_path: str | None = None) -> dict[str, BlobRef]:
    """Upload a file (or a folder) into the active run's artifacts."""
    a = _require_run()
    return a.client.log_artifact(a.run_id, local_path, artifact_path)


def log_artifacts(local_dir: str | Path, artifact_path: str | None = None) -> dict[str, BlobRef]:
    """Upload every file below ``local_dir`` into the active run's artifacts."""
    path = Path(local_dir)
    if not path.is_dir():
        raise InvalidArgument(
            f"{str(path)!r} is not a folder", hint="use log_artifact for a single file"
        )
    return log_artifact(path, artifact_path)


def log_dataset(data: Any, name: str, context: str = "train") -> Dataset:
    """Record a dataset version (by content hash) as an input of the active run."""
    a = _require_run()
    return a.client.log_dataset(a.run_id, data, name, context)


def log_model(
    model: Any,
    name: str = "model",
    *,
    signature: Any = None,
    input_example: Any = None,
    reference_data: Any = None,
    flavor: str | None = None,
    allow_pickle: bool = False,
) -> ModelInfo:
    """Log ``model`` into the active run as a self-describing package.

    >>> info = gyre.log_model(pipeline, input_example=X[:5], reference_data=X_train)
    >>> gyre.register_model(info.uri, "churn")
    """
    a = _require_run()
    return a.client.log_model(
        a.run_id,
        model,
        name,
        signature=signature,
        input_example=input_example,
        reference_data=reference_data,
        flavor=flavor,
        allow_pickle=allow_pickle,
    )


def search_runs(
    experiments: list[str] | str | None = None,
    filter: str = "",
    order_by: list[str] | tuple[str, ...] = (),
    max_results: int = 100,
    page_token: str | None = None,
) -> Page:
    """Runs matching ``filter`` (e.g. ``"metrics.rmse < 0.3 and params.model = 'rf'"``)."""
    return get_client().search_runs(experiments, filter, order_by, max_results, page_token)


# -- process lifecycle ----------------------------------------------------------------


def _install_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    previous = sys.excepthook

    def _excepthook(
        exc_type: type[BaseException], exc: BaseException, tb: types.TracebackType | None
    ) -> None:
        _uncaught.append(exc)
        previous(exc_type, exc, tb)

    sys.excepthook = _excepthook
    atexit.register(_at_exit)


def _at_exit() -> None:
    with _lock:
        if _uncaught:
            exc = _uncaught[-1]
            while _stack:
                end_run(RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        while _stack:
            end_run(RunStatus.FINISHED)
        if _client is not None:
            _client.close()
