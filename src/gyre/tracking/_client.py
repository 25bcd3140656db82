"""``gyre.Client``: every tracking operation, against any store, by URI.

>>> client = Client("sqlite:////tmp/gyre-doc.db")
>>> run = client.create_run("doc-experiment")
>>> client.log_metric(run.run_id, "rmse", 0.25, step=1)
>>> client.flush()
>>> client.get_run(run.run_id).metrics["rmse"]
0.25
"""

from __future__ import annotations

import math
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gyre import artifacts as _artifacts
from gyre import config
from gyre.artifacts import ArtifactStore, BlobRef
from gyre.entities import Dataset, Experiment, Metric, Page, Run, RunStatus
from gyre.errors import Conflict, InvalidArgument, NotFound
from gyre.store import MetadataStore, open_store
from gyre.tracking._datasets import describe
from gyre.tracking._writer import BatchWriter

__all__ = ["Client", "ModelInfo"]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Client:
    """Tracking operations on the store at ``tracking_uri`` (default: GYRE_TRACKING_URI).

    Metric, param and tag writes are buffered and written in batches by a background
    thread; :meth:`flush` returns once everything logged so far is committed.
    """

    def __init__(self, tracking_uri: str | None = None, artifact_uri: str | None = None) -> None:
        self.tracking_uri = tracking_uri or config.get("GYRE_TRACKING_URI")
        self._artifact_uri = artifact_uri
        self._store: MetadataStore | None = None
        self._artifact_store: ArtifactStore | None = None
        self._writer: BatchWriter | None = None
        self._open_lock = threading.Lock()
        self._params_seen: dict[str, dict[str, str]] = {}
        self._experiments: dict[str, str] = {}

    # -- plumbing ------------------------------------------------------------------------

    @property
    def store(self) -> MetadataStore:
        if self._store is None:
            with self._open_lock:
                if self._store is None:
                    self._store = open_store(self.tracking_uri)
        return self._store

    @property
    def artifact_store(self) -> ArtifactStore:
        if self._artifact_store is None:
            with self._open_lock:
                if self._artifact_store is None:
                    self._artifact_store = _artifacts.open_artifact_store(self.artifact_uri)
        return self._artifact_store

    @property
    def artifact_uri(self) -> str:
        return config.artifact_uri_for(self.tracking_uri, self._artifact_uri)

    @property
    def writer(self) -> BatchWriter:
        if self._writer is None:
            store = self.store
            with self._open_lock:
                if self._writer is None:
                    interval = config.get_int("GYRE_FLUSH_INTERVAL_MS") / 1000
                    self._writer = BatchWriter(store, interval)
        return self._writer

    def flush(self) -> None:
        """Write everything logged so far; when this returns it survives a kill -9."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._store is not None:
            self._store.close()
        _artifacts.close_artifact_store(self._artifact_store)

    # -- experiments ---------------------------------------------------------------------

    def create_experiment(self, name: str, tags: dict[str, str] | None = None) -> Experiment:
        return self.store.create_experiment(name, tags)

    def get_experiment(self, experiment_id: str) -> Experiment:
        return self.store.get_experiment(experiment_id)

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        return self.store.get_experiment_by_name(name)

    def list_experiments(self) -> list[Experiment]:
        return self.store.search_experiments()

    def experiment_id(self, name: str, *, create: bool = True) -> str:
        """The id of experiment ``name``, creating it if ``create`` (safe under races)."""
        cached = self._experiments.get(name)
        if cached is not None:
            return cached
        found = self.store.get_experiment_by_name(name)
        if found is None:
            if not create:
                raise NotFound(
                    f"experiment {name!r} not found",
                    hint="`gyre experiments list` shows the experiments there are",
                )
            try:
                found = self.store.create_experiment(name)
            except Conflict:  # another process created it between our two calls
                found = self.store.get_experiment_by_name(name)
                assert found is not None
        self._experiments[name] = found.experiment_id
        return found.experiment_id

    # -- runs ----------------------------------------------------------------------------

    def create_run(
        self,
        experiment: str | Experiment | None = None,
        *,
        name: str | None = None,
        tags: dict[str, str] | None = None,
        parent_run_id: str | None = None,
        experiment_id: str | None = None,
    ) -> Run:
        """Start a RUNNING run in experiment ``experiment`` (a name, created if new, or an
        :class:`Experiment`), or in the experiment with id ``experiment_id``."""
        if isinstance(experiment, Experiment):
            experiment_id = experiment_id or experiment.experiment_id
            experiment = None
        elif experiment is not None and not isinstance(experiment, str):
            raise InvalidArgument(
                f"experiment {experiment!r} is neither a name nor an Experiment",
                hint="pass the experiment's name, e.g. create_run('churn')",
            )
        exp_id = experiment_id or self.experiment_id(experiment or config.get("GYRE_EXPERIMENT"))
        run = self.store.create_run(
            exp_id, name=name, tags=_str_dict("tag", tags), parent_run_id=parent_run_id
        )
        self._params_seen[run.run_id] = dict(run.params)
        return run

    def get_run(self, run_id: str) -> Run:
        return self.store.get_run(run_id)

    def set_terminated(
        self, run_id: str, status: RunStatus | str = RunStatus.FINISHED, error: str | None = None
    ) -> Run:
        """Flush, then mark the run FINISHED, FAILED or KILLED."""
        self.flush()
        try:
            status = RunStatus(status)
        except ValueError:
            raise InvalidArgument(
                f"run status {status!r} is not valid",
                hint=f"use one of {', '.join(s.value for s in RunStatus)}",
            ) from None
        return self.store.update_run(run_id, status=status, end_time=_now_ms(), error=error)

    def search_runs(
        self,
        experiments: Sequence[str] | str | None = None,
        filter: str = "",
        order_by: Sequence[str] = (),
        max_results: int = 100,
        page_token: str | None = None,
    ) -> Page:
        """Runs of the named experiments (default: all) matching ``filter``.

        >>> client.search_runs("churn", "metrics.rmse < 0.3 and params.model = 'rf'")
        """
        if isinstance(experiments, str):
            experiments = [experiments]
        if experiments is None:
            ids = [e.experiment_id for e in self.store.search_experiments()]
        else:
            ids = [self.experiment_id(name, create=False) for name in experiments]
        return self.store.search_runs(
            ids, filter=filter, order_by=order_by, max_results=max_results, page_token=page_token
        )

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        self.flush()
        return self.store.get_metric_history(run_id, key)

    # -- logging (buffered) --------------------------------------------------------------

    def log_metric(
        self,
        run_id: str,
        key: str,
        value: float,
        step: int = 0,
        timestamp: int | None = None,
    ) -> None:
        if value.__class__ is not float:
            value = _number(key, value)
        self.writer.add_metric(
            run_id,
            Metric(key, value, step, timestamp if timestamp is not None else _now_ms()),
        )

    def log_metrics(
        self,
        run_id: str,
        metrics: dict[str, float],
        step: int = 0,
        timestamp: int | None = None,
    ) -> None:
        ts = timestamp if timestamp is not None else _now_ms()
        points = []
        for k, v in metrics.items():
            if v.__class__ is not float:  # the common case skips the checks
                v = _number(k, v)
            points.append(Metric(k, v, step, ts))
        self.writer.add(run_id, metrics=points)

    def log_param(self, run_id: str, key: str, value: Any) -> None:
        self.log_params(run_id, {key: value})

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        """Params are write-once: logging a different value for a key raises Conflict."""
        values = _str_dict("param", params)
        seen = self._params_seen.get(run_id)
        if seen is None:
            seen = self._params_seen[run_id] = dict(self.store.get_run(run_id).params)
        for key, value in values.items():
            old = seen.get(key)
            if old is not None and old != value:
                raise Conflict(
                    f"param {key!r} of run {run_id!r} is already {old!r}; cannot change it to "
                    f"{value!r}",
                    hint="params are write-once: log a new param name or start a new run",
                )
        seen.update(values)
        self.writer.add(run_id, params=values)

    def set_tag(self, run_id: str, key: str, value: Any) -> None:
        self.set_tags(run_id, {key: value})

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        self.writer.add(run_id, tags=_str_dict("tag", tags))

    # -- datasets and artifacts (written at once) ----------------------------------------

    def log_dataset(self, run_id: str, data: Any, name: str, context: str = "train") -> Dataset:
        """Record ``data`` (DataFrame, ndarray, dict of columns or path) as an input."""
        dataset = describe(data, name)
        self.store.log_inputs(run_id, dataset, context)
        return dataset

    def log_artifact(
        self, run_id: str, local_path: str | Path, artifact_path: str | None = None
    ) -> dict[str, BlobRef]:
        """Upload a file or folder into the run's artifacts (under ``artifact_path``)."""
        return _artifacts.upload(
            self.artifact_store, f"runs/{run_id}", Path(local_path), artifact_path
        )

    def log_model(
        self,
        run_id: str,
        model: Any,
        name: str = "model",
        *,
        signature: Any = None,
        input_example: Any = None,
        reference_data: Any = None,
        flavor: str | None = None,
        allow_pickle: bool = False,
    ) -> ModelInfo:
        """Save ``model`` as a package into the run's artifacts under ``name``.

        The package records the run, the datasets the run used (by digest), the code commit
        and the run's metrics at logging time. Register it with
        ``gyre.register_model(info.uri, "churn")``."""
        from gyre.artifacts import validate_artifact_path
        from gyre.models import save_model

        validate_artifact_path(name)
        self.flush()
        run = self.store.get_run(run_id)
        metadata = {
            "run_id": run.run_id,
            "experiment_id": run.experiment_id,
            "git_commit": run.tags.get("gyre.source.git.commit"),
            "datasets": [
                {"name": i.dataset.name, "context": i.context, "digest": i.dataset.digest}
                for i in run.inputs
            ],
            "metrics": {k: v for k, v in run.metrics.items() if math.isfinite(v)},
        }
        with tempfile.TemporaryDirectory(prefix="gyre-model-") as tmp:
            package = Path(tmp) / "package"
            manifest = save_model(
                model,
                package,
                flavor=flavor,
                signature=signature,
                input_example=input_example,
                reference_data=reference_data,
                metadata=metadata,
                allow_pickle=allow_pickle,
            )
            _artifacts.upload(self.artifact_store, f"runs/{run_id}", package, name)
        return ModelInfo(uri=f"runs:/{run_id}/{name}", run_id=run_id, manifest=manifest)

    def list_artifacts(self, run_id: str, prefix: str = "") -> list[tuple[str, BlobRef]]:
        return _artifacts.list_artifacts(self.artifact_store, f"runs/{run_id}", prefix)

    def download_artifacts(
        self, run_id: str, dest: str | Path, artifact_path: str | None = None
    ) -> Path:
        return _artifacts.download(self.artifact_store, f"runs/{run_id}", Path(dest), artifact_path)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """Where a logged model is: ``uri`` (``runs:/<run_id>/<name>``) and its manifest."""

    uri: str
    run_id: str
    manifest: Any


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            import numbers

            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                return float(value)
        except (TypeError, ValueError):
            pass
        raise InvalidArgument(
            f"metric {key!r} value {value!r} is not a number",
            hint="log numbers as metrics; log text as a param or tag",
        )
    return float(value)


def _str_dict(kind: str, values: dict[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (values or {}).items():
        if not isinstance(key, str) or not key:
            raise InvalidArgument(f"{kind} name {key!r} must be a non-empty string")
        if isinstance(value, float) and math.isnan(value):
            out[key] = "nan"
        else:
            out[key] = value if isinstance(value, str) else str(value)
    return out
