"""Migrations apply on first use, and an existing database is upgraded in place."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from gyre.store._sql import SqlStore
from gyre.store._sql_base import _MIGRATIONS, HEAD_REVISION


def _upgrade_to(uri: str, revision: str) -> None:
    engine = sa.create_engine(uri.replace("postgresql://", "postgresql+psycopg://"))
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    engine.dispose()


def test_first_use_creates_the_schema_in_wal_mode(tmp_path: Path) -> None:
    db = tmp_path / "new" / "gyre.db"
    store = SqlStore(f"sqlite:///{db}")
    store.close()
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT version_num FROM alembic_version").fetchone()[0] == HEAD_REVISION
    con.close()


def _old_database_is_upgraded_in_place(uri: str) -> None:
    _upgrade_to(uri, "0001")
    engine = sa.create_engine(uri.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO experiments (name, creation_time, lifecycle_stage) "
                "VALUES ('kept', 1, 'active')"
            )
        )
        exp_id = conn.execute(sa.text("SELECT experiment_id FROM experiments")).scalar_one()
        conn.execute(
            sa.text(
                "INSERT INTO runs "
                "(run_id, experiment_id, name, status, start_time, lifecycle_stage) "
                f"VALUES ('{'a' * 32}', {exp_id}, 'old-run', 'FINISHED', 5, 'active')"
            )
        )
    engine.dispose()

    store = SqlStore(uri)  # upgrades 0001 -> head
    run = store.get_run("a" * 32)
    assert run.name == "old-run", "rows written before the upgrade are still there"
    assert store.get_experiment_by_name("kept") is not None
    token, secret = store.create_token("ci", ["read"])  # a table added by 0002 works
    assert store.verify_token(secret) == token
    store.close()


def test_an_old_sqlite_database_is_upgraded_in_place(tmp_path: Path) -> None:
    _old_database_is_upgraded_in_place(f"sqlite:///{tmp_path / 'old.db'}")


@pytest.mark.postgres
def test_an_old_postgres_database_is_upgraded_in_place(pg_uri: str) -> None:
    _old_database_is_upgraded_in_place(pg_uri)


def test_an_unreachable_database_is_a_clear_error() -> None:
    from gyre.errors import BackendUnavailable

    with pytest.raises(BackendUnavailable, match=r"127\.0\.0\.1:1/nowhere"):
        SqlStore("postgresql://nobody:secret@127.0.0.1:1/nowhere")


def test_a_password_never_appears_in_the_error() -> None:
    from gyre.errors import BackendUnavailable

    with pytest.raises(BackendUnavailable) as info:
        SqlStore("postgresql://nobody:hunter2@127.0.0.1:1/nowhere")
    assert "hunter2" not in str(info.value)
