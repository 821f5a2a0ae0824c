"""Sending a message: the one path shared by ``POST /conversations/{id}/messages`` and the
socket ``message`` command (validation, membership, idempotent store, fan-out)."""

from __future__ import annotations

from aiohttp import web

from trustmess.models import SendResult


async def send_message(
    app: web.Application,
    sender_id: int,
    conversation_id: int,
    client_msg_id: str,
    body: str,
    reply_to: int | None,
) -> SendResult:
    """Store the message (or find the one already stored under ``client_msg_id``) and publish it.

    Raises ApiError ``not_found`` when the sender is not a member, ``invalid`` (field
    ``reply_to``) when reply_to is not an existing seq of the conversation. The caller has
    already validated the fields' shapes.
    """
    raise NotImplementedError
