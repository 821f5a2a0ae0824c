"""The sessions ended recently, in memory: what makes a revoked access token fail at once.

Access tokens are verified without the database; this set is the one thing they are checked
against (a dict lookup, on authentication only, never per socket frame). A session stays here
until every access token issued for it has expired: ``keep_s`` after it ended, the longest an
access token lives plus some clock slack. Every node holds its own copy: filled by the
``sessions_ended`` control operation (gateway/control.py), rebuilt from PostgreSQL at start and
after a message-bus outage (``replace``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

PRUNE_EVERY_S = 60.0


class RevokedSessions:
    def __init__(self, keep_s: float) -> None:
        self.keep_s = keep_s
        self._ended: dict[str, float] = {}  # session id -> when it ended (UNIX time)
        self._pruned = time.time()

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._ended

    def __len__(self) -> int:
        return len(self._ended)

    def revoke(self, session_ids: Iterable[str], now: float | None = None) -> None:
        """The sessions ended now: refuse their access tokens from here on."""
        now = time.time() if now is None else now
        for session_id in session_ids:
            self._ended.setdefault(session_id, now)
        if now - self._pruned >= PRUNE_EVERY_S:
            self.prune(now)

    def replace(self, ended: Iterable[tuple[str, float]], now: float | None = None) -> None:
        """Rebuild from the database's ``(session id, ended at)``, keeping entries added
        meanwhile (a control operation that arrived while the query ran)."""
        rebuilt = dict(ended)
        for session_id, at in self._ended.items():
            rebuilt.setdefault(session_id, at)
        self._ended = rebuilt
        self.prune(time.time() if now is None else now)

    def prune(self, now: float) -> None:
        """Forget sessions whose every access token has expired by now."""
        self._pruned = now
        horizon = now - self.keep_s
        self._ended = {sid: at for sid, at in self._ended.items() if at > horizon}
