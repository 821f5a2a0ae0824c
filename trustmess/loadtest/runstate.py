"""What one load-test process counts and records while its sockets run.

Counters are plain totals; the worker snapshots them at the edges of the measured window, so
the per-frame path never asks which phase it is in. Only latencies carry a window check (by
send time), because a message's latency belongs to the moment it was sent.
"""

from __future__ import annotations

import asyncio
from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from trustmess.loadtest.stats import new_samples

NEVER = 1 << 62
COUNTERS = (
    "sent",
    "typing_sent",
    "acks_sent",
    "replies",
    "duplicates",
    "changes",
    "deliveries",
    "change_events",
    "change_races",
    "typing_events",
    "read_events",
    "other_events",
    "frames_in",
    "frames_out",
    "unanswered",
    "resent",
    "reconnect_failures",
    "resume_failures",
)


@dataclass(slots=True)
class Receipt:
    """What one socket received of one conversation after joining it.

    ``join_last`` is the conversation's ``last_seq`` in the join reply: live events must then
    arrive as ``join_last + 1, join_last + 2, …``. Anything else is counted in ``bad`` and the
    first few are described in ``problems``.
    """

    socket: int
    conversation_id: int
    join_last: int
    last: int
    count: int = 0
    id_sum: int = 0
    bad: int = 0
    problems: list[str] = field(default_factory=list)
    target: int = NEVER

    def out_of_order(self, seq: int) -> None:
        self.bad += 1
        if len(self.problems) < 3:
            what = f"gap: {self.last + 1}..{seq - 1} missing" if seq > self.last else "duplicate"
            self.problems.append(f"got seq {seq} after {self.last} ({what})")


class RunState:
    """Counters, samples and flow control shared by the sockets of one process."""

    def __init__(
        self,
        typing_per_message: float,
        ack_every: int,
        closed_loop: bool,
        mix: tuple[float, float, float, float] | None = None,
        reconnect: bool = False,
    ) -> None:
        self.reconnect = reconnect
        # --reconnect: commands sent again (after a reconnect or a retryable error), failed
        # reconnect attempts, rejoins the server could not resume (``resumed`` false)
        self.resent = self.reconnect_failures = self.resume_failures = 0
        self.reconnect_us: array[int] = new_samples()  # from a close to every join answered
        self.reconnect_errors: Counter[str] = Counter()  # why reconnect attempts failed
        # --reconnect: the users whose socket was closed, the first close and the last rejoin
        # (the storm), and every delivery in the window, flat (send time, µs, sender,
        # receiver): the other traffic during the storm is picked out of them once every
        # process's closes are known (others_during_reconnects).
        self.closed_users: set[int] = set()
        self.first_close_ns = NEVER
        self.last_rejoin_ns = 0
        self.delivery_log: array[int] = array("q")
        self.typing_per_message = typing_per_message
        # Cumulative thresholds of (message, react, edit) for one random draw per command.
        self.mix = None if mix is None else (mix[0], mix[0] + mix[1], mix[0] + mix[1] + mix[2])
        # change_races: a react refused because its message was deleted meanwhile (by its
        # sender, on another socket): a race the mix makes on purpose, not an error.
        self.changes = self.change_events = self.change_races = 0
        self.ack_every = ack_every
        self.closed_loop = closed_loop
        self.window_start = NEVER
        self.window_end = NEVER
        self.sending = False
        self.drop_next_delivery = False
        self.sent = self.typing_sent = self.acks_sent = 0
        self.replies = self.duplicates = self.deliveries = 0
        self.typing_events = self.read_events = self.other_events = 0
        self.frames_in = self.frames_out = 0
        self.unanswered = 0
        self.errors: Counter[str] = Counter()
        self.close_codes: Counter[int] = Counter()
        self.reply_us: array[int] = new_samples()
        self.delivery_us: array[int] = new_samples()
        self.connect_us: array[int] = new_samples()
        # conversation id → flat [seq, id, seq, id, …] of the replies this process received
        # (a change entry's id is 0: it has none)
        self.replied: dict[int, list[int]] = {}
        self.outstanding = 0
        self.drained = asyncio.Event()
        self.open_receipts = 0
        self.receipts_done = asyncio.Event()

    def counters(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTERS}

    def answered(self, count: int = 1) -> None:
        """``count`` messages got their reply or error (or never will)."""
        self.outstanding -= count
        if self.outstanding <= 0 and not self.sending:
            self.drained.set()

    def receipt_reached(self) -> None:
        self.open_receipts -= 1
        if self.open_receipts <= 0:
            self.receipts_done.set()


def others_during_reconnects(
    delivery_logs: Iterable[array[int]], closed_users: set[int], start_ns: int, end_ns: int
) -> array[int]:
    """Send→delivery µs of the other traffic during reconnects: messages sent between the first
    close and the last rejoin, between users whose sockets were never closed."""
    found = new_samples()
    for log in delivery_logs:
        for i in range(0, len(log), 4):
            sent, us, sender, receiver = log[i : i + 4]
            steady = sender not in closed_users and receiver not in closed_users
            if steady and start_ns <= sent <= end_ns:
                found.append(us)
    return found
