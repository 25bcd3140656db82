"""The spool compactor as a process of its own, beside the processes that serve.

Compacting a spool file into Parquet costs about as much CPU per logged row as answering
it does on a loaded server (parsing the lines, building columns, writing Parquet: one to
two microseconds a row). Done by a thread of the serving process it also holds that
process's GIL for seconds at a time, every ``compact_interval_s``, while requests wait.
``gyre serve`` therefore runs one :class:`CompactorProcess` for its spool folder, and its
workers' logs only finish their spool files at that pace (``background_compaction=False``).

The process runs at a lower CPU priority (``nice``, default 10): on a machine with idle
cores it compacts on them and costs the workers nothing; on a saturated one it yields to
them, and the spool waits on disk (durable, counted in ``/metrics`` as spool files and
bytes) until the load falls. At nice 10 it still gets about a tenth of a busy core.

It compacts every ``interval`` seconds, and once more before it exits: when its standard
input ends (its parent closes the pipe to stop it, and the kernel closes it when the
parent dies, kill -9 included, so no compactor outlives its server) or on SIGTERM. Ctrl-C
in a terminal reaches the whole process group: the compactor ignores SIGINT and lets its
parent stop it. A compaction that fails is logged and tried again at the next interval:
the files stay.

After every run it writes what it has done so far to ``SPOOL_DIR/.compactor-<pid>.json``
(replaced atomically, removed when it exits): the serving workers' ``stats()`` report it as
the ``compactor_*`` numbers of their ``/metrics`` (see ``_status``).

    python -m gyre.predictions._compactor SPOOL_DIR [--store URI] [--interval S] [--nice N]
                                          [--log-format text|json]

``gyre serve`` asks for ``json``: its own log lines are JSON, and the compactor's land in
the same stream.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from gyre.predictions._status import status_path, write_status

if TYPE_CHECKING:
    from gyre.artifacts import ArtifactStore

__all__ = ["CompactorProcess", "main"]

logger = logging.getLogger("gyre.predictions")


class CompactorProcess:
    """Starts and stops ``python -m gyre.predictions._compactor`` for ``spool_dir``.

    ``store``: the artifact store's URI (default: ``GYRE_ARTIFACT_URI`` as the child
    resolves it from the environment it inherits). The child is restarted (after a pause)
    if it dies, unless this object was stopped or the child was sent SIGTERM."""

    def __init__(
        self,
        spool_dir: str | Path,
        store: str | None = None,
        *,
        interval_s: float = 30.0,
        nice: int = 10,
        log_format: Literal["text", "json"] = "text",
    ) -> None:
        self.spool_dir = Path(spool_dir)
        self.store = store
        self.interval_s = interval_s
        self.nice = nice
        self.log_format = log_format
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return None if proc is None else proc.pid

    def _command(self) -> list[str]:
        cmd = [sys.executable, "-m", "gyre.predictions._compactor", str(self.spool_dir)]
        cmd += ["--interval", repr(self.interval_s), "--nice", str(self.nice)]
        cmd += ["--log-format", self.log_format]
        if self.store:
            cmd += ["--store", self.store]
        return cmd

    def start(self) -> None:
        """Start the process, and a thread that restarts it should it die."""
        with self._lock:
            self._proc = self._spawn()
        self._watcher = threading.Thread(
            target=self._watch, name="gyre-compactor-watch", daemon=True
        )
        self._watcher.start()

    def _watch(self) -> None:
        proc = self._proc
        while proc is not None:
            code = proc.wait()
            if self._stopping.is_set():
                return
            if proc.stdin is not None:
                proc.stdin.close()
            if code == -signal.SIGTERM:  # stopped from outside (the process group, say)
                logger.info("the spool compactor was stopped by SIGTERM")
                return
            logger.error("the spool compactor exited with code %s; restarting it", code)
            if self._stopping.wait(5.0):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                self._proc = proc = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        # stdin is the lifeline: closed by stop(), or by the kernel when this process dies
        return subprocess.Popen(self._command(), stdin=subprocess.PIPE)

    def stop(self, timeout: float = 120.0) -> int | None:
        """Ask the process to compact once more and exit; its exit code (None: it had to
        be killed after ``timeout`` seconds, its files left for the next compaction)."""
        self._stopping.set()
        with self._lock:
            proc = self._proc
        if proc is None:
            return None
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = None
        if self._watcher is not None:
            self._watcher.join()
        return code


def _stop_at_eof(stop: threading.Event) -> None:
    # os.read, not sys.stdin: a daemon thread blocked in the buffered reader holds its lock,
    # and an interpreter exiting meanwhile (SIGTERM, as systemd sends a whole service)
    # aborts on it ("Fatal Python error: _enter_buffered_busy", exit -6)
    try:
        fd = sys.stdin.fileno()
        while os.read(fd, 4096):
            pass
    except (OSError, ValueError):
        pass
    stop.set()


def run(spool_dir: Path, store_uri: str | None, interval: float) -> int:
    """Compact ``spool_dir`` every ``interval`` seconds until standard input ends or
    SIGTERM; then once more. 0, or 1 when that last compaction failed."""
    from gyre import config
    from gyre.artifacts import open_artifact_store
    from gyre.predictions._log import Compaction, compact_folder, retried_later

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=_stop_at_eof, args=(stop,), daemon=True).start()
    store: ArtifactStore | None = None  # opened on the first compaction that can
    counts = Compaction()
    runs = 0
    started = time.time()
    with contextlib.suppress(OSError):  # (the workers make it too; a failure shows later)
        spool_dir.mkdir(parents=True, exist_ok=True)
    write_status(spool_dir, counts, runs, True, started)

    def compact() -> bool:
        nonlocal store, runs
        failures = counts.failures
        with retried_later(counts):
            if store is None:  # (a store that cannot be reached yet is tried again)
                store = open_artifact_store(store_uri or config.get("GYRE_ARTIFACT_URI"))
            compact_folder(spool_dir, store, counts)
        runs += 1
        ok = counts.failures == failures
        write_status(spool_dir, counts, runs, ok, started)
        return ok

    try:
        while not stop.wait(interval):
            compact()
        return 0 if compact() else 1
    finally:
        with contextlib.suppress(OSError):
            status_path(spool_dir).unlink()


def _component(record: logging.LogRecord) -> bool:
    """Marks the compactor's records (a JSON line then says ``"component":
    "spool-compactor"``: the workers log compaction under the same logger)."""
    record.component = "spool-compactor"
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gyre.predictions._compactor",
        description="Compact a prediction-log spool folder into Parquet segments, "
        "every INTERVAL seconds, until standard input ends or SIGTERM.",
    )
    parser.add_argument("spool_dir", type=Path)
    parser.add_argument("--store", help="artifact store URI [default: GYRE_ARTIFACT_URI]")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between runs")
    parser.add_argument("--nice", type=int, default=10, help="CPU niceness to add")
    parser.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="how to write log lines"
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_component)
    if args.log_format == "json":
        from gyre._jsonlog import JsonFormatter

        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("gyre spool compactor: %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    if args.nice > 0 and hasattr(os, "nice"):
        os.nice(args.nice)
    if args.interval <= 0:
        parser.error(f"--interval {args.interval!r} must be positive")
    return run(args.spool_dir, args.store, args.interval)


if __name__ == "__main__":
    sys.exit(main())
