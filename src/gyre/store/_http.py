"""HttpStore: the MetadataStore and RegistryStore protocols spoken to a ``gyre server``.

One keep-alive ``httpx.Client`` per store. Connection failures and 502/503/504 answers are
retried with exponential back-off for at most ``retry_seconds`` in total. Retrying is safe:
``create_run`` sends a client-chosen ``run_id`` and ``log_batch`` a ``batch_id``, so a
request applied before its answer was lost is not applied twice. Calls that have no such
key (a new model version, an alias move, an audit entry) are retried only while the
request surely never arrived. Errors the server reports are rebuilt with
:func:`gyre.errors.from_body`: callers see the same exception class and message as with an
embedded store.

    >>> store = HttpStore("http://127.0.0.1:5050", token="gyre_...")  # doctest: +SKIP
    >>> store.get_run("0f3c...")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx

from gyre._http import (
    RETRY_ERRORS,
    RETRY_STATUSES,
    UNPROCESSED_STATUSES,
    UNSENT_ERRORS,
    Backoff,
    make_client,
)
from gyre._http import retry_seconds as retry_seconds_setting
from gyre.entities import (
    Alert,
    AuditEntry,
    Dataset,
    Experiment,
    Incident,
    Metric,
    ModelVersion,
    Monitor,
    Page,
    RegisteredModel,
    Run,
    RunStatus,
    encode_float,
)
from gyre.errors import BackendUnavailable, Conflict, GyreError, InvalidArgument, from_body
from gyre.store._trigger import Trigger

__all__ = ["HttpStore"]

_JSON_HEADERS = {"Content-Type": "application/json"}


def _segment(value: str) -> str:
    # Dots escaped too, so that no URL normalisation turns ".." into another route: the
    # server's store must see the value, and refuse it by name.
    return quote(value, safe="").replace(".", "%2E")


def _model(name: str) -> str:
    return f"models/{_segment(name)}"


def _version(name: str, version: int) -> str:
    return f"models/{_segment(name)}/versions/{_segment(str(version))}"


def _alias(name: str, alias: str) -> str:
    return f"models/{_segment(name)}/aliases/{_segment(alias)}"


def _dumps(body: Any) -> bytes:
    # Like the SQL store: free-form values (gate reports, audit details) that JSON cannot
    # represent are stored as their str(); NaN and infinities pass as Python writes them.
    return json.dumps(body, default=str, separators=(",", ":")).encode()


def _metric_dict(metric: Metric) -> dict[str, Any]:
    value: object = metric.value
    # Checked here, not by the server: a non-number cannot even be put into JSON faithfully.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgument(f"metric {metric.key!r} value {value!r} is not a number")
    return metric.to_dict()


class HttpStore:
    """A MetadataStore backed by a ``gyre server`` at ``uri`` (``http(s)://host:port``).

    ``token``: API token sent as ``Authorization: Bearer``; by default the setting
    ``GYRE_TOKEN``. ``retry_seconds`` (default: the setting GYRE_HTTP_RETRY_S, 30): the
    longest a call keeps retrying an unreachable or overloaded server before raising
    BackendUnavailable. ``transport``: an httpx transport to use instead of the network
    (tests).
    """

    def __init__(
        self,
        uri: str,
        token: str | None = None,
        *,
        retry_seconds: float | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.uri = uri
        self.retry_seconds = retry_seconds_setting(retry_seconds)
        self._client = make_client(
            uri, "/api/v1/", token=token, timeout=timeout, transport=transport, accept_json=True
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
        body: Any = None,
        params: dict[str, Any] | None = None,
        idempotent: bool = True,
    ) -> tuple[httpx.Response, bool]:
        """The server's answer, and whether an earlier attempt may have been applied
        without its answer reaching us.

        ``idempotent=False`` (a call that must not be applied twice, such as numbering a new
        model version) retries only failures where the request surely never arrived: the
        connection could not be made, or the server answered 503.
        """
        content = None if body is None else _dumps(body)
        headers = _JSON_HEADERS if content is not None else None
        retry_statuses = RETRY_STATUSES if idempotent else UNPROCESSED_STATUSES
        retry_errors = RETRY_ERRORS if idempotent else UNSENT_ERRORS
        backoff = Backoff(self.retry_seconds, self.uri)
        ambiguous = False
        while True:
            reason = ""
            try:
                response = self._client.request(
                    method, path, content=content, params=params, headers=headers
                )
            except RETRY_ERRORS as exc:
                if not isinstance(exc, UNSENT_ERRORS):
                    ambiguous = True
                if not isinstance(exc, retry_errors) or backoff.exhausted:
                    raise self._unreachable(exc, ambiguous) from None
                reason = str(exc) or type(exc).__name__
            else:
                if response.status_code not in retry_statuses:
                    return response, ambiguous
                ambiguous = ambiguous or response.status_code != 503
                if backoff.exhausted:
                    return response, ambiguous
                reason = f"HTTP {response.status_code}"
            backoff.wait(reason)

    def _unreachable(self, exc: httpx.TransportError, ambiguous: bool) -> BackendUnavailable:
        reason = str(exc) or type(exc).__name__
        if ambiguous:
            return BackendUnavailable(
                f"lost the connection to gyre server {self.uri!r} during a request: {reason}",
                hint="the change may or may not have been made; check before repeating it",
            )
        return BackendUnavailable(
            f"gyre server {self.uri!r} is unreachable: {reason}",
            hint="check that `gyre server` is running there and GYRE_TRACKING_URI names it",
        )

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        idempotent: bool = True,
    ) -> Any:
        response, _ = self._send(method, path, body=body, params=params, idempotent=idempotent)
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
        if response.status_code in RETRY_STATUSES and not isinstance(body, dict):
            return BackendUnavailable(
                f"gyre server {self.uri!r} answered HTTP {response.status_code}",
                hint="the server or a proxy in front of it is overloaded or restarting",
            )
        return from_body(body, response.status_code)

    # -- experiments -------------------------------------------------------------------

    def create_experiment(self, name: str, tags: dict[str, str] | None = None) -> Experiment:
        response, ambiguous = self._send("POST", "experiments", body={"name": name, "tags": tags})
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
        return Run.from_dict(self._call("POST", "runs", body=body))

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
        return Run.from_dict(self._call("PATCH", f"runs/{_segment(run_id)}", body=body))

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
        self._call("POST", f"runs/{_segment(run_id)}/log-batch", body=body)

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
            body={
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
        self._call("POST", f"runs/{_segment(run_id)}/inputs", body=body)

    # -- registry ----------------------------------------------------------------------

    def create_registered_model(
        self, name: str, *, description: str = "", tags: dict[str, str] | None = None
    ) -> RegisteredModel:
        body = {"name": name, "description": description, "tags": tags}
        response, ambiguous = self._send("POST", "models", body=body)
        try:
            return RegisteredModel.from_dict(self._result(response))
        except Conflict:
            if not ambiguous:  # otherwise our lost first attempt may have created it
                raise
            return self.get_registered_model(name)

    def get_registered_model(self, name: str) -> RegisteredModel:
        return RegisteredModel.from_dict(self._call("GET", _model(name)))

    def list_registered_models(self, max_results: int = 1000) -> list[RegisteredModel]:
        body = self._call("GET", "models", params={"max_results": max_results})
        return [RegisteredModel.from_dict(m) for m in body["models"]]

    def create_model_version(
        self,
        name: str,
        source: str,
        *,
        run_id: str | None = None,
        description: str = "",
        tags: dict[str, str] | None = None,
        git_commit: str | None = None,
        actor: str = "unknown",
    ) -> ModelVersion:
        body = {
            "source": source,
            "run_id": run_id,
            "description": description,
            "tags": tags,
            "git_commit": git_commit,
            "actor": actor,
        }
        # Not idempotent: a repeat would register one more version.
        found = self._call("POST", f"{_model(name)}/versions", body=body, idempotent=False)
        return ModelVersion.from_dict(found)

    def get_model_version(self, name: str, version: int) -> ModelVersion:
        return ModelVersion.from_dict(self._call("GET", _version(name, version)))

    def list_model_versions(self, name: str) -> list[ModelVersion]:
        body = self._call("GET", f"{_model(name)}/versions")
        return [ModelVersion.from_dict(v) for v in body["versions"]]

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        return ModelVersion.from_dict(self._call("GET", _alias(name, alias)))

    def delete_model_version(
        self, name: str, version: int, *, actor: str = "unknown", reason: str = ""
    ) -> None:
        params = {"actor": actor, "reason": reason}
        self._call("DELETE", _version(name, version), params=params, idempotent=False)

    def set_model_version_tags(self, name: str, version: int, tags: dict[str, str]) -> None:
        self._call("POST", f"{_version(name, version)}/tags", body={"tags": tags})

    def set_alias(
        self, name: str, alias: str, version: int, *, actor: str = "unknown", reason: str = ""
    ) -> AuditEntry:
        body = {"version": version, "actor": actor, "reason": reason}
        # Not idempotent: a repeat would audit a second move.
        return AuditEntry.from_dict(
            self._call("PUT", _alias(name, alias), body=body, idempotent=False)
        )

    def delete_alias(
        self, name: str, alias: str, *, actor: str = "unknown", reason: str = ""
    ) -> AuditEntry:
        params = {"actor": actor, "reason": reason}
        return AuditEntry.from_dict(
            self._call("DELETE", _alias(name, alias), params=params, idempotent=False)
        )

    def record_gate(
        self,
        name: str,
        version: int,
        verdict: str,
        report: dict[str, Any],
        *,
        actor: str = "unknown",
    ) -> ModelVersion:
        body = {"verdict": verdict, "report": report, "actor": actor}
        found = self._call("POST", f"{_version(name, version)}/gate", body=body, idempotent=False)
        return ModelVersion.from_dict(found)

    def record_audit(
        self,
        model: str,
        action: str,
        *,
        actor: str = "unknown",
        reason: str = "",
        alias: str | None = None,
        from_version: int | None = None,
        to_version: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditEntry:
        body = {
            "action": action,
            "actor": actor,
            "reason": reason,
            "alias": alias,
            "from_version": from_version,
            "to_version": to_version,
            "details": details,
        }
        found = self._call("POST", f"{_model(model)}/audit", body=body, idempotent=False)
        return AuditEntry.from_dict(found)

    def get_audit_log(self, model: str | None = None, max_results: int = 100) -> list[AuditEntry]:
        params: dict[str, Any] = {"max_results": max_results}
        if model is not None:
            params["model"] = model
        body = self._call("GET", "audit", params=params)
        return [AuditEntry.from_dict(e) for e in body["entries"]]

    # -- monitoring ----------------------------------------------------------------------

    def put_monitor(
        self, name: str, model: str, spec: dict[str, Any], *, enabled: bool = True
    ) -> Monitor:
        body = {"model": model, "spec": spec, "enabled": enabled}
        return Monitor.from_dict(self._call("PUT", f"monitors/{_segment(name)}", body=body))

    def get_monitor(self, name: str) -> Monitor:
        return Monitor.from_dict(self._call("GET", f"monitors/{_segment(name)}"))

    def list_monitors(self, model: str | None = None) -> list[Monitor]:
        params = {} if model is None else {"model": model}
        body = self._call("GET", "monitors", params=params)
        return [Monitor.from_dict(m) for m in body["monitors"]]

    def delete_monitor(self, name: str) -> None:
        self._call("DELETE", f"monitors/{_segment(name)}")

    def save_monitor_state(self, name: str, state: dict[str, Any], run_time: int) -> None:
        body = {"state": state, "run_time": run_time}
        self._call("POST", f"monitors/{_segment(name)}/state", body=body)

    def claim_monitor_run(self, name: str, now: int, due_after: int) -> bool:
        body = {"now": now, "due_after": due_after}
        found = self._call("POST", f"monitors/{_segment(name)}/claim", body=body, idempotent=False)
        return bool(found["claimed"])

    def raise_alert(
        self,
        monitor: str,
        check: str,
        severity: str,
        message: str,
        fingerprint: str,
        *,
        version: int | None = None,
        value: float | None = None,
        threshold: dict[str, Any] | None = None,
        window_start: int | None = None,
        window_end: int | None = None,
        cooldown_ms: int = 0,
        actor: str = "monitor",
    ) -> Alert | None:
        body = {
            "check": check,
            "severity": severity,
            "message": message,
            "fingerprint": fingerprint,
            "version": version,
            "value": None if value is None else encode_float(value),
            "threshold": threshold,
            "window_start": window_start,
            "window_end": window_end,
            "cooldown_ms": cooldown_ms,
            "actor": actor,
        }
        found = self._call(
            "POST", f"monitors/{_segment(monitor)}/alerts", body=body, idempotent=False
        )
        return None if found["alert"] is None else Alert.from_dict(found["alert"])

    def record_alert_delivery(self, alert_id: int, sink: str, outcome: dict[str, Any]) -> None:
        body = {"sink": sink, "outcome": outcome}
        self._call("POST", f"alerts/{int(alert_id)}/deliveries", body=body)

    def list_alerts(
        self,
        *,
        monitor: str | None = None,
        model: str | None = None,
        incident_id: int | None = None,
        max_results: int = 100,
    ) -> list[Alert]:
        params: dict[str, Any] = {"max_results": max_results}
        for key, value in (("monitor", monitor), ("model", model), ("incident_id", incident_id)):
            if value is not None:
                params[key] = value
        body = self._call("GET", "alerts", params=params)
        return [Alert.from_dict(a) for a in body["alerts"]]

    def list_incidents(
        self, *, status: str | None = None, model: str | None = None, max_results: int = 100
    ) -> list[Incident]:
        params: dict[str, Any] = {"max_results": max_results}
        if status is not None:
            params["status"] = status
        if model is not None:
            params["model"] = model
        body = self._call("GET", "incidents", params=params)
        return [Incident.from_dict(i) for i in body["incidents"]]

    def get_incident(self, incident_id: int) -> Incident:
        return Incident.from_dict(self._call("GET", f"incidents/{int(incident_id)}"))

    def update_incident(
        self, incident_id: int, action: str, *, actor: str = "unknown", note: str = ""
    ) -> Incident:
        body = {"action": action, "actor": actor, "note": note}
        found = self._call("POST", f"incidents/{int(incident_id)}", body=body, idempotent=False)
        return Incident.from_dict(found)

    # -- triggers ------------------------------------------------------------------------

    def put_trigger(
        self,
        name: str,
        model: str,
        pipeline: str,
        *,
        params: dict[str, Any] | None = None,
        schedule: str | None = None,
        on_alert: str | None = None,
        enabled: bool = True,
    ) -> Trigger:
        body = {
            "model": model,
            "pipeline": pipeline,
            "params": params,
            "schedule": schedule,
            "on_alert": on_alert,
            "enabled": enabled,
        }
        return Trigger.from_dict(self._call("PUT", f"triggers/{_segment(name)}", body=body))

    def get_trigger(self, name: str) -> Trigger:
        return Trigger.from_dict(self._call("GET", f"triggers/{_segment(name)}"))

    def list_triggers(self, model: str | None = None) -> list[Trigger]:
        params = {} if model is None else {"model": model}
        body = self._call("GET", "triggers", params=params)
        return [Trigger.from_dict(t) for t in body["triggers"]]

    def delete_trigger(self, name: str) -> None:
        self._call("DELETE", f"triggers/{_segment(name)}")

    def claim_trigger(
        self,
        name: str,
        now: int,
        holder: str,
        lease_ms: int,
        *,
        due_after: int | None = None,
        alert_id: int | None = None,
    ) -> bool:
        body = {
            "now": now,
            "holder": holder,
            "lease_ms": lease_ms,
            "due_after": due_after,
            "alert_id": alert_id,
        }
        # Not idempotent: a lost answer to a claim that went through would read as "busy".
        found = self._call("POST", f"triggers/{_segment(name)}/claim", body=body, idempotent=False)
        return bool(found["claimed"])

    def renew_trigger(self, name: str, holder: str, now: int, lease_ms: int) -> bool:
        body = {"holder": holder, "now": now, "lease_ms": lease_ms}
        found = self._call("POST", f"triggers/{_segment(name)}/renew", body=body)
        return bool(found["renewed"])

    def finish_trigger(
        self,
        name: str,
        holder: str,
        now: int,
        status: str,
        *,
        message: str = "",
        run_id: str | None = None,
    ) -> bool:
        body = {
            "holder": holder,
            "now": now,
            "status": status,
            "message": message,
            "run_id": run_id,
        }
        # Safe to retry: finishing again with the same holder is a no-op that answers True.
        found = self._call("POST", f"triggers/{_segment(name)}/finish", body=body)
        return bool(found["released"])

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()
