"""The status file of a spool folder's compactor process: what it has done since it
started, written after every run, read by the serving workers for their ``/metrics``.

Kept apart from ``_compactor``, which ``python -m`` runs as ``__main__``: the log reads the
files, and importing that module from the log would load it twice in the compactor process.
One file per compactor process (``.compactor-<pid>.json``); a compactor removes its own when
it exits, and readers leave out the files of processes that are gone.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gyre.predictions._log import Compaction

__all__ = ["read_status", "status_path", "write_status"]

logger = logging.getLogger("gyre.predictions")

_PREFIX, _SUFFIX = ".compactor-", ".json"  # dot files: never taken for spool files
_TOTALS = ("compacted_records", "segments_written", "torn_records", "damaged_lines", "failures",
           "runs")  # fmt: skip


def status_path(spool_dir: Path, pid: int | None = None) -> Path:
    """The status file of compactor ``pid`` (this process by default) in ``spool_dir``:
    one per compactor, so that servers sharing a spool folder never write each other's."""
    return spool_dir / f"{_PREFIX}{os.getpid() if pid is None else pid}{_SUFFIX}"


def write_status(
    spool_dir: Path, counts: Compaction, runs: int, last_ok: bool, started: float
) -> None:
    """What this compactor has done since it started (``started``: when, Unix time), for
    the serving workers to report."""
    status = {
        "pid": os.getpid(),
        "started_unix": started,
        "runs": runs,
        "last_run_unix": time.time() if runs else None,
        "last_run_failed": not last_ok,
        "compacted_records": counts.rows,
        "segments_written": counts.segments,
        "torn_records": counts.torn,
        "damaged_lines": counts.damaged,
        "failures": counts.failures,
    }
    path = status_path(spool_dir)
    temporary = path.with_name(path.name + ".tmp")
    try:
        temporary.write_text(json.dumps(status))
        os.replace(temporary, path)
    except OSError as exc:  # the numbers are for metrics: never worth stopping for
        logger.warning("could not write %s: %s", path, exc)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (another user's counts as running)."""
    if sys.platform == "win32":  # (signal 0 is CTRL_C_EVENT there; files are removed anyway)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def read_status(spool_dir: Path) -> dict[str, float]:
    """The ``compactor_*`` statistics of the compactor processes running for ``spool_dir``
    (one per ``gyre serve`` using it), from their status files; empty when none runs.
    A file whose process is gone (killed before it could remove it) is left out.

    ``compactor_compacted_records``, ``compactor_segments_written``,
    ``compactor_torn_records``, ``compactor_damaged_lines``, ``compactor_failures``,
    ``compactor_runs``: totals since they started, summed; ``compactor_last_run_age_s``:
    seconds since a compactor's last run ended (or it started, before its first), the
    largest of them: growing well past the interval means one is stuck or starved of CPU;
    ``compactor_last_run_failed``: 1 when a compactor's last run failed (the store
    unreachable, say); ``compactor_processes``: how many report."""
    out = dict.fromkeys((f"compactor_{key}" for key in _TOTALS), 0.0)
    age = failed = 0.0
    found = 0
    try:
        paths = [p for p in spool_dir.iterdir()
                 if p.name.startswith(_PREFIX) and p.name.endswith(_SUFFIX)]  # fmt: skip
    except OSError:
        return {}
    now = time.time()
    for path in paths:
        try:
            status: dict[str, Any] = json.loads(path.read_bytes())
            if not process_alive(int(status["pid"])):
                path.unlink()  # left by a compactor killed before it could remove it
                continue
            totals = [float(status[key]) for key in _TOTALS]
            last = status["last_run_unix"]
            since = float(status["started_unix"] if last is None else last)
            run_failed = float(bool(status["last_run_failed"]))
        except (OSError, ValueError, TypeError, KeyError):
            continue  # (being replaced, or not a file of this version)
        for key, value in zip(_TOTALS, totals, strict=True):
            out[f"compactor_{key}"] += value
        age = max(age, now - since)
        failed = max(failed, run_failed)
        found += 1
    if not found:
        return {}
    out["compactor_last_run_age_s"] = max(0.0, age)
    out["compactor_last_run_failed"] = failed
    out["compactor_processes"] = float(found)
    return out
