"""The mail queue: requests hand mails (or jobs that make them) over and answer at once; one
task sends them, retrying with backoff.

Bounded: when ``queue_max`` mails wait (an SMTP server down for long, a flood of reset
requests), more are dropped, logged and counted, instead of growing without end. A mail that
still fails after ``attempts`` tries, or that the server refuses for good (a 5xx answer), is
logged and counted as failed. Logs name the kind of mail and the recipient's domain, never a
token, a password or the text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

import aiosmtplib

from trustmess.mail.letters import Letter
from trustmess.mail.transport import Transport

log = logging.getLogger("trustmess.mail")

# Makes the letter to send when its turn comes (database lookups included), or None for no mail.
Job = Callable[[], Awaitable[Letter | None]]

RETRY_MAX_S = 300.0


def _domain(address: str) -> str:
    return address.rpartition("@")[2]


def _permanent(exc: Exception) -> bool:
    """The server refused this mail for good: trying again would not help."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused | aiosmtplib.SMTPSenderRefused):
        return True
    return isinstance(exc, aiosmtplib.SMTPResponseException) and 500 <= exc.code < 600


class MailOutbox:
    """One sending task over a bounded queue; ``outcomes`` counts what became of each mail
    (``queued``, ``sent``, ``retried``, ``failed``, ``dropped``, ``skipped``)."""

    def __init__(
        self,
        transport: Transport,
        *,
        queue_max: int,
        attempts: int,
        retry_s: float,
        outcomes: Counter[str] | None = None,
    ) -> None:
        self.transport = transport
        self.attempts = attempts
        self.retry_s = retry_s
        self.outcomes: Counter[str] = Counter() if outcomes is None else outcomes
        self._queue: asyncio.Queue[tuple[str, Job]] = asyncio.Queue(queue_max)
        self._task: asyncio.Task[None] | None = None

    def submit(self, letter: Letter) -> bool:
        """Queue a letter; False (logged, counted) when the queue is full."""

        async def ready() -> Letter:
            return letter

        return self.submit_job(letter.kind, ready)

    def submit_job(self, kind: str, job: Job) -> bool:
        """Queue a job that makes a letter of ``kind``; False (logged, counted) when full."""
        try:
            self._queue.put_nowait((kind, job))
        except asyncio.QueueFull:
            self.outcomes["dropped"] += 1
            log.warning("mail queue full (%d waiting): %s mail dropped", self._queue.qsize(), kind)
            return False
        self.outcomes["queued"] += 1
        return True

    def waiting(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mail outbox")

    async def close(self) -> None:
        """Stop sending; mails still queued are logged as lost."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._queue.qsize():
            log.warning("shutting down with %d mails unsent", self._queue.qsize())

    async def _run(self) -> None:
        while True:
            kind, job = await self._queue.get()
            try:
                letter = await job()
            except Exception as exc:
                self.outcomes["failed"] += 1
                log.error("could not prepare a %s mail: %s", kind, type(exc).__name__)
                continue
            if letter is None:
                self.outcomes["skipped"] += 1
                continue
            await self._deliver(letter)

    async def _deliver(self, letter: Letter) -> None:
        delay = self.retry_s
        for attempt in range(1, self.attempts + 1):
            try:
                await self.transport.send(letter)
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                if _permanent(exc) or attempt == self.attempts:
                    self.outcomes["failed"] += 1
                    log.error(
                        "%s mail to a recipient at %s failed after %d attempt(s): %s",
                        letter.kind,
                        _domain(letter.to),
                        attempt,
                        reason,
                    )
                    return
                self.outcomes["retried"] += 1
                log.warning(
                    "%s mail to a recipient at %s failed (attempt %d of %d), retrying in %g s: %s",
                    letter.kind,
                    _domain(letter.to),
                    attempt,
                    self.attempts,
                    delay,
                    reason,
                )
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX_S, delay * 2)
            else:
                self.outcomes["sent"] += 1
                return
