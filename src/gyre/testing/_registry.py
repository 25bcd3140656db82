"""The registry-store contract: versions, aliases, gates and the audit log."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from gyre.errors import Conflict, InvalidArgument, NotFound
from gyre.store import RegistryStore
from gyre.testing._store import _expect

__all__ = ["REGISTRY_CHECKS", "check_registry_store"]


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def check_versions(store: RegistryStore) -> None:
    name = _name("churn")
    v1 = store.create_model_version(
        name,
        "runs:/" + "a" * 32 + "/model",
        run_id="a" * 32,
        git_commit="abc123",
        tags={"k": "v"},
        actor="alice",
    )
    v2 = store.create_model_version(name, "runs:/" + "b" * 32 + "/model", run_id="b" * 32)
    assert (v1.version, v2.version) == (1, 2), "versions are numbered from 1"
    assert v1.run_id == "a" * 32 and v1.git_commit == "abc123" and v1.tags == {"k": "v"}
    assert store.get_model_version(name, 1) == v1
    assert [v.version for v in store.list_model_versions(name)] == [1, 2]
    model = store.get_registered_model(name)
    assert model.latest_version == 2 and model.aliases == {}
    assert name in [m.name for m in store.list_registered_models()]
    store.set_model_version_tags(name, 2, {"stage": "candidate"})
    assert store.get_model_version(name, 2).tags == {"stage": "candidate"}
    _expect(NotFound, lambda: store.get_model_version(name, 9), f"{name}/9")
    _expect(NotFound, lambda: store.get_registered_model(name + "-x"), name + "-x")
    _expect(InvalidArgument, lambda: store.create_model_version("a/b", "x"), "'a/b'")
    other = _name("explicit")
    store.create_registered_model(other, description="made first")
    _expect(Conflict, lambda: store.create_registered_model(other), other)
    assert store.create_model_version(other, "file:///m").version == 1
    assert store.get_registered_model(other).description == "made first"


def check_aliases(store: RegistryStore) -> None:
    name = _name("aliases")
    for _ in range(3):
        store.create_model_version(name, "file:///m")
    first = store.set_alias(name, "champion", 1, actor="alice", reason="first release")
    assert (first.from_version, first.to_version, first.actor) == (None, 1, "alice")
    moved = store.set_alias(name, "champion", 2, actor="bob", reason="better f1")
    assert (moved.from_version, moved.to_version, moved.reason) == (1, 2, "better f1")
    store.set_alias(name, "challenger", 3)
    assert store.get_registered_model(name).aliases == {"challenger": 3, "champion": 2}
    assert store.get_model_version_by_alias(name, "champion").version == 2
    assert store.get_model_version(name, 2).aliases == ["champion"]
    assert store.get_model_version_by_alias(name, "latest").version == 3
    _expect(NotFound, lambda: store.get_model_version_by_alias(name, "prod"), "'prod'")
    _expect(NotFound, lambda: store.set_alias(name, "champion", 7), f"{name}/7")
    _expect(InvalidArgument, lambda: store.set_alias(name, "9lives", 1), "'9lives'")
    _expect(InvalidArgument, lambda: store.set_alias(name, "latest", 1), "reserved")
    # A version an alias points to can't be deleted; others can.
    _expect(Conflict, lambda: store.delete_model_version(name, 2), "champion")
    store.delete_model_version(name, 1, actor="carol", reason="superseded")
    _expect(NotFound, lambda: store.get_model_version(name, 1))
    removed = store.delete_alias(name, "challenger", actor="carol")
    assert removed.from_version == 3
    _expect(NotFound, lambda: store.delete_alias(name, "challenger"), "challenger")
    assert store.create_model_version(name, "file:///m").version == 4, "numbers never reused"

    log = store.get_audit_log(name)
    actions = [(e.action, e.alias, e.from_version, e.to_version) for e in log]
    assert actions[:5] == [
        ("version.create", None, None, 4),
        ("alias.delete", "challenger", 3, None),
        ("version.delete", None, 1, None),
        ("alias.set", "challenger", None, 3),
        ("alias.set", "champion", 1, 2),
    ]
    assert log[2].actor == "carol" and log[2].reason == "superseded"


def check_gates_and_audit(store: RegistryStore) -> None:
    name = _name("gates")
    store.create_model_version(name, "file:///m")
    report = {"summary": "f1 0.91 >= 0.9", "metrics": {"f1": 0.91}, "checks": [{"ok": True}]}
    version = store.record_gate(name, 1, "blessed", report, actor="ci")
    assert version.gate_verdict == "blessed" and version.gate_report == report
    assert store.get_model_version(name, 1).gate_report == report
    _expect(InvalidArgument, lambda: store.record_gate(name, 1, "maybe", {}), "'maybe'")
    _expect(NotFound, lambda: store.record_gate(name, 5, "blessed", {}), f"{name}/5")
    entry = store.record_audit(
        name, "retrain.start", actor="loop", reason="drift", details={"psi": 0.3}
    )
    assert store.get_audit_log(name, max_results=1) == [entry]
    assert entry.details == {"psi": 0.3}


REGISTRY_CHECKS: dict[str, Callable[[RegistryStore], None]] = {
    "versions": check_versions,
    "aliases": check_aliases,
    "gates_and_audit": check_gates_and_audit,
}


def check_registry_store(store: RegistryStore) -> None:
    """Run every registry contract check; AssertionError says which failed."""
    for name, check in REGISTRY_CHECKS.items():
        try:
            check(store)
        except AssertionError as exc:
            raise AssertionError(f"registry contract {name!r} failed: {exc}") from exc
