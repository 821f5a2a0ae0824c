"""Run the application on a TCP port until SIGINT/SIGTERM, then shut down in order."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from trustmess.app import create_app
from trustmess.collector import tune_collector
from trustmess.http.prometheus import metrics_app
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
    metrics_runner: web.AppRunner | None = None
    try:
        await runner.setup()
        tune_collector()
        await _listen(runner, settings.host, settings.port, settings)
        if settings.metrics_port is not None:
            metrics_runner = web.AppRunner(metrics_app(app), handle_signals=False, access_log=None)
            await metrics_runner.setup()
            await _listen(
                metrics_runner, settings.metrics_host, settings.metrics_port, settings, "/metrics"
            )
        await stop.wait()
        log.info("shutting down")
    finally:
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await runner.cleanup()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        log.info("stopped")


async def _listen(
    runner: web.AppRunner, host: str, port: int, settings: Settings, what: str = ""
) -> None:
    """Start a TCP site for ``runner``; log where it listens (``what``: the path it serves, if it
    serves only one). SystemExit(1) with one line if the address cannot be had."""
    site = web.TCPSite(runner, host, port, reuse_port=settings.workers > 1, backlog=1024)
    try:
        await site.start()
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", host, port, exc.strerror)
        raise SystemExit(1) from None
    for address in runner.addresses:  # one site per runner
        shown = f"[{address[0]}]" if ":" in address[0] else address[0]
        if what:
            log.info("%s on http://%s:%d%s", what.lstrip("/"), shown, address[1], what)
        else:
            log.info("listening on http://%s:%d", shown, address[1])
