"""Run the application on a TCP port until SIGINT/SIGTERM, then shut down in order."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from trustmess.app import create_app
from trustmess.settings import Settings

log = logging.getLogger("trustmess")


async def serve(settings: Settings) -> None:
    """Serve until a stop signal; shutdown closes sockets, drains commits, closes the pool."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    app = create_app(settings)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=5.0)
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
