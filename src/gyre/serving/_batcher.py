"""Adaptive micro-batching: concurrent requests for one model share one predict call.

A predict call costs about the same for 1 row as for 64 (the per-call overhead of
validation, DataFrame building and the library dominates), so under concurrency the server
answers far more requests per second by coalescing them. The policy:

* Requests wait in a bounded FIFO queue (``max_queue_rows``); past it a request is refused
  at once with :class:`~gyre.serving._errors.Overloaded` (429 + ``Retry-After``), so memory
  stays bounded and clients back off instead of timing out.
* One predict call runs at a time, in the model's own thread, so the event loop keeps
  accepting and validating requests meanwhile. When it returns, everything that queued up
  in the meantime (up to ``max_batch_size`` rows) forms the next batch, at once: under load
  batches grow by themselves, without any added wait.
* When the predictor is idle, a new batch waits for more requests only if more are on
  their way (announced by a handler that is still reading or validating its body, see
  :meth:`MicroBatcher.announce`), and never longer than ``max_latency_ms`` after its first
  request arrived. A lone request (concurrency 1) is therefore dispatched immediately: it
  never pays the batching delay.
* A lone request (nothing else queued or on its way) for a model whose lone requests
  predict in under ``inline_below_ms`` (measured as it serves) is predicted on the event
  loop itself: the two thread hand-offs would cost more than the predict call, and there
  is no other request to serve meanwhile. A batch is predicted on the event loop too when
  the model's batches lately took under a quarter of that: the hand-offs (tens of
  microseconds, and a wake-up of the loop) would then cost about as much as the call.

A request larger than ``max_batch_size`` rows is never split: it forms a batch of its own.
Failure isolation (one request's failure must not fail its batch mates) is the job of the
``run_batch`` function the owner supplies; the batcher delivers per-job outcomes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from gyre.serving._errors import Overloaded

__all__ = ["Job", "MicroBatcher"]

logger = logging.getLogger("gyre.serving")
# A predict on the event loop that holds it longer than this (and than ten times what the
# model's calls have cost) pauses the batcher's predicting on the loop (see below).
_LOOP_HOLD_LIMIT_S = 0.02
# A call that held the loop past the limit sends the next calls to the model's thread for
# _HOLD_PAUSE_S; the _HOLD_STRIKES-th such call within _HOLD_MEMORY_S of the one before it
# sends them there for good. (One hold is as likely the machine's doing: a virtual CPU
# descheduled, a garbage collection, another process's burst.)
_HOLD_PAUSE_S = 10.0
_HOLD_STRIKES = 3
_HOLD_MEMORY_S = 120.0

P = TypeVar("P")


@dataclass(slots=True, eq=False)
class Job(Generic[P]):
    """One request's validated input waiting for its share of a predict call."""

    payload: P
    rows: int
    request_id: str
    future: asyncio.Future[Any]
    enqueued: float = 0.0
    options: frozenset[str] = field(default_factory=frozenset)


class MicroBatcher(Generic[P]):
    """Coalesces submitted jobs into calls of ``run_batch`` (run in a dedicated thread).

    ``run_batch(jobs)`` returns one outcome per job, in order: a result, or an exception
    instance, which is raised to that job's submitter only.
    """

    def __init__(
        self,
        run_batch: Callable[[list[Job[P]]], Sequence[Any]],
        *,
        name: str,
        max_batch_size: int = 64,
        max_latency_ms: float = 2.0,
        max_queue_rows: int = 4096,
        on_batch: Callable[[int], None] | None = None,
        on_queue: Callable[[int], None] | None = None,
        inline_below_ms: float = 1.0,
        label: str | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.name = name
        self.label = label or f"model {name!r}"  # how messages name what it batches for
        self.max_batch_size = max_batch_size
        self.max_latency = max(0.0, max_latency_ms) / 1000
        self.max_queue_rows = max_queue_rows
        self._run_batch = run_batch
        self._on_batch = on_batch
        self._on_queue = on_queue
        self._queue: deque[Job[P]] = deque()
        self._queued_rows = 0
        self._announced = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"gyre-predict-{name}")
        self.inline_below = max(0.0, inline_below_ms) / 1000
        self.cpu_seconds = 0.0  # CPU time of every predict call so far (its thread's)
        self._warm_cost: float | None = None
        # seconds a lone job's / a batch's run_batch took lately (moving averages; None:
        # not known yet)
        self._lone_cost: float | None = None
        self._batch_cost: float | None = None
        self.hold_pause_s = _HOLD_PAUSE_S
        self._holds = 0  # calls that held the loop, each within _HOLD_MEMORY_S of the last
        self._last_hold = 0.0

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the batching loop on the running event loop."""
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(
            self._loop(), name=f"gyre-batcher-{self.name}"
        )

    async def stop(self) -> None:
        """Finish every queued job, then stop the loop and the thread."""
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            await self._task
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` in the predict thread (between batches)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def warm(self, fn: Callable[..., Any], *args: Any) -> Any:
        """:meth:`call` for a first predict (the model's input example): its CPU time is
        what :attr:`call_cost` says until real calls have been timed."""

        def timed() -> Any:
            started = time.thread_time()
            try:
                return fn(*args)
            finally:
                self._warm_cost = time.thread_time() - started

        return await self.call(timed)

    # -- submitting ---------------------------------------------------------------------

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    @contextmanager
    def announce(self) -> Iterator[None]:
        """Tell the batcher a request is coming (held while its body is read and checked)."""
        self.arrive()
        try:
            yield
        finally:
            self.depart()

    def arrive(self) -> None:
        """:meth:`announce` without the context manager: pair with :meth:`depart`."""
        self._announced += 1

    def depart(self) -> None:
        self._announced -= 1
        if self._announced == 0 and self._wake is not None:
            self._wake.set()  # a batch waiting for this request need not wait longer

    def submit(
        self, payload: P, rows: int, request_id: str, options: frozenset[str] = frozenset()
    ) -> asyncio.Future[Any]:
        """Queue a job; the future resolves to its outcome. Overloaded if the queue is full."""
        if self._closing or self._task is None or self._wake is None:
            raise RuntimeError(f"batcher {self.name!r} is not running")
        if self._queue and self._queued_rows + rows > self.max_queue_rows:
            raise Overloaded(
                f"{self.label} has {self._queued_rows} rows queued (limit "
                f"{self.max_queue_rows}); request refused",
                hint="retry after the Retry-After delay, or add workers",
            )
        loop = asyncio.get_running_loop()
        job = Job(payload, rows, request_id, loop.create_future(), loop.time(), options)
        self._queue.append(job)
        self._queued_rows += rows
        if self._on_queue is not None:
            self._on_queue(self._queued_rows)
        self._wake.set()
        return job.future

    def forget_cancelled(self) -> None:
        """Drop the queued jobs whose requests were cancelled (timed out, or the client went
        away), so that their rows neither count against ``max_queue_rows`` (refusing live
        requests with 429) nor show in the queue metric until the model's current call
        ends. Called on the cancellation path only: O(queue)."""
        live = [job for job in self._queue if not job.future.done()]
        if len(live) == len(self._queue):
            return
        self._queue = deque(live)
        self._queued_rows = sum(job.rows for job in live)
        if self._on_queue is not None:
            self._on_queue(self._queued_rows)

    # -- the loop -----------------------------------------------------------------------

    async def _loop(self) -> None:
        assert self._wake is not None
        wake = self._wake
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                if self._closing:
                    return
                wake.clear()
                await wake.wait()
            await self._gather(loop, wake)
            batch = self._take()
            if not batch:
                continue
            if self._on_batch is not None:
                self._on_batch(sum(job.rows for job in batch))
            lone = self._lone(batch)
            try:
                if self._cheap(lone):
                    started = time.perf_counter()
                    outcomes = self._timed(batch, lone)
                    self._held_loop(time.perf_counter() - started)
                else:
                    outcomes = await loop.run_in_executor(self._executor, self._timed, batch, lone)
            except BaseException as exc:  # run_batch should not raise; never leave jobs hanging
                outcomes = [exc] * len(batch)
                if not isinstance(exc, Exception):
                    self._deliver(batch, outcomes)
                    raise
            self._deliver(batch, outcomes)

    @property
    def call_cost(self) -> float | None:
        """CPU seconds a predict call has been taking lately (None: none timed yet)."""
        costs = [c for c in (self._lone_cost, self._batch_cost) if c is not None]
        return max(costs) if costs else self._warm_cost

    def _lone(self, batch: list[Job[P]]) -> bool:
        """Whether the batch just taken is a lone job: nothing else queued or on its way.
        (A job taken alone while others wait, e.g. a request of ``max_batch_size`` rows
        under load, is a batch: it is timed, and decided on, as one.)"""
        return len(batch) == 1 and not self._queue and self._announced == 0

    def _cheap(self, lone: bool) -> bool:
        """Whether the batch just taken may be predicted on the event loop: a lone job
        when lone jobs have been cheap lately; any other batch when batches have been
        very cheap lately; neither for a while after a call held the loop."""
        if lone:
            cost = self._lone_cost
            cheap = cost is not None and cost < self.inline_below
        else:
            cost = self._batch_cost
            cheap = cost is not None and cost < self.inline_below / 4
        return cheap and (
            not self._holds or time.monotonic() >= self._last_hold + self.hold_pause_s
        )

    def _held_loop(self, seconds: float) -> None:
        """After a predict on the event loop: one that held it far longer than the model's
        calls cost (a model that sleeps or waits, which its CPU time does not show, one
        input far slower than the rest, or the machine pausing the process) sends the
        next calls to the model's thread for ``hold_pause_s``; the third within two
        minutes of each other ends predicting on the loop for this batcher, so that it
        cannot keep stalling health checks, timeouts and every other request. (A single
        hold used to end it at once: one descheduled moment of a virtual CPU then halved
        the throughput of a cheap model for the rest of the server's life.)"""
        if not (seconds > max(10 * self.inline_below, _LOOP_HOLD_LIMIT_S) and self.inline_below):
            return
        now = time.monotonic()
        self._holds = self._holds + 1 if now - self._last_hold <= _HOLD_MEMORY_S else 1
        self._last_hold = now
        if self._holds >= _HOLD_STRIKES:
            self.inline_below = 0.0
            logger.warning(
                "%s held the event loop for %.0f ms in one predict call (%d calls held it, "
                "each within %.0f s of the last); it predicts in its own thread from now on",
                self.label,
                seconds * 1000,
                self._holds,
                _HOLD_MEMORY_S,
            )
        else:
            logger.info(
                "%s held the event loop for %.0f ms in one predict call; it predicts in its "
                "own thread for the next %.0f s",
                self.label,
                seconds * 1000,
                self.hold_pause_s,
            )

    def _timed(self, batch: list[Job[P]], lone: bool) -> Sequence[Any]:
        # CPU time of this thread: what the call costs, not the time it waited for the GIL
        started = time.thread_time()
        try:
            return self._run_batch(batch)
        finally:
            took = time.thread_time() - started
            self.cpu_seconds += took
            if lone:
                cost = self._lone_cost
                self._lone_cost = took if cost is None else 0.8 * cost + 0.2 * took
            else:
                cost = self._batch_cost
                self._batch_cost = took if cost is None else 0.8 * cost + 0.2 * took

    async def _gather(self, loop: asyncio.AbstractEventLoop, wake: asyncio.Event) -> None:
        """Wait (bounded) for requests already on their way, if the batch has room."""
        if self.max_latency <= 0 or self.max_batch_size == 1:
            return
        deadline = self._queue[0].enqueued + self.max_latency
        while self._queued_rows < self.max_batch_size and self._announced > 0:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            wake.clear()
            try:
                async with asyncio.timeout(remaining):
                    await wake.wait()
            except TimeoutError:
                return

    def _take(self) -> list[Job[P]]:
        batch: list[Job[P]] = []
        rows = 0
        while self._queue:
            job = self._queue[0]
            if job.future.done():  # its request timed out or went away while queued
                self._queue.popleft()
                self._queued_rows -= job.rows
                continue
            if batch and rows + job.rows > self.max_batch_size:
                break
            self._queue.popleft()
            self._queued_rows -= job.rows
            batch.append(job)
            rows += job.rows
        if self._on_queue is not None:
            self._on_queue(self._queued_rows)
        return batch

    @staticmethod
    def _deliver(batch: list[Job[P]], outcomes: Sequence[Any]) -> None:
        for job, outcome in zip(batch, outcomes, strict=True):
            if job.future.done():
                continue
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)
