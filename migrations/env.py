"""Alembic environment: runs migrations over asyncpg against the URL TrustMess would use."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from trustmess.runtime.migrate import migration_lock
from trustmess.store.schema import metadata

config = context.config
target_metadata = metadata


def _do_run(connection: Any) -> None:
    # Concurrent runs (several machines starting `serve`) migrate one after the other.
    with migration_lock(connection):
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()


async def _run(dsn: str) -> None:
    async def connect() -> Any:
        return await asyncpg.connect(dsn)

    engine = create_async_engine("postgresql+asyncpg://", async_creator=connect, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_do_run)
    finally:
        await engine.dispose()


def _run_with_dsn() -> None:
    dsn = config.attributes.get("dsn") or context.get_x_argument(as_dictionary=True).get("dsn")
    if dsn:
        asyncio.run(_run(dsn))
        return
    from trustmess.settings import Settings

    settings = Settings.from_env()
    if settings.database_url:
        asyncio.run(_run(settings.database_url))
        return
    from trustmess.runtime.embedded import EmbeddedPostgres

    embedded = EmbeddedPostgres(settings.data_dir / "pg")
    try:
        asyncio.run(_run(embedded.start()))
    finally:
        embedded.stop()


if context.is_offline_mode():
    context.configure(url="postgresql://", target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    _run_with_dsn()
