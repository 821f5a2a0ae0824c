"""The SDK against the real app: the whole conversation flow, typed events, history paging,
profiles, and an event type the SDK does not know."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from tests.client.inbox import Inbox
from tests.conftest import TEST_PASSWORD
from trustmess.appkeys import GATEWAY
from trustmess.client import (
    ApiError,
    Change,
    Client,
    CommandError,
    Conversation,
    ConversationUpdate,
    Message,
    NotLoggedIn,
    Read,
    Removed,
    Typing,
    UnknownEvent,
)


@pytest.fixture
async def base_url(client: Any) -> str:
    return f"http://{client.host}:{client.port}"


@pytest.fixture
async def sdk(base_url: str) -> AsyncIterator[Callable[[], Client]]:
    opened: list[Client] = []

    def factory() -> Client:
        opened.append(Client(base_url))
        return opened[-1]

    yield factory
    for sdk_client in opened:
        await sdk_client.close()


async def test_conversation_flow(client, sdk, make_user) -> None:
    alice, bob = await make_user(), await make_user()
    a, b = sdk(), sdk()
    me = await a.login(alice.username, TEST_PASSWORD)
    assert me.id == alice.id and a.user == me
    await b.login(bob.username, TEST_PASSWORD)
    await b.connect()
    inbox_a, inbox_b = Inbox(a), Inbox(b)

    conv = await a.create_group([bob.id], "Lunch")
    assert conv.kind == "group" and conv.title == "Lunch" and conv.version == 1
    created = await inbox_b.next(Conversation)
    assert created.id == conv.id and {m.id for m in created.members} == {alice.id, bob.id}

    joined_a = await a.join(conv.id)
    joined_b = await b.join(conv.id, since=0)
    assert joined_a.last_seq == 0 and joined_b.resumed

    sent = await a.send(conv.id, "  Anyone hungry?  ")
    assert (sent.seq, sent.duplicate) == (1, False)
    got = await inbox_b.next(Message)
    assert (got.seq, got.body, got.sender_id, got.id) == (1, "Anyone hungry?", alice.id, sent.id)
    # The sender's own socket gets its message too, once.
    await inbox_a.next(Message)

    # Resending with the same client_msg_id stores nothing new.
    again = await a.send(conv.id, "Anyone hungry?", client_msg_id=sent.client_msg_id)
    assert (again.id, again.seq, again.duplicate) == (sent.id, 1, True)

    reply = await b.send(conv.id, "Yes", reply_to=1)
    assert reply.seq == 2
    assert (await inbox_a.next(Message, lambda m: m.seq == 2)).reply_to == 1

    edited = await a.edit(conv.id, 1, "Anyone hungry? Noon?")
    reacted = await b.react(conv.id, 1, "👍")
    assert (edited.seq, reacted.seq) == (3, 4)
    edit = await inbox_b.next(Change, lambda c: c.kind == "edit")
    assert (edit.target_seq, edit.body) == (1, "Anyone hungry? Noon?")
    react = await inbox_a.next(Change, lambda c: c.kind == "react")
    assert (react.emoji, react.count, react.user_id) == ("👍", 1, bob.id)
    assert (await b.unreact(conv.id, 1, "👍")).seq == 5
    assert (await b.delete(conv.id, 2)).seq == 6
    with pytest.raises(CommandError) as refused:
        await b.edit(conv.id, 1, "not mine")
    assert refused.value.code == "forbidden"

    await b.typing(conv.id)
    typing = await inbox_a.next(Typing)
    assert (typing.user_id, typing.state) == (bob.id, "start")
    assert await b.ack(conv.id, 6) == 6
    read = await inbox_a.next(Read)
    assert (read.user_id, read.seq) == (bob.id, 6)
    assert await a.mark_read(conv.id, 6) == 6
    assert await b.read_markers(conv.id) == {alice.id: 6, bob.id: 6}

    renamed = await a.rename(conv.id, "Friday lunch")
    update = await inbox_b.next(ConversationUpdate)
    assert (update.change, update.title, update.version) == ("title", "Friday lunch", 2)
    assert renamed.version == 2

    # Every entry reached each client exactly once, in seq order.
    for inbox in (inbox_a, inbox_b):
        await inbox.next(Change, lambda c: c.seq == 6)
        seqs = [e.seq for e in inbox.events if isinstance(e, Message | Change)]
        assert seqs == [1, 2, 3, 4, 5, 6]

    # History: newest first by default, the stream (changes included) with `after`.
    newest_first = [m.seq async for m in a.history(conv.id, page_size=1)]
    assert newest_first == [2, 1]
    stream = [e async for e in a.history(conv.id, after=0, page_size=4)]
    assert [e.seq for e in stream] == [1, 2, 3, 4, 5, 6]
    assert isinstance(stream[2], Change) and stream[2].kind == "edit"
    (first,) = [m async for m in a.history(conv.id, before=2)]
    assert isinstance(first, Message) and first.body == "Anyone hungry? Noon?"
    assert first.edited_at is not None

    listed = [c async for c in a.conversations()]
    assert [c.id for c in listed] == [conv.id] and listed[0].last_seq == 6
    assert (await a.conversation(conv.id)).title == "Friday lunch"
    found = [m.id async for m in a.search_messages("noon")]
    assert found == [sent.id]
    direct = await a.create_direct(bob.id)
    assert direct.kind == "direct" and direct.id == (await b.create_direct(alice.id)).id

    profile = await a.update_profile(display_name="Ada", bio="engines")
    assert (profile.display_name, profile.bio) == ("Ada", "engines")
    assert (await b.get_user(alice.id)).display_name == "Ada"
    assert [u.id async for u in b.search_users(alice.username)] == [alice.id]
    assert (await a.me()).is_admin is False

    carol = await make_user()
    grown = await a.add_members(conv.id, [carol.id])
    assert grown.version == 3 and carol.id in {m.id for m in grown.members}
    added = await inbox_b.next(ConversationUpdate, lambda u: u.change == "members_added")
    assert [m.id for m in added.members] == [carol.id] and added.version == 3

    # Leaving the group: the leaver gets `removed`, the owner a members_removed update.
    await b.remove_member(conv.id, bob.id)
    assert (await inbox_b.next(Removed)).conversation_id == conv.id
    gone = await inbox_a.next(ConversationUpdate, lambda u: u.change == "members_removed")
    assert gone.user_ids == (bob.id,)
    with pytest.raises(ApiError) as missing:
        await b.conversation(conv.id)
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    assert inbox_a.error is None and inbox_b.error is None


async def test_an_unknown_event_type_reaches_the_application(client, sdk, make_user) -> None:
    """Event types added by later servers (say, a "poll" event) are not dropped."""
    alice = await make_user()
    a = sdk()
    await a.login(alice.username, TEST_PASSWORD)
    await a.connect()
    inbox = Inbox(a)
    frame = {"type": "poll", "question_id": 7, "state": "open"}
    for conn in client.app[GATEWAY].user_connections(alice.id):
        conn.send(orjson.dumps(frame))
    event = await inbox.next(UnknownEvent)
    assert (event.type, event.data) == ("poll", frame)
    # A known type in a shape this SDK cannot read is handed over too, not an exception.
    for conn in client.app[GATEWAY].user_connections(alice.id):
        conn.send(orjson.dumps({"type": "typing", "conversation_id": 1}))
    odd = await inbox.next(UnknownEvent, lambda e: e.type == "typing")
    assert odd.data == {"type": "typing", "conversation_id": 1}
    assert inbox.error is None


async def test_signup_login_logout(client, sdk, db) -> None:
    c = sdk()
    user = await c.signup("Grace", "correct horse battery", display_name="Grace Hopper")
    assert (user.username, user.display_name) == ("grace", "Grace Hopper")
    with pytest.raises(ApiError) as taken:
        await c.signup("grace", "another long password")
    assert (taken.value.status, taken.value.code) == (409, "username_taken")
    with pytest.raises(ApiError) as wrong:
        await c.login("grace", "not the password")
    assert (wrong.value.status, wrong.value.code) == (401, "invalid_credentials")
    with pytest.raises(NotLoggedIn):
        await c.me()
    await c.login("grace", "correct horse battery")
    await c.connect()
    await c.logout()
    # The session's refresh tokens are revoked on the server, the socket is closed.
    revoked = await db.fetchval(
        "SELECT bool_and(revoked_at IS NOT NULL) FROM refresh_tokens WHERE user_id = $1", user.id
    )
    assert revoked is True and not c.live.running
    with pytest.raises(NotLoggedIn):
        await c.me()
