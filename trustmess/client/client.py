"""``Client``: the SDK's one entry point, the HTTP API and the live socket behind one object.

    async with Client("http://127.0.0.1:8080") as client:
        await client.login("ada", password)
        conv = await client.create_group([51], "Lunch")
        await client.join(conv.id)
        sent = await client.send(conv.id, "Hello")   # after the commit, exactly once
        async for event in client.events():
            ...

The socket connects on first use (``join``, ``send``, ``events``, ``connect``) and stays
connected across server restarts and network failures (see :mod:`.session`).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from trustmess.client.errors import ConnectionLost, NotLoggedIn
from trustmess.client.events import Event, Presence
from trustmess.client.http import HISTORY_PAGE_MAX, HttpApi
from trustmess.client.models import (
    BlockedUser,
    ChangeResult,
    Contact,
    ContactRequest,
    Conversation,
    Entry,
    Invitation,
    JoinResult,
    LoginSession,
    Message,
    SentMessage,
    User,
)
from trustmess.client.reconnect import ReconnectPolicy
from trustmess.client.session import LiveSession, Stop


def new_client_id() -> str:
    """A fresh ``client_msg_id``/``client_change_id``: 16 characters of ``[A-Za-z0-9_-]``."""
    return secrets.token_urlsafe(12)


def websocket_url(base_url: str) -> str:
    """``http://host:port/prefix`` → ``ws://host:port/prefix/ws`` (``https`` → ``wss``)."""
    parts = urlsplit(base_url.rstrip("/"))
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit(parts._replace(scheme=scheme, path=parts.path + "/ws"))


class Client:
    """A TrustMess client for one user at ``base_url`` (``http://host:port``)."""

    def __init__(self, base_url: str, *, reconnect: ReconnectPolicy | None = None) -> None:
        self.http = HttpApi(base_url)
        self.live = LiveSession(websocket_url(base_url), self.http, reconnect or ReconnectPolicy())

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the socket and the HTTP session (the tokens stay valid: see ``logout``)."""
        await self.live.close()
        await self.http.close()

    # --- account -----------------------------------------------------------------------

    @property
    def user(self) -> User | None:
        """The logged-in user (None before ``login``)."""
        return self.http.tokens.user

    async def signup(self, username: str, password: str, display_name: str | None = None) -> User:
        """Create an account (it does not log in)."""
        return await self.http.signup(username, password, display_name)

    async def login(self, username: str, password: str) -> User:
        """Log in; the password is not kept (the session lives on refresh tokens)."""
        return await self.http.login(username, password)

    async def logout(self) -> None:
        """Revoke this session's refresh tokens and close the socket."""
        await self.live.close()
        await self.http.logout()

    # --- the live socket ---------------------------------------------------------------

    async def connect(self) -> None:
        """Open the socket now and wait for it (otherwise it opens on first use). Also the way
        to come back after the server ended the socket for good (4006: replaced)."""
        if not self.http.tokens.logged_in:
            raise NotLoggedIn("log in first")
        self.live.start()
        await self.live.connected.wait()

    async def events(self) -> AsyncIterator[Event]:
        """Every event, in arrival order; per joined conversation, every message and change
        exactly once in seq order, across reconnects. Ends when the client is closed; raises
        :class:`ClientStopped` or :class:`SessionExpired` when the session stopped on its own.
        Read it continuously: events of joined conversations wait in memory until read."""
        if not self.http.tokens.logged_in:
            raise NotLoggedIn("log in first")
        self.live.start()
        while True:
            item = await self.live.events.get()
            if isinstance(item, Stop):
                if item.error is not None:
                    raise item.error
                return
            yield item

    async def join(self, conversation_id: int, since: int | None = None) -> JoinResult:
        """Follow a conversation: its messages and changes after ``since`` (without it: from
        now on) reach ``events()``, gapless, also after reconnects."""
        return await self.live.join(conversation_id, since)

    async def presence(self) -> list[Presence]:
        """Subscribe to presence: the users you may see, as now (``online`` / ``offline`` with
        ``last_seen``); then changes arrive as :class:`Presence` events, also after reconnects
        (each renewal hands its snapshot over as events)."""
        return await self.live.subscribe_presence()

    async def leave(self, conversation_id: int) -> None:
        """Stop following a conversation on this client."""
        self.live.leave(conversation_id)
        # Lost with the connection: fine, the next connection does not join it.
        if self.live.connected.is_set():
            with contextlib.suppress(ConnectionLost):
                frame = {"type": "leave", "conversation_id": conversation_id}
                await self.live.command(frame, durable=False)

    def last_seq(self, conversation_id: int) -> int | None:
        """The highest seq of a followed conversation handed to ``events()``."""
        stream = self.live.streams.get(conversation_id)
        return None if stream is None else stream.delivered

    async def send(
        self,
        conversation_id: int,
        body: str,
        *,
        reply_to: int | None = None,
        client_msg_id: str | None = None,
    ) -> SentMessage:
        """Send a message; return it once it is committed. Resent with the same
        ``client_msg_id`` after reconnects, so it is stored once whatever happens."""
        cmid = client_msg_id or new_client_id()
        frame: dict[str, Any] = {
            "type": "message",
            "conversation_id": conversation_id,
            "client_msg_id": cmid,
            "body": body,
        }
        if reply_to is not None:
            frame["reply_to"] = reply_to
        data = await self.live.command(frame, durable=True)
        return SentMessage(
            data["conversation_id"],
            data["id"],
            data["seq"],
            data["created_at"],
            cmid,
            bool(data["duplicate"]),
        )

    async def _change(
        self, kind: str, conversation_id: int, seq: int, **fields: str
    ) -> ChangeResult:
        frame = {
            "type": kind,
            "conversation_id": conversation_id,
            "target_seq": seq,
            "client_change_id": new_client_id(),
            **fields,
        }
        data = await self.live.command(frame, durable=True)
        return ChangeResult(
            data["conversation_id"], data["target_seq"], data["seq"], bool(data["duplicate"])
        )

    async def edit(self, conversation_id: int, seq: int, body: str) -> ChangeResult:
        """Replace the text of your message at ``seq``."""
        return await self._change("edit", conversation_id, seq, body=body)

    async def delete(self, conversation_id: int, seq: int) -> ChangeResult:
        """Delete the message at ``seq`` for everyone."""
        return await self._change("delete", conversation_id, seq)

    async def react(self, conversation_id: int, seq: int, emoji: str) -> ChangeResult:
        return await self._change("react", conversation_id, seq, emoji=emoji)

    async def unreact(self, conversation_id: int, seq: int, emoji: str) -> ChangeResult:
        return await self._change("unreact", conversation_id, seq, emoji=emoji)

    async def ack(self, conversation_id: int, seq: int) -> int:
        """Move your read marker to ``seq`` (cumulative); return the marker now."""
        frame = {"type": "ack", "conversation_id": conversation_id, "seq": seq}
        data = await self.live.command(frame, durable=True)
        read_seq: int = data["read_seq"]
        return read_seq

    async def typing(self, conversation_id: int, state: str = "start") -> None:
        """Show (``start``) or clear (``stop``) your typing indicator. Not resent: a typing
        indicator lost with a connection is stale anyway."""
        frame = {"type": "typing", "conversation_id": conversation_id, "state": state}
        with contextlib.suppress(ConnectionLost):
            await self.live.command(frame, durable=False)

    # --- conversations (HTTP) ----------------------------------------------------------

    async def create_group(self, member_ids: list[int], title: str | None = None) -> Conversation:
        """A new group of the caller (its owner) and ``member_ids``."""
        return await self.http.create_conversation(member_ids, title or None)

    async def create_direct(self, user_id: int) -> Conversation:
        """The direct conversation with ``user_id`` (found or created)."""
        return await self.http.create_conversation([user_id], None)

    def conversations(self, page_size: int = 50) -> AsyncIterator[Conversation]:
        """Every conversation of the caller, latest activity first."""
        return self.http.conversations(page_size)

    async def conversation(self, conversation_id: int) -> Conversation:
        return await self.http.conversation(conversation_id)

    async def rename(self, conversation_id: int, title: str | None) -> Conversation:
        """Set (or with None clear) a group's title."""
        return await self.http.rename(conversation_id, title)

    async def add_members(self, conversation_id: int, user_ids: list[int]) -> Conversation:
        return await self.http.add_members(conversation_id, user_ids)

    async def remove_member(self, conversation_id: int, user_id: int) -> None:
        """Remove a member (owner only), or with your own id leave the group."""
        await self.http.remove_member(conversation_id, user_id)

    async def mark_read(self, conversation_id: int, seq: int) -> int:
        """``ack`` over HTTP: move your read marker; return the marker now."""
        return await self.http.mark_read(conversation_id, seq)

    async def read_markers(self, conversation_id: int) -> dict[int, int]:
        """Every member's read marker, ``{user_id: read_seq}`` (read receipts; ``Read``
        events keep them current)."""
        return await self.http.read_markers(conversation_id)

    async def history(
        self,
        conversation_id: int,
        *,
        before: int | None = None,
        after: int | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[Entry]:
        """A conversation's history, paged. With ``after``: the stream forward from there,
        messages and changes in ascending seq. Otherwise: messages as they are now, newest
        first, from ``before`` (or the newest) back to the first."""
        limit = max(1, min(page_size, HISTORY_PAGE_MAX))
        if after is not None:
            cursor = after
            while True:
                items, has_more = await self.http.history_page(
                    conversation_id, limit=limit, after=cursor
                )
                for item in items:
                    yield item
                if not has_more or not items:
                    return
                cursor = items[-1].seq
        cursor_before = before
        while True:
            items, has_more = await self.http.history_page(
                conversation_id, limit=limit, before=cursor_before
            )
            for item in reversed(items):
                yield item
            if not has_more or not items:
                return
            cursor_before = items[0].seq

    def search_messages(
        self, query: str, conversation_id: int | None = None, page_size: int = 50
    ) -> AsyncIterator[Message]:
        """Messages with every word of ``query``, newest first."""
        return self.http.search_messages(query, conversation_id, page_size)

    # --- users (HTTP) ------------------------------------------------------------------

    async def me(self) -> User:
        return await self.http.me()

    async def update_profile(
        self,
        *,
        display_name: str | None = None,
        bio: str | None = None,
        direct_policy: str | None = None,
        group_policy: str | None = None,
    ) -> User:
        """Change the given fields; ``direct_policy`` / ``group_policy`` (``anyone`` or
        ``contacts``): who may open a direct conversation with you, or add you to a group
        without an invitation."""
        fields = (
            ("display_name", display_name),
            ("bio", bio),
            ("direct_policy", direct_policy),
            ("group_policy", group_policy),
        )
        return await self.http.update_me({k: v for k, v in fields if v is not None})

    async def set_email(self, email: str | None, current_password: str) -> User:
        """Set (None: remove) your email; a verification link is mailed to a new address."""
        body = {"email": email, "current_password": current_password}
        return await self.http.update_me(body)

    # --- account (HTTP) ----------------------------------------------------------------

    async def sessions(self) -> list[LoginSession]:
        """Your signed-in devices; ``current`` marks this client's."""
        return await self.http.sessions()

    async def end_session(self, session_id: str) -> None:
        """Sign one device out at once (its socket closes with 4001)."""
        await self.http.end_session(session_id)

    async def logout_all(self) -> None:
        """Sign every device out, this one included; this client's session ends too."""
        await self.live.close()
        await self.http.logout_all()

    async def change_password(self, current: str, new: str) -> None:
        """Every other device is signed out; this one stays."""
        await self.http.change_password(current, new)

    async def delete_account(self, password: str) -> None:
        """Delete your account for good (protocol/README.md §11.2); this client stops."""
        await self.http.delete_account(password)
        await self.live.close()

    async def request_password_reset(self, login: str) -> None:
        """Mail a reset link to the verified address of ``login`` (username or email), if
        there is one; the server never says whether there is."""
        await self.http.request_password_reset(login)

    async def confirm_password_reset(self, token: str, password: str) -> None:
        """Set a new password with the token of a reset link; every session ends."""
        await self.http.confirm_password_reset(token, password)

    async def verify_email(self, token: str) -> None:
        """Verify your address with the token of a verification link."""
        await self.http.verify_email(token)

    # --- people (HTTP; live changes arrive as ContactChange / InvitationChange) ----------

    def contacts(self, page_size: int = 50) -> AsyncIterator[Contact]:
        return self.http.contacts(page_size)

    async def request_contact(self, user_id: int, message: str | None = None) -> None:
        """Ask ``user_id`` to become a contact (a request they sent you first is accepted)."""
        await self.http.request_contact(user_id, message)

    def contact_requests(
        self, direction: str = "incoming", page_size: int = 50
    ) -> AsyncIterator[ContactRequest]:
        """Pending requests: ``incoming`` (to you) or ``outgoing`` (yours)."""
        return self.http.contact_requests(direction, page_size)

    async def accept_contact(self, user_id: int) -> None:
        await self.http.answer_contact_request(user_id, accept=True)

    async def decline_contact(self, user_id: int) -> None:
        """The requester is not told (their request looks pending)."""
        await self.http.answer_contact_request(user_id, accept=False)

    async def cancel_contact_request(self, user_id: int) -> None:
        await self.http.cancel_contact_request(user_id)

    async def remove_contact(self, user_id: int) -> None:
        await self.http.remove_contact(user_id)

    def blocked_users(self, page_size: int = 50) -> AsyncIterator[BlockedUser]:
        return self.http.blocks(page_size)

    async def block(self, user_id: int) -> None:
        await self.http.block(user_id, blocked=True)

    async def unblock(self, user_id: int) -> None:
        await self.http.block(user_id, blocked=False)

    def invitations(self, page_size: int = 50) -> AsyncIterator[Invitation]:
        """Groups you were added to without your consent, waiting for your answer."""
        return self.http.invitations(page_size)

    async def accept_invitation(self, conversation_id: int) -> None:
        await self.http.answer_invitation(conversation_id, accept=True)

    async def decline_invitation(self, conversation_id: int) -> None:
        await self.http.answer_invitation(conversation_id, accept=False)

    async def get_user(self, user_id: int) -> User:
        return await self.http.user(user_id)

    def search_users(self, query: str, page_size: int = 20) -> AsyncIterator[User]:
        """Active users whose username or display name starts with ``query``."""
        return self.http.search_users(query, page_size)
