"""The session's token pair and its rotation (protocol/README.md §11.2).

Rules the server enforces by revoking the whole session, kept here in one place:

* a refresh token works once: its successor replaces it before anything else happens;
* one refresh at a time: concurrent callers share the refresh in flight (a lock, and a check
  whether the token they found stale has been replaced meanwhile);
* a refresh whose answer was lost (timeout, dropped connection) is never retried with the same
  token, since the server may have spent it: the session ends (:class:`SessionExpired`).
  Only a refresh that provably did not reach the server (no connection) or was answered with a
  transient error (429, 5xx: the rotation is one transaction, rolled back) is tried again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from trustmess.client.errors import NotLoggedIn, SessionExpired, TrustMessError
from trustmess.client.models import Json, User

# Renew this long before expiry: a quarter of the lifetime, at most a minute.
MARGIN_SHARE = 0.25
MARGIN_MAX_S = 60.0
NOT_SENT_RETRIES = 5


class RefreshRejected(TrustMessError):
    """``/auth/refresh`` answered 401 or 403: the token (and its family) is dead."""


class RefreshNotSent(TrustMessError):
    """The refresh provably did not spend the token (no connection, or a transient error
    answer). ``retry_after`` is the server's ``Retry-After`` when it sent one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RefreshLost(TrustMessError):
    """The refresh was sent but its answer never came: the token may be spent."""


RefreshCall = Callable[[str], Awaitable[Json]]


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_at: float  # time.monotonic() when the access token stops working

    @classmethod
    def from_login(cls, data: Json, now: float) -> TokenPair:
        return cls(data["access_token"], data["refresh_token"], now + float(data["expires_in"]))


def renew_at(expires_at: float, lifetime: float) -> float:
    """When to renew a token that expires at ``expires_at`` and lived ``lifetime`` seconds."""
    return expires_at - min(MARGIN_MAX_S, lifetime * MARGIN_SHARE)


class TokenKeeper:
    """Holds the current pair; hands out access tokens, refreshing them when due."""

    def __init__(self, refresh_call: RefreshCall) -> None:
        self._refresh_call = refresh_call
        self._pair: TokenPair | None = None
        self._lifetime = 0.0
        self._lock = asyncio.Lock()
        self._ended: SessionExpired | None = None
        self.user: User | None = None
        self.refreshes = 0  # completed rotations, for diagnostics and tests
        self.rotated = asyncio.Event()  # set whenever a new pair is stored

    def start(self, login_answer: Json) -> None:
        """Take the pair of a login (a new session: a previous end is forgotten)."""
        self._store(login_answer)
        self._ended = None

    def _store(self, answer: Json) -> None:
        now = time.monotonic()
        self._pair = TokenPair.from_login(answer, now)
        self._lifetime = float(answer["expires_in"])
        if "user" in answer:
            self.user = User.parse(answer["user"])
        self.rotated.set()

    @property
    def logged_in(self) -> bool:
        return self._pair is not None and self._ended is None

    @property
    def refresh_token(self) -> str | None:
        return None if self._pair is None else self._pair.refresh_token

    def renew_at(self) -> float:
        """Monotonic time at which the current access token should be renewed."""
        pair = self._require()
        return renew_at(pair.expires_at, self._lifetime)

    @property
    def expires_at(self) -> float:
        return self._require().expires_at

    def _require(self) -> TokenPair:
        if self._ended is not None:
            raise self._ended
        if self._pair is None:
            raise NotLoggedIn("log in first")
        return self._pair

    async def access_token(self) -> str:
        """A current access token, refreshed first when it is due for renewal."""
        pair = self._require()
        if time.monotonic() < renew_at(pair.expires_at, self._lifetime):
            return pair.access_token
        return await self.refresh(stale=pair.access_token)

    async def refresh(self, stale: str | None = None) -> str:
        """Rotate the pair and return the new access token. With ``stale``: only if the current
        access token is still that one (someone else may have rotated while we waited)."""
        async with self._lock:
            pair = self._require()
            if stale is not None and pair.access_token != stale:
                return pair.access_token
            for attempt in range(NOT_SENT_RETRIES):
                try:
                    answer = await self._refresh_call(pair.refresh_token)
                except RefreshNotSent as exc:
                    if attempt == NOT_SENT_RETRIES - 1:
                        raise
                    await asyncio.sleep(min(exc.retry_after or 0.5 * 2**attempt, 10.0))
                    continue
                except RefreshRejected as exc:
                    raise self._end(f"the session was ended by the server: {exc}") from exc
                except RefreshLost as exc:
                    raise self._end(f"a token refresh's answer was lost: {exc}") from exc
                self._store(answer)
                self.refreshes += 1
                return self._require().access_token
            raise AssertionError("unreachable")

    def _end(self, reason: str) -> SessionExpired:
        # Forget the refresh token: nothing may send it again.
        self._pair = None
        self._ended = SessionExpired(reason + "; log in again")
        return self._ended

    def forget(self) -> None:
        """Logged out: drop the pair."""
        self._pair = None


def describe(answer: Any) -> str:
    """The error code of an HTTP error body, for messages."""
    if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
        return str(answer["error"].get("code"))
    return "no error body"
