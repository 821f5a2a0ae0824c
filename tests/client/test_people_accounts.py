"""The SDK's account and people helpers against the real app: devices (sessions) seen and
signed out, a password change, contacts with their live events, blocks, group invitations,
and deleting the account."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.client.inbox import Inbox
from tests.conftest import TEST_PASSWORD
from trustmess.client import (
    ApiError,
    Client,
    ContactChange,
    InvitationChange,
    Presence,
    TrustMessError,
)


@pytest.fixture
async def sdk(client: Any) -> AsyncIterator[Callable[[], Client]]:
    opened: list[Client] = []

    def factory() -> Client:
        opened.append(Client(f"http://{client.host}:{client.port}"))
        return opened[-1]

    yield factory
    for sdk_client in opened:
        await sdk_client.close()


async def test_devices_are_listed_and_signed_out(sdk, make_user) -> None:
    alice = await make_user()
    phone, laptop = sdk(), sdk()
    await phone.login(alice.username, TEST_PASSWORD)
    await laptop.login(alice.username, TEST_PASSWORD)
    sessions = await phone.sessions()
    current = [s for s in sessions if s.current]
    assert len(current) == 1 and len(sessions) >= 2
    other = next(s for s in await laptop.sessions() if s.current)
    assert other.id != current[0].id
    await phone.end_session(other.id)
    with pytest.raises(TrustMessError):
        await laptop.me()  # its access token stopped at once; its refresh token too
    assert (await phone.me()).id == alice.id

    await phone.change_password(TEST_PASSWORD, "a new long secret")
    assert (await phone.me()).id == alice.id  # the device that changed it stays
    fresh = sdk()
    with pytest.raises(ApiError):
        await fresh.login(alice.username, TEST_PASSWORD)
    await fresh.login(alice.username, "a new long secret")
    await phone.logout_all()
    with pytest.raises(TrustMessError):
        await fresh.me()


async def test_contacts_blocks_and_invitations(sdk, make_user) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    a, b, c = sdk(), sdk(), sdk()
    for device, user in ((a, alice), (b, bob), (c, carol)):
        await device.login(user.username, TEST_PASSWORD)
    await b.connect()
    inbox_b = Inbox(b)

    await a.request_contact(bob.id, "We met at the conference.")
    requested = await inbox_b.next(ContactChange, lambda e: e.change == "requested")
    assert requested.user.id == alice.id and requested.request is not None
    [incoming] = [r async for r in b.contact_requests("incoming")]
    assert (incoming.user.id, incoming.message) == (alice.id, "We met at the conference.")
    assert [r.user.id async for r in a.contact_requests("outgoing")] == [bob.id]
    await b.accept_contact(alice.id)
    await inbox_b.next(ContactChange, lambda e: e.change == "accepted")
    assert [contact.user.id async for contact in a.contacts()] == [bob.id]
    await a.remove_contact(bob.id)
    assert [contact async for contact in b.contacts()] == []

    await b.block(carol.id)
    assert [blocked.user.id async for blocked in b.blocked_users()] == [carol.id]
    with pytest.raises(ApiError) as refused:
        await c.create_direct(bob.id)
    assert refused.value.code == "not_allowed"
    await b.unblock(carol.id)
    assert [blocked async for blocked in b.blocked_users()] == []

    # Bob lets only contacts add him to groups: Carol's group invites him instead.
    me = await b.update_profile(group_policy="contacts")
    assert me.id == bob.id
    group = await c.create_group([bob.id], "Book club")
    invited = await inbox_b.next(InvitationChange, lambda e: e.change == "invited")
    assert invited.conversation_id == group.id
    [invitation] = [i async for i in b.invitations()]
    assert (invitation.conversation_id, invitation.inviter.id) == (group.id, carol.id)
    await b.accept_invitation(group.id)
    assert bob.id in {m.id for m in (await b.conversation(group.id)).members}


async def test_deleting_the_account(sdk, make_user) -> None:
    alice = await make_user()
    device = sdk()
    await device.login(alice.username, TEST_PASSWORD)
    await device.delete_account(TEST_PASSWORD)
    with pytest.raises(ApiError):
        await sdk().login(alice.username, TEST_PASSWORD)
    await device.request_password_reset(alice.username)  # 202 whatever it names


async def test_presence_snapshot_and_events(sdk, make_user, make_group) -> None:
    alice, bob = await make_user(), await make_user()
    await make_group(alice, bob)
    a, b = sdk(), sdk()
    await a.login(alice.username, TEST_PASSWORD)
    await b.login(bob.username, TEST_PASSWORD)
    inbox_a = Inbox(a)
    [state] = await a.presence()
    assert (state.user_id, state.status) == (bob.id, "offline")
    await b.connect()
    online = await inbox_a.next(Presence, lambda e: e.user_id == bob.id)
    assert online.status == "online" and online.last_seen is None
