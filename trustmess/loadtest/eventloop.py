"""How a load-test process runs its event loop: the command line and every spawned worker.

Its own module so that the runner (which spawns workers) does not import the command line.
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from trustmess.collector import tune_collector

T = TypeVar("T")


def raise_open_files_limit() -> None:
    """Each socket is a file: lift the soft limit to the hard one."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when it is installed (the ``fast`` extra), else the default loop; with
    the collector tuned like the server's."""
    tune_collector()
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        pass
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)
