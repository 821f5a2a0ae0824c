"""Run the Alembic migrations programmatically (``python -m trustmess migrate``, ``serve``).

Alembic's env.py drives its own event loop, so from async code call these in a thread.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(dsn: str) -> Config:
    """An Alembic config pointing at this project's migrations and the given database."""
    ini = ROOT / "alembic.ini"
    config = Config(str(ini)) if ini.exists() else Config()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["dsn"] = dsn
    return config


def upgrade(dsn: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(dsn), revision)


def downgrade(dsn: str, revision: str) -> None:
    command.downgrade(alembic_config(dsn), revision)


def check(dsn: str) -> None:
    """Raise if the Core tables in ``schema.py`` and the migrations disagree."""
    command.check(alembic_config(dsn))
