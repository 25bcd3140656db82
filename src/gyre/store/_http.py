"""HttpStore: the MetadataStore protocol spoken to a ``gyre server`` over its REST API.

One keep-alive ``httpx.Client`` per store. Connection failures and 502/503/504 answers are
retried with exponential back-off for at most ``retry_seconds`` in total. Retrying is safe:
``create_run`` sends a client-chosen ``run_id`` and ``log_batch`` a ``batch_id``, so a
request applied before its answer was lost is not applied twice. Errors the server reports
are rebuilt with :func:`gyre.errors.from_body`: callers see the same exception class and
message as with an embedded store.

    >>> store = HttpStore("http://127.0.0.1:5050", token="gyre_...")  # doctest: +SKIP
    >>> store.get_run("0f3c...")  # doctest: +SKIP
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx

from gyre import config
from gyre.entities import Dataset, Experiment, Metric, Page, Run, RunStatus
from gyre.errors import BackendUnavailable, Conflict, GyreError, InvalidArgument, from_body

__all__ = ["HttpStore"]

_RETRY_STATUSES = frozenset({502, 503, 504})
# Failures where the server may be restarting, or the answer was lost on the way back.
_RETRY_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
_FIRST_DELAY = 0.05
_MAX_DELAY = 2.0


def _segment(value: str) -> str:
    return quote(value, safe="")


def _metric_dict(metric: Metric) -> dict[str, Any]:
    value: object = metric.value
    # Checked here, not by the server: a non-number cannot even be put into JSON faithfully.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgument(f"metric {metric.key!r} value {value!r} is not a number")
    return metric.to_dict()


class HttpStore:
    """A MetadataStore backed by a ``gyre server`` at ``uri`` (``http(s)://host:port``).

    ``token``: API token sent as ``Authorization: Bearer``; by default the setting
    ``GYRE_TOKEN``. ``retry_seconds``: the longest a call keeps retrying an unreachable or
    overloaded server before raising BackendUnavailable. ``transport``: an httpx transport
    to use instead of the network (tests).
    """

    def __init__(
        self,
        uri: str,
        token: str | None = None,
        *,
        retry_seconds: float = 30.0,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.uri = uri
        self.retry_seconds = retry_seconds
        secret = token if token is not None else config.get("GYRE_TOKEN")
        headers = {"Accept": "application/json"}
        if secret:
            headers["Authorization"] = f"Bearer {secret}"
        self._client = httpx.Client(
            base_url=uri.rstrip("/") + "/api/v1/",
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"HttpStore({self.uri!r})"

    def __enter__(self) -> HttpStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> tuple[httpx.Response, bool]:
        """The server's answer (never a retryable one unless time ran out), and whether an
        earlier attempt may have reached the server without its answer reaching us."""
        deadline = time.monotonic() + self.retry_seconds
        delay = _FIRST_DELAY
        ambiguous = False
        while True:
            try:
                response = self._client.request(method, path, json=json, params=params)
            except _RETRY_ERRORS as exc:
                if not isinstance(exc, httpx.ConnectError):
                    ambiguous = True
                if time.monotonic() + delay > deadline:
                    raise BackendUnavailable(
                        f"gyre server {self.uri!r} is unreachable: {exc or type(exc).__name__}",
                        hint="check that `gyre server` is running there "
                        "and GYRE_TRACKING_URI names it",
                    ) from None
            else:
                if response.status_code not in _RETRY_STATUSES:
                    return response, ambiguous
                ambiguous = True
                if time.monotonic() + delay > deadline:
                    return response, ambiguous
            time.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, _MAX_DELAY)

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        response, _ = self._send(method, path, json=json, params=params)
        return self._result(response)

    def _result(self, response: httpx.Response) -> Any:
        if response.is_success:
            return response.json() if response.content else None
        raise self._error(response)

    def _error(self, response: httpx.Response) -> GyreError:
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text[:200]
        if response.status_code in _RETRY_STATUSES and not isinstance(body, dict):
            return BackendUnavailable(
                f"gyre server {self.uri!r} answered HTTP {response.status_code}",
                hint="the server or a proxy in front of it is overloaded or restarting",
            )
        return from_body(body, response.status_code)

    # -- experiments -------------------------------------------------------------------

    def create_experiment(self, name: str, tags: dict[str, str] | None = None) -> Experiment:
        response, ambiguous = self._send("POST", "experiments", json={"name": name, "tags": tags})
        try:
            return Experiment.from_dict(self._result(response))
        except Conflict:
            # Our first attempt may have created it before its answer was lost.
            found = self.get_experiment_by_name(name) if ambiguous else None
            if found is None:
                raise
            return found

    def get_experiment(self, experiment_id: str) -> Experiment:
        return Experiment.from_dict(self._call("GET", f"experiments/{_segment(experiment_id)}"))

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        found = self._call("GET", "experiments", params={"name": name})["experiments"]
        return Experiment.from_dict(found[0]) if found else None

    def search_experiments(self, max_results: int = 1000) -> list[Experiment]:
        body = self._call("GET", "experiments", params={"max_results": max_results})
        return [Experiment.from_dict(e) for e in body["experiments"]]

    # -- runs --------------------------------------------------------------------------

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
        body = {
            "experiment_id": experiment_id,
            "name": name,
            "tags": tags,
            "parent_run_id": parent_run_id,
            "start_time": start_time,
            # Chosen here so that a retry finds the run the lost attempt created.
            "run_id": run_id or uuid.uuid4().hex,
        }
        return Run.from_dict(self._call("POST", "runs", json=body))

    def get_run(self, run_id: str) -> Run:
        return Run.from_dict(self._call("GET", f"runs/{_segment(run_id)}"))

    def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        end_time: int | None = None,
        error: str | None = None,
    ) -> Run:
        body = {"status": str(status), "end_time": end_time, "error": error}
        return Run.from_dict(self._call("PATCH", f"runs/{_segment(run_id)}", json=body))

    def log_batch(
        self,
        run_id: str,
        *,
        metrics: Sequence[Metric] = (),
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
        batch_id: str | None = None,
    ) -> None:
        body = {
            "metrics": [_metric_dict(m) for m in metrics],
            "params": params,
            "tags": tags,
            # Chosen here so that a retry of an applied batch is a no-op.
            "batch_id": batch_id or uuid.uuid4().hex,
        }
        self._call("POST", f"runs/{_segment(run_id)}/log-batch", json=body)

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        body = self._call("GET", f"runs/{_segment(run_id)}/metric-history", params={"key": key})
        return [Metric.from_dict(m) for m in body["metrics"]]

    def search_runs(
        self,
        experiment_ids: Sequence[str],
        *,
        filter: str = "",
        order_by: Sequence[str] = (),
        max_results: int = 100,
        page_token: str | None = None,
    ) -> Page:
        body = self._call(
            "POST",
            "runs/search",
            json={
                "experiment_ids": list(experiment_ids),
                "filter": filter,
                "order_by": list(order_by),
                "max_results": max_results,
                "page_token": page_token,
            },
        )
        return Page([Run.from_dict(r) for r in body["runs"]], body.get("next_page_token"))

    def log_inputs(self, run_id: str, dataset: Dataset, context: str) -> None:
        body = {"dataset": dataset.to_dict(), "context": context}
        self._call("POST", f"runs/{_segment(run_id)}/inputs", json=body)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()
