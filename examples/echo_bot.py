"""An echo bot on the TrustMess Python SDK: it answers every message with the same text.

    TRUSTMESS_PASSWORD=… python examples/echo_bot.py --url http://127.0.0.1:8080 --user echobot

It follows every conversation it is in (and those it is added to later), and keeps doing so
across reconnects and server restarts; each message is answered exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from trustmess.client import Client, Conversation, Message


async def run(url: str, user: str, password: str) -> None:
    async with Client(url) as bot:
        me = await bot.login(user, password)
        # Socket first, then the list: a conversation created in between is in one or the other.
        await bot.connect()
        async for conv in bot.conversations():
            await bot.join(conv.id)
        async for event in bot.events():
            if isinstance(event, Conversation):  # added to a new conversation
                await bot.join(event.id)
            elif isinstance(event, Message) and event.sender_id != me.id and event.body:
                await bot.send(event.conversation_id, event.body, reply_to=event.seq)


def main() -> None:
    parser = argparse.ArgumentParser(description="Answer every message with its own text.")
    parser.add_argument("--url", required=True)
    parser.add_argument("--user", required=True)
    args = parser.parse_args()
    asyncio.run(run(args.url, args.user, os.environ["TRUSTMESS_PASSWORD"]))


if __name__ == "__main__":
    main()
