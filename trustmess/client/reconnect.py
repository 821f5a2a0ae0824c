"""What to do after the socket closed, by close code (protocol/README.md §7), and how long to
wait before the next attempt."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass


class CloseAction(enum.Enum):
    RECONNECT = "reconnect"  # back off, reconnect, resume
    REFRESH = "refresh"  # the token was refused or expired: refresh it, then reconnect
    SLOW_DOWN = "slow_down"  # 4008: a longer pause first
    STOP = "stop"  # never on our own: reconnecting would fight or repeat the fault


# 1000: the server ended the session on purpose; 1008: a policy (Origin) that a retry does not
# change; 1009: our frame was too big, resending it would be refused again; 4006: a newer
# connection of the user took this one's place, and two devices would evict each other in a loop.
_STOP = frozenset({1000, 1008, 1009, 4006})
_REFRESH = frozenset({4001, 4002})


def close_action(code: int | None) -> CloseAction:
    """The action for a close with ``code`` (None: no close frame, a network failure)."""
    if code in _STOP:
        return CloseAction.STOP
    if code in _REFRESH:
        return CloseAction.REFRESH
    if code == 4008:
        return CloseAction.SLOW_DOWN
    return CloseAction.RECONNECT  # 1001, 1006, 1011, 4009 and anything unknown


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """Exponential backoff with full jitter: attempt ``n`` waits a random time in
    ``[0, min(cap_s, base_s * 2**n)]``; the count starts again once a connection has stayed up
    ``stable_s``. After a 4008 (rate limit abused) at least ``rate_limited_pause_s`` passes."""

    base_s: float = 0.5
    cap_s: float = 30.0
    stable_s: float = 60.0
    rate_limited_pause_s: float = 10.0
    connect_timeout_s: float = 10.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap_s, self.base_s * 2**attempt))
