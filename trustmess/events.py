"""Business events that fan out to sockets: the one place views and commands announce changes.

Views and socket commands call these after a change is committed; they publish through the hub
and keep the membership cache honest.
"""

from __future__ import annotations

from aiohttp import web


async def conversation_changed(app: web.Application, conversation_id: int) -> None:
    """Title or members changed, or the conversation was created: tell every member."""


async def member_removed(app: web.Application, conversation_id: int, user_id: int) -> None:
    """``user_id`` left or was removed: stop its live events at once."""


async def read_moved(app: web.Application, conversation_id: int, user_id: int, seq: int) -> None:
    """``user_id``'s read marker in the conversation moved forward to ``seq``."""
