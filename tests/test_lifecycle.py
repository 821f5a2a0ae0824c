"""Edit, delete for everyone and reactions (README §3 `edit`, `delete`, `react`, `unreact`):
over the socket and HTTP, live on other sockets, permissions, erasure from the database, and
resume: each change is an entry of the conversation's stream with its own seq, so a client
coming back with ``join`` + ``since`` gets exactly the changes it missed, in order."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import asyncpg
import pytest

from tests.conftest import (
    SocketClient,
    SocketFactory,
    User,
    error_of,
    eventually,
    message_frame,
)


async def joined(connect: SocketFactory, user: User, cid: int, **extra: Any) -> SocketClient:
    sock = await connect(user)
    reply = await sock.request({"type": "join", "conversation_id": cid, **extra})
    assert reply["type"] == "reply", reply
    return sock


async def send(sock: SocketClient, cid: int, cmid: str, body: str | None = None) -> int:
    reply = await sock.request(message_frame(cid, cmid, body))
    assert reply["type"] == "reply", reply
    seq: int = reply["data"]["seq"]
    return seq


def change(kind: str, cid: int, target: int, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "conversation_id": cid, "target_seq": target, **fields}


async def ok(sock: SocketClient, frame: dict[str, Any]) -> dict[str, Any]:
    reply = await sock.request(frame)
    assert reply["type"] == "reply", reply
    data: dict[str, Any] = reply["data"]
    return data


async def history(client: Any, user: User, cid: int, **params: Any) -> dict[str, Any]:
    resp = await client.get(f"/conversations/{cid}/messages", params=params, headers=user.headers)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def by_seq(client: Any, user: User, cid: int) -> dict[int, dict[str, Any]]:
    return {item["seq"]: item for item in (await history(client, user, cid))["items"]}


# ---------------------------------------------------------------- edit


async def test_edit_over_the_socket_reaches_other_sockets_and_history(
    client, connect, chat
) -> None:
    alice, bob, cid = chat
    sender = await joined(connect, alice, cid)
    watcher = await joined(connect, bob, cid)
    seq = await send(sender, cid, "m1", "Lunch at noon?")
    await watcher.recv_type("message")
    data = await ok(
        sender, change("edit", cid, seq, body="  Lunch at 12:30?  ", client_change_id="e1")
    )
    assert data == {"conversation_id": cid, "target_seq": seq, "seq": 2, "duplicate": False}
    for sock in (watcher, sender):
        event = await sock.recv_type("change")
        assert event == {
            "type": "change",
            "conversation_id": cid,
            "seq": 2,
            "kind": "edit",
            "target_seq": seq,
            "user_id": alice.id,
            "client_change_id": "e1",
            "created_at": event["created_at"],
            "body": "Lunch at 12:30?",
            "edited_at": event["edited_at"],
        }
        assert event["edited_at"] is not None
    item = (await by_seq(client, bob, cid))[seq]
    assert item["body"] == "Lunch at 12:30?"
    assert item["edited_at"] == event["edited_at"]
    assert "deleted" not in item


async def test_edit_over_http_reaches_sockets(client, connect, chat) -> None:
    alice, bob, cid = chat
    watcher = await joined(connect, bob, cid)
    sender = await connect(alice)
    seq = await send(sender, cid, "m1")
    await watcher.recv_type("message")
    resp = await client.patch(
        f"/conversations/{cid}/messages/{seq}",
        json={"body": "edited", "client_change_id": "h-1"},
        headers=alice.headers,
    )
    assert resp.status == 200
    assert await resp.json() == {
        "conversation_id": cid,
        "target_seq": seq,
        "seq": 2,
        "duplicate": False,
    }
    event = await watcher.recv_type("change")
    assert (event["kind"], event["body"], event["seq"]) == ("edit", "edited", 2)
    # The same body again changes nothing: no entry, no event.
    resp = await client.patch(
        f"/conversations/{cid}/messages/{seq}", json={"body": "edited"}, headers=alice.headers
    )
    assert (await resp.json())["seq"] is None
    assert (await ok(watcher, {"type": "ping"})) == {}
    assert not [f for f in watcher.backlog if f["type"] == "change"]


async def test_edit_is_validated_as_a_new_message(client, connect, chat) -> None:
    alice, _, cid = chat
    sock = await connect(alice)
    seq = await send(sock, cid, "m1")
    empty = await sock.request(change("edit", cid, seq, body="   "))
    assert (empty["code"], empty["field"]) == ("invalid", "body")
    long = await sock.request(change("edit", cid, seq, body="x" * 4001))
    assert (long["code"], long["field"]) == ("too_large", "body")
    missing = await sock.request(change("edit", cid, seq))
    assert (missing["code"], missing["field"]) == ("invalid", "body")
    resp = await client.patch(
        f"/conversations/{cid}/messages/{seq}", json={"body": ""}, headers=alice.headers
    )
    assert (await error_of(resp, 422))["field"] == "body"


async def test_only_the_sender_edits_within_the_window(make_client, connect, chat, db) -> None:
    client = await make_client(edit_window_s=3600)
    alice, bob, cid = chat
    sock_a, sock_b = (
        await connect(alice, test_client=client),
        await connect(bob, test_client=client),
    )
    seq = await send(sock_a, cid, "m1")
    refused = await sock_b.request(change("edit", cid, seq, body="not mine"))
    assert (refused["code"], refused["message"]) == (
        "forbidden",
        "only the sender can edit a message",
    )
    await db.execute("UPDATE messages SET created_at = now() - interval '2 hours'")
    late = await sock_a.request(change("edit", cid, seq, body="too late"))
    assert (late["code"], late["message"]) == (
        "forbidden",
        "messages can be edited for 1 h after sending",
    )
    resp = await client.patch(
        f"/conversations/{cid}/messages/{seq}", json={"body": "too late"}, headers=alice.headers
    )
    assert (await error_of(resp, 403))["code"] == "forbidden"
    assert await db.fetchval("SELECT body FROM messages") == "body of m1"


async def test_an_edit_window_of_zero_is_unlimited(make_client, connect, chat, db) -> None:
    client = await make_client(edit_window_s=0)
    alice, _, cid = chat
    sock = await connect(alice, test_client=client)
    seq = await send(sock, cid, "m1")
    await db.execute("UPDATE messages SET created_at = now() - interval '400 days'")
    assert (await ok(sock, change("edit", cid, seq, body="years later")))["seq"] == 2


async def test_strangers_and_missing_messages_are_not_found(
    client, connect, chat, make_user
) -> None:
    alice, _, cid = chat
    stranger = await make_user()
    sock = await connect(alice)
    seq = await send(sock, cid, "m1")
    outsider = await connect(stranger)
    for frame in (
        change("edit", cid, seq, body="x"),
        change("delete", cid, seq),
        change("react", cid, seq, emoji="👍"),
    ):
        error = await outsider.request(frame)
        assert (error["code"], error["message"]) == ("not_found", "conversation not found")
    missing = await sock.request(change("edit", cid, 99, body="x"))
    assert (missing["code"], missing["message"]) == ("not_found", "message not found")
    resp = await client.delete(f"/conversations/{cid}/messages/{seq}", headers=stranger.headers)
    assert (await error_of(resp, 404))["message"] == "conversation not found"
    resp = await client.delete(f"/conversations/{cid}/messages/99", headers=alice.headers)
    assert (await error_of(resp, 404))["message"] == "message not found"


async def test_a_change_cannot_target_a_change_entry(connect, chat) -> None:
    alice, _, cid = chat
    sock = await connect(alice)
    seq = await send(sock, cid, "m1")
    entry = (await ok(sock, change("edit", cid, seq, body="v2")))["seq"]
    error = await sock.request(change("edit", cid, entry, body="v3"))
    assert (error["code"], error["message"]) == ("not_found", "message not found")
    # Nor can a reply point at one.
    bad = await sock.request(message_frame(cid, "m2", reply_to=entry))
    assert (bad["code"], bad["field"]) == ("invalid", "reply_to")


# ---------------------------------------------------------------- delete


async def test_delete_leaves_a_tombstone_and_reaches_other_sockets(client, connect, chat) -> None:
    alice, bob, cid = chat
    sender = await joined(connect, alice, cid)
    watcher = await joined(connect, bob, cid)
    first = await send(sender, cid, "m1", "oops")
    reply = await send(sender, cid, "m2", "an answer")
    await sender.request(message_frame(cid, "m3", "re", reply_to=first))
    data = await ok(sender, change("delete", cid, first, client_change_id="d1"))
    assert data == {"conversation_id": cid, "target_seq": first, "seq": 4, "duplicate": False}
    event = await watcher.recv_where(lambda f: f["type"] == "change")
    assert event == {
        "type": "change",
        "conversation_id": cid,
        "seq": 4,
        "kind": "delete",
        "target_seq": first,
        "user_id": alice.id,
        "client_change_id": "d1",
        "created_at": event["created_at"],
    }
    items = await by_seq(client, bob, cid)
    assert items[first]["deleted"] is True and items[first]["body"] is None
    assert items[reply]["body"] == "an answer"
    assert items[3]["reply_to"] == first  # references stay intact
    # Deleting again changes nothing; editing or reacting to a tombstone is refused.
    assert (await ok(sender, change("delete", cid, first)))["seq"] is None
    gone = await sender.request(change("edit", cid, first, body="back"))
    assert (gone["code"], gone["message"]) == ("not_found", "message was deleted")
    gone = await sender.request(change("react", cid, first, emoji="👍"))
    assert gone["message"] == "message was deleted"


async def test_who_may_delete(client, connect, make_user, make_group) -> None:
    owner, member, other = await make_user(), await make_user(), await make_user()
    cid = await make_group(owner, member, other)
    sock_owner, sock_member = await connect(owner), await connect(member)
    by_member = await send(sock_member, cid, "m1")
    by_owner = await send(sock_owner, cid, "m2")
    by_other = await send(await connect(other), cid, "m3")
    refused = await sock_member.request(change("delete", cid, by_owner))
    assert (refused["code"], refused["message"]) == (
        "forbidden",
        "only the sender, or the owner of a group, can delete a message",
    )
    resp = await client.delete(f"/conversations/{cid}/messages/{by_other}", headers=member.headers)
    assert (await error_of(resp, 403))["code"] == "forbidden"
    # The owner deletes anyone's message in their group; the sender their own.
    assert (await ok(sock_owner, change("delete", cid, by_member)))["seq"] is not None
    resp = await client.delete(f"/conversations/{cid}/messages/{by_other}", headers=owner.headers)
    assert resp.status == 200
    assert (await ok(sock_owner, change("delete", cid, by_owner)))["seq"] is not None


async def test_in_a_direct_conversation_only_the_sender_deletes(client, connect, make_user) -> None:
    alice, bob = await make_user(), await make_user()
    resp = await client.post("/conversations", json={"member_ids": [bob.id]}, headers=alice.headers)
    cid = (await resp.json())["id"]
    seq = await send(await connect(alice), cid, "m1")
    refused = await (await connect(bob)).request(change("delete", cid, seq))
    assert refused["code"] == "forbidden"


async def test_a_deleted_body_is_erased_from_the_database(
    client, connect, chat, db: asyncpg.Connection
) -> None:
    """Not hidden: no table holds the text afterwards, including what edits wrote."""
    alice, _, cid = chat
    sock = await connect(alice)
    seq = await send(sock, cid, "m1", "secret-original-zq")
    await ok(sock, change("edit", cid, seq, body="secret-edited-zq"))
    await ok(sock, change("react", cid, seq, emoji="👀"))
    await ok(sock, change("delete", cid, seq))
    tables = await db.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    assert {"messages", "message_changes", "message_reactions"} <= {t["tablename"] for t in tables}
    for table in tables:
        name = table["tablename"]
        found = await db.fetchval(
            f"SELECT count(*) FROM \"{name}\" t WHERE t::text LIKE '%secret-%-zq%'"
        )
        assert found == 0, f"{name} still holds the deleted text"
    assert await db.fetchval("SELECT count(*) FROM message_reactions") == 0
    # A resend of the deleted message is a duplicate that does not bring the text back.
    again = await sock.request(message_frame(cid, "m1", "secret-original-zq"))
    assert again["data"] == {**again["data"], "seq": seq, "duplicate": True}
    assert await db.fetchval("SELECT body FROM messages WHERE seq = $1", seq) is None


# ---------------------------------------------------------------- reactions


async def test_reactions_over_socket_and_http(client, connect, chat, make_user) -> None:
    alice, bob, cid = chat
    sender = await joined(connect, alice, cid)
    watcher = await joined(connect, bob, cid)
    seq = await send(sender, cid, "m1")
    await watcher.recv_type("message")
    data = await ok(watcher, change("react", cid, seq, emoji="👍"))
    assert data["seq"] == 2
    event = await sender.recv_type("change")
    assert event == {
        "type": "change",
        "conversation_id": cid,
        "seq": 2,
        "kind": "react",
        "target_seq": seq,
        "user_id": bob.id,
        "client_change_id": None,
        "created_at": event["created_at"],
        "emoji": "👍",
        "count": 1,
    }
    resp = await client.put(
        f"/conversations/{cid}/messages/{seq}/reactions/{quote('👍')}", headers=alice.headers
    )
    assert (await resp.json())["seq"] == 3
    # Every joined socket gets every entry, the reactor's own included.
    assert [(await watcher.recv_type("change"))["count"] for _ in range(2)] == [1, 2]
    # "❤" without its variation selector is the same reaction as "❤️".
    await ok(sender, change("react", cid, seq, emoji="❤"))
    assert (await watcher.recv_type("change"))["emoji"] == "❤️"
    items = await by_seq(client, bob, cid)
    assert items[seq]["reactions"] == [
        {"emoji": "👍", "count": 2, "me": True},
        {"emoji": "❤️", "count": 1, "me": False},
    ]
    # Reacting twice counts once; unreacting what one has not is nothing.
    assert (await ok(watcher, change("react", cid, seq, emoji="👍")))["seq"] == 2
    assert (await ok(watcher, change("unreact", cid, seq, emoji="❤️")))["seq"] is None
    resp = await client.delete(
        f"/conversations/{cid}/messages/{seq}/reactions/{quote('👍')}", headers=bob.headers
    )
    assert resp.status == 200
    event = await sender.recv_where(lambda f: f["type"] == "change" and f["kind"] == "unreact")
    assert (event["emoji"], event["count"], event["user_id"]) == ("👍", 1, bob.id)
    items = await by_seq(client, bob, cid)
    assert items[seq]["reactions"] == [
        {"emoji": "👍", "count": 1, "me": False},
        {"emoji": "❤️", "count": 1, "me": False},
    ]


@pytest.mark.parametrize("emoji", ["a", "👍👍", "🏽", "", ":+1:", "👍 "])
async def test_a_reaction_is_one_emoji(client, connect, chat, emoji) -> None:
    alice, _, cid = chat
    sock = await connect(alice)
    seq = await send(sock, cid, "m1")
    error = await sock.request(change("react", cid, seq, emoji=emoji))
    assert (error["code"], error["field"], error["message"]) == (
        "invalid",
        "emoji",
        "emoji: must be a single emoji",
    )


async def test_reactions_per_message_are_bounded(connect, chat) -> None:
    alice, _, cid = chat
    sock = await connect(alice)
    seq = await send(sock, cid, "m1")
    many = ["😀", "😂", "😍", "😎", "😢", "😡", "👍", "👎", "👏", "🙏"]
    many += ["🔥", "🎉", "❤️", "💯", "🚀", "👀", "✅", "❌", "🤔", "😴"]
    for emoji in many:
        assert (await ok(sock, change("react", cid, seq, emoji=emoji)))["seq"] is not None
    refused = await sock.request(change("react", cid, seq, emoji="🍕"))
    assert (refused["code"], refused["message"]) == (
        "conflict",
        "a message can have at most 20 different reactions",
    )


# ---------------------------------------------------------------- delivery of changes


async def test_a_resent_change_is_applied_once(client, connect, chat) -> None:
    """A client that lost the answer resends with the same client_change_id, possibly after
    later changes: it is answered as a duplicate and changes nothing."""
    alice, bob, cid = chat
    sock = await connect(alice)
    watcher = await joined(connect, bob, cid)
    seq = await send(sock, cid, "m1")
    first = await ok(sock, change("edit", cid, seq, body="v1", client_change_id="c-1"))
    await ok(sock, change("edit", cid, seq, body="v2", client_change_id="c-2"))
    again = await ok(sock, change("edit", cid, seq, body="v1", client_change_id="c-1"))
    assert again == {**first, "duplicate": True}
    assert (await by_seq(client, alice, cid))[seq]["body"] == "v2"
    react = await ok(sock, change("react", cid, seq, emoji="👍", client_change_id="r-1"))
    await ok(sock, change("unreact", cid, seq, emoji="👍", client_change_id="r-2"))
    assert (await ok(sock, change("react", cid, seq, emoji="👍", client_change_id="r-1"))) == {
        **react,
        "duplicate": True,
    }
    assert (await by_seq(client, alice, cid))[seq]["reactions"] == []
    # The watcher saw each entry once, in seq order (resent duplicates go nowhere new).
    seqs = [(await watcher.recv_type("change"))["seq"] for _ in range(4)]
    assert seqs == [2, 3, 4, 5]
    assert await ok(watcher, {"type": "ping"}) == {}
    assert not [f for f in watcher.backlog if f["type"] == "change"]


async def test_resume_delivers_changes_to_older_messages_exactly_once_in_order(
    client, connect, chat
) -> None:
    alice, bob, cid = chat
    sender = await connect(alice)
    for n in range(1, 4):
        await send(sender, cid, f"m{n}", f"message {n}")
    # Bob has seq 1..3 and goes away.
    await ok(sender, change("edit", cid, 1, body="message one, edited"))  # seq 4
    await ok(sender, change("delete", cid, 2))  # seq 5
    await send(sender, cid, "m4", "message 4")  # seq 6
    await ok(sender, change("react", cid, 3, emoji="🎉"))  # seq 7
    await ok(sender, change("edit", cid, 1, body="message one, edited twice"))  # seq 8
    bob_sock = await connect(bob)
    reply = await bob_sock.request({"type": "join", "conversation_id": cid, "since": 3})
    assert reply["data"] == {
        "conversation_id": cid,
        "last_seq": 8,
        "read_seq": 0,
        "resumed": True,
    }
    frames = [await bob_sock.recv() for _ in range(5)]
    assert [(f["type"], f["seq"], f.get("kind"), f.get("target_seq")) for f in frames] == [
        ("change", 4, "edit", 1),
        ("change", 5, "delete", 2),
        ("message", 6, None, None),
        ("change", 7, "react", 3),
        ("change", 8, "edit", 1),
    ]
    # Edit entries carry the body as it is now: applying them in order ends in the stored state.
    assert frames[0]["body"] == frames[4]["body"] == "message one, edited twice"
    assert frames[3]["count"] == 1
    # Live again, exactly once: the next entry is the next seq and nothing came twice.
    await ok(sender, change("unreact", cid, 3, emoji="🎉"))
    live = await bob_sock.recv()
    assert (live["type"], live["seq"], live["count"]) == ("change", 9, 0)
    assert await ok(bob_sock, {"type": "ping"}) == {}
    assert bob_sock.backlog == []


async def test_replay_limit_counts_changes_and_http_after_pages_them(
    make_client, connect, chat
) -> None:
    client = await make_client(replay_limit=3)
    alice, bob, cid = chat
    sender = await connect(alice, test_client=client)
    await send(sender, cid, "m1")
    for n in range(4):
        await ok(sender, change("edit", cid, 1, body=f"v{n}"))
    bob_sock = await connect(bob, test_client=client)
    reply = await bob_sock.request({"type": "join", "conversation_id": cid, "since": 1})
    assert reply["data"]["resumed"] is False  # 4 entries missing, 3 may be replayed
    page = await history(client, bob, cid, after=1, limit=2)
    assert [(i["seq"], i["type"], i["kind"]) for i in page["items"]] == [
        (2, "change", "edit"),
        (3, "change", "edit"),
    ]
    assert page["has_more"] is True
    page = await history(client, bob, cid, after=3, limit=2)
    assert [i["seq"] for i in page["items"]] == [4, 5] and page["has_more"] is False
    assert page["items"][-1]["body"] == "v3"
    # The timeline (newest page) has the message only, in its current state.
    latest = await history(client, bob, cid)
    assert [(i["seq"], i["body"]) for i in latest["items"]] == [(1, "v3")]


async def test_unread_counts_new_messages_only(client, connect, chat) -> None:
    alice, bob, cid = chat
    sender = await connect(alice)
    await send(sender, cid, "m1")
    await send(sender, cid, "m2")
    await ok(sender, change("edit", cid, 1, body="edited"))
    await ok(sender, change("react", cid, 2, emoji="👍"))

    async def unread() -> tuple[int, int, Any]:
        resp = await client.get(f"/conversations/{cid}", headers=bob.headers)
        view = await resp.json()
        return view["unread"], view["last_seq"], view["last_message"]["seq"]

    assert await unread() == (2, 4, 2)  # last_message is the newest message, not a change
    await ok(sender, change("delete", cid, 2))
    assert (await unread())[0] == 1  # a deleted message is no longer unread
    # A read marker may point at a change's seq.
    assert (await ok(await connect(bob), {"type": "ack", "conversation_id": cid, "seq": 5})) == {
        "conversation_id": cid,
        "read_seq": 5,
    }

    async def all_read() -> bool:  # acks are written behind (read_flush_ms)
        return (await unread())[0] == 0

    await eventually(all_read, what="the ack to be stored")
