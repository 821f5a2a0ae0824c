"""A misbehaving socket client, run as its own process by tests/test_ws_close_codes.py (a
thread would share the server's interpreter lock and starve it): prints the close code
aiohttp's client ends up with (1006 when its close reply met a reset).

    python -m tests.wsflood flood|oversized URL AUTHORIZATION
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

import aiohttp


async def run(mode: str, url: str, authorization: str) -> int | None:
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url, headers={"Authorization": authorization})
        await ws.receive()  # hello

        async def flood() -> None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                while not ws.closed:
                    for _ in range(50):
                        await ws.send_str('{"type":"ping","ref":1}')
                    await asyncio.sleep(0)  # let the reader run, as any client's loop does

        if mode == "flood":
            task = asyncio.create_task(flood())
        else:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str("x" * 1_000_000)
        try:
            async with asyncio.timeout(20):
                while (await ws.receive()).type == aiohttp.WSMsgType.TEXT:
                    pass
        finally:
            if mode == "flood":
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        return ws.close_code


if __name__ == "__main__":
    print(asyncio.run(run(*sys.argv[1:4])))
