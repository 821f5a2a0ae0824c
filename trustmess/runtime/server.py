"""Run the application on a TCP port until SIGINT/SIGTERM, then shut down in order."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from trustmess.app import create_app
from trustmess.settings import Settings

log = logging.getLogger("trustmess")


class ProtocolErrorLog(logging.LoggerAdapter[logging.Logger]):
    """The logger of aiohttp's request handler.

    A request that is not valid HTTP (a NUL in a header, a broken request line) never reaches
    the application: aiohttp answers it with a plain-text 400 and logs an ERROR with a
    traceback. That is the client's fault, not a fault of the server, so it is one INFO line
    here; anything else aiohttp logs (a real fault) keeps its traceback.
    """

    def exception(self, msg: object, *args: Any, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError) and exc_info.code < 500:
            reason = next((line for line in exc_info.message.splitlines() if line.strip()), "")
            remote = args[0] if args else "?"
            self.logger.info("bad HTTP request from %s: %s %s", remote, exc_info.code, reason)
            return
        self.logger.exception(msg, *args, exc_info=exc_info, **kwargs)


async def serve(settings: Settings) -> None:
    """Serve until a stop signal; shutdown closes sockets, drains commits, closes the pool."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    app = create_app(settings)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=5.0,
        logger=ProtocolErrorLog(logging.getLogger("aiohttp.server")),
    )
    try:
        await runner.setup()
        site = web.TCPSite(
            runner, settings.host, settings.port, reuse_port=settings.workers > 1, backlog=1024
        )
        try:
            await site.start()
        except OSError as exc:
            log.error("cannot listen on %s:%s: %s", settings.host, settings.port, exc.strerror)
            raise SystemExit(1) from None
        for address in runner.addresses:
            host, port = address[0], address[1]
            shown = f"[{host}]" if ":" in host else host
            log.info("listening on http://%s:%d", shown, port)
        await stop.wait()
        log.info("shutting down")
    finally:
        await runner.cleanup()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        log.info("stopped")
