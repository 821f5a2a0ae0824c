"""Token buckets: per-connection command limits, keyed login/signup limits, and the per-user
message budget shared by HTTP and the socket."""

from __future__ import annotations

import time
from collections import OrderedDict


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; ``take`` spends one if it can."""

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float | None = None) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = time.monotonic() if now is None else now

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def take(self, now: float | None = None) -> bool:
        # _refill inlined: this runs for every socket command.
        if now is None:
            now = time.monotonic()
        tokens = self._tokens + (now - self._stamp) * self.rate
        self._stamp = now
        if tokens > self.burst:
            tokens = self.burst
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return True
        self._tokens = tokens
        return False

    def retry_after(self, now: float | None = None) -> float:
        """Seconds until one token is available."""
        self._refill(time.monotonic() if now is None else now)
        return max(0.0, (1.0 - self._tokens) / self.rate)

    def refund(self) -> None:
        """Give one token back (never beyond the burst)."""
        self._tokens = min(float(self.burst), self._tokens + 1.0)

    def full(self, now: float) -> bool:
        """Refilled to the burst: the same as a bucket never used."""
        return self._tokens + (now - self._stamp) * self.rate >= self.burst


class KeyedRateLimiter:
    """One bucket per key (client address, username), bounded in memory (LRU eviction)."""

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, key: str) -> float | None:
        """Spend a token for ``key``; None if allowed, else seconds to wait."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        if bucket.take():
            return None
        return bucket.retry_after()

    def refund(self, key: str) -> None:
        """Give back a token taken for ``key`` (what it paid for did not count)."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.refund()


class UserBudget:
    """One bucket per user id, shared by everything of this process that spends it (HTTP sends
    and every socket of the user). ``take`` is one dict lookup and a bucket's ``take``: it runs
    for every message. Memory is bounded by dropping full buckets (a full bucket and no bucket
    are the same) once ``max_users`` are held."""

    __slots__ = ("_buckets", "_prune_at", "burst", "max_users", "rate")

    def __init__(self, rate: float, burst: int, max_users: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_users = max_users
        self._buckets: dict[int, TokenBucket] = {}
        self._prune_at = max_users

    def take(self, user_id: int) -> bool:
        """Spend one token of the user's; False (nothing spent) when there is none."""
        bucket = self._buckets.get(user_id)
        if bucket is None:
            bucket = self._new_bucket(user_id)
        return bucket.take()

    def retry_after(self, user_id: int) -> float:
        """Seconds until the user has a token again."""
        bucket = self._buckets.get(user_id)
        return 0.0 if bucket is None else bucket.retry_after()

    def _new_bucket(self, user_id: int) -> TokenBucket:
        if len(self._buckets) >= self._prune_at:
            now = time.monotonic()
            self._buckets = {u: b for u, b in self._buckets.items() if not b.full(now)}
            # Users still spending stay; prune again once as many more have come.
            self._prune_at = max(self.max_users, 2 * len(self._buckets))
        bucket = self._buckets[user_id] = TokenBucket(self.rate, self.burst)
        return bucket


class KeyedCap:
    """At most ``per_key`` things at once per key (sockets awaiting first-frame auth per client
    address): ``admit`` one, ``release`` it when it is over."""

    __slots__ = ("_count", "per_key")

    def __init__(self, per_key: int) -> None:
        self.per_key = per_key
        self._count: dict[str, int] = {}

    def admit(self, key: str) -> bool:
        """Count one more for ``key``; False (nothing counted) when it has ``per_key``."""
        count = self._count.get(key, 0)
        if count >= self.per_key:
            return False
        self._count[key] = count + 1
        return True

    def release(self, key: str) -> None:
        count = self._count[key] - 1
        if count:
            self._count[key] = count
        else:
            del self._count[key]
