"""API-token auth for the server: ``Authorization: Bearer <token>`` checked against the store.

Scopes nest: ``admin`` implies ``write`` implies ``read``. Verified tokens are cached in-process
for ``ttl`` seconds (keyed by a hash of the secret, never the secret itself), so a request does
not hit the database, while a revoke still takes effect within ``ttl`` seconds.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from gyre.entities import Token
from gyre.errors import Forbidden, Unauthorized

__all__ = ["SCOPES", "TokenCache", "TokenVerifier", "granted_scopes", "scope_dependency"]

SCOPES = ("read", "write", "admin", "predict")

_HINT = (
    "send 'Authorization: Bearer <token>'; "
    "create a token with `gyre tokens create NAME --scope write`"
)


@runtime_checkable
class TokenVerifier(Protocol):
    """What the server needs from a store to check tokens (SqlStore provides it)."""

    def verify_token(self, secret: str) -> Token | None: ...


def granted_scopes(token: Token) -> frozenset[str]:
    """Every scope ``token`` holds, with the implied ones (``write`` grants ``read``)."""
    return token.granted


class TokenCache:
    """Remembers ``verify_token`` answers (including "unknown") for ``ttl`` seconds."""

    def __init__(
        self,
        verify: Callable[[str], Token | None],
        *,
        ttl: float = 1.0,
        max_entries: int = 4096,
    ) -> None:
        self._verify = verify
        self._ttl = ttl
        self._max_entries = max_entries
        # Only touched from the event loop thread, so no lock is needed.
        self._entries: dict[bytes, tuple[Token | None, float]] = {}

    async def lookup(self, secret: str) -> Token | None:
        """The active token whose secret is ``secret``, or None."""
        key = hashlib.sha256(secret.encode()).digest()
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        token = await run_in_threadpool(self._verify, secret)
        if token is not None and not token.active:
            token = None
        if len(self._entries) >= self._max_entries:
            self._entries.clear()
        self._entries[key] = (token, now + self._ttl)
        return token


_bearer = HTTPBearer(auto_error=False, description="An API token from `gyre tokens create`.")


def scope_dependency(
    cache: TokenCache, scope: str
) -> Callable[[HTTPAuthorizationCredentials | None], Awaitable[Token]]:
    """A FastAPI dependency admitting only requests whose token holds ``scope``."""

    async def require_scope(
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    ) -> Token:
        if credentials is None:
            raise Unauthorized("missing API token", hint=_HINT)
        token = await cache.lookup(credentials.credentials)
        if token is None:
            raise Unauthorized("API token is not valid or was revoked", hint=_HINT)
        if scope not in granted_scopes(token):
            raise Forbidden(
                f"token {token.name!r} lacks the {scope!r} scope "
                f"(it has: {', '.join(token.scopes) or 'none'})",
                hint=f"use a token created with `--scope {scope}`",
            )
        return token

    return require_scope
