"""trustmess.cluster.sequencer: message events leave in seq order, and gaps are read back.

A fake "database" answers the fetch callback; waits are on conditions with a timeout, and the
gap timeout is a few milliseconds, so nothing here sleeps for a fixed time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from trustmess.cluster.sequencer import LAG_FACTOR, MAX_GAP_WAIT_S, Sequencer


def next_seqs(sequencer: Sequencer) -> dict[int, int | None]:
    """conversation_id -> the next seq the sequencer expects (None before a position)."""
    return {cid: stream.next_seq for cid, stream in sequencer._streams.items()}


CID = 7
GAP_S = 0.01
WAIT_S = 2.0

Row = tuple[int, bytes]


def msg(seq: int) -> bytes:
    return b"m%d" % seq


class Harness:
    """A sequencer, what it delivered, and the committed messages its fetches read."""

    def __init__(self, gap_timeout_s: float = GAP_S) -> None:
        self.delivered: list[tuple[int, int, bytes]] = []
        self.committed: dict[int, dict[int, bytes]] = {}
        self.fetches: list[tuple[int, int, int]] = []
        self.fail_fetches = 0
        self.gate: asyncio.Event | None = None  # when set up, fetches wait for it
        self.changed = asyncio.Event()
        self.sequencer = Sequencer(self.deliver, self.fetch, gap_timeout_s)

    def deliver(self, conversation_id: int, seq: int, payload: bytes) -> None:
        self.delivered.append((conversation_id, seq, payload))
        self.changed.set()

    async def fetch(self, conversation_id: int, after: int, through: int) -> list[Row]:
        self.fetches.append((conversation_id, after, through))
        self.changed.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_fetches:
            self.fail_fetches -= 1
            raise ConnectionError("database unavailable")
        rows = self.committed.get(conversation_id, {})
        return [(seq, rows[seq]) for seq in sorted(rows) if after < seq <= through]

    def commit(self, *seqs: int, conversation_id: int = CID) -> None:
        for seq in seqs:
            self.committed.setdefault(conversation_id, {})[seq] = msg(seq)

    def seqs(self, conversation_id: int = CID) -> list[int]:
        return [seq for cid, seq, _ in self.delivered if cid == conversation_id]

    async def until(self, condition: Callable[[], bool]) -> None:
        try:
            async with asyncio.timeout(WAIT_S):
                while not condition():
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            state = f"delivered {self.delivered}, fetches {self.fetches}"
            raise AssertionError(f"not within {WAIT_S} s; {state}") from None


@pytest.fixture
async def harness() -> Harness:
    return Harness()


def started(harness: Harness, last_seq: int = 0, conversation_id: int = CID) -> Sequencer:
    sequencer = harness.sequencer
    sequencer.start(conversation_id)
    sequencer.position(conversation_id, last_seq)
    return sequencer


# ---------------------------------------------------------------- ordering


async def test_in_order_events_are_delivered_at_once(harness: Harness) -> None:
    sequencer = started(harness)
    for seq in (1, 2, 3):
        sequencer.offer(CID, seq, msg(seq))
    assert harness.delivered == [(CID, 1, b"m1"), (CID, 2, b"m2"), (CID, 3, b"m3")]
    assert next_seqs(sequencer) == {CID: 4}


async def test_early_events_wait_for_the_missing_one(harness: Harness) -> None:
    sequencer = started(harness)
    sequencer.offer(CID, 3, msg(3))
    sequencer.offer(CID, 2, msg(2))
    assert harness.delivered == []
    sequencer.offer(CID, 1, msg(1))
    assert harness.seqs() == [1, 2, 3]
    assert [payload for _, _, payload in harness.delivered] == [b"m1", b"m2", b"m3"]


async def test_duplicates_are_delivered_once(harness: Harness) -> None:
    sequencer = started(harness)
    sequencer.offer(CID, 1, msg(1))
    sequencer.offer(CID, 1, msg(1))
    sequencer.offer(CID, 3, msg(3))
    sequencer.offer(CID, 3, msg(3))
    sequencer.offer(CID, 2, msg(2))
    sequencer.offer(CID, 2, msg(2))
    assert harness.seqs() == [1, 2, 3]


async def test_conversations_are_ordered_independently(harness: Harness) -> None:
    sequencer = started(harness)
    started(harness, last_seq=10, conversation_id=8)
    sequencer.offer(CID, 2, msg(2))
    sequencer.offer(8, 11, msg(11))
    sequencer.offer(CID, 1, msg(1))
    assert harness.delivered == [(8, 11, b"m11"), (CID, 1, b"m1"), (CID, 2, b"m2")]


async def test_conversations_not_started_are_ignored(harness: Harness) -> None:
    sequencer = harness.sequencer
    sequencer.offer(CID, 1, msg(1))
    sequencer.position(CID, 0)
    sequencer.catch_up(CID)
    assert harness.delivered == []
    assert next_seqs(sequencer) == {}


# ---------------------------------------------------------------- the first position


async def test_events_before_the_first_position_are_held(harness: Harness) -> None:
    sequencer = harness.sequencer
    sequencer.start(CID)
    for seq in (4, 2, 3):
        sequencer.offer(CID, seq, msg(seq))
    assert harness.delivered == []
    assert next_seqs(sequencer) == {CID: None}
    # The join read last_seq 2 from the database: 3 and 4 are new; 2 is already there.
    sequencer.position(CID, 2)
    assert harness.seqs() == [3, 4]


async def test_later_positions_do_not_move_delivery_back(harness: Harness) -> None:
    sequencer = started(harness, last_seq=5)
    sequencer.position(CID, 3)  # a join that read an older state
    sequencer.offer(CID, 4, msg(4))
    sequencer.offer(CID, 6, msg(6))
    assert harness.seqs() == [6]
    assert harness.fetches == []


async def test_start_twice_keeps_the_position(harness: Harness) -> None:
    sequencer = started(harness, last_seq=5)
    sequencer.start(CID)
    assert next_seqs(sequencer) == {CID: 6}


# ---------------------------------------------------------------- gaps


async def test_a_gap_is_read_from_the_database_after_the_gap_timeout(harness: Harness) -> None:
    sequencer = started(harness)
    harness.commit(1, 2, 3)
    sequencer.offer(CID, 1, msg(1))
    sequencer.offer(CID, 3, msg(3))  # 2 was lost on the bus
    assert harness.fetches == []  # not before the timeout
    await harness.until(lambda: len(harness.delivered) == 3)
    assert harness.seqs() == [1, 2, 3]
    assert harness.fetches == [(CID, 1, 2)]  # only the gap
    assert sequencer.gaps_filled == 1


async def test_a_gap_closed_by_the_bus_in_time_is_not_fetched(harness: Harness) -> None:
    sequencer = started(harness)
    harness.commit(1, 2, 3, 4, 5)
    sequencer.offer(CID, 3, msg(3))
    sequencer.offer(CID, 2, msg(2))
    sequencer.offer(CID, 1, msg(1))  # arrives late, but before the timeout
    sequencer.offer(CID, 5, msg(5))  # a new gap: the first fetch must be for it
    await harness.until(lambda: len(harness.delivered) == 5)
    assert harness.fetches == [(CID, 3, 4)]


async def test_a_failed_fetch_is_retried(harness: Harness) -> None:
    sequencer = started(harness)
    harness.commit(1, 2)
    harness.fail_fetches = 1
    sequencer.offer(CID, 2, msg(2))
    await harness.until(lambda: len(harness.delivered) == 2)
    assert harness.seqs() == [1, 2]
    assert harness.fetches == [(CID, 0, 1), (CID, 0, 1)]


async def test_a_gap_not_committed_yet_is_fetched_again(harness: Harness) -> None:
    sequencer = started(harness)
    sequencer.offer(CID, 2, msg(2))  # 1 is not in the database (yet): the fetch finds nothing
    await harness.until(lambda: len(harness.fetches) == 2)
    harness.commit(1)
    await harness.until(lambda: len(harness.delivered) == 2)
    assert harness.seqs() == [1, 2]


async def test_the_bus_copy_of_a_held_message_wins(harness: Harness) -> None:
    sequencer = started(harness)
    harness.committed[CID] = {1: b"from the database", 2: b"from the database"}
    sequencer.offer(CID, 2, b"from the bus")
    await harness.until(lambda: len(harness.delivered) == 2)
    assert harness.delivered == [(CID, 1, b"from the database"), (CID, 2, b"from the bus")]


async def test_an_event_arriving_during_a_fill_is_not_delivered_twice(harness: Harness) -> None:
    sequencer = started(harness)
    harness.commit(1, 2, 3)
    harness.gate = asyncio.Event()
    sequencer.offer(CID, 3, msg(3))
    await harness.until(lambda: len(harness.fetches) == 1)
    sequencer.offer(CID, 1, msg(1))  # the bus delivers while the database is read
    sequencer.offer(CID, 2, msg(2))
    assert harness.seqs() == [1, 2, 3]
    harness.gate.set()
    sequencer.offer(CID, 4, msg(4))
    await harness.until(lambda: len(harness.delivered) == 4)
    assert harness.seqs() == [1, 2, 3, 4]


# ---------------------------------------------------------------- catching up


async def test_a_join_that_sees_newer_messages_fetches_them(harness: Harness) -> None:
    sequencer = started(harness, last_seq=2)
    harness.commit(1, 2, 3, 4)
    sequencer.position(CID, 4)  # committed elsewhere, never heard on the bus
    await harness.until(lambda: len(harness.delivered) == 2)
    assert harness.seqs() == [3, 4]
    assert harness.fetches == [(CID, 2, 4)]


async def test_catch_up_fetches_everything_after_the_last_delivered(harness: Harness) -> None:
    sequencer = started(harness, last_seq=1)
    harness.commit(1, 2, 3)
    sequencer.catch_up(CID)
    await harness.until(lambda: len(harness.delivered) == 2)
    assert harness.seqs() == [2, 3]
    assert harness.fetches == [(CID, 1, 2**62)]


async def test_catch_up_before_the_first_position_does_nothing(harness: Harness) -> None:
    sequencer = harness.sequencer
    sequencer.start(CID)
    sequencer.catch_up(CID)
    sequencer.position(CID, 0)
    sequencer.offer(CID, 1, msg(1))
    assert harness.fetches == []
    assert harness.seqs() == [1]


async def test_catch_up_during_a_gap_fill_is_not_lost(harness: Harness) -> None:
    sequencer = started(harness)
    harness.commit(1, 2, 3, 4, 5)
    harness.gate = asyncio.Event()
    sequencer.offer(CID, 1, msg(1))
    sequencer.offer(CID, 3, msg(3))
    await harness.until(lambda: len(harness.fetches) == 1)  # the gap fill reads seq 2
    # The bus comes back from an outage in which 4 and 5 were published: catch up.
    sequencer.catch_up(CID)
    harness.gate.set()
    await harness.until(lambda: len(harness.delivered) == 5)
    assert harness.seqs() == [1, 2, 3, 4, 5]


async def test_a_join_during_a_gap_fill_is_not_lost(harness: Harness) -> None:
    sequencer = started(harness)
    harness.commit(1, 2, 3, 4, 5)
    harness.gate = asyncio.Event()
    sequencer.offer(CID, 1, msg(1))
    sequencer.offer(CID, 3, msg(3))
    await harness.until(lambda: len(harness.fetches) == 1)
    sequencer.position(CID, 5)  # another local join read last_seq 5
    harness.gate.set()
    await harness.until(lambda: len(harness.delivered) == 5)
    assert harness.seqs() == [1, 2, 3, 4, 5]


# ---------------------------------------------------------------- stopping


async def test_stop_forgets_the_conversation(harness: Harness) -> None:
    sequencer = started(harness)
    sequencer.offer(CID, 2, msg(2))  # a gap timer is armed
    sequencer.stop(CID)
    sequencer.offer(CID, 1, msg(1))
    assert next_seqs(sequencer) == {}
    assert harness.delivered == []
    sequencer.stop(CID)  # twice is fine


async def test_stop_cancels_a_running_fill(harness: Harness) -> None:
    sequencer = started(harness)
    harness.commit(1, 2)
    harness.gate = asyncio.Event()
    sequencer.offer(CID, 2, msg(2))
    await harness.until(lambda: len(harness.fetches) == 1)
    sequencer.stop(CID)
    # Restarted (a new subscriber): a fresh stream, untouched by the cancelled fill.
    started(harness, last_seq=2)
    harness.gate.set()
    sequencer.offer(CID, 3, msg(3))
    assert harness.seqs() == [3]
    assert sequencer.gaps_filled == 0


@pytest.mark.parametrize(
    ("lag_s", "wait_s"), [(0.0, GAP_S), (0.2, LAG_FACTOR * 0.2), (10.0, MAX_GAP_WAIT_S)]
)
async def test_a_gap_waits_for_the_bus_as_long_as_the_bus_lags(lag_s: float, wait_s: float) -> None:
    """A lagging bus (a saturated node) delivers late, not never: the read from the database
    waits LAG_FACTOR times the lag (at least the configured wait, at most MAX_GAP_WAIT_S)."""
    harness = Harness()
    sequencer = harness.sequencer
    sequencer.start(CID)
    sequencer.position(CID, 0)
    sequencer.note_lag(lag_s)
    loop = asyncio.get_running_loop()
    before = loop.time()
    sequencer.offer(CID, 2, msg(2))  # seq 1 is missing
    timer = sequencer._streams[CID].timer
    assert timer is not None
    assert wait_s <= timer.when() - before <= wait_s + 0.05
    sequencer.stop(CID)
