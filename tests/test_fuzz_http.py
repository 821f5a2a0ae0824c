"""Schema-driven fuzzing of the HTTP API: schemathesis against a real server process.

Every operation of the served ``/openapi.json`` gets its documented examples, boundary and
type-mismatch cases (the coverage phase), random valid and invalid input (fuzzing) and chains
of calls along the document's links (stateful), authenticated as a real administrator, with
ids that exist. Settings: ``tests/schemathesis.toml``.

Passing means: no 5xx; every response has a documented status, content type, headers and a
body matching its schema; operations that need a token refuse requests without one; an
undocumented method is 405 with ``Allow``; and the server logged nothing at ERROR (so no
traceback) while it ran.

Bounded for CI (about 30 s on 2 shared cores): ``TRUSTMESS_FUZZ_EXAMPLES`` (default 50 per
operation and phase) and ``TRUSTMESS_FUZZ_SEED`` (fixed by default, so CI is reproducible; set
another to explore).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import JWT_SECRET, GroupFactory, MessageInserter, UserFactory
from tests.serverproc import start_server
from trustmess.store.conversations import create_direct

CONFIG = Path(__file__).resolve().parent / "schemathesis.toml"
EXAMPLES = int(os.environ.get("TRUSTMESS_FUZZ_EXAMPLES", "50"))
SEED = int(os.environ.get("TRUSTMESS_FUZZ_SEED", "20261203"))
SERVER_FAULT = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback")


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_schemathesis_finds_nothing(
    database_url: str,
    make_user: UserFactory,
    make_group: GroupFactory,
    insert_messages: MessageInserter,
    db,
    tmp_path: Path,
) -> None:
    # Users 1-3 and conversations 1-3 (see schemathesis.toml): a group Ada owns, the direct
    # conversation of Ada and Grace, and a group Grace owns. Ada's name and password are the
    # document's login example, so that example logs in and the stateful phase follows its links.
    ada = await make_user("ada", is_admin=True)
    grace, alan = await make_user("grace"), await make_user("alan")
    assert [ada.id, grace.id, alan.id] == [1, 2, 3]
    own_group = await make_group(ada, grace, alan, title="Lunch crew")
    direct, _ = await create_direct(db, ada.id, grace.id)
    others_group = await make_group(grace, ada)
    assert [own_group, direct, others_group] == [1, 2, 3]
    await insert_messages(own_group, grace.id, 5)
    await insert_messages(direct, ada.id, 3)

    server = await start_server(
        {
            "TRUSTMESS_DATABASE_URL": database_url,
            "TRUSTMESS_JWT_SECRET": JWT_SECRET,
            "TRUSTMESS_BCRYPT_ROUNDS": "4",
            # Let logins and signups through: the fuzzing is about input, not the rate limit.
            "TRUSTMESS_AUTH_BURST": "1000000",
            "TRUSTMESS_AUTH_RATE_PER_S": "1000000",
            "TRUSTMESS_LOG_LEVEL": "INFO",
            # Fuzzed requests go through the access log and CORS middlewares too.
            "TRUSTMESS_ACCESS_LOG": "true",
            "TRUSTMESS_ALLOWED_ORIGINS": "https://chat.example.org",
        },
        "serve",
        "--no-migrate",
    )
    try:
        fuzz = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(CONFIG),
            "--no-color",
            "run",
            f"{server.url}/openapi.json",
            "--url",
            server.url,
            "--header",
            f"Authorization: Bearer {ada.token}",
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            str(SEED),
            "--workers",
            "1",
            "--request-timeout",
            "10",
            # Its hypothesis database and cache stay out of the checkout.
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(fuzz.communicate(), timeout=540)
    finally:
        await server.stop()
    report = output.decode(errors="replace")
    print(report)  # shown by pytest when the test fails
    assert fuzz.returncode == 0, "schemathesis found problems:\n" + report[-20000:]
    summary = re.search(r"(\d+) generated, (\d+) passed", report)
    assert summary and int(summary.group(1)) >= 500, "too few cases ran:\n" + report[-5000:]
    faults = [line for line in server.log if SERVER_FAULT.search(line)]
    assert faults == [], "the server logged faults while fuzzed:\n" + "".join(faults)
