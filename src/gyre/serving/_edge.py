"""Edge mode's background sync: the local prediction log copied to a central store.

An edge server (``gyre serve --bundle model.gyre``) logs to a spool and a local artifact
folder, never to the network. With ``--sync-to URL`` an :class:`EdgeSync` compacts the
spool into the local store and copies what the central store lacks with
:func:`gyre.predictions.sync`, every ``interval`` seconds (and on ``POST /admin/sync``).
Syncing is idempotent: a sync cut short (central unreachable, the link dropping) is
finished by the next one, without a duplicated or lost row. Serving never waits for it:
it runs in a thread, and a failure is only logged, counted and reported in the status.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from gyre.errors import BackendUnavailable, Forbidden, GyreError, Unauthorized

if TYPE_CHECKING:
    from gyre.artifacts import ArtifactStore
    from gyre.serving._telemetry import Telemetry

__all__ = ["EdgeSync", "open_central"]

logger = logging.getLogger("gyre.serving")


class _Compacting(Protocol):
    def compact(self) -> Any: ...


def open_central(uri: str, *, retry_seconds: float = 2.0) -> ArtifactStore:
    """The central artifact store at ``uri``; a ``gyre server`` is retried for at most
    ``retry_seconds`` per call (the next sync carries on), others as their adapter does."""
    if uri.split(":", 1)[0].lower() in ("http", "https"):
        from gyre.artifacts._http import HttpArtifactStore

        return HttpArtifactStore(uri, retry_seconds=retry_seconds)
    from gyre.artifacts import open_artifact_store

    return open_artifact_store(uri)


class EdgeSync:
    """Compact ``log`` into ``local`` and copy it to ``central`` (a store or its URI)."""

    def __init__(
        self,
        log: _Compacting | None,
        local: ArtifactStore,
        central: ArtifactStore | str,
        *,
        interval: float = 60.0,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.log = log
        self.local = local
        self._central = central
        self.interval = interval
        self.telemetry = telemetry
        self._lock = threading.Lock()
        self.syncs = 0
        self.failures = 0
        self.last_ok_ms: int | None = None
        self.last_error: str | None = None
        self.last_report: dict[str, Any] | None = None
        self.running_since_ms: int | None = None  # a sync under way (central may be slow)

    @property
    def central_uri(self) -> str:
        c = self._central
        return c if isinstance(c, str) else str(getattr(c, "uri", c))

    def _central_store(self) -> ArtifactStore:
        if isinstance(self._central, str):
            self._central = open_central(self._central)
        return self._central

    def run_once(self) -> dict[str, Any]:
        """One compaction and sync, in the calling thread; the report as a dict.

        Raises what the sync raised (BackendUnavailable naming central when unreachable);
        nothing local is lost, the next call carries on."""
        from gyre.predictions import sync

        with self._lock:
            self.running_since_ms = time.time_ns() // 1_000_000
            try:
                if self.log is not None:
                    self.log.compact()
                try:
                    report = sync(self.local, self._central_store()).to_dict()
                except (Unauthorized, Forbidden) as exc:
                    # central's refusal, not this server's: said as a dependency failing,
                    # so a client of POST /admin/sync does not take it for its own token's
                    raise BackendUnavailable(exc.message, hint=exc.hint) from None
            except Exception as exc:
                self.failures += 1
                self.last_error = str(exc)
                if self.telemetry is not None:
                    self.telemetry.synced("failed")
                raise
            finally:
                self.running_since_ms = None
            self.syncs += 1
            self.last_ok_ms = time.time_ns() // 1_000_000
            self.last_error = None
            self.last_report = report
            if self.telemetry is not None:
                self.telemetry.synced("ok")
            return report

    async def run(self) -> None:
        """Sync every ``interval`` seconds, until cancelled; failures are logged only."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await asyncio.to_thread(self.run_once)
            except GyreError as exc:
                logger.warning("prediction log sync failed; retrying in %g s: %s",
                               self.interval, exc)  # fmt: skip
            except Exception:
                logger.exception("prediction log sync failed; retrying in %g s", self.interval)

    def status(self) -> dict[str, Any]:
        return {
            "central": self.central_uri,
            "interval_s": self.interval,
            "syncs": self.syncs,
            "failures": self.failures,
            "last_ok_ms": self.last_ok_ms,
            "last_error": self.last_error,
            "last_report": self.last_report,
            "running_since_ms": self.running_since_ms,
        }

    def close(self) -> None:
        from gyre.artifacts import close_artifact_store

        close_artifact_store(self._central)
