"""The workers of one ``gyre serve``: admin actions every worker must take, not just one.

``gyre serve --workers N`` runs N processes behind one port, and an admin request reaches
whichever of them accepted its connection. For ``POST /admin/reload`` that is not enough: a
worker that is not told keeps serving the old version until its own next poll (never, with
``--reload-interval 0``), and one not told to retry a version that failed to load keeps it
failed while the others serve the new one. ``POST /admin/sync`` has every worker finish its
spool file the same way, and ``GET /admin/status?workers=all`` asks for every worker's state.

So the command makes a folder the workers share (removed when it exits) and the worker that
answers the request appends it to a file there; every worker looks at the file's size every
``poll_s`` (an ``fstat``), takes the requests other workers appended, and appends its answer
(what its action returned, e.g. the versions it serves now); the answering worker waits for
the others' answers (at most ``timeout`` seconds) before it replies. One JSON line per
request or answer, each written whole on a file opened ``O_APPEND``, so lines of several
processes never interleave. Every worker reads and writes through the descriptor it opened
at start, so the file being deleted under it (a ``/tmp`` cleaner) changes nothing. A worker
started later (one uvicorn restarted) begins at the file's end: what it would have been
told, its start-up catch-up with the registry has done already.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

__all__ = ["Peers"]

logger = logging.getLogger("gyre.serving")

_FILE = "admin-requests"


class Peers:
    """This worker's view of the ``workers`` processes sharing ``folder``."""

    def __init__(self, folder: str | Path, workers: int, *, poll_s: float = 0.2) -> None:
        self.path = Path(folder) / _FILE
        self.workers = workers
        self.poll_s = poll_s
        self.pid = os.getpid()
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        self._offset = os.fstat(self._fd).st_size  # what was asked before we started is done
        self._partial = b""

    def close(self) -> None:
        os.close(self._fd)

    def ask(self, action: str, args: dict[str, Any]) -> tuple[str, int]:
        """Append a request for the other workers; what to wait for their answers with."""
        rid = uuid.uuid4().hex
        start = os.fstat(self._fd).st_size  # the answers come after the request
        self._append({"id": rid, "pid": self.pid, "action": action, "args": args})
        return rid, start

    async def answered(self, asked: tuple[str, int], timeout: float) -> dict[int, dict[str, Any]]:
        """The answers of the other workers to the request ``asked`` (pid -> ``{"ok": did
        the action run, "result": what it returned}``), once all of them have answered or
        ``timeout`` seconds have passed."""
        rid, start = asked
        deadline = time.monotonic() + timeout
        while True:
            found = {
                line["pid"]: line
                for line in _parse(self._read(start)[0])
                if line.get("answer") == rid and line.get("pid") != self.pid
            }
            if len(found) >= self.workers - 1 or time.monotonic() >= deadline:
                return found
            await asyncio.sleep(min(self.poll_s / 4, max(0.0, deadline - time.monotonic())))

    async def follow(self, act: Callable[[str, dict[str, Any]], Awaitable[Any]]) -> None:
        """Until cancelled: take the other workers' requests with ``act(action, args)`` and
        answer each with what it returned (``ok`` false when it raised; that is logged)."""
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                data, self._offset = self._read(self._offset)
            except OSError:
                logger.exception("could not read the workers' admin requests")
                continue
            if not data:
                continue
            data, self._partial = self._partial + data, b""
            if not data.endswith(b"\n"):  # a line being written: its rest comes next time
                data, _, self._partial = data.rpartition(b"\n")
            for line in _parse(data):
                if "action" not in line or line.get("pid") == self.pid:
                    continue
                ok, result = True, None
                try:
                    result = await act(str(line["action"]), dict(line.get("args") or {}))
                except Exception:
                    ok = False
                    logger.exception("admin request %r from worker %s failed here",
                                     line["action"], line.get("pid"))  # fmt: skip
                try:
                    self._append(
                        {"answer": line.get("id"), "pid": self.pid, "ok": ok, "result": result}
                    )
                except (OSError, TypeError, ValueError):
                    logger.exception("could not answer admin request %r", line.get("id"))

    def _append(self, doc: dict[str, Any]) -> None:
        data = json.dumps(doc, separators=(",", ":")).encode() + b"\n"
        written = os.write(self._fd, data)
        if written != len(data):  # (a full disk): the rest would start the next line
            os.write(self._fd, b"\n")
            raise OSError(f"wrote {written} of {len(data)} bytes of an admin request")

    def _read(self, offset: int) -> tuple[bytes, int]:
        """The file's bytes from ``offset`` on, and the offset after them."""
        size = os.fstat(self._fd).st_size
        data = os.pread(self._fd, max(0, size - offset), offset) if size > offset else b""
        return data, offset + len(data)


def _parse(data: bytes) -> list[dict[str, Any]]:
    """The whole JSON-object lines of ``data`` (a torn last line is left out)."""
    lines = []
    for raw in data.split(b"\n"):
        try:
            doc = json.loads(raw)
        except ValueError:
            continue
        if isinstance(doc, dict):
            lines.append(doc)
    return lines
