"""Hot reload: follow ``models:/NAME@ALIAS`` as the alias moves in the registry.

Every model served from an alias URI (the primary, and a challenger served from one) is a
:class:`Watch`. :meth:`Reloader.check` asks the registry where each alias points now (one
cheap query per alias); when that is another version than the one served, it downloads
and loads the new version in a thread, starts it (its batcher, and a prediction of its
input example, which must succeed) and swaps it in with :meth:`ModelSlot.deploy`: requests
already holding the old version finish on it, new ones go to the new one, none fails.
Rolling back is moving the alias back; it works the same way.

A version that fails to load (or to predict its input example) is not swapped in: the old
version keeps serving, and the failure is reported: a log line, the
``gyre_serving_reload_failing{model,alias}`` gauge (1) and ``..._reloads_total{outcome=
"failed"}``, and the ``reload`` entry of ``GET /v2/models/{name}`` and ``GET /admin/status``.
That version is not retried until the alias moves again (or ``POST /admin/reload``
with ``{"retry": true}``), unless what failed was reaching the artifact store
(BackendUnavailable): then every check tries again, and the swap happens once it answers.

The server polls every ``interval`` seconds (``gyre serve --reload-interval``; 0 polls
never); ``POST /admin/reload`` checks at once. With several workers each polls on its own,
and ``POST /admin/reload`` reaches them all (:mod:`gyre.serving._peers`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gyre.errors import BackendUnavailable, GyreError
from gyre.serving._slots import Batching, Deployment, ModelSlot, Role, ServedModel

if TYPE_CHECKING:
    from gyre.entities import ModelVersion
    from gyre.registry import ModelRef, Registry
    from gyre.serving._telemetry import Telemetry

__all__ = ["Reloader", "Watch", "alias_of"]

logger = logging.getLogger("gyre.serving")


def alias_of(uri: str) -> ModelRef | None:
    """The registry reference of ``uri`` if it names a model by alias (``models:/x@a``, or
    ``models:/x``: the ``latest`` version), else None: nothing to follow."""
    from gyre.registry import parse_model_uri

    try:
        ref = parse_model_uri(uri)
    except GyreError:
        return None
    if ref.kind != "registry" or ref.version is not None:
        return None
    return ref


@dataclass(slots=True)
class Watch:
    """One alias a slot role follows, and what became of the last check."""

    slot: str
    role: Role
    uri: str
    ref: ModelRef
    version: str
    batching: Batching = field(default_factory=Batching)
    target: str | None = None
    error: str | None = None
    failed_version: str | None = None
    checked_ms: int | None = None
    swapped_ms: int | None = None

    @property
    def alias(self) -> str:
        return self.ref.alias or "latest"

    def status(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "uri": self.uri,
            "alias": self.alias,
            "serving_version": self.version,
            "alias_version": self.target,
            # a version that failed to load, or an alias that cannot be resolved now
            "failing": self.failed_version is not None or self.error is not None,
            "error": self.error,
            "checked_ms": self.checked_ms,
            "swapped_ms": self.swapped_ms,
        }


class Reloader:
    """Checks the watched aliases and swaps moved ones in; see the module docstring."""

    def __init__(
        self,
        watches: Sequence[Watch],
        slots: Mapping[str, ModelSlot],
        registry: Registry,
        *,
        interval: float = 0.0,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.watches = list(watches)
        self.slots = slots
        self.registry = registry
        self.interval = interval
        self.telemetry = telemetry
        self._lock = asyncio.Lock()

    def status(self, slot: str | None = None) -> list[dict[str, Any]]:
        return [w.status() for w in self.watches if slot is None or w.slot == slot]

    async def check(self, *, retry: bool = False) -> list[dict[str, Any]]:
        """Check every alias now and swap in those that moved; the status afterwards.

        ``retry``: try again a version that failed to load before."""
        async with self._lock:
            for watch in self.watches:
                if retry:
                    watch.failed_version = None
                await self._check(watch)
        return self.status()

    async def catch_up(self, timeout: float) -> None:
        """At a worker's start, before it serves: swap in the version each alias points to
        now, if it moved since the command resolved it (a worker restarted after its
        predecessor died would otherwise answer with the version of the server's start
        until its first poll). The aliases are asked together; those not resolved within
        ``timeout`` seconds in all (the registry slow or down) are left to the poller, so a
        worker serving many aliases does not wait ``timeout`` for each. A version failing
        to load is reported as on any poll, and the worker serves the version it was
        started with."""
        if not self.watches:
            return
        async with self._lock:
            asked = {
                asyncio.ensure_future(
                    asyncio.to_thread(self.registry.resolve_version, watch.ref)
                ): watch
                for watch in self.watches
            }
            done, late = await asyncio.wait(asked, timeout=timeout)
            for task in late:  # (its thread finishes on its own; the answer is dropped)
                task.cancel()
            for task, watch in asked.items():  # in the order of the watches
                if task not in done or task.exception() is not None:
                    continue  # the poller tries again
                mv: ModelVersion = task.result()
                if str(mv.version) != watch.version:
                    await self._swap(watch, mv)

    async def run(self) -> None:
        """Check every ``interval`` seconds, until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception:  # never let the poller die: the next tick tries again
                logger.exception("checking the registry for moved aliases failed")

    async def _check(self, watch: Watch) -> None:
        try:
            mv: ModelVersion = await asyncio.to_thread(self.registry.resolve_version, watch.ref)
        except Exception as exc:  # registry unreachable, alias deleted: keep serving
            error = f"cannot resolve {watch.uri!r}: {exc}"
            if error != watch.error:  # said once, not at every poll
                logger.warning(
                    "model %r: %s; still serving version %s",
                    watch.slot,
                    error,
                    watch.version,
                    extra={"model": watch.slot, "version": watch.version},
                )
            watch.error = error
            self._failing(watch, True)
            return
        watch.checked_ms = time.time_ns() // 1_000_000
        target = str(mv.version)
        watch.target = target
        if target == watch.version:
            if watch.failed_version is not None or watch.error is not None:
                watch.failed_version = watch.error = None  # moved back: nothing is failing
                self._failing(watch, False)
            return
        if target == watch.failed_version:
            return  # reported already; retried once the alias moves again
        await self._swap(watch, mv)

    async def _swap(self, watch: Watch, mv: ModelVersion) -> None:
        target = str(mv.version)
        slot = self.slots[watch.slot]
        old = watch.version
        try:
            served = await asyncio.to_thread(self._load, watch, mv)
            await slot.deploy(Deployment(served, self.telemetry), watch.role, strict=True)
        except Exception as exc:
            # A store that cannot be reached now (S3 or the server down a moment) says
            # nothing of the version: it is tried again at the next check. Anything else
            # is the version's own failure, not retried until the alias moves again.
            transient = isinstance(exc, BackendUnavailable)
            error = (
                f"alias {watch.alias!r} moved to version {target}, which "
                + ("could not be fetched now" if transient else "failed to load")
                + f" ({type(exc).__name__}: {exc}); still serving version {old}"
                + ("; tried again at the next check" if transient else "")
            )
            if not transient:
                watch.failed_version = target
            if error != watch.error:  # (said once, not at every check)
                logger.error("model %r: %s", watch.slot, error,
                             extra={"model": watch.slot, "version": old})  # fmt: skip
                if self.telemetry is not None:
                    self.telemetry.reloaded(watch.slot, watch.alias, "failed")
            watch.error = error
            self._failing(watch, True)
            return
        watch.version = target
        watch.failed_version = watch.error = None
        watch.swapped_ms = time.time_ns() // 1_000_000
        logger.info(
            "model %r: alias %r moved from version %s to %s; now serving %s as %s",
            watch.slot,
            watch.alias,
            old,
            target,
            target,
            watch.role,
            extra={"model": watch.slot, "version": target},
        )
        if self.telemetry is not None:
            self.telemetry.reloaded(watch.slot, watch.alias, "swapped")
        self._failing(watch, False)

    def _load(self, watch: Watch, mv: ModelVersion) -> ServedModel:
        from gyre.models import load_model

        path = self.registry.download(mv.source)
        return ServedModel(watch.slot, str(mv.version), load_model(path), watch.uri,
                           watch.batching)  # fmt: skip

    def _failing(self, watch: Watch, failing: bool) -> None:
        if self.telemetry is not None:
            self.telemetry.reload_failing(watch.slot, watch.alias, failing)
