"""Alembic conventions: timestamped revision files and an async-ready ``env.py``.

Revision files are named the way the conventions guide shows,
``2024_01_15_10_30_00_create_videos_table.py`` (UTC). Put these lines in the
``[alembic]`` section of ``alembic.ini`` (``%%`` is configparser's ``%``; the
template is one line)::

    file_template = %%(year)d_%%(month).2d_%%(day).2d_
                    %%(hour).2d_%%(minute).2d_%%(second).2d_%%(slug)s
    timezone = UTC
    truncate_slug_length = 60

or build the configuration in code with :func:`alembic_config`. The whole
``env.py`` is then::

    from heygen_conventions.migrations import run_migrations
    from myapp.models import Base

    run_migrations(Base.metadata)

It migrates SQLite and PostgreSQL alike: it runs on the async engine, turns
on batch mode for SQLite (whose ALTER TABLE cannot change columns) and
compares column types. Alembic is an optional dependency:
``pip install heygen-conventions[migrations]``.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, MetaData, pool
from sqlalchemy.ext.asyncio import async_engine_from_config

from heygen_conventions.db import UTCDateTime, utc_now

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "FILE_TEMPLATE",
    "TRUNCATE_SLUG_LENGTH",
    "alembic_config",
    "migration_filename",
    "run_migrations",
]

#: Alembic's ``file_template`` for ``2024_01_15_10_30_00_create_videos_table.py`` (ini-escaped).
FILE_TEMPLATE = (
    "%%(year)d_%%(month).2d_%%(day).2d_%%(hour).2d_%%(minute).2d_%%(second).2d_%%(slug)s"
)
TRUNCATE_SLUG_LENGTH = 60

_SLUG_WORD = re.compile(r"\w+")


def migration_filename(message: str, *, when: datetime | None = None) -> str:
    """The file name Alembic gives a revision made with ``message`` at ``when`` (UTC).

    ``migration_filename("Create videos table")`` is
    ``"2024_01_15_10_30_00_create_videos_table.py"`` at that moment; useful
    to check names in CI or to name hand-written revisions alike.
    """
    moment = (when or datetime.now(UTC)).astimezone(UTC)
    # Alembic's own slug (ScriptDirectory._rev_path): the message's words
    # (``\w+``, Unicode letters and underscores included) joined by "_", cut
    # at the last word boundary within the length, with a trailing "_".
    slug = "_".join(_SLUG_WORD.findall(message)).lower()
    if len(slug) > TRUNCATE_SLUG_LENGTH:
        slug = slug[:TRUNCATE_SLUG_LENGTH].rsplit("_", 1)[0] + "_"
    return f"{moment:%Y_%m_%d_%H_%M_%S}_{slug}.py"


def alembic_config(
    script_location: str | Path,
    url: str | None = None,
    *,
    ini_file: str | Path | None = None,
) -> Config:
    """An Alembic ``Config`` with the library's naming, built in code.

    Args:
        script_location: The migrations directory (holding ``env.py``).
        url: Database URL (async drivers work); None leaves ``sqlalchemy.url``
            to the ini file or to :func:`run_migrations`'s ``url``.
        ini_file: An ``alembic.ini`` to start from, if any.
    """
    from alembic.config import Config

    config = Config(str(ini_file) if ini_file is not None else None)
    # configparser interpolates "%": "%%" is one.
    config.set_main_option("script_location", str(script_location).replace("%", "%%"))
    config.set_main_option("file_template", FILE_TEMPLATE)
    config.set_main_option("timezone", "UTC")
    config.set_main_option("truncate_slug_length", str(TRUNCATE_SLUG_LENGTH))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    # Migration files must not import the library: a UTCDateTime column is a
    # plain timezone-aware DateTime in the database.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    # By its registered name, which compiles for the database migrated (the
    # default rendering is the SQL of the database autogenerate compared with:
    # SQLite's would not run on PostgreSQL).
    if type_ == "server_default" and isinstance(getattr(obj, "arg", None), utc_now):
        return "sa.func.heygen.utc_now()"
    return False


def _with_render_item(options: dict[str, Any]) -> dict[str, Any]:
    theirs = options.get("render_item")

    def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
        rendered = _render_item(type_, obj, autogen_context)
        if rendered is False and theirs is not None:
            return theirs(type_, obj, autogen_context)  # type: ignore[no-any-return]
        return rendered

    return {**options, "render_item": render_item}


def _configure_and_run(connection: Connection, metadata: MetaData, options: dict[str, Any]) -> None:
    from alembic import context

    defaults: dict[str, Any] = {
        "compare_type": True,
        # SQLite rebuilds a table to change it; batch mode does that for ALTERs.
        "render_as_batch": connection.dialect.name == "sqlite",
    }
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # The caller's options win over these defaults rather than collide with them.
        **_with_render_item({**defaults, **options}),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations(metadata: MetaData, *, url: str | None = None, **options: Any) -> None:
    """Run the current Alembic command; call it from ``env.py``.

    Offline (``alembic upgrade --sql``) it writes SQL; online it connects
    with the async engine of ``sqlalchemy.url`` (or ``url``). A connection
    put in ``config.attributes["connection"]`` is used as is, which is how
    tests and the application run migrations inside their own event loop::

        async with engine.begin() as conn:
            await conn.run_sync(lambda sync: upgrade(config, sync))

    where ``upgrade`` sets ``config.attributes["connection"] = sync`` and
    calls ``alembic.command.upgrade(config, "head")``.

    Args:
        metadata: The models' metadata, for autogenerate.
        url: Overrides ``sqlalchemy.url``.
        **options: More ``context.configure()`` options.
    """
    from alembic import context

    config = context.config
    connection = config.attributes.get("connection")
    if isinstance(connection, Connection):
        _configure_and_run(connection, metadata, options)
        return
    database_url = url or config.get_main_option("sqlalchemy.url")
    if not database_url:
        raise RuntimeError("No database URL: set sqlalchemy.url or pass url=")
    if context.is_offline_mode():
        context.configure(
            url=database_url,
            target_metadata=metadata,
            literal_binds=True,
            dialect_opts={"paramstyle": "named"},
            **options,
        )
        with context.begin_transaction():
            context.run_migrations()
        return

    async def run_online() -> None:
        section = dict(config.get_section(config.config_ini_section, {}))
        section["sqlalchemy.url"] = database_url
        engine = async_engine_from_config(section, prefix="sqlalchemy.", poolclass=pool.NullPool)
        try:
            async with engine.connect() as conn:
                await conn.run_sync(_configure_and_run, metadata, options)
        finally:
            await engine.dispose()

    asyncio.run(run_online())
