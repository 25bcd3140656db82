"""Acknowledged data survives: concurrent writers on one SQLite file, and kill -9 after flush."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import gyre

WRITER = """
import sys, gyre
uri, exp, worker, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
gyre.set_tracking_uri(uri)
with gyre.start_run(experiment=exp, name=f"worker-{worker}") as run:
    gyre.log_param("worker", worker)
    for i in range(n):
        gyre.log_metric("x", float(i), step=i)
        if i % 500 == 0:
            gyre.flush()  # many small commits: maximum lock contention
print(run.run_id)
"""


@pytest.mark.slow
def test_eight_processes_log_into_one_sqlite_file_without_losing_a_point(
    sqlite_uri: str, tmp_path: Path
) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    n = 3000
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), sqlite_uri, "shared", str(w), str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(8)
    ]
    finished = [(p, *p.communicate(timeout=240)) for p in procs]  # every one, then check
    run_ids = []
    for p, out, err in finished:
        assert p.returncode == 0, err
        assert "database is locked" not in err
        run_ids.append(out.strip())
    client = gyre.Client(sqlite_uri)
    for run_id in run_ids:
        history = client.get_metric_history(run_id, "x")
        assert [m.step for m in history] == list(range(n))
        assert client.get_run(run_id).status is gyre.RunStatus.FINISHED
    client.close()


KILLED = """
import sys, gyre
uri = sys.argv[1]
gyre.set_tracking_uri(uri)
run = gyre.start_run(experiment="kill")
for i in range(5000):
    gyre.log_metric("x", float(i), step=i)
gyre.log_param("p", "1")
gyre.flush()
print(run.run_id, flush=True)
for i in range(5000, 10_000):  # logged after the flush: may or may not be written
    gyre.log_metric("x", float(i), step=i)
sys.stdin.readline()  # wait to be killed
"""


def test_kill_9_after_flush_loses_nothing_that_was_flushed(sqlite_uri: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED, sqlite_uri],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()  # printed only after flush() returned
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.close()
    proc.stdout.close()
    client = gyre.Client(sqlite_uri)
    steps = [m.step for m in client.get_metric_history(run_id, "x")]
    assert steps[:5000] == list(range(5000))
    assert client.get_run(run_id).params == {"p": "1"}
    client.close()


def test_a_database_locked_while_another_process_opens_it_is_tried_again() -> None:
    import sqlite3

    from gyre.store._sql_base import _retry_locked

    answers = iter([sqlite3.OperationalError("database is locked")] * 2 + ["wal"])

    def pragma() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert _retry_locked(pragma) == "wal"

    def broken() -> str:
        raise sqlite3.OperationalError("no such table: runs")

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        _retry_locked(broken)  # any other error at once
