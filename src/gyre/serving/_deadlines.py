"""Request timeouts without a timer per request.

``asyncio.timeout`` arms and cancels a loop timer for every request (a few microseconds
each, on the path every prediction takes). Every request of a server has the same
timeout, so their deadlines fall in the order the requests started: :class:`Deadlines`
keeps them in one FIFO and checks its head a few times per timeout with a single timer,
cancelling the task of each request past its deadline. The handler turns that
cancellation into :class:`~gyre.errors.DeadlineExceeded` (see :meth:`Watch.expired`).

A request is therefore cut off between its deadline and a tenth of the timeout (at most
half a second) after it.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["Deadlines", "Watch"]


class Watch:
    """One request's deadline, from :meth:`Deadlines.watch` to :meth:`finish`."""

    __slots__ = ("cut", "deadline", "task")

    def __init__(self, deadline: float, task: asyncio.Task[object] | None) -> None:
        self.deadline = deadline
        self.task = task
        self.cut = False  # cancelled by Deadlines for being past its deadline

    def finish(self) -> None:
        """The request no longer needs watching (call it in a ``finally``)."""
        self.task = None

    def expired(self) -> bool:
        """Whether a CancelledError the request just caught is its deadline's doing: if so,
        the cancellation is taken back (``Task.uncancel``) and True returned; False for any
        other cancellation (the server shutting down, the client going away), which the
        caller re-raises."""
        task = self.task
        if not self.cut or task is None:
            return False
        return task.uncancel() == 0


class Deadlines:
    """The deadlines of the requests a server is handling; ``seconds`` each."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.tick = min(max(seconds / 10, 0.005), 0.5)
        self._watches: deque[Watch] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def watch(self) -> Watch:
        """Start watching the current task: it is cancelled if still watched ``seconds``
        from now (give or take a tick)."""
        loop = asyncio.get_running_loop()
        watch = Watch(loop.time() + self.seconds, asyncio.current_task(loop))
        self._watches.append(watch)
        if self._timer is None:
            self._timer = loop.call_later(self.tick, self._check, loop)
        return watch

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        watches = self._watches
        while watches:
            head = watches[0]
            task = head.task
            if task is not None:
                if head.deadline > now:
                    break
                head.cut = True
                task.cancel()
            watches.popleft()
        self._timer = loop.call_later(self.tick, self._check, loop) if watches else None
