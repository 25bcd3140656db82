"""What gyre's HTTP clients share: the keep-alive client, what is retried, and back-off.

Used by the two HTTP adapters (``store/_http.py`` and ``artifacts/_http.py``), which sit in
independent layers and so may not import each other.
"""

from __future__ import annotations

import logging
import random
import time

import httpx

from gyre import config

__all__ = [
    "RETRY_ERRORS",
    "RETRY_STATUSES",
    "UNPROCESSED_STATUSES",
    "UNSENT_ERRORS",
    "Backoff",
    "make_client",
    "retry_seconds",
]

logger = logging.getLogger("gyre.http")

RETRY_STATUSES = frozenset({502, 503, 504})
# 503 is what gyre server (and proxies) answer before handling a request.
UNPROCESSED_STATUSES = frozenset({503})
# Failures where the server may be restarting, or the answer was lost on the way back.
RETRY_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
# Failures before the request left: retrying them can never apply it twice.
UNSENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

_FIRST_DELAY = 0.05
_MAX_DELAY = 2.0
# A call that may retry longer than this says so once it has retried for _ANNOUNCE_AFTER_S
# (a shorter one, such as an edge box's sync attempt, just fails and is tried again later;
# a 503 that clears within a second is not worth a line).
_ANNOUNCE_ABOVE_S = 2.0
_ANNOUNCE_AFTER_S = 1.0


def retry_seconds(given: float | None) -> float:
    """``given``, else the setting GYRE_HTTP_RETRY_S: how long a call keeps retrying a
    server that does not answer (0: not at all)."""
    if given is not None:
        return given
    return config.get_positive_float("GYRE_HTTP_RETRY_S", zero=True)


def make_client(
    uri: str,
    api_path: str,
    *,
    token: str | None,
    timeout: float,
    transport: httpx.BaseTransport | None,
    accept_json: bool = False,
) -> httpx.Client:
    """A keep-alive client for ``uri`` + ``api_path``, sending the API token if there is one
    (``token``, else the GYRE_TOKEN setting)."""
    secret = token if token is not None else config.get("GYRE_TOKEN")
    headers = {"Accept": "application/json"} if accept_json else {}
    if secret:
        headers["Authorization"] = f"Bearer {secret}"
    return httpx.Client(
        base_url=uri.rstrip("/") + api_path,
        headers=headers,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        transport=transport,
    )


class Backoff:
    """Exponential back-off with jitter, bounded by a total time.

    >>> backoff = Backoff(30.0)
    >>> while not done():
    ...     if not backoff.wait():
    ...         raise BackendUnavailable(...)
    """

    def __init__(self, seconds: float, server: str | None = None) -> None:
        self.seconds = seconds
        self._started = time.monotonic()
        self._deadline = self._started + seconds
        self._delay = _FIRST_DELAY
        self._server = server  # named in the warning of a long retry
        self._announced = False

    @property
    def exhausted(self) -> bool:
        """True when the next wait would pass the deadline."""
        return time.monotonic() + self._delay > self._deadline

    def wait(self, reason: str = "") -> bool:
        """Sleep before the next attempt; False (without sleeping) when time is up.
        A retry about to go on past a second says so once, in a warning naming the server
        and ``reason`` (what went wrong), so that nobody waits in silence."""
        if self.exhausted:
            return False
        waited = time.monotonic() - self._started
        if (
            not self._announced
            and self._server
            and self.seconds > _ANNOUNCE_ABOVE_S
            and waited + self._delay >= _ANNOUNCE_AFTER_S
        ):
            self._announced = True
            logger.warning(
                "gyre server %r has not answered for %.1f s (%s); retrying for up to %g s "
                "in all (GYRE_HTTP_RETRY_S)",
                self._server, waited, reason or "no answer", self.seconds,
            )  # fmt: skip
        time.sleep(self._delay * random.uniform(0.5, 1.0))
        self._delay = min(self._delay * 2, _MAX_DELAY)
        return True
