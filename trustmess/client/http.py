"""The HTTP API (protocol/README.md §11): accounts, profiles, conversations, history.

Every call sends the current access token; a 401 ``token_expired`` refreshes it (once, shared
with every other caller) and retries once. 429 and 503 answers that carry ``Retry-After`` are
waited out and retried a few times.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from trustmess.client.errors import ApiError
from trustmess.client.models import (
    BlockedUser,
    Contact,
    ContactRequest,
    Conversation,
    Entry,
    Invitation,
    Json,
    LoginSession,
    Message,
    User,
    parse_entry,
)
from trustmess.client.tokens import (
    RefreshLost,
    RefreshNotSent,
    RefreshRejected,
    TokenKeeper,
    describe,
)

BUSY_RETRIES = 5
MAX_WAIT_S = 30.0
REQUEST_TIMEOUT_S = 30.0
HISTORY_PAGE_MAX = 200
_TIMEOUT = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)


class HttpApi:
    """One aiohttp session against ``base_url``, authenticated with ``tokens``."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        # Made on first use, inside the event loop (a Client may be created outside one).
        self._session: aiohttp.ClientSession | None = None
        self._refresh_session: aiohttp.ClientSession | None = None
        self.tokens = TokenKeeper(self._post_refresh)

    def _requests(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=_TIMEOUT)
        return self._session

    def _refreshes(self) -> aiohttp.ClientSession:
        # Refreshes go over a fresh connection each: a kept-alive one the server closed
        # meanwhile fails in a way that looks like a lost answer, which would end the session.
        if self._refresh_session is None:
            self._refresh_session = aiohttp.ClientSession(
                timeout=_TIMEOUT, connector=aiohttp.TCPConnector(force_close=True)
            )
        return self._refresh_session

    async def close(self) -> None:
        for session in (self._session, self._refresh_session):
            if session is not None:
                await session.close()
        self._session = self._refresh_session = None

    # --- transport ---------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Json | None = None,
        params: Mapping[str, str | int] | None = None,
        auth: bool = True,
    ) -> Any:
        """The decoded JSON answer (None for 204); an error answer raises :class:`ApiError`."""
        retried_auth = False
        for attempt in range(BUSY_RETRIES + 1):
            token = await self.tokens.access_token() if auth else None
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with self._requests().request(
                method, self.base_url + path, json=body, params=params, headers=headers
            ) as resp:
                data = await _json_of(resp)
                if resp.status < 400:
                    return data
                error = _api_error(resp.status, data)
                wait = _retry_after(resp)
            if error.code == "token_expired" and token is not None and not retried_auth:
                retried_auth = True
                await self.tokens.refresh(stale=token)
                continue
            if resp.status in (429, 503) and wait is not None and attempt < BUSY_RETRIES:
                await asyncio.sleep(min(wait, MAX_WAIT_S))
                continue
            raise error
        raise AssertionError("unreachable")

    async def _post_refresh(self, refresh_token: str) -> Json:
        """``POST /auth/refresh``, classifying every failure by whether the token was spent."""
        url = self.base_url + "/auth/refresh"
        try:
            async with self._refreshes().post(url, json={"refresh_token": refresh_token}) as resp:
                data = await _json_of(resp)
                if resp.status == 200:
                    result: Json = data
                    return result
                if resp.status in (401, 403):
                    raise RefreshRejected(f"HTTP {resp.status} {describe(data)}")
                # Any other answer: the rotation is one transaction, and it did not commit.
                raise RefreshNotSent(f"HTTP {resp.status} {describe(data)}", _retry_after(resp))
        except aiohttp.ClientConnectorError as exc:
            raise RefreshNotSent(f"cannot connect: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise RefreshLost(f"{type(exc).__name__}: {exc}") from exc

    # --- accounts ----------------------------------------------------------------------

    async def signup(self, username: str, password: str, display_name: str | None) -> User:
        body: dict[str, str] = {"username": username, "password": password}
        if display_name is not None:
            body["display_name"] = display_name
        return User.parse(await self.call("POST", "/auth/signup", body=body, auth=False))

    async def login(self, username: str, password: str) -> User:
        answer = await self.call(
            "POST", "/auth/login", body={"username": username, "password": password}, auth=False
        )
        self.tokens.start(answer)
        return User.parse(answer["user"])

    async def logout(self) -> None:
        refresh_token = self.tokens.refresh_token
        self.tokens.forget()
        if refresh_token is not None:
            await self.call(
                "POST", "/auth/logout", body={"refresh_token": refresh_token}, auth=False
            )

    async def logout_all(self) -> None:
        await self.call("POST", "/auth/logout-all")
        self.tokens.forget()

    async def sessions(self) -> list[LoginSession]:
        answer = await self.call("GET", "/auth/sessions")
        return [LoginSession.parse(item) for item in answer["items"]]

    async def end_session(self, session_id: str) -> None:
        await self.call("DELETE", f"/auth/sessions/{session_id}")

    async def change_password(self, current: str, new: str) -> None:
        body = {"current_password": current, "new_password": new}
        await self.call("POST", "/users/me/password", body=body)

    async def delete_account(self, password: str) -> None:
        await self.call("DELETE", "/users/me", body={"password": password})
        self.tokens.forget()

    async def request_password_reset(self, login: str) -> None:
        await self.call("POST", "/auth/password-reset", body={"login": login}, auth=False)

    async def confirm_password_reset(self, token: str, password: str) -> None:
        body = {"token": token, "password": password}
        await self.call("POST", "/auth/password-reset/confirm", body=body, auth=False)

    async def verify_email(self, token: str) -> None:
        await self.call("POST", "/auth/verify-email", body={"token": token}, auth=False)

    # --- people ------------------------------------------------------------------------

    async def contacts(self, page_size: int) -> AsyncIterator[Contact]:
        async for item in self._cursor_pages("/contacts", {"limit": page_size}):
            yield Contact.parse(item)

    async def remove_contact(self, user_id: int) -> None:
        await self.call("DELETE", f"/contacts/{user_id}")

    async def request_contact(self, user_id: int, message: str | None) -> Json:
        body: dict[str, Any] = {"user_id": user_id}
        if message is not None:
            body["message"] = message
        answer: Json = await self.call("POST", "/contact-requests", body=body)
        return answer

    async def contact_requests(
        self, direction: str, page_size: int
    ) -> AsyncIterator[ContactRequest]:
        path = f"/contact-requests/{direction}"
        async for item in self._cursor_pages(path, {"limit": page_size}):
            yield ContactRequest.parse(item)

    async def answer_contact_request(self, user_id: int, accept: bool) -> None:
        verb = "accept" if accept else "decline"
        await self.call("POST", f"/contact-requests/incoming/{user_id}/{verb}")

    async def cancel_contact_request(self, user_id: int) -> None:
        await self.call("DELETE", f"/contact-requests/outgoing/{user_id}")

    async def blocks(self, page_size: int) -> AsyncIterator[BlockedUser]:
        async for item in self._cursor_pages("/blocks", {"limit": page_size}):
            yield BlockedUser.parse(item)

    async def block(self, user_id: int, blocked: bool) -> None:
        await self.call("PUT" if blocked else "DELETE", f"/blocks/{user_id}")

    async def invitations(self, page_size: int) -> AsyncIterator[Invitation]:
        async for item in self._cursor_pages("/invitations", {"limit": page_size}):
            yield Invitation.parse(item)

    async def answer_invitation(self, conversation_id: int, accept: bool) -> None:
        verb = "accept" if accept else "decline"
        await self.call("POST", f"/invitations/{conversation_id}/{verb}")

    # --- users -------------------------------------------------------------------------

    async def me(self) -> User:
        return User.parse(await self.call("GET", "/users/me"))

    async def update_me(self, changes: Json) -> User:
        return User.parse(await self.call("PATCH", "/users/me", body=changes))

    async def user(self, user_id: int) -> User:
        return User.parse(await self.call("GET", f"/users/{user_id}"))

    async def search_users(self, query: str, page_size: int) -> AsyncIterator[User]:
        params: dict[str, str | int] = {"q": query, "limit": page_size}
        async for item in self._cursor_pages("/users", params):
            yield User.parse(item)

    async def _cursor_pages(self, path: str, params: dict[str, str | int]) -> AsyncIterator[Json]:
        while True:
            page = await self.call("GET", path, params=params)
            for item in page["items"]:
                yield item
            if page.get("next_cursor") is None:
                return
            params = {**params, "cursor": page["next_cursor"]}

    # --- conversations -----------------------------------------------------------------

    async def create_conversation(self, member_ids: list[int], title: str | None) -> Conversation:
        body: dict[str, Any] = {"member_ids": member_ids}
        if title is not None:
            body["title"] = title
        return Conversation.parse(await self.call("POST", "/conversations", body=body))

    async def conversations(self, page_size: int) -> AsyncIterator[Conversation]:
        async for item in self._cursor_pages("/conversations", {"limit": page_size}):
            yield Conversation.parse(item)

    async def conversation(self, conversation_id: int) -> Conversation:
        return Conversation.parse(await self.call("GET", f"/conversations/{conversation_id}"))

    async def rename(self, conversation_id: int, title: str | None) -> Conversation:
        path = f"/conversations/{conversation_id}"
        return Conversation.parse(await self.call("PATCH", path, body={"title": title}))

    async def add_members(self, conversation_id: int, user_ids: list[int]) -> Conversation:
        path = f"/conversations/{conversation_id}/members"
        return Conversation.parse(await self.call("POST", path, body={"user_ids": user_ids}))

    async def remove_member(self, conversation_id: int, user_id: int) -> None:
        await self.call("DELETE", f"/conversations/{conversation_id}/members/{user_id}")

    async def mark_read(self, conversation_id: int, seq: int) -> int:
        path = f"/conversations/{conversation_id}/read"
        answer = await self.call("POST", path, body={"seq": seq})
        read_seq: int = answer["read_seq"]
        return read_seq

    async def read_markers(self, conversation_id: int) -> dict[int, int]:
        answer = await self.call("GET", f"/conversations/{conversation_id}/read")
        return {int(item["user_id"]): int(item["read_seq"]) for item in answer["items"]}

    # --- history -----------------------------------------------------------------------

    async def history_page(
        self,
        conversation_id: int,
        *,
        limit: int,
        before: int | None = None,
        after: int | None = None,
    ) -> tuple[list[Entry], bool]:
        """One page, ascending by seq, and whether more exist in the paging direction."""
        params: dict[str, str | int] = {"limit": limit}
        if before is not None:
            params["before"] = before
        if after is not None:
            params["after"] = after
        page = await self.call("GET", f"/conversations/{conversation_id}/messages", params=params)
        return [parse_entry(item) for item in page["items"]], bool(page["has_more"])

    async def search_messages(
        self, query: str, conversation_id: int | None, page_size: int
    ) -> AsyncIterator[Message]:
        params: dict[str, str | int] = {"q": query, "limit": page_size}
        if conversation_id is not None:
            params["conversation_id"] = conversation_id
        while True:
            page = await self.call("GET", "/messages/search", params=params)
            items = [Message.parse(item) for item in page["items"]]
            for item in items:
                yield item
            if not page["has_more"] or not items:
                return
            params = {**params, "before_id": items[-1].id}


async def _json_of(resp: aiohttp.ClientResponse) -> Any:
    raw = await resp.read()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return {"error": {"code": "bad_response", "message": raw[:200].decode(errors="replace")}}


def _api_error(status: int, data: Any) -> ApiError:
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return ApiError(status, "bad_response", f"unexpected answer: {str(data)[:200]}")
    return ApiError(status, str(error.get("code")), str(error.get("message")), error.get("field"))


def _retry_after(resp: aiohttp.ClientResponse) -> float | None:
    raw = resp.headers.get("Retry-After")
    try:
        return None if raw is None else max(0.0, float(raw))
    except ValueError:
        return None
