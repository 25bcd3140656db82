"""The one metadata-store contract, run unchanged against SQLite, PostgreSQL and HTTP."""

from __future__ import annotations

import pytest

from gyre.store import MetadataStore
from gyre.testing import STORE_CHECKS, check_store

BACKENDS = [
    "sqlite_store",
    pytest.param("pg_store", marks=pytest.mark.postgres),
    "http_store",
]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest) -> MetadataStore:
    backend: MetadataStore = request.getfixturevalue(request.param)
    return backend


@pytest.mark.parametrize("check", list(STORE_CHECKS))
def test_contract(store: MetadataStore, check: str) -> None:
    STORE_CHECKS[check](store)


def test_check_store_runs_every_check(sqlite_store: MetadataStore) -> None:
    check_store(sqlite_store)


def test_check_store_reports_a_broken_store(sqlite_store: MetadataStore) -> None:
    class ForgetsParams:
        """A store that silently drops params: the contract must catch it."""

        def __init__(self, inner: MetadataStore) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> object:
            return getattr(self._inner, name)

        def log_batch(self, run_id: str, **kw: object) -> None:
            kw["params"] = None
            self._inner.log_batch(run_id, **kw)  # type: ignore[arg-type]

    with pytest.raises(AssertionError, match="log_batch"):
        check_store(ForgetsParams(sqlite_store))  # type: ignore[arg-type]
