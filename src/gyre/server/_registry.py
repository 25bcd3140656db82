"""Registry routes: registered models, versions, aliases, gate verdicts and the audit log.

Names travel in the path (``/models/{name}/...``) with the ``path`` converter, so a name the
store refuses (``a/b``) still reaches the store and is refused by name, not by a 404 about
routes. Routes with a longer tail come first: ``/models/{name}`` alone would match them all.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.params import Depends

from gyre.server._models import (
    CreateModelVersionRequest,
    CreateRegisteredModelRequest,
    RecordAuditRequest,
    RecordGateRequest,
    SetAliasRequest,
    SetTagsRequest,
)
from gyre.server._responses import JSON
from gyre.store._protocol import RegistryStore

__all__ = ["registry_router"]

_VERSION = "/models/{name:path}/versions/{version}"
_ALIAS = "/models/{name:path}/aliases/{alias:path}"


def registry_router(
    store: RegistryStore, *, read: list[Depends], write: list[Depends]
) -> APIRouter:
    """Routes under ``/models`` and ``/audit``; ``read``/``write`` guard them."""
    router = APIRouter(tags=["registry"])

    @router.post("/models/{name:path}/versions", dependencies=write)
    def create_model_version(name: str, body: CreateModelVersionRequest) -> JSON:
        """Register the next version (numbered from 1); the model is created if new."""
        version = store.create_model_version(
            name,
            body.source,
            run_id=body.run_id,
            description=body.description,
            tags=body.tags,
            git_commit=body.git_commit,
            actor=body.actor,
        )
        return JSON(version.to_dict())

    @router.get("/models/{name:path}/versions", dependencies=read)
    def list_model_versions(name: str) -> JSON:
        """Every version of the model, oldest first."""
        return JSON({"versions": [v.to_dict() for v in store.list_model_versions(name)]})

    @router.post(_VERSION + "/gate", dependencies=write)
    def record_gate(name: str, version: int, body: RecordGateRequest) -> JSON:
        """Record a validation verdict (``blessed``/``rejected``) and its report."""
        result = store.record_gate(name, version, body.verdict, body.report, actor=body.actor)
        return JSON(result.to_dict())

    @router.post(_VERSION + "/tags", status_code=204, dependencies=write)
    def set_model_version_tags(name: str, version: int, body: SetTagsRequest) -> Response:
        """Set (add or overwrite) tags of a version."""
        store.set_model_version_tags(name, version, body.tags)
        return Response(status_code=204)

    @router.get(_VERSION, dependencies=read)
    def get_model_version(name: str, version: int) -> JSON:
        """One version; 404 NOT_FOUND naming ``name/version``."""
        return JSON(store.get_model_version(name, version).to_dict())

    @router.delete(_VERSION, status_code=204, dependencies=write)
    def delete_model_version(
        name: str, version: int, actor: str = "unknown", reason: str = ""
    ) -> Response:
        """Delete a version; 409 CONFLICT naming the aliases that still point at it."""
        store.delete_model_version(name, version, actor=actor, reason=reason)
        return Response(status_code=204)

    @router.get(_ALIAS, dependencies=read)
    def get_model_version_by_alias(name: str, alias: str) -> JSON:
        """The version ``alias`` points at (``latest``: the newest version)."""
        return JSON(store.get_model_version_by_alias(name, alias).to_dict())

    @router.put(_ALIAS, dependencies=write)
    def set_alias(name: str, alias: str, body: SetAliasRequest) -> JSON:
        """Point ``alias`` at a version, atomically; answers the audit entry of the move."""
        entry = store.set_alias(name, alias, body.version, actor=body.actor, reason=body.reason)
        return JSON(entry.to_dict())

    @router.delete(_ALIAS, dependencies=write)
    def delete_alias(name: str, alias: str, actor: str = "unknown", reason: str = "") -> JSON:
        """Remove ``alias``; answers the audit entry."""
        return JSON(store.delete_alias(name, alias, actor=actor, reason=reason).to_dict())

    @router.post("/models/{name:path}/audit", dependencies=write)
    def record_audit(name: str, body: RecordAuditRequest) -> JSON:
        """Append a decision about the model (e.g. why a retrain ran) to the audit log."""
        entry = store.record_audit(
            name,
            body.action,
            actor=body.actor,
            reason=body.reason,
            alias=body.alias,
            from_version=body.from_version,
            to_version=body.to_version,
            details=body.details,
        )
        return JSON(entry.to_dict())

    @router.get("/models/{name:path}", dependencies=read)
    def get_registered_model(name: str) -> JSON:
        """One registered model with its aliases; 404 NOT_FOUND naming it."""
        return JSON(store.get_registered_model(name).to_dict())

    @router.post("/models", dependencies=write)
    def create_registered_model(body: CreateRegisteredModelRequest) -> JSON:
        """Create a registered model; 409 CONFLICT if the name is taken."""
        model = store.create_registered_model(
            body.name, description=body.description, tags=body.tags
        )
        return JSON(model.to_dict())

    @router.get("/models", dependencies=read)
    def list_registered_models(max_results: int = 1000) -> JSON:
        """Registered models."""
        models = store.list_registered_models(max_results=max_results)
        return JSON({"models": [m.to_dict() for m in models]})

    @router.get("/audit", dependencies=read)
    def get_audit_log(
        model: Annotated[str | None, Query(description="Only entries about this model.")] = None,
        max_results: int = 100,
    ) -> JSON:
        """Audit entries, newest first."""
        entries = store.get_audit_log(model, max_results=max_results)
        return JSON({"entries": [e.to_dict() for e in entries]})

    return router
