"""control.resync: after a message-bus outage a node re-checks its sockets against PostgreSQL,
so changes whose control operations it missed (made on another node) still take effect."""

from __future__ import annotations

from trustmess.appkeys import GATEWAY
from trustmess.gateway import control


async def test_resync_applies_changes_this_node_never_heard_of(
    client, connect, make_user, make_group, db
) -> None:
    alice, bob, carol = [await make_user() for _ in range(3)]
    cid = await make_group(alice, bob, carol)
    sockets = {user.id: await connect(user) for user in (alice, bob, carol)}
    for sock in sockets.values():
        assert (await sock.request({"type": "join", "conversation_id": cid}))["type"] == "reply"
    # Warm the caches, as a busy node would have them.
    typing = {"type": "typing", "conversation_id": cid}
    assert (await sockets[bob.id].request(typing))["type"] == "reply"
    # What another node did while this one could not hear it: straight in the database.
    await db.execute(
        "DELETE FROM conversation_members WHERE conversation_id = $1 AND user_id = $2",
        cid,
        bob.id,
    )
    await db.execute("UPDATE users SET is_active = false WHERE id = $1", carol.id)

    await control.resync(client.app)

    bob_sock = sockets[bob.id]
    assert await bob_sock.recv_type("removed") == {"type": "removed", "conversation_id": cid}
    assert await sockets[carol.id].closed() == 4001
    [bob_conn] = client.app[GATEWAY].user_connections(bob.id)
    assert cid not in bob_conn.joined
    # The membership cache forgot Bob: typing is refused at once.
    assert (await bob_sock.request(typing))["code"] == "not_found"
    # Alice is untouched: still joined, still sending.
    sent = {"type": "message", "conversation_id": cid, "client_msg_id": "m1", "body": "hi"}
    assert (await sockets[alice.id].request(sent))["data"]["seq"] == 1
    await bob_sock.request({"type": "ping"})
    assert not [f for f in bob_sock.backlog if f["type"] == "message"]


async def test_resync_without_sockets_only_clears_caches(client) -> None:
    await control.resync(client.app)
    assert not client.app[GATEWAY].connections
