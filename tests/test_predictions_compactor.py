"""The spool compactor as a process of its own (what ``gyre serve`` runs beside its workers):
it compacts on its interval and once more when stopped, at the niceness it was given, and
never outlives the process that started it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gyre.artifacts import open_artifact_store
from gyre.predictions import PredictionLog, query
from gyre.predictions._compactor import CompactorProcess
from gyre.predictions._status import read_status
from tests.fixtures.predictions import records

REPO = Path(__file__).resolve().parent.parent


def _spooled(spool: Path, n: int, prefix: str) -> None:
    """``n`` records in a finished spool file, as a worker that stopped leaves them."""
    with PredictionLog(spool, None) as log:
        log.append(records(n, prefix=prefix))


def _rows(store_dir: Path) -> int:
    return int(query(open_artifact_store(str(store_dir)), "churn").num_rows)


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name; None once the process is gone
    (a zombie counts as gone: it runs nothing)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else fields


def _by_hand(
    spool: Path, store: Path, *options: str, stderr: Any = None
) -> subprocess.Popen[bytes]:
    """A compactor started as ``gyre serve`` starts one, compacting every 0.1 s, with no
    :class:`CompactorProcess` watching it; stopped by closing its standard input."""
    return subprocess.Popen(
        [sys.executable, "-m", "gyre.predictions._compactor", str(spool), "--store", str(store),
         "--interval", "0.1", "--nice", "0", *options],
        stdin=subprocess.PIPE, stderr=stderr, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip


def _until(what: str, done: object, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.05)  # poll interval


def test_compacts_on_its_interval_at_the_niceness_given(tmp_path: Path) -> None:
    spool, store = tmp_path / "spool", tmp_path / "artifacts"
    _spooled(spool, 20, "first")
    compactor = CompactorProcess(spool, str(store), interval_s=0.1, nice=7)
    compactor.start()
    try:
        pid = compactor.pid
        assert pid is not None and pid != os.getpid()
        _until("the compactor runs at nice 7", lambda: (_stat(pid) or ["?"] * 20)[16] == "7")
        _until("the first file is compacted", lambda: _rows(store) == 20)
        _spooled(spool, 5, "second")
        _until("a file that came later is compacted", lambda: _rows(store) == 25)
    finally:
        assert compactor.stop() == 0
    assert not list(spool.glob("*.jsonl"))


def test_stop_compacts_what_is_left(tmp_path: Path) -> None:
    spool, store = tmp_path / "spool", tmp_path / "artifacts"
    compactor = CompactorProcess(spool, str(store), interval_s=3600, nice=0)
    compactor.start()
    _spooled(spool, 12, "late")
    assert compactor.stop() == 0  # the hour has not passed: this is the last pass
    assert _rows(store) == 12
    assert not list(spool.glob("*.jsonl"))


def test_a_compactor_that_dies_is_started_again(tmp_path: Path) -> None:
    spool, store = tmp_path / "spool", tmp_path / "artifacts"
    compactor = CompactorProcess(spool, str(store), interval_s=0.1, nice=0)
    compactor.start()
    try:
        first = compactor.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        _until("a new compactor", lambda: compactor.pid not in (None, first), seconds=60)
        _spooled(spool, 3, "after")
        _until("the new one compacts", lambda: _rows(store) == 3)
    finally:
        assert compactor.stop() == 0


def test_the_compactor_stops_when_its_server_is_killed(tmp_path: Path) -> None:
    spool, store = tmp_path / "spool", tmp_path / "artifacts"
    script = (
        "import sys, time\n"
        "from gyre.predictions._compactor import CompactorProcess\n"
        f"c = CompactorProcess({str(spool)!r}, {str(store)!r}, interval_s=3600, nice=0)\n"
        "c.start()\n"
        "print(c.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    assert parent.stdout is not None
    with parent.stdout:
        child = int(parent.stdout.readline())
    _spooled(spool, 4, "orphan")
    parent.kill()  # kill -9: the parent runs no clean-up
    parent.wait()
    _until("the compactor exits", lambda: _stat(child) is None)
    # ... and it compacted once more on its way out
    assert _rows(store) == 4


def test_a_store_that_fails_keeps_the_files_until_it_works(tmp_path: Path) -> None:
    spool, store = tmp_path / "spool", tmp_path / "artifacts"
    store.write_text("a file where the store's folder should be")
    _spooled(spool, 6, "waiting")
    errors = tmp_path / "compactor.err"
    with errors.open("wb") as err:
        proc = _by_hand(spool, store, "--log-format", "json", stderr=err)
        try:
            _until("the failure is reported", lambda: b"will retry" in errors.read_bytes())
            assert len(list(spool.glob("*.jsonl"))) == 1, "the spool file is kept"
            failed = "compactor_last_run_failed"
            _until("metrics say so", lambda: read_status(spool).get(failed) == 1)
            _until("it failed a few times",
                   lambda: read_status(spool)["compactor_failures"] >= 3)  # fmt: skip
            store.unlink()  # the store comes back
            _until("compacted once it can be", lambda: not list(spool.glob("*.jsonl")))
            _until(
                "metrics say it works", lambda: read_status(spool)["compactor_last_run_failed"] == 0
            )
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            assert proc.wait(timeout=60) == 0
    assert _rows(store) == 6
    # as JSON lines, the server's shape (gyre serve asks for them), naming the store
    lines = [json.loads(line) for line in errors.read_text().splitlines()]
    failures = [line for line in lines if "will retry" in line["msg"]]
    assert failures and all(line["level"] in ("warning", "error") for line in failures), lines
    assert str(store) in failures[0]["msg"] + failures[0].get("exc", "")
    assert {"ts", "logger"} <= set(failures[0])
    assert failures[0]["component"] == "spool-compactor"  # (workers log under the same logger)
    # the same failure again and again: its traceback once, then one line each time
    assert sum("Traceback" in line.get("exc", "") for line in lines) == 1, lines
    assert any("again (3 in a row)" in line["msg"] for line in lines)
    assert any("works again after" in line["msg"] for line in lines)


def test_workers_report_what_the_compactor_did(tmp_path: Path) -> None:
    """A serving worker's log leaves compaction to the compactor process; its stats (and
    so /metrics) carry the compactor's numbers while it runs, and only while it runs."""
    spool, store = tmp_path / "spool", tmp_path / "artifacts"
    worker = PredictionLog(
        spool, open_artifact_store(str(store)), compact_interval_s=0.05, background_compaction=False
    )
    try:
        assert not any(k.startswith("compactor_") for k in worker.stats())
        compactor = CompactorProcess(spool, str(store), interval_s=0.1, nice=0)
        compactor.start()
        try:
            worker.append(records(20, prefix="served"))
            _until("the compactor's rows are in the worker's stats",
                   lambda: worker.stats().get("compactor_compacted_records") == 20)  # fmt: skip
            stats = worker.stats()
            assert stats["compacted_records"] == 0  # the worker compacted nothing itself
            assert stats["compactor_segments_written"] >= 1 and stats["compactor_runs"] >= 1
            assert stats["compactor_last_run_failed"] == 0 and stats["compactor_failures"] == 0
            assert 0 <= stats["compactor_last_run_age_s"] < 30
        finally:
            assert compactor.stop() == 0
        assert not any(k.startswith("compactor_") for k in worker.stats())
        assert not list(spool.glob(".*")), "the compactor leaves no status file behind"
    finally:
        worker.close()
    assert _rows(store) == 20


def test_compactors_sharing_a_folder_are_reported_together(tmp_path: Path) -> None:
    """Two servers on one spool folder: each compactor has its own status file, the
    numbers are summed, and one stopping leaves the other's; a compactor killed before it
    could remove its file is not reported, and its file is removed."""
    spool, store = tmp_path / "spool", tmp_path / "artifacts"
    first = CompactorProcess(spool, str(store), interval_s=0.1, nice=0)
    first.start()
    second = _by_hand(spool, store)  # (nothing restarts it once killed)
    try:
        _until("both report", lambda: read_status(spool).get("compactor_processes") == 2)
        _spooled(spool, 9, "shared")
        _until("the rows are counted once, by whichever compacted them",
               lambda: read_status(spool).get("compactor_compacted_records") == 9)  # fmt: skip
        assert first.stop() == 0
        assert read_status(spool)["compactor_processes"] == 1, "the other one is still reported"
        second.kill()  # no chance to remove its file...
        second.wait(timeout=60)
        assert list(spool.glob(".compactor-*.json"))
        assert read_status(spool) == {}  # ...which is left out
        assert not list(spool.glob(".compactor-*.json")), "and removed, not left to pile up"
    finally:
        first.stop()
        if second.poll() is None:
            second.kill()
            second.wait(timeout=60)
        assert second.stdin is not None
        second.stdin.close()
    assert _rows(store) == 9


def test_sigterm_with_its_lifeline_open_ends_cleanly(tmp_path: Path) -> None:
    """SIGTERM while its standard input is still open (a service manager stops every
    process of the service at once): the last compaction runs and the process exits 0.
    It used to abort at interpreter exit (exit -6, "Fatal Python error" on standard error),
    which the server took for a crash."""
    spool, store = tmp_path / "spool", tmp_path / "artifacts"
    _spooled(spool, 3, "term")
    proc = _by_hand(spool, store, stderr=subprocess.PIPE)
    _until("the first run", lambda: _rows(store) == 3)
    _spooled(spool, 2, "late")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)  # (not communicate(): that would close standard input first)
    assert proc.stderr is not None and proc.stdin is not None
    err = proc.stderr.read()
    proc.stdin.close()
    proc.stderr.close()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"Fatal Python error" not in err
    assert _rows(store) == 5, "with its last compaction"
