"""The few HTTP calls the load tester makes: sign-up, login, groups, history pages, metrics.

429 answers are waited out (``Retry-After``) and counted, so a run against a server with the
default auth limits is slow and says why instead of failing obscurely.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson

RETRIES_ON_429 = 20


class SetupError(RuntimeError):
    """The server refused the set-up; the message says what to change."""


class Api:
    """A session against ``base_url`` that counts the 429s it meets."""

    def __init__(self, base_url: str, concurrency: int = 32) -> None:
        self.base_url = base_url.rstrip("/")
        self.rate_limited = 0
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency),
            json_serialize=lambda obj: orjson.dumps(obj).decode(),
        )

    async def close(self) -> None:
        await self._session.close()

    async def request(
        self, method: str, path: str, *, token: str | None = None, body: Any = None
    ) -> tuple[int, Any]:
        """Status and decoded JSON body (None when empty); 429s, and 503s that say how long to
        wait (a full password queue), are retried after the wait."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        for _ in range(RETRIES_ON_429):
            async with self._session.request(
                method, self.base_url + path, json=body, headers=headers
            ) as resp:
                raw = await resp.read()
                busy = resp.status == 503 and "Retry-After" in resp.headers
                if resp.status != 429 and not busy:
                    return resp.status, orjson.loads(raw) if raw else None
                self.rate_limited += 1
                wait = float(resp.headers.get("Retry-After", "1"))
            await asyncio.sleep(min(wait, 5.0))
        raise SetupError(
            f"{method} {path}: still rate limited (429/503) after {RETRIES_ON_429} tries; start "
            "the server with TRUSTMESS_AUTH_BURST=1000000 TRUSTMESS_AUTH_RATE_PER_S=100000 "
            "TRUSTMESS_BCRYPT_PER_ADDRESS=100000 TRUSTMESS_BCRYPT_QUEUE_MAX=100000"
        )

    async def signup(self, username: str, password: str) -> bool:
        """Create the account; False when it already exists (409 username_taken)."""
        status, body = await self.request(
            "POST", "/auth/signup", body={"username": username, "password": password}
        )
        if status == 201:
            return True
        if status == 409:
            return False
        raise SetupError(f"signup {username}: HTTP {status} {body}")

    async def login(self, username: str, password: str) -> tuple[int, str]:
        """User id and access token."""
        status, body = await self.request(
            "POST", "/auth/login", body={"username": username, "password": password}
        )
        if status != 200:
            hint = " (the account exists with another password?)" if status == 401 else ""
            raise SetupError(f"login {username}: HTTP {status} {body}{hint}")
        return int(body["user"]["id"]), str(body["access_token"])

    async def create_group(self, token: str, member_ids: list[int], title: str) -> int:
        status, body = await self.request(
            "POST", "/conversations", token=token, body={"member_ids": member_ids, "title": title}
        )
        if status != 201:
            raise SetupError(f"create group {title}: HTTP {status} {body}")
        return int(body["id"])

    async def history(self, token: str, conversation_id: int) -> list[tuple[int, int]]:
        """Every stored (seq, id) of the conversation, paging forwards with ``after``."""
        rows: list[tuple[int, int]] = []
        after = 0
        while True:
            path = f"/conversations/{conversation_id}/messages?after={after}&limit=200"
            status, body = await self.request("GET", path, token=token)
            if status != 200:
                raise SetupError(f"history of {conversation_id}: HTTP {status} {body}")
            # Change entries (edits, deletions, reactions) have a seq and no id.
            rows.extend((item["seq"], item.get("id", 0)) for item in body["items"])
            if not body["has_more"] or not body["items"]:
                return rows
            after = rows[-1][0]

    async def metrics_rss(self) -> int | None:
        """``process_resident_memory_bytes`` from ``GET /metrics`` if the server has it."""
        async with self._session.get(self.base_url + "/metrics") as resp:
            if resp.status != 200:
                return None
            text = await resp.text()
        for line in text.splitlines():
            if line.startswith("process_resident_memory_bytes "):
                return int(float(line.split()[1]))
        return None
