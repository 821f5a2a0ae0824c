"""Contacts and blocks across two server processes (Redis between them): the ``contact``
events reach the other side's sockets on another node, and a block made on one node refuses
the next message sent on the other at once (the flag is read by the append statement)."""

from __future__ import annotations

import aiohttp

from tests.conftest import message_frame
from tests.test_cluster import open_socket, start_nodes

__all__ = ["start_nodes"]  # the fixture, used by name


async def test_contact_events_and_blocks_cross_nodes(start_nodes, make_user) -> None:
    node_a, node_b = await start_nodes(2)
    alice, bob = await make_user(), await make_user()
    async with aiohttp.ClientSession() as session:
        a = await open_socket(session, node_a, alice)
        b = await open_socket(session, node_b, bob)

        url = f"{node_a.url}/contact-requests"
        async with session.post(url, json={"user_id": bob.id}, headers=alice.headers) as r:
            assert r.status == 201, await r.text()
        requested = await b.recv_type("contact")
        assert (requested["change"], requested["user"]["id"]) == ("requested", alice.id)

        url = f"{node_b.url}/contact-requests/incoming/{alice.id}/accept"
        async with session.post(url, headers=bob.headers) as r:
            assert r.status == 200, await r.text()
        accepted = await a.recv_type("contact", timeout=10)
        while accepted["change"] != "accepted":  # Alice's own "requested" came first
            accepted = await a.recv_type("contact", timeout=10)
        assert accepted["user"]["id"] == bob.id

        url = f"{node_a.url}/conversations"
        async with session.post(url, json={"member_ids": [bob.id]}, headers=alice.headers) as r:
            assert r.status == 201, await r.text()
            cid = (await r.json())["id"]
        assert (await a.request(message_frame(cid, "before")))["type"] == "reply"

        async with session.put(f"{node_b.url}/blocks/{alice.id}", headers=bob.headers) as r:
            assert r.status == 204, await r.text()
        removed = await a.recv_type("contact", timeout=10)
        assert (removed["change"], removed["user"]["id"]) == ("removed", bob.id)
        refused = await a.request(message_frame(cid, "after"))
        assert (refused["type"], refused["code"]) == ("error", "blocked")
