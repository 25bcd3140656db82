"""Registry persistence in SQL: registered models, versions, aliases, gate verdicts, audit.

Every change that matters (a version created or deleted, an alias moved, a gate verdict) is
written in the same transaction as its audit entry. Changes to one model are serialised by
locking its ``registered_models`` row (``FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN
IMMEDIATE`` already serialises writers), so two processes moving the same alias at once
both land in the audit log with a consistent from → to chain.
"""

from __future__ import annotations

import json
import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gyre.entities import AuditEntry, ModelVersion, RegisteredModel
from gyre.errors import Conflict, InvalidArgument, NotFound
from gyre.store import _schema as s
from gyre.store._sql_base import SqlBase, now_ms

__all__ = ["SqlRegistry", "check_alias", "check_model_name"]

_ALIAS_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,127}$")
RESERVED_ALIASES = frozenset({"latest"})


def check_model_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 256:
        raise InvalidArgument(f"model name {name!r} must be 1 to 256 characters")
    if any(ch in name for ch in "/@:\\") or name != name.strip():
        raise InvalidArgument(
            f"model name {name!r} may not contain '/', '@', ':' or surrounding spaces",
            hint="those characters separate name, version and alias in models:/ URIs",
        )
    return name


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not _ALIAS_RE.match(alias):
        raise InvalidArgument(
            f"alias {alias!r} is not valid",
            hint="start with a letter or '_', then letters, digits, '_' or '-' (at most 128)",
        )
    if alias in RESERVED_ALIASES:
        raise InvalidArgument(
            f"alias {alias!r} is reserved", hint="models:/name@latest always means the newest"
        )
    return alias


class SqlRegistry(SqlBase):
    """The RegistryStore half of SqlStore."""

    # -- registered models ---------------------------------------------------------------

    def create_registered_model(
        self, name: str, *, description: str = "", tags: dict[str, str] | None = None
    ) -> RegisteredModel:
        check_model_name(name)
        now = now_ms()
        try:
            with self._writing() as conn:
                conn.execute(
                    s.registered_models.insert().values(
                        name=name,
                        description=description,
                        creation_time=now,
                        last_updated_time=now,
                        latest_version=0,
                    )
                )
                if tags:
                    conn.execute(
                        s.registered_model_tags.insert(),
                        [{"name": name, "key": k, "value": v} for k, v in tags.items()],
                    )
        except sa.exc.IntegrityError:
            raise Conflict(
                f"registered model {name!r} already exists",
                hint="register a new version of it instead",
            ) from None
        return self.get_registered_model(name)

    def get_registered_model(self, name: str) -> RegisteredModel:
        with self._reading() as conn:
            found = self._models(conn, s.registered_models.c.name == name)
        if not found:
            raise NotFound(
                f"registered model {name!r} not found",
                hint="`gyre models list` shows the registered models",
            )
        return found[0]

    def list_registered_models(self, max_results: int = 1000) -> list[RegisteredModel]:
        with self._reading() as conn:
            return self._models(conn, sa.true())[:max_results]

    def _models(self, conn: Connection, where: Any) -> list[RegisteredModel]:
        rm = s.registered_models
        rows = conn.execute(sa.select(rm).where(where).order_by(rm.c.name)).all()
        names = [r.name for r in rows]
        if not names:
            return []
        tags: dict[str, dict[str, str]] = {n: {} for n in names}
        aliases: dict[str, dict[str, int]] = {n: {} for n in names}
        for t in conn.execute(
            sa.select(s.registered_model_tags).where(s.registered_model_tags.c.name.in_(names))
        ):
            tags[t.name][t.key] = t.value
        for a in conn.execute(
            sa.select(s.model_aliases)
            .where(s.model_aliases.c.name.in_(names))
            .order_by(s.model_aliases.c.alias)
        ):
            aliases[a.name][a.alias] = a.version
        return [
            RegisteredModel(
                name=r.name,
                creation_time=r.creation_time,
                last_updated_time=r.last_updated_time,
                description=r.description,
                latest_version=r.latest_version,
                tags=tags[r.name],
                aliases=aliases[r.name],
            )
            for r in rows
        ]

    # -- versions ------------------------------------------------------------------------

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
        """The next version of ``name`` (the model is created on first registration)."""
        check_model_name(name)
        if not source:
            raise InvalidArgument("model version source is empty", hint="give the model's URI")
        rm = s.registered_models
        now = now_ms()
        with self._writing() as conn:
            conn.execute(
                self._insert(rm)
                .values(name=name, creation_time=now, last_updated_time=now, latest_version=0)
                .on_conflict_do_nothing()
            )
            version = conn.execute(
                rm.update()
                .where(rm.c.name == name)
                .values(latest_version=rm.c.latest_version + 1, last_updated_time=now)
                .returning(rm.c.latest_version)
            ).scalar_one()
            conn.execute(
                s.model_versions.insert().values(
                    name=name,
                    version=version,
                    source=source,
                    run_id=run_id,
                    description=description,
                    git_commit=git_commit,
                    creation_time=now,
                )
            )
            if tags:
                conn.execute(
                    s.model_version_tags.insert(),
                    [
                        {"name": name, "version": version, "key": k, "value": v}
                        for k, v in tags.items()
                    ],
                )
            self._audit(
                conn,
                actor=actor,
                action="version.create",
                model=name,
                to_version=version,
                details={"source": source, "run_id": run_id},
            )
        return self.get_model_version(name, version)

    def get_model_version(self, name: str, version: int) -> ModelVersion:
        with self._reading() as conn:
            found = self._versions(
                conn,
                sa.and_(s.model_versions.c.name == name, s.model_versions.c.version == version),
            )
        if not found:
            raise NotFound(
                f"model version {name}/{version} not found",
                hint=f"`gyre models show {name}` lists its versions",
            )
        return found[0]

    def list_model_versions(self, name: str) -> list[ModelVersion]:
        self.get_registered_model(name)  # NotFound for an unknown model
        with self._reading() as conn:
            return self._versions(conn, s.model_versions.c.name == name)

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        model = self.get_registered_model(name)
        if alias == "latest" and model.latest_version:
            versions = self.list_model_versions(name)
            if versions:
                return versions[-1]
        version = model.aliases.get(alias)
        if version is None:
            known = ", ".join(model.aliases) or "none yet"
            raise NotFound(
                f"model {name!r} has no alias {alias!r}",
                hint=f"its aliases: {known}; set one with `gyre models alias`",
            )
        return self.get_model_version(name, version)

    def _versions(self, conn: Connection, where: Any) -> list[ModelVersion]:
        mv = s.model_versions
        rows = conn.execute(sa.select(mv).where(where).order_by(mv.c.name, mv.c.version)).all()
        if not rows:
            return []
        names = sorted({r.name for r in rows})
        tags: dict[tuple[str, int], dict[str, str]] = {}
        for t in conn.execute(
            sa.select(s.model_version_tags).where(s.model_version_tags.c.name.in_(names))
        ):
            tags.setdefault((t.name, t.version), {})[t.key] = t.value
        aliases: dict[tuple[str, int], list[str]] = {}
        for a in conn.execute(
            sa.select(s.model_aliases)
            .where(s.model_aliases.c.name.in_(names))
            .order_by(s.model_aliases.c.alias)
        ):
            aliases.setdefault((a.name, a.version), []).append(a.alias)
        return [
            ModelVersion(
                name=r.name,
                version=r.version,
                source=r.source,
                creation_time=r.creation_time,
                run_id=r.run_id,
                description=r.description,
                git_commit=r.git_commit,
                tags=tags.get((r.name, r.version), {}),
                aliases=aliases.get((r.name, r.version), []),
                gate_verdict=r.gate_verdict,
                gate_report=json.loads(r.gate_report) if r.gate_report else None,
            )
            for r in rows
        ]

    def delete_model_version(
        self, name: str, version: int, *, actor: str = "unknown", reason: str = ""
    ) -> None:
        """Delete a version no alias points to; Conflict naming the aliases otherwise."""
        with self._writing() as conn:
            self._lock_model(conn, name)
            pointing = [
                a.alias
                for a in conn.execute(
                    sa.select(s.model_aliases.c.alias).where(
                        s.model_aliases.c.name == name, s.model_aliases.c.version == version
                    )
                )
            ]
            if pointing:
                raise Conflict(
                    f"model version {name}/{version} is aliased as {', '.join(pointing)}; "
                    "it cannot be deleted",
                    hint="move or delete those aliases first",
                )
            mv = s.model_versions
            conn.execute(
                s.model_version_tags.delete().where(
                    s.model_version_tags.c.name == name, s.model_version_tags.c.version == version
                )
            )
            gone = conn.execute(
                mv.delete().where(mv.c.name == name, mv.c.version == version)
            ).rowcount
            if not gone:
                raise NotFound(f"model version {name}/{version} not found")
            self._audit(
                conn,
                actor=actor,
                action="version.delete",
                model=name,
                from_version=version,
                reason=reason,
            )

    def set_model_version_tags(self, name: str, version: int, tags: dict[str, str]) -> None:
        self.get_model_version(name, version)
        stmt = self._insert(s.model_version_tags)
        with self._writing() as conn:
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["name", "version", "key"], set_={"value": stmt.excluded.value}
                ),
                [{"name": name, "version": version, "key": k, "value": v} for k, v in tags.items()],
            )

    # -- aliases -------------------------------------------------------------------------

    def set_alias(
        self, name: str, alias: str, version: int, *, actor: str = "unknown", reason: str = ""
    ) -> AuditEntry:
        """Point ``alias`` at ``version`` atomically; the move is in the audit log."""
        check_alias(alias)
        with self._writing() as conn:
            self._lock_model(conn, name)
            mv = s.model_versions
            if (
                conn.execute(
                    sa.select(mv.c.version).where(mv.c.name == name, mv.c.version == version)
                ).first()
                is None
            ):
                raise NotFound(f"model version {name}/{version} not found")
            ma = s.model_aliases
            previous = conn.execute(
                sa.select(ma.c.version).where(ma.c.name == name, ma.c.alias == alias)
            ).scalar()
            stmt = self._insert(ma).values(name=name, alias=alias, version=version)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["name", "alias"], set_={"version": stmt.excluded.version}
                )
            )
            return self._audit(
                conn,
                actor=actor,
                action="alias.set",
                model=name,
                alias=alias,
                from_version=previous,
                to_version=version,
                reason=reason,
            )

    def delete_alias(
        self, name: str, alias: str, *, actor: str = "unknown", reason: str = ""
    ) -> AuditEntry:
        with self._writing() as conn:
            self._lock_model(conn, name)
            ma = s.model_aliases
            previous = conn.execute(
                sa.select(ma.c.version).where(ma.c.name == name, ma.c.alias == alias)
            ).scalar()
            if previous is None:
                raise NotFound(f"model {name!r} has no alias {alias!r}")
            conn.execute(ma.delete().where(ma.c.name == name, ma.c.alias == alias))
            return self._audit(
                conn,
                actor=actor,
                action="alias.delete",
                model=name,
                alias=alias,
                from_version=previous,
                reason=reason,
            )

    def _lock_model(self, conn: Connection, name: str) -> None:
        rm = s.registered_models
        found = conn.execute(
            sa.select(rm.c.name).where(rm.c.name == name).with_for_update()
        ).first()
        if found is None:
            raise NotFound(
                f"registered model {name!r} not found",
                hint="`gyre models list` shows the registered models",
            )

    # -- gates and audit -----------------------------------------------------------------

    def record_gate(
        self,
        name: str,
        version: int,
        verdict: str,
        report: dict[str, Any],
        *,
        actor: str = "unknown",
    ) -> ModelVersion:
        """Record a validation verdict (``blessed``/``rejected``) and all its numbers."""
        if verdict not in ("blessed", "rejected"):
            raise InvalidArgument(f"gate verdict {verdict!r} must be 'blessed' or 'rejected'")
        mv = s.model_versions
        with self._writing() as conn:
            done = conn.execute(
                mv.update()
                .where(mv.c.name == name, mv.c.version == version)
                .values(gate_verdict=verdict, gate_report=json.dumps(report, default=str))
            ).rowcount
            if not done:
                raise NotFound(f"model version {name}/{version} not found")
            self._audit(
                conn,
                actor=actor,
                action="gate",
                model=name,
                to_version=version,
                reason=verdict,
                details={"verdict": verdict, "summary": report.get("summary", "")},
            )
        return self.get_model_version(name, version)

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
        """Append a decision (e.g. why a retrain ran) to the audit log."""
        with self._writing() as conn:
            return self._audit(
                conn,
                actor=actor,
                action=action,
                model=model,
                alias=alias,
                from_version=from_version,
                to_version=to_version,
                reason=reason,
                details=details or {},
            )

    def get_audit_log(self, model: str | None = None, max_results: int = 100) -> list[AuditEntry]:
        """Newest first."""
        al = s.audit_log
        query = sa.select(al).order_by(al.c.entry_id.desc()).limit(max_results)
        if model is not None:
            query = query.where(al.c.model == model)
        with self._reading() as conn:
            rows = conn.execute(query).all()
        return [_audit_entry(r) for r in rows]

    def _audit(
        self,
        conn: Connection,
        *,
        actor: str,
        action: str,
        model: str,
        alias: str | None = None,
        from_version: int | None = None,
        to_version: int | None = None,
        reason: str = "",
        details: dict[str, Any] | None = None,
    ) -> AuditEntry:
        row = conn.execute(
            s.audit_log.insert()
            .values(
                time=now_ms(),
                actor=actor,
                action=action,
                model=model,
                alias=alias,
                from_version=from_version,
                to_version=to_version,
                reason=reason,
                details=json.dumps(details or {}, default=str),
            )
            .returning(*s.audit_log.c)
        ).one()
        return _audit_entry(row)


def _audit_entry(r: Any) -> AuditEntry:
    return AuditEntry(
        entry_id=r.entry_id,
        time=r.time,
        actor=r.actor,
        action=r.action,
        model=r.model,
        alias=r.alias,
        from_version=r.from_version,
        to_version=r.to_version,
        reason=r.reason,
        details=json.loads(r.details or "{}"),
    )
