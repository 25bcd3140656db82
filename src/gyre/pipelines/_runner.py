"""What a worker does for one step: read the inputs, call the function, store the outputs.

It runs wherever the executor puts it (a thread, a process, a Ray worker) and touches only
the artifact store; the driver does all the tracking.
"""

from __future__ import annotations

import atexit
import contextlib
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gyre import artifacts as _artifacts
from gyre.artifacts import ArtifactStore
from gyre.errors import InvalidArgument
from gyre.pipelines._artifacts import OutputRef, load_output, save_output

__all__ = ["StepTask", "TaskResult", "run_task"]

_stores: dict[str, ArtifactStore] = {}
_stores_lock = threading.Lock()


@dataclass(slots=True)
class StepTask:
    """Everything a worker needs to run one attempt of one step."""

    node: str
    func: Callable[..., Any]
    literals: dict[str, Any]
    inputs: dict[str, OutputRef]
    outputs: tuple[str, ...]
    run_id: str
    artifact_uri: str
    model_metadata: dict[str, Any] = field(default_factory=dict)
    modules: frozenset[str] = frozenset()  # project modules the step's code reaches


@dataclass(frozen=True, slots=True)
class TaskResult:
    outputs: dict[str, OutputRef]
    seconds: float


def _store(uri: str) -> ArtifactStore:
    """The artifact store at ``uri``, opened once per process and kept for every step after
    (a step's worker thread or process reuses its connections); closed when the process
    exits."""
    with _stores_lock:
        store = _stores.get(uri)
        if store is None:
            store = _stores[uri] = _artifacts.open_artifact_store(uri)
        return store


def _close_stores() -> None:
    """Close the stores :func:`_store` opened (at exit: an HTTP store's pooled socket is
    otherwise left to the interpreter's teardown, which warns about it)."""
    with _stores_lock:
        stores = list(_stores.values())
        _stores.clear()
    for store in stores:
        with contextlib.suppress(Exception):  # (exiting: nothing is waiting on it)
            _artifacts.close_artifact_store(store)


atexit.register(_close_stores)


def run_task(task: StepTask) -> TaskResult:
    store = _store(task.artifact_uri)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gyre-step-") as tmp:
        kwargs = dict(task.literals)
        for arg, ref in task.inputs.items():
            kwargs[arg] = load_output(store, ref, Path(tmp))
        result = task.func(**kwargs)
        if len(task.outputs) == 1:
            values = [result]
        else:
            if not isinstance(result, tuple) or len(result) != len(task.outputs):
                got = f"a tuple of {len(result)}" if isinstance(result, tuple) else "one value"
                raise InvalidArgument(
                    f"step {task.node!r} declares outputs {list(task.outputs)!r} but returned "
                    f"{got}",
                    hint=f"return a tuple of {len(task.outputs)} values",
                )
            values = list(result)
        outputs = {
            name: save_output(store, task.run_id, task.node, name, value, task.model_metadata)
            for name, value in zip(task.outputs, values, strict=True)
        }
    return TaskResult(outputs, time.perf_counter() - started)
