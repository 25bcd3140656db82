"""The workers of one ``gyre serve``: admin actions every worker must take, not just one.

``gyre serve --workers N`` runs N processes behind one port, and an admin request reaches
whichever of them accepted its connection. For ``POST /admin/reload`` that is not enough: a
worker that is not told keeps serving the old version until its own next poll (never, with
``--reload-interval 0``), and one not told to retry a version that failed to load keeps it
failed while the others serve the new one.

So the command makes a folder the workers share (removed when it exits) and the worker that
answers the request appends it to a file there; every worker looks at the file's size every
``poll_s`` (a ``stat``), takes the requests other workers appended, and appends its answer;
the answering worker waits for the others' answers (at most ``timeout`` seconds) before it
replies, and says how many answered. One JSON line per request or answer, each written with
one ``write`` on a file opened ``O_APPEND``, so lines of several processes never interleave.
A worker started later (one uvicorn restarted) begins at the file's end: what it would
have been told, its start-up catch-up with the registry has done already.
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
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._offset = os.fstat(self._fd).st_size  # what was asked before we started is done
        self._partial = b""

    def close(self) -> None:
        os.close(self._fd)

    def ask(self, action: str, args: dict[str, Any]) -> str:
        """Append a request for the other workers; its id, to wait for their answers."""
        rid = uuid.uuid4().hex
        self._append({"id": rid, "pid": self.pid, "action": action, "args": args})
        return rid

    async def answered(self, rid: str, timeout: float) -> dict[int, bool]:
        """The other workers that answered request ``rid`` (pid -> whether the action
        worked), once all of them have, or ``timeout`` seconds have passed."""
        deadline = time.monotonic() + timeout
        found: dict[int, bool] = {}
        while True:
            try:
                lines = self._lines(0)
            except OSError:  # (the folder removed as the server stops)
                return found
            found = {
                line["pid"]: bool(line.get("ok"))
                for line in lines
                if line.get("answer") == rid and line.get("pid") != self.pid
            }
            if len(found) >= self.workers - 1 or time.monotonic() >= deadline:
                return found
            await asyncio.sleep(min(self.poll_s / 4, max(0.0, deadline - time.monotonic())))

    async def follow(self, act: Callable[[str, dict[str, Any]], Awaitable[object]]) -> None:
        """Until cancelled: take the other workers' requests with ``act(action, args)`` and
        answer each (``ok`` false when ``act`` raised; it is logged)."""
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                size = os.stat(self.path).st_size
            except OSError:
                continue
            if size <= self._offset:
                continue
            try:
                lines = self._new_lines()
            except OSError:  # (the folder removed as the server stops)
                continue
            for line in lines:
                if "action" not in line or line.get("pid") == self.pid:
                    continue
                ok = True
                try:
                    await act(str(line["action"]), dict(line.get("args") or {}))
                except Exception:
                    ok = False
                    logger.exception("admin request %r from worker %s failed here",
                                     line["action"], line.get("pid"))  # fmt: skip
                try:
                    self._append({"answer": line.get("id"), "pid": self.pid, "ok": ok})
                except OSError:
                    logger.exception("could not answer admin request %r", line.get("id"))

    def _append(self, doc: dict[str, Any]) -> None:
        os.write(self._fd, json.dumps(doc, separators=(",", ":")).encode() + b"\n")

    def _new_lines(self) -> list[dict[str, Any]]:
        with self.path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        self._offset += len(data)
        data, self._partial = self._partial + data, b""
        if not data.endswith(b"\n"):  # a line being written: its rest comes next time
            data, _, self._partial = data.rpartition(b"\n")
        return _parse(data)

    def _lines(self, offset: int) -> list[dict[str, Any]]:
        with self.path.open("rb") as f:
            f.seek(offset)
            data = f.read()
        return _parse(data.rpartition(b"\n")[0])


def _parse(data: bytes) -> list[dict[str, Any]]:
    lines = []
    for raw in data.splitlines():
        try:
            doc = json.loads(raw)
        except ValueError:
            continue
        if isinstance(doc, dict):
            lines.append(doc)
    return lines
