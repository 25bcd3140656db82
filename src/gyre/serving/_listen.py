"""The workers of ``gyre serve --workers N`` (Linux): each listening on a socket of its own,
each stopped with the process that started them.

uvicorn's supervisor binds one socket and every worker accepts from it. Which worker takes a
new connection is then a race between their event loops: the one that is awake, or that
the scheduler runs first, wins, and it goes on winning while the others are still waking
up. Keep-alive clients open their connections together and keep them, so the race decides
for good how the work is split: measured with two workers here, 8 connections opened at
once ended all on one worker in 4 runs of 10 (6 to 2 in 3 more), and 64 connections
split 54–10, 57–7 or 53–11 in some runs (a core idle, or nearly, for as long as they
last). See docs/adr/0007-a-socket-per-worker.md.

With ``SO_REUSEPORT`` each worker has its own listening socket on the same address and the
kernel hands every new connection to one of them by a hash of its addresses and ports,
as nginx's ``reuseport`` does: the split no longer depends on which process runs when,
and it is even on average (64 connections: 32 ± 4 a worker).

How, keeping uvicorn's supervisor (worker start-up, health checks, restarts, signals):

* :class:`WorkersConfig` binds the socket the supervisor hands its workers with
  ``SO_REUSEPORT`` and does not listen on it: in the parent it only holds the address (and
  the port the system chose, for ``--port 0``); a socket that is bound but not listening
  is never given a connection.
* In each worker, before uvicorn listens, :meth:`WorkersConfig.load` opens a new socket
  with ``SO_REUSEPORT`` on that same address and puts it in place of the inherited one
  (``dup2`` onto its descriptor, which the worker receives under the same number): the
  worker's server then listens on a socket of its own. A worker restarted by the
  supervisor does the same. Where that cannot be done (the descriptor is not the
  expected socket), the worker says so and listens on the shared socket, as before.

The same start-up hook asks the kernel to send the worker SIGTERM when the supervisor dies
(``PR_SET_PDEATHSIG``): uvicorn's workers otherwise outlive a supervisor killed with
``kill -9``, serving on its port with nothing left to stop them. SIGTERM is their graceful
stop: what is in flight is answered.

Elsewhere (macOS's ``SO_REUSEPORT`` does not spread connections; Windows has none)
``gyre serve`` keeps uvicorn's shared socket and its workers' own lifetimes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import sys
from typing import Any

import uvicorn

__all__ = ["WorkersConfig", "address_family", "per_worker_sockets", "run"]

logger = logging.getLogger("uvicorn.error")

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def run(app: str, **settings: Any) -> None:
    """``uvicorn.run(app, **settings)``; with several workers, where the system spreads
    connections over sockets sharing a port, uvicorn's supervisor with each worker on a
    socket of its own."""
    if settings.get("workers", 1) > 1 and per_worker_sockets():
        from uvicorn.supervisors import Multiprocess

        config = WorkersConfig(app, **settings)
        with contextlib.suppress(KeyboardInterrupt):  # (uvicorn.run's way: stopped)
            Multiprocess(config, sockets=[config.bind_socket()]).run()
    else:
        uvicorn.run(app, **settings)


def per_worker_sockets() -> bool:
    """Whether this system spreads connections over sockets sharing a port (Linux)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def address_family(host: str) -> socket.AddressFamily:
    """The family of the socket uvicorn binds for ``host`` (IPv6 when it has a colon)."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _bound(host: str, port: int) -> socket.socket:
    """A TCP socket with ``SO_REUSEADDR`` and ``SO_REUSEPORT``, bound, not listening."""
    sock = socket.socket(address_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class WorkersConfig(uvicorn.Config):
    """uvicorn's settings, with the supervisor's socket and each worker's start-up as the
    module docstring says."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shared_fd: int | None = None  # the supervisor's socket (same number in workers)
        self.bound_port = 0
        self.bound_by = 0  # the supervisor's pid: load() there must leave its socket alone

    def bind_socket(self) -> socket.socket:
        """The supervisor's socket: bound with ``SO_REUSEPORT``, not listening."""
        try:
            sock = _bound(self.host, self.port)
        except OSError as exc:
            logger.error(exc)
            sys.exit(uvicorn.config.STARTUP_FAILURE)
        self.bound_port = sock.getsockname()[1]
        self.shared_fd, self.bound_by = sock.fileno(), os.getpid()
        host = f"[{self.host}]" if ":" in self.host else self.host
        # the line uvicorn writes here (``gyre serve --port 0`` points at it)
        logger.info("Uvicorn running on http://%s:%d (Press CTRL+C to quit)", host, self.bound_port)
        sock.set_inheritable(True)
        return sock

    def load(self) -> None:
        """In a worker (uvicorn calls it before it listens): stop with the supervisor, and
        listen on a socket of its own."""
        super().load()
        if self.shared_fd is not None and os.getpid() != self.bound_by:
            stop_with(self.bound_by)
            own_listener(self.shared_fd, self.host, self.bound_port)


def stop_with(supervisor: int) -> None:
    """Have the kernel send this process SIGTERM when ``supervisor``, its parent, dies
    (kill -9 included); exit at once when it is gone already."""
    import ctypes
    import signal

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        logger.warning(
            "worker %d cannot ask to be stopped with the gyre serve process %d (prctl: %s)",
            os.getpid(), supervisor, os.strerror(ctypes.get_errno()),
        )  # fmt: skip
        return
    if os.getppid() != supervisor:  # it died before the request took effect
        logger.warning("the gyre serve process %d is gone: worker %d exits", supervisor,
                       os.getpid())  # fmt: skip
        raise SystemExit(0)


def own_listener(fd: int, host: str, port: int) -> bool:
    """Put a new ``SO_REUSEPORT`` socket bound to ``host:port`` in place of the socket at
    ``fd`` (the one the supervisor bound, not listening yet). False, with a warning, when
    ``fd`` is not that socket or the new one cannot be bound: the worker then listens on
    the shared socket."""
    why = _not_the_shared_socket(fd, host, port)
    if why is None:
        try:
            own = _bound(host, port)
        except OSError as exc:
            why = f"cannot bind its own socket to {host}:{port} ({exc.strerror or exc})"
        else:
            with own:
                os.dup2(own.fileno(), fd, inheritable=False)
            return True
    logger.warning(
        "worker %d listens on the socket it shares with the other workers: %s",
        os.getpid(),
        why,
    )
    return False


def _not_the_shared_socket(fd: int, host: str, port: int) -> str | None:
    """Why descriptor ``fd`` is not the supervisor's bound, not listening socket on
    ``port``; None when it is."""
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            return f"descriptor {fd} is not a socket"
        with socket.socket(fileno=os.dup(fd)) as probe:
            if probe.family != address_family(host) or probe.type != socket.SOCK_STREAM:
                return f"descriptor {fd} is not a TCP socket like {host}:{port}"
            if probe.getsockname()[1] != port:
                return f"descriptor {fd} is bound to {probe.getsockname()!r}, not port {port}"
            if probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                return f"descriptor {fd} is listening already"
    except OSError as exc:
        return f"descriptor {fd} cannot be inspected ({exc.strerror or exc})"
    return None
