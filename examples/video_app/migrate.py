"""Bring a database to the latest schema with the Alembic migrations, in-process."""

from pathlib import Path

from alembic import command
from sqlalchemy import Connection, text

from heygen_conventions import Database
from heygen_conventions.migrations import alembic_config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any fixed number: the PostgreSQL advisory lock that makes instances starting
# together migrate one after the other.
_MIGRATION_LOCK = 7_311_742_009


async def upgrade_database(database: Database, revision: str = "head") -> None:
    """Apply the migrations up to ``revision`` in one transaction.

    On PostgreSQL the transaction first takes an advisory lock, so several
    instances starting at once migrate one at a time (the later ones find
    nothing to do); SQLite serialises writers by itself.
    """
    config = alembic_config(MIGRATIONS)

    def upgrade(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with database.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
            )
        await connection.run_sync(upgrade)
