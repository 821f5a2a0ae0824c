"""Who may try a password, and how often: limits that slow guessers without locking anyone out.

Every login or signup first spends from its client address's attempt bucket (before the body
is read). Then only **failures** count, and never against a user who knows her password:

* failures per (username, address): one address guessing one account is slowed, and nobody
  else is;
* failures per username from anywhere, which slow only addresses that have not signed in as
  that user lately (a login or refresh succeeded from there): a crowd of addresses guessing
  one account is capped together, while its owner, where she usually signs in, is let through.

A check is paid for before the password is compared (so a burst cannot overshoot) and given
back when it succeeds or never ran. A password change has its own failure budget per user.
Signups spend only the address's attempts: a signup for a taken name costs its owner nothing.
Everything is per process, like the other rate limits.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from trustmess.auth import USERNAME_PATTERN
from trustmess.errors import rate_limited
from trustmess.gateway.ratelimit import KeyedRateLimiter
from trustmess.settings import Settings

# How long a successful sign-in makes an address known for the user, and how many
# (username, address) pairs are remembered (the least recently used are forgotten).
KNOWN_FOR_S = 30 * 86400
KNOWN_MAX = 100_000


@dataclass(frozen=True, slots=True)
class Ticket:
    """What one password check spent, to give back if it succeeds or does not happen."""

    pair: str
    username: str
    address: str
    spent_username: bool


class KnownAddresses:
    """(username, address) pairs that signed in recently, bounded (LRU) in memory."""

    def __init__(self, ttl_s: float = KNOWN_FOR_S, max_pairs: int = KNOWN_MAX) -> None:
        self.ttl_s = ttl_s
        self.max_pairs = max_pairs
        self._until: OrderedDict[str, float] = OrderedDict()

    def remember(self, pair: str) -> None:
        self._until[pair] = time.monotonic() + self.ttl_s
        self._until.move_to_end(pair)
        if len(self._until) > self.max_pairs:
            self._until.popitem(last=False)

    def knows(self, pair: str) -> bool:
        until = self._until.get(pair)
        return until is not None and until > time.monotonic()


class LoginGuard:
    """The login, signup and password-change limits of one process (see the module doc)."""

    def __init__(self, settings: Settings) -> None:
        rate, burst = settings.auth_rate_per_s, settings.auth_burst
        self.attempts = KeyedRateLimiter(rate, burst)
        self.failures_here = KeyedRateLimiter(rate, burst)
        self.failures = KeyedRateLimiter(
            settings.login_failure_rate_per_s, settings.login_failure_burst
        )
        self.password_changes = KeyedRateLimiter(rate, burst)
        self.known = KnownAddresses()

    def attempt(self, address: str) -> None:
        """Spend one login or signup attempt of ``address``; 429 when it has none left."""
        wait = self.attempts.take(address)
        if wait is not None:
            raise rate_limited(wait)

    def before_check(self, username: str, address: str) -> Ticket:
        """Pay for one failure in advance; 429 when this address may not try ``username`` now."""
        if not USERNAME_PATTERN.fullmatch(username):
            # No account has such a name (up to 1 KiB of anything): one key for all of them,
            # so they cannot fill the limiters' memory.
            username = "-"
        pair = f"{username} {address}"
        wait = self.failures_here.take(pair)
        if wait is not None:
            raise rate_limited(wait)
        known = self.known.knows(pair)
        if not known:
            wait = self.failures.take(username)
            if wait is not None:
                self.failures_here.refund(pair)
                raise rate_limited(wait)
        return Ticket(pair, username, address, spent_username=not known)

    def refund(self, ticket: Ticket) -> None:
        """The check did not fail (it succeeded, or was never made)."""
        self.failures_here.refund(ticket.pair)
        if ticket.spent_username:
            self.failures.refund(ticket.username)

    def signed_in(self, username: str, address: str) -> None:
        """A login or a refresh of ``username`` succeeded from ``address``."""
        self.known.remember(f"{username} {address}")

    def before_password_change(self, user_id: int) -> None:
        """Pay for one failed password change of the user in advance; 429 when none is left."""
        wait = self.password_changes.take(str(user_id))
        if wait is not None:
            raise rate_limited(wait)

    def password_change_checked(self, user_id: int) -> None:
        """The current password was right (or not checked): give the payment back."""
        self.password_changes.refund(str(user_id))
