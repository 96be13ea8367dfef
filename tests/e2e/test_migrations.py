"""The Alembic migrations build exactly the models' schema, on SQLite and PostgreSQL."""

import re

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect

from examples.video_app.migrate import MIGRATIONS, upgrade_database
from examples.video_app.models import TABLES
from heygen_conventions import Database
from heygen_conventions.migrations import alembic_config

SEED_NAME = re.compile(r"^\d{4}(_\d{2}){5}_[a-z0-9_]+\.py$")


def tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_migrations_match_the_models(empty_database: Database) -> None:
    await upgrade_database(empty_database)
    await upgrade_database(empty_database)  # at head already: nothing to do
    config = alembic_config(MIGRATIONS)

    def check(connection: Connection) -> set[str]:
        config.attributes["connection"] = connection
        command.check(config)  # raises if autogenerate finds any difference
        return tables(connection)

    async with empty_database.engine.begin() as connection:
        assert await connection.run_sync(check) == {*TABLES, "alembic_version"}


async def test_migrations_downgrade_to_nothing(empty_database: Database) -> None:
    await upgrade_database(empty_database)
    config = alembic_config(MIGRATIONS)

    def downgrade(connection: Connection) -> set[str]:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
        return tables(connection)

    async with empty_database.engine.begin() as connection:
        assert await connection.run_sync(downgrade) == {"alembic_version"}
    await upgrade_database(empty_database)  # and back up again


def test_revision_files_are_named_like_the_seed() -> None:
    scripts = ScriptDirectory.from_config(alembic_config(MIGRATIONS))
    revisions = list(scripts.walk_revisions())
    assert revisions
    for revision in revisions:
        assert revision.path is not None
        assert SEED_NAME.match(revision.path.rsplit("/", 1)[-1]), revision.path
