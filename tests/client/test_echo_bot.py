"""examples/echo_bot.py runs as written: started as a process, it answers a message."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.client.inbox import Inbox
from tests.conftest import TEST_PASSWORD
from trustmess.client import Client, Message

BOT = Path(__file__).resolve().parents[2] / "examples" / "echo_bot.py"


async def test_echo_bot_answers(make_client, make_user) -> None:
    server = await make_client()
    url = f"http://{server.host}:{server.port}"
    alice, bot_user = await make_user(), await make_user()
    bot = await asyncio.create_subprocess_exec(
        sys.executable, str(BOT), "--url", url, "--user", bot_user.username,
        env={**os.environ, "TRUSTMESS_PASSWORD": TEST_PASSWORD},
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with Client(url) as a:
            await a.login(alice.username, TEST_PASSWORD)
            # Created after the bot started: it learns of it from the `conversation` event.
            conv = await a.create_direct(bot_user.id)
            await a.join(conv.id)
            inbox = Inbox(a)
            # The bot may still be joining: keep saying hello until it answers one.
            async with asyncio.timeout(20):
                while True:
                    asked = await a.send(conv.id, "Hello, bot")
                    try:
                        answer = await asyncio.wait_for(
                            inbox.next(Message, lambda m: m.sender_id == bot_user.id), 1
                        )
                        break
                    except TimeoutError:
                        continue
            assert answer.body == "Hello, bot" and answer.reply_to is not None
            assert answer.reply_to <= asked.seq
    finally:
        bot.terminate()
        _, err = await bot.communicate()
    assert bot.returncode == -15, err.decode()
