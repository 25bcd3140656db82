"""The metadata store seam: one protocol, implemented by SQL (SQLite, PostgreSQL) and HTTP.

Every implementation passes :func:`gyre.testing.check_store`. Times are milliseconds since
the epoch. ``log_batch`` is the one write path for metrics, params and tags; a ``batch_id``
makes it idempotent, so a client that retries after a lost response never duplicates points.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from gyre.entities import Dataset, Experiment, Metric, Page, Run, RunStatus

__all__ = ["MetadataStore"]


@runtime_checkable
class MetadataStore(Protocol):
    uri: str

    def create_experiment(self, name: str, tags: dict[str, str] | None = None) -> Experiment:
        """Create an experiment; Conflict if the name is taken."""

    def get_experiment(self, experiment_id: str) -> Experiment:
        """NotFound naming the id if there is none."""

    def get_experiment_by_name(self, name: str) -> Experiment | None: ...

    def search_experiments(self, max_results: int = 1000) -> list[Experiment]: ...

    def create_run(
        self,
        experiment_id: str,
        *,
        name: str | None = None,
        tags: dict[str, str] | None = None,
        parent_run_id: str | None = None,
        start_time: int | None = None,
        run_id: str | None = None,
    ) -> Run:
        """A new RUNNING run. ``run_id`` lets a client choose the id (idempotent retry)."""

    def get_run(self, run_id: str) -> Run:
        """NotFound naming the id if there is none."""

    def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        end_time: int | None = None,
        error: str | None = None,
    ) -> Run: ...

    def log_batch(
        self,
        run_id: str,
        *,
        metrics: Sequence[Metric] = (),
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
        batch_id: str | None = None,
    ) -> None:
        """Write all or nothing. Conflict if a param already holds a different value."""

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        """Every point of ``key`` ordered by step, then timestamp."""

    def search_runs(
        self,
        experiment_ids: Sequence[str],
        *,
        filter: str = "",
        order_by: Sequence[str] = (),
        max_results: int = 100,
        page_token: str | None = None,
    ) -> Page:
        """Runs matching ``filter``, evaluated by the backend (see gyre.store.filter)."""

    def log_inputs(self, run_id: str, dataset: Dataset, context: str) -> None:
        """Link a dataset version (keyed by name and digest) to a run as an input."""

    def close(self) -> None: ...
