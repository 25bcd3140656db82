"""The status file of a spool folder's compactor process: what it has done since it
started, written after every run, read by the serving workers for their ``/metrics``.

Kept apart from ``_compactor``, which ``python -m`` runs as ``__main__``: the log reads the
file, and importing that module from the log would load it twice in the compactor process.
A status file left by a compactor that was killed is replaced by the next one at its start.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gyre.predictions._log import Compaction

__all__ = ["STATUS", "read_status", "write_status"]

logger = logging.getLogger("gyre.predictions")

STATUS = ".compactor.json"  # in the spool folder (a dot file: never taken for a spool file)


def write_status(spool_dir: Path, counts: Compaction, runs: int, last_ok: bool) -> None:
    """What the compactor has done since it started, for the serving workers to report."""
    status = {
        "pid": os.getpid(),
        "runs": runs,
        "last_run_unix": time.time(),
        "last_run_failed": not last_ok,
        "compacted_records": counts.rows,
        "segments_written": counts.segments,
        "torn_records": counts.torn,
        "damaged_lines": counts.damaged,
        "failures": counts.failures,
    }
    path = spool_dir / STATUS
    temporary = path.with_name(STATUS + ".tmp")
    try:
        temporary.write_text(json.dumps(status))
        os.replace(temporary, path)
    except OSError as exc:  # the numbers are for metrics: never worth stopping for
        logger.warning("could not write %s: %s", path, exc)


def read_status(spool_dir: Path) -> dict[str, float]:
    """The ``compactor_*`` statistics of the compactor process of ``spool_dir``, from its
    status file; empty when no compactor runs there (or its file cannot be read).

    ``compactor_compacted_records``, ``compactor_segments_written``,
    ``compactor_torn_records``, ``compactor_damaged_lines``, ``compactor_failures``: totals
    since that process started; ``compactor_runs``: its compactions so far;
    ``compactor_last_run_age_s``: seconds since the last one ended (growing past its
    interval means it is stuck or starved of CPU); ``compactor_last_run_failed``: 1 when
    that one failed (the store unreachable, say)."""
    try:
        status: dict[str, Any] = json.loads((spool_dir / STATUS).read_bytes())
        out = {
            f"compactor_{key}": float(status[key])
            for key in ("compacted_records", "segments_written", "torn_records",
                        "damaged_lines", "failures", "runs", "last_run_failed")
        }  # fmt: skip
        out["compactor_last_run_age_s"] = max(0.0, time.time() - float(status["last_run_unix"]))
    except (OSError, ValueError, TypeError, KeyError):
        return {}
    return out
