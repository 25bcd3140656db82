"""Tracking routes: experiments and runs, a thin translation onto the MetadataStore.

Handlers are plain ``def`` (the store blocks), so FastAPI runs them in its thread pool.
Responses are built from the entities' ``to_dict()`` and sent as-is (no response-model
re-validation): log-batch is the hot path and answers 204 with no body.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.params import Depends

from gyre.server._models import (
    CreateExperimentRequest,
    CreateRunRequest,
    LogBatchRequest,
    LogInputsRequest,
    SearchRunsRequest,
    UpdateRunRequest,
)
from gyre.server._responses import JSON
from gyre.store._protocol import MetadataStore

__all__ = ["tracking_router"]


def tracking_router(
    store: MetadataStore, *, read: list[Depends], write: list[Depends]
) -> APIRouter:
    """Routes under ``/experiments`` and ``/runs``; ``read``/``write`` guard them."""
    router = APIRouter()

    @router.post("/experiments", dependencies=write, tags=["experiments"])
    def create_experiment(body: CreateExperimentRequest) -> JSON:
        """Create an experiment; 409 CONFLICT if the name is taken."""
        return JSON(store.create_experiment(body.name, body.tags).to_dict())

    @router.get("/experiments", dependencies=read, tags=["experiments"])
    def list_experiments(
        name: Annotated[str | None, Query(description="Only the experiment so named.")] = None,
        max_results: int = 1000,
    ) -> JSON:
        """Experiments, or (with ``name``) a list of zero or one experiment."""
        if name is not None:
            found = store.get_experiment_by_name(name)
            items = [found] if found is not None else []
        else:
            items = store.search_experiments(max_results=max_results)
        return JSON({"experiments": [e.to_dict() for e in items]})

    @router.get("/experiments/{experiment_id}", dependencies=read, tags=["experiments"])
    def get_experiment(experiment_id: str) -> JSON:
        """One experiment; 404 NOT_FOUND naming the id."""
        return JSON(store.get_experiment(experiment_id).to_dict())

    @router.post("/runs", dependencies=write, tags=["runs"])
    def create_run(body: CreateRunRequest) -> JSON:
        """Start a run. With a client-chosen ``run_id``, repeating the call returns that run."""
        run = store.create_run(
            body.experiment_id,
            name=body.name,
            tags=body.tags,
            parent_run_id=body.parent_run_id,
            start_time=body.start_time,
            run_id=body.run_id,
        )
        return JSON(run.to_dict())

    @router.post("/runs/search", dependencies=read, tags=["runs"])
    def search_runs(body: SearchRunsRequest) -> JSON:
        """Runs matching ``filter``, one page at a time (pass back ``next_page_token``)."""
        page = store.search_runs(
            body.experiment_ids,
            filter=body.filter,
            order_by=body.order_by,
            max_results=body.max_results,
            page_token=body.page_token,
        )
        content: dict[str, Any] = {
            "runs": [r.to_dict() for r in page.items],
            "next_page_token": page.next_page_token,
        }
        return JSON(content)

    @router.get("/runs/{run_id}", dependencies=read, tags=["runs"])
    def get_run(run_id: str) -> JSON:
        """One run with its params, tags, latest metrics and inputs."""
        return JSON(store.get_run(run_id).to_dict())

    @router.patch("/runs/{run_id}", dependencies=write, tags=["runs"])
    def update_run(run_id: str, body: UpdateRunRequest) -> JSON:
        """Set a run's status (and end time, error)."""
        run = store.update_run(run_id, status=body.status, end_time=body.end_time, error=body.error)
        return JSON(run.to_dict())

    @router.post("/runs/{run_id}/log-batch", status_code=204, dependencies=write, tags=["runs"])
    def log_batch(run_id: str, body: LogBatchRequest) -> Response:
        """Write metrics, params and tags, all or nothing; a repeated ``batch_id`` is a no-op."""
        store.log_batch(
            run_id,
            metrics=[m.to_metric() for m in body.metrics],
            params=body.params,
            tags=body.tags,
            batch_id=body.batch_id,
        )
        return Response(status_code=204)

    @router.get("/runs/{run_id}/metric-history", dependencies=read, tags=["runs"])
    def metric_history(run_id: str, key: str) -> JSON:
        """Every point of metric ``key``, ordered by step then timestamp."""
        points = store.get_metric_history(run_id, key)
        return JSON({"metrics": [m.to_dict() for m in points]})

    @router.post("/runs/{run_id}/inputs", status_code=204, dependencies=write, tags=["runs"])
    def log_inputs(run_id: str, body: LogInputsRequest) -> Response:
        """Link a dataset version to the run as an input (``context``: training, eval...)."""
        store.log_inputs(run_id, body.dataset.to_dataset(), body.context)
        return Response(status_code=204)

    return router
