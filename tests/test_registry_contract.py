"""The registry-store contract over every backend, and concurrent alias moves."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest

from gyre.store import RegistryStore
from gyre.store._sql import SqlStore
from gyre.testing import REGISTRY_CHECKS

BACKENDS = ["sqlite_store", pytest.param("pg_store", marks=pytest.mark.postgres), "http_store"]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest) -> RegistryStore:
    backend: RegistryStore = request.getfixturevalue(request.param)
    return backend


@pytest.mark.parametrize("check", list(REGISTRY_CHECKS))
def test_registry_contract(store: RegistryStore, check: str) -> None:
    REGISTRY_CHECKS[check](store)


MOVER = """
import sys
from gyre.store._sql import SqlStore
uri, who, version = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = SqlStore(uri)
for i in range(25):
    store.set_alias("race", "champion", version, actor=who, reason=f"{who} {i}")
store.close()
"""


def _two_processes_move_one_alias(uri: str) -> None:
    store = SqlStore(uri)
    for _ in range(2):
        store.create_model_version("race", "file:///m")
    procs = [
        subprocess.Popen([sys.executable, "-c", MOVER, uri, who, str(v)], stderr=subprocess.PIPE)
        for who, v in (("alice", 1), ("bob", 2))
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    moves = [e for e in reversed(store.get_audit_log("race", 1000)) if e.action == "alias.set"]
    assert len(moves) == 50, "every move is audited"
    # The audit log is one consistent chain: each move starts where the previous ended.
    for before, after in itertools.pairwise(moves):
        assert after.from_version == before.to_version
    assert store.get_registered_model("race").aliases["champion"] == moves[-1].to_version
    store.close()


def test_two_processes_moving_one_alias_on_sqlite(sqlite_uri: str) -> None:
    _two_processes_move_one_alias(sqlite_uri)


@pytest.mark.postgres
def test_two_processes_moving_one_alias_on_postgres(pg_uri: str) -> None:
    _two_processes_move_one_alias(pg_uri)
