"""Alembic environment: async engine, URL from KASSA_DATABASE_URL / DATABASE_URL or the caller."""

import asyncio
import os

from alembic import context
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import create_async_engine

from db.engine import async_url
from db.models import Base

config = context.config
target_metadata = Base.metadata

# What autogenerate (`make migration`) and `alembic check` (tests/db/test_migrations.py)
# compare between the models and the database. Column types are compared by default; server
# defaults are not, and a model's `server_default` that the migrations forgot (or the other
# way round) is drift like any other, so compare them too. Check constraints, triggers and
# functions are invisible to autogenerate: those are written by hand in the migrations.
COMPARE = {"compare_type": True, "compare_server_default": True}


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get(
        "KASSA_DATABASE_URL", os.environ.get("DATABASE_URL", "")
    )
    if not url:
        raise SystemExit("set DATABASE_URL (or use `kassa run`, which migrates for you)")
    return async_url(url)


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, **COMPARE)
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = create_async_engine(_url(), poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, **COMPARE)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
