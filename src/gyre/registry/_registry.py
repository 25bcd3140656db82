"""The registry as people use it: register, resolve, load, alias, promote, trace lineage."""

from __future__ import annotations

import getpass
import hashlib
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from gyre import artifacts as _artifacts
from gyre import config
from gyre.entities import AuditEntry, ModelVersion, RegisteredModel
from gyre.errors import GateFailed, InvalidArgument, NotFound
from gyre.registry._uris import ModelRef, parse_model_uri, path_hint
from gyre.store import MetadataStore, RegistryStore, open_store

if TYPE_CHECKING:
    from gyre.models import Model

__all__ = ["Registry", "current_actor"]


def current_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class _Store(MetadataStore, RegistryStore):
    """What the registry needs: both halves, as SqlStore and HttpStore provide."""


class Registry:
    """Registry operations against the configured (or given) stores.

    >>> reg = Registry()
    >>> v = reg.register_model(f"runs:/{run_id}/model", "churn")
    >>> reg.set_alias("churn", "champion", v.version, reason="first release")
    >>> model = reg.load_model("models:/churn@champion")
    """

    def __init__(self, tracking_uri: str | None = None, artifact_uri: str | None = None) -> None:
        self.tracking_uri = tracking_uri or config.get("GYRE_TRACKING_URI")
        self.artifact_uri = config.artifact_uri_for(self.tracking_uri, artifact_uri)
        self._store: _Store | None = None
        self._artifacts: _artifacts.ArtifactStore | None = None
        self._lock = threading.Lock()

    @classmethod
    def of(cls, store: _Store, artifact_store: _artifacts.ArtifactStore) -> Registry:
        """A registry over stores the caller already opened (and will close)."""
        registry = cls(store.uri, artifact_store.uri)
        registry._store, registry._artifacts = store, artifact_store
        return registry

    @property
    def store(self) -> _Store:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = cast(_Store, open_store(self.tracking_uri))
        return self._store

    @property
    def artifact_store(self) -> _artifacts.ArtifactStore:
        if self._artifacts is None:
            with self._lock:
                if self._artifacts is None:
                    self._artifacts = _artifacts.open_artifact_store(self.artifact_uri)
        return self._artifacts

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
        _artifacts.close_artifact_store(self._artifacts)

    # -- registration --------------------------------------------------------------------

    def register_model(
        self,
        uri: str,
        name: str,
        *,
        description: str = "",
        tags: dict[str, str] | None = None,
        actor: str | None = None,
    ) -> ModelVersion:
        """A new immutable version of ``name`` from a model logged in a run.

        The version records the run, the code commit and (through the run) the datasets."""
        ref = parse_model_uri(uri)
        if ref.kind != "run":
            raise InvalidArgument(
                f"cannot register {uri!r}: register a model logged in a run",
                hint="log it with gyre.log_model(...) and register runs:/<run_id>/<path>",
            )
        assert ref.run_id is not None and ref.artifact_path is not None
        run = self.store.get_run(ref.run_id)
        if not self._package_files(ref.run_id, ref.artifact_path):
            raise NotFound(
                f"run {ref.run_id!r} has no model at {ref.artifact_path!r}",
                hint="log one with gyre.log_model(model, name=...) inside that run",
            )
        return self.store.create_model_version(
            name,
            uri,
            run_id=run.run_id,
            description=description,
            tags=tags,
            git_commit=run.tags.get("gyre.source.git.commit"),
            actor=actor or current_actor(),
        )

    # -- resolving and loading -----------------------------------------------------------

    def resolve_version(self, ref: ModelRef) -> ModelVersion:
        assert ref.name is not None
        if ref.version is not None:
            return self.store.get_model_version(ref.name, ref.version)
        return self.store.get_model_version_by_alias(ref.name, ref.alias or "latest")

    def _package_files(self, run_id: str, artifact_path: str) -> list[tuple[str, Any]]:
        prefix = artifact_path.rstrip("/") + "/"
        return [
            (p, ref)
            for p, ref in _artifacts.list_artifacts(self.artifact_store, f"runs/{run_id}")
            if p.startswith(prefix)
        ]

    def download(self, uri: str) -> Path:
        """A local folder holding the package ``uri`` names (cached by content)."""
        ref = parse_model_uri(uri)
        if ref.kind == "path":
            path = Path(ref.path or "")
            if path.is_file():  # a .gyre bundle: extracted, verified, into the local cache
                from gyre.models._bundle import extract_bundle

                return extract_bundle(path)
            if not path.is_dir():
                raise NotFound(
                    f"model path {str(path)!r} does not exist or is not a folder",
                    hint=path_hint(str(ref.path)),
                )
            return path
        if ref.kind == "registry":
            return self.download(self.resolve_version(ref).source)
        assert ref.run_id is not None and ref.artifact_path is not None
        files = self._package_files(ref.run_id, ref.artifact_path)
        if not files:
            self.store.get_run(ref.run_id)  # NotFound for an unknown run
            raise NotFound(f"run {ref.run_id!r} has no model at {ref.artifact_path!r}")
        # Cache by the content digests: the same package is downloaded once per machine.
        key = hashlib.sha256(
            "".join(f"{p}\0{r.digest}\n" for p, r in sorted(files)).encode()
        ).hexdigest()[:32]
        cache = config.gyre_home() / "cache" / "models" / key
        if not cache.is_dir():
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache.parent))
            try:
                _artifacts.download(
                    self.artifact_store, f"runs/{ref.run_id}", tmp, ref.artifact_path
                )
                if not cache.exists():  # another process may have won the race
                    os.replace(tmp / ref.artifact_path, cache)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return cache

    def load_model(self, uri: str) -> Model:
        """Load ``runs:/...``, ``models:/name/3``, ``models:/name@alias`` or a local folder."""
        from gyre.models import load_model

        return load_model(self.download(uri))

    # -- aliases and promotion -----------------------------------------------------------

    def set_alias(
        self, name: str, alias: str, version: int, *, reason: str = "", actor: str | None = None
    ) -> AuditEntry:
        return self.store.set_alias(
            name, alias, version, actor=actor or current_actor(), reason=reason
        )

    def promote(
        self,
        name: str,
        version: int,
        alias: str = "champion",
        *,
        force: bool = False,
        reason: str = "",
        actor: str | None = None,
    ) -> AuditEntry:
        """Move ``alias`` to a version the gate blessed; ``force`` overrides (audited)."""
        mv = self.store.get_model_version(name, version)
        if mv.gate_verdict != "blessed" and not force:
            state = "was rejected by" if mv.gate_verdict == "rejected" else "has not passed"
            raise GateFailed(
                f"model version {name}/{version} {state} its validation gate; not promoted "
                f"to {alias!r}",
                hint=f"run `gyre models validate {name}/{version} ...`, or pass --force",
            )
        if mv.gate_verdict == "blessed":
            why = reason or "blessed by the gate"
        else:
            why = f"FORCED past the gate ({mv.gate_verdict or 'not validated'})"
            why += f": {reason}" if reason else ""
        return self.set_alias(name, alias, version, reason=why, actor=actor)

    def delete_version(self, name: str, version: int, *, reason: str = "") -> None:
        self.store.delete_model_version(name, version, actor=current_actor(), reason=reason)

    # -- reading -------------------------------------------------------------------------

    def get_model(self, name: str) -> RegisteredModel:
        return self.store.get_registered_model(name)

    def list_models(self) -> list[RegisteredModel]:
        return self.store.list_registered_models()

    def versions(self, name: str) -> list[ModelVersion]:
        return self.store.list_model_versions(name)

    def lineage(self, name: str, version: int) -> dict[str, Any]:
        """Everything a version came from: run, params, metrics, datasets, code, gate."""
        mv = self.store.get_model_version(name, version)
        out: dict[str, Any] = {
            "model": name,
            "version": version,
            "source": mv.source,
            "aliases": mv.aliases,
            "created": mv.creation_time,
            "gate": {"verdict": mv.gate_verdict, "report": mv.gate_report},
            "code": {"commit": mv.git_commit},
            "run": None,
            "datasets": [],
            "deployments": [],
        }
        if mv.run_id:
            try:
                run = self.store.get_run(mv.run_id)
            except NotFound:
                out["run"] = {"run_id": mv.run_id, "missing": True}
            else:
                out["run"] = {
                    "run_id": run.run_id,
                    "name": run.name,
                    "status": run.status.value,
                    "experiment_id": run.experiment_id,
                    "params": run.params,
                    "metrics": run.metrics,
                }
                out["code"]["dirty"] = run.tags.get("gyre.source.git.dirty")
                out["code"]["entry_point"] = run.tags.get("gyre.source.name")
                out["datasets"] = [
                    {
                        "name": i.dataset.name,
                        "context": i.context,
                        "digest": i.dataset.digest,
                        "rows": i.dataset.num_rows,
                        "source": i.dataset.source,
                    }
                    for i in run.inputs
                ]
        return out

    def audit_log(self, name: str | None = None, max_results: int = 100) -> list[AuditEntry]:
        return self.store.get_audit_log(name, max_results)
