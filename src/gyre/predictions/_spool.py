"""Spool files: the append-only JSON Lines files records wait in until they are compacted.

A spool file is named ``<time_ns>-<pid>-<random>.jsonl``; that name (without ``.jsonl``)
is its *spool id*, from which its segments' paths derive. The writer that owns a file holds
an exclusive ``flock`` on it for as long as it appends; compaction only takes files it can
lock itself, i.e. finished ones and those whose process died (the kernel drops a dead
process's locks, kill -9 included). Several workers may therefore share one spool folder.
A new file is created under a hidden name, locked, and only then renamed into view, so no
compactor can ever take a file its writer is about to fill.

Reading a file for compaction keeps every complete line. A last line without its ``\\n``
(the writer died mid-write) is *torn*: it is counted, and the file is truncated to its
last complete line. A line in the middle that does not parse, or a batch line whose columns
do not hold its row count (or one of whose binary blocks does not decode to its dtype and
shape), is counted as damaged and skipped; the lines after it are kept.
Counts are of lines: a torn or damaged batch line loses its rows and counts once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sys
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gyre.predictions._record import decode_batch, encode_header

__all__ = ["ClaimedSpool", "SpoolContents", "SpoolWriter", "claim_finished"]

logger = logging.getLogger("gyre.predictions")

SUFFIX = ".jsonl"
_datasync = getattr(os, "fdatasync", os.fsync)
_NEW = ".new"


def new_spool_id() -> str:
    return f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}"


class SpoolWriter:
    """The active spool file of one PredictionLog: opened on first write, rotated on demand.

    Not thread-safe: the log calls it with its I/O lock held."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path: Path | None = None
        self.rows = 0
        self._fd: int | None = None
        self._offset = 0

    def _open(self) -> int:
        self.folder.mkdir(parents=True, exist_ok=True)
        spool_id = new_spool_id()
        hidden = self.folder / f".{spool_id}{SUFFIX}{_NEW}"
        fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        try:
            if not try_lock(fd):  # nobody else can know the name yet
                raise OSError(f"cannot lock the new spool file {hidden}")
            header = encode_header()
            _write_all(fd, header)
            path = self.folder / f"{spool_id}{SUFFIX}"
            os.replace(hidden, path)
            _fsync_dir(self.folder)
        except BaseException:
            os.close(fd)
            hidden.unlink(missing_ok=True)
            raise
        self._fd, self.path, self.rows, self._offset = fd, path, 0, len(header)
        return fd

    def write(self, lines: Sequence[bytes], rows: int) -> None:
        """Append ``lines`` (each ending in a newline). If that fails, nothing of them stays
        in the file; where even undoing it fails, WriteFailed says how many of them are in
        the file (which is then closed, ending in a torn line that compaction cuts off).

        The lines go to the kernel as they are (``writev``): no joined copy of a sync
        interval's lines (megabytes under load) is made while holding the GIL."""
        fd = self._fd if self._fd is not None else self._open()
        done = 0  # lines wholly in the file
        try:
            done = _write_lines(fd, lines)
        except OSError as exc:
            done = getattr(exc, "gyre_lines_written", 0)
            try:
                os.ftruncate(fd, self._offset)
            except OSError:
                self.abandon()
                raise WriteFailed(done) from None
            raise
        self._offset += sum(map(len, lines))
        self.rows += rows

    def sync(self) -> None:
        """Make what was written durable: its bytes and the file's size (fdatasync, where
        there is one: the file's times are not worth a journal commit each time)."""
        if self._fd is not None:
            _datasync(self._fd)

    def close(self) -> None:
        """fsync and close the active file, which releases its lock: it is finished."""
        if self._fd is None:
            return
        try:
            os.fsync(self._fd)
        finally:
            self.abandon()

    def abandon(self) -> None:
        """Close without fsync (after a failure)."""
        fd, self._fd = self._fd, None
        self.path, self.rows = None, 0
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


class WriteFailed(OSError):
    """A write failed and could not be undone; ``written`` of its lines are in the file."""

    def __init__(self, written: int) -> None:
        super().__init__(f"{written} lines reached the spool before the write failed")
        self.written = written


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


_IOV_MAX = min(os.sysconf("SC_IOV_MAX"), 1024) if hasattr(os, "writev") else 0


def _write_lines(fd: int, lines: Sequence[bytes]) -> int:
    """Write ``lines`` whole (``writev``, up to IOV_MAX buffers a call, continuing after a
    short write); their count. An OSError raised on the way carries the number of lines
    already whole in the file as ``gyre_lines_written``."""
    if not _IOV_MAX:  # (no writev: Windows)
        _write_all(fd, b"".join(lines))
        return len(lines)
    done = 0  # lines wholly written
    into = 0  # bytes of lines[done] written
    try:
        while done < len(lines):
            chunk: list[Any] = list(lines[done : done + _IOV_MAX])
            if into:
                chunk[0] = memoryview(chunk[0])[into:]
            n = os.writev(fd, chunk) + into
            while done < len(lines) and n >= len(lines[done]):
                n -= len(lines[done])
                done += 1
            into = n
    except OSError as exc:
        exc.gyre_lines_written = done  # type: ignore[attr-defined]
        raise
    return done


# -- claiming finished files ---------------------------------------------------------------


@dataclass
class SpoolContents:
    spool_id: str
    lines: list[dict[str, Any]] = field(default_factory=list)
    torn: int = 0  # a last line cut short (counted once: the file is truncated)
    damaged: int = 0  # lines that do not parse (or hold a malformed batch), not at the end


class ClaimedSpool:
    """A finished spool file this process holds the lock of, until :meth:`release`."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.spool_id = path.name.removesuffix(SUFFIX)
        self._fd = fd

    def read(self) -> SpoolContents:
        """The file's prediction (``"p"``), batch (``"b"``) and feedback (``"f"``) lines,
        each with its line number as ``"_line"``, the binary blocks of batches decoded into
        numpy arrays; a torn last line is counted and cut off the file."""
        with os.fdopen(os.dup(self._fd), "rb") as f:
            data = f.read()
        contents = SpoolContents(self.spool_id)
        end = data.rfind(b"\n") + 1
        if end < len(data):
            contents.torn = 1
            logger.warning(
                "spool file %s ends in a torn line (%d bytes): truncated",
                self.path,
                len(data) - end,
            )
            os.ftruncate(self._fd, end)
            os.fsync(self._fd)
        view = memoryview(data)
        seen: list[Any] = []  # the last column list of a batch: see decode_batch
        start = number = 0
        while start < end:
            stop = data.index(b"\n", start, end)
            try:
                line = orjson.loads(view[start:stop])
                if not isinstance(line, dict):
                    raise ValueError("not an object")
                kind = line.get("k")
                if kind == "b" and decode_batch(line, seen) is None:
                    raise ValueError("a batch whose columns or blocks do not hold its rows")
            except ValueError:
                contents.damaged += 1
                logger.warning("spool file %s: line %d is damaged, skipped", self.path, number + 1)
            else:
                if kind in ("p", "f", "b"):
                    line["_line"] = number
                    contents.lines.append(line)
            start = stop + 1
            number += 1
        return contents

    def remove(self) -> None:
        """Delete the file (its segments are recorded), then release it."""
        self.path.unlink(missing_ok=True)
        _fsync_dir(self.path.parent)
        self.release()

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> ClaimedSpool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def claim_finished(folder: Path) -> Generator[ClaimedSpool, None, None]:
    """Each spool file in ``folder`` nobody holds, oldest first, locked while it is yielded.

    Leftover hidden files of a writer that died while creating one are removed."""
    try:
        names = sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in names:
        path = folder / name
        if name.startswith(".") and name.endswith(SUFFIX + _NEW):
            _remove_if_unlocked(path)
            continue
        if name.startswith(".") or not name.endswith(SUFFIX):
            continue
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:  # another compactor finished it
            continue
        if not try_lock(fd) or os.fstat(fd).st_nlink == 0:
            os.close(fd)  # held by its writer or another compactor, or just removed
            continue
        claimed = ClaimedSpool(path, fd)
        try:
            yield claimed
        finally:
            claimed.release()


def _remove_if_unlocked(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        fd = os.open(path, os.O_RDONLY)
        try:
            if try_lock(fd):
                path.unlink(missing_ok=True)
        finally:
            os.close(fd)


def spool_files(folder: Path) -> list[Path]:
    """Every spool file in ``folder``, active ones included."""
    try:
        return sorted(p for p in folder.iterdir() if p.name.endswith(SUFFIX))
    except (FileNotFoundError, NotADirectoryError):
        return []


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def try_lock(fd: int) -> bool:
        """Lock ``fd``'s file for this open file; False if someone else holds it."""
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _fsync_dir(folder: Path) -> None:
        return None

else:
    import fcntl

    def try_lock(fd: int) -> bool:
        """Lock ``fd``'s file for this open file; False if someone else holds it.

        ``flock`` locks belong to the open file, so two opens in one process exclude each
        other too, and the kernel releases them when the process dies."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _fsync_dir(folder: Path) -> None:
        # Makes a rename or unlink itself durable.
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
