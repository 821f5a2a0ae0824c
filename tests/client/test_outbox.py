"""The outbox without a socket: answers settle a command once whichever ref they carry,
refusals are resent after a pause with a smaller window, a lost connection keeps only what is
safe to resend."""

from __future__ import annotations

import asyncio
import time

import pytest

from trustmess.client import CommandError, ConnectionLost
from trustmess.client.outbox import PAUSE_MIN_S, WINDOW_MAX, Command, Outbox


def command(kind: str = "message", durable: bool = True) -> Command:
    return Command({"type": kind}, asyncio.get_running_loop().create_future(), durable)


async def written(outbox: Outbox, count: int) -> list[tuple[int, Command]]:
    return [await asyncio.wait_for(outbox.next(), 5) for _ in range(count)]


async def test_the_first_answer_settles_and_later_ones_are_ignored() -> None:
    outbox = Outbox()
    cmd = command()
    outbox.put(cmd)
    [(first_ref, _)] = await written(outbox, 1)
    outbox.on_refused_unread()  # refused unparsed? resent under a second ref ...
    [(second_ref, again)] = await written(outbox, 1)
    assert again is cmd and second_ref != first_ref
    outbox.on_reply(first_ref, {"seq": 1})  # ... but the first one had been taken after all
    outbox.on_reply(second_ref, {"seq": 1, "duplicate": True})
    assert cmd.future.result() == {"seq": 1}


async def test_refusals_pause_and_shrink_the_window() -> None:
    outbox = Outbox()
    cmds = [command() for _ in range(WINDOW_MAX + 5)]
    for cmd in cmds:
        outbox.put(cmd)
    sent = await written(outbox, WINDOW_MAX)
    with pytest.raises(TimeoutError):  # the window is full
        await asyncio.wait_for(outbox.next(), 0.05)
    started = time.monotonic()
    outbox.on_error(sent[0][0], CommandError("rate_limited", "slow down"))
    # The window is now half of it: 31 unanswered are too many to send anything ...
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(outbox.next(), PAUSE_MIN_S * 1.5)
    # ... until enough are answered; then the refused one goes first (the pause is over).
    for ref, _ in sent[1:17]:
        outbox.on_reply(ref, {})
    ref, cmd = await asyncio.wait_for(outbox.next(), 5)
    assert cmd is cmds[0] and time.monotonic() - started >= PAUSE_MIN_S
    outbox.on_error(ref, CommandError("invalid", "bad", "body"))
    with pytest.raises(CommandError):
        cmd.future.result()


async def test_a_lost_connection_keeps_durable_commands_in_order() -> None:
    outbox = Outbox()
    message, ack, typing = command(), command("ack"), command("typing", durable=False)
    join = command("join", durable=False)
    for cmd in (message, typing, join, ack):
        outbox.put(cmd)
    await written(outbox, 2)
    outbox.connection_lost()
    assert isinstance(typing.future.exception(), ConnectionLost)
    assert join.future.cancelled()
    assert [cmd for _, cmd in await written(outbox, 2)] == [message, ack]
