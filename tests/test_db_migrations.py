"""Alembic with the library's conventions: names, autogenerate, upgrade, on both databases."""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import CommandLine
from sqlalchemy import Connection, inspect, text

from heygen_conventions import Database, uuid7
from heygen_conventions.migrations import (
    FILE_TEMPLATE,
    alembic_config,
    migration_filename,
)

ENV_PY = """
from heygen_conventions.migrations import run_migrations
from tests.fixtures.db import SampleBase

run_migrations(SampleBase.metadata)
"""

NAME = re.compile(r"^\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}_create_sample_tables\.py$")


def test_migration_filename_follows_the_seed() -> None:
    moment = datetime(2024, 1, 15, 12, 30, 0, tzinfo=timezone(timedelta(hours=2)))
    assert (
        migration_filename("Create videos table", when=moment)
        == "2024_01_15_10_30_00_create_videos_table.py"
    )
    assert migration_filename("Add video-status index!", when=moment).endswith(
        "_add_video_status_index.py"
    )
    assert NAME.match(migration_filename("create sample tables"))
    assert "%%(slug)s" in FILE_TEMPLATE


def make_project(tmp_path: Path, url: str | None = None) -> Any:
    directory = tmp_path / "migrations"
    config = alembic_config(directory, url, ini_file=tmp_path / "alembic.ini")
    command.init(config, str(directory), template="generic")
    (directory / "env.py").write_text(ENV_PY, encoding="utf-8")
    return config, directory


async def test_autogenerate_and_upgrade(database: Database, tmp_path: Path) -> None:
    config, directory = make_project(tmp_path)

    def revise_and_upgrade(connection: Connection) -> dict[str, Any]:
        config.attributes["connection"] = connection
        command.revision(config, message="create sample tables", autogenerate=True)
        command.upgrade(config, "head")
        inspector = inspect(connection)
        sqlite = connection.dialect.name == "sqlite"
        connection.execute(
            text("INSERT INTO sample_authors (id, name) VALUES (:id, 'raw')"),
            {"id": uuid7().hex if sqlite else uuid7()},
        )
        stamped = connection.scalar(text("SELECT created_at FROM sample_authors"))
        return {
            "tables": set(inspector.get_table_names()),
            "unique": inspector.get_unique_constraints("sample_videos"),
            "stamped": stamped if sqlite else None,
        }

    async with database.engine.begin() as conn:
        found = await conn.run_sync(revise_and_upgrade)
    [revision] = list((directory / "versions").glob("*.py"))
    assert NAME.match(revision.name), revision.name
    stamp = datetime.strptime(revision.name[:19], "%Y_%m_%d_%H_%M_%S").replace(tzinfo=UTC)
    assert abs(stamp - datetime.now(UTC)) < timedelta(minutes=5)  # UTC, not local time
    source = revision.read_text(encoding="utf-8")
    assert 'op.f("uq_sample_videos_slug")' in source or "uq_sample_videos_slug" in source
    # The same file runs on either database (no SQL of the one it was made on).
    assert source.count("server_default=sa.func.heygen.utc_now()") >= 4
    assert "strftime" not in source
    assert "pk_sample_videos" in source
    assert {"sample_videos", "sample_authors", "alembic_version"} <= found["tables"]
    assert [u["name"] for u in found["unique"]] == ["uq_sample_videos_slug"]
    if found["stamped"] is not None:  # SQLite: the server default writes what values bind as
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", found["stamped"])


def test_env_py_runs_under_the_alembic_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The real entry point (`alembic ...`), which runs env.py with no
    # connection given: online on the async engine, then offline (--sql).
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    _, directory = make_project(tmp_path, url)
    ini = tmp_path / "alembic.ini"
    ini.write_text(
        "[alembic]\n"
        f"script_location = {directory}\n"
        f"sqlalchemy.url = {url}\n"
        f"file_template = {FILE_TEMPLATE}\n"
        "timezone = UTC\n",
        encoding="utf-8",
    )
    alembic = CommandLine(prog="alembic")
    alembic.main(["-c", str(ini), "revision", "--autogenerate", "-m", "create sample tables"])
    alembic.main(["-c", str(ini), "upgrade", "head"])
    capsys.readouterr()
    alembic.main(["-c", str(ini), "upgrade", "head", "--sql"])
    assert "CREATE TABLE sample_videos" in capsys.readouterr().out
    [revision] = list((directory / "versions").glob("*.py"))
    assert NAME.match(revision.name)
    with closing(sqlite3.connect(tmp_path / "cli.db")) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"sample_videos", "alembic_version"} <= tables
