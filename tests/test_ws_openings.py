"""Opening sockets under a storm: at most ``OPENINGS_AT_ONCE`` sockets are authenticated and
upgraded at once (gateway/registry.py), so that when a node takes over another node's sockets
the connected ones' traffic is not queued behind all of that work; a client that has not sent
its ``auth`` frame yet holds no place. And a serving process tunes its garbage collector
(collector.py)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from tests.conftest import SocketClient
from trustmess.appkeys import GATEWAY
from trustmess.collector import GC_THRESHOLDS, tune_collector


async def test_openings_wait_for_a_place_and_go_on_when_one_frees(
    client, make_user, connect
) -> None:
    alice, bob = await make_user(), await make_user()
    gateway = client.app[GATEWAY]
    gateway.openings = asyncio.Semaphore(1)
    await gateway.openings.acquire()  # the one place is taken
    opening = asyncio.create_task(connect(alice))
    done, _ = await asyncio.wait({opening}, timeout=0.5)
    assert not done, "opened without a place"
    gateway.openings.release()
    sock = await asyncio.wait_for(opening, 10)  # the hello came
    assert (await sock.request({"type": "ping"}))["type"] == "reply"
    # The place is free again for the next one.
    assert (await (await connect(bob)).request({"type": "ping"}))["type"] == "reply"


async def test_a_client_that_has_not_authenticated_yet_holds_no_place(
    client, make_user, connect
) -> None:
    alice, bob = await make_user(), await make_user()
    client.app[GATEWAY].openings = asyncio.Semaphore(1)
    silent = SocketClient(await client.ws_connect("/ws"))  # upgraded, no auth frame yet
    sock = await asyncio.wait_for(connect(alice), 10)
    assert (await sock.request({"type": "ping"}))["type"] == "reply"
    await silent.send({"type": "auth", "token": bob.token, "ref": "late"})
    hello = await silent.recv()
    assert (hello["type"], hello["ref"], hello["user_id"]) == ("hello", "late", bob.id)


@pytest.fixture
def collector_restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("collector_restored")
def test_a_server_process_freezes_its_start_up_objects_and_collects_less_often() -> None:
    gc.unfreeze()
    tune_collector()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() > 10_000  # the modules, classes and functions loaded so far
