"""HTTP set-up: the run's users (created once, reused by later runs) and fresh groups.

Users are ``<prefix>_00000`` … so a rerun with the same prefix signs up nothing (409 → login).
Groups are created fresh on every run, titled with a run id: each starts empty, so the
verifier can demand that its stored history is exactly the replied messages, and no state file
is needed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from trustmess.loadtest.config import Account, LoadConfig, group_members
from trustmess.loadtest.httpapi import Api

T = TypeVar("T")
A = TypeVar("A")


@dataclass(frozen=True, slots=True)
class Provisioned:
    accounts: list[Account]
    conversations: list[int]
    users_created: int
    seconds: float


def username(prefix: str, index: int) -> str:
    return f"{prefix}_{index:05d}"


async def _bounded(limit: int, job: Callable[[A], Awaitable[T]], items: Iterable[A]) -> list[T]:
    """``job(item)`` for every item, at most ``limit`` at a time, results in order."""
    semaphore = asyncio.Semaphore(limit)

    async def one(item: A) -> T:
        async with semaphore:
            return await job(item)

    return list(await asyncio.gather(*(one(item) for item in items)))


async def provision(api: Api, config: LoadConfig) -> Provisioned:
    """Sign up (or reuse) and log in every user, then create the run's groups."""
    started = time.monotonic()

    async def account(index: int) -> tuple[Account, bool]:
        name = username(config.prefix, index)
        created = await api.signup(name, config.password)
        user_id, token = await api.login(name, config.password)
        return Account(user_id, name, token), created

    done = await _bounded(64, account, range(config.users))
    accounts = [item[0] for item in done]
    run_id = f"{int(time.time() * 1000):x}"

    async def group(numbered: tuple[int, list[int]]) -> int:
        index, members = numbered
        owner, others = accounts[members[0]], [accounts[m].user_id for m in members[1:]]
        title = f"{config.prefix} {run_id} g{index}"
        return await api.create_group(owner.token, others, title)

    members = group_members(config.users, config.groups, config.group_size)
    conversations = await _bounded(32, group, enumerate(members))
    return Provisioned(
        accounts, conversations, sum(created for _, created in done), time.monotonic() - started
    )
