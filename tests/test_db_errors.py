"""The SQLSTATE / SQLite-code table behind the error translation.

The end-to-end tests in test_db.py and test_repository.py raise real errors on
real databases; these pin down the table itself, including the codes a test
cannot provoke on demand (a server shutting down, a deadlock), with asyncpg's
and sqlite3's own exception objects built as the drivers build them.
"""

import sqlite3
from typing import Any

import asyncpg.exceptions as pg  # type: ignore[import-untyped]
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Column, Integer, MetaData, String, Table, UniqueConstraint
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from heygen_conventions import (
    ConflictError,
    Database,
    DBSession,
    InvalidInputError,
    ServiceUnavailableError,
    install_database,
    install_exception_handlers,
    translate_db_errors,
)
from heygen_conventions._sql_errors import translate_db_error

videos = Table(
    "videos",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("slug", String),
    Column("owner", String),
    UniqueConstraint("owner", "slug", name="uq_videos_owner_slug"),
)


def postgres_error(cls: type[pg.PostgresError], **fields: str) -> pg.PostgresError:
    codes = {"sqlstate": "C", "constraint": "n", "detail": "D", "column": "c", "table": "t"}
    message = {codes[name]: value for name, value in fields.items()}
    message.setdefault("M", "error")
    return cls.new(message)


def wrapped(error: Exception, statement: str = "INSERT INTO videos ...") -> IntegrityError:
    # SQLAlchemy's own wrapping; str(wrapper) holds the SQL and its parameters.
    return IntegrityError(statement, {"slug": "secret-value"}, error)


@pytest.mark.parametrize(
    ("error", "expected", "field"),
    [
        (
            postgres_error(
                pg.UniqueViolationError,
                sqlstate="23505",
                constraint="uq_videos_owner_slug",
                detail="Key (owner, slug)=(ann, secret-value) already exists.",
            ),
            ConflictError,
            "owner",
        ),
        (
            postgres_error(
                pg.UniqueViolationError,
                sqlstate="23505",
                constraint="unknown_name",
                detail='Key (slug, "Owner")=(secret-value, x) already exists.',
            ),
            ConflictError,
            "slug",
        ),
        (postgres_error(pg.UniqueViolationError, sqlstate="23505"), ConflictError, None),
        (
            postgres_error(pg.ExclusionViolationError, sqlstate="23P01", constraint="no_overlap"),
            ConflictError,
            None,
        ),
        (
            postgres_error(
                pg.ForeignKeyViolationError,
                sqlstate="23503",
                detail='Key (owner)=(secret-value) is not present in table "owners".',
            ),
            InvalidInputError,
            None,
        ),
        (
            postgres_error(
                pg.ForeignKeyViolationError,
                sqlstate="23503",
                detail='Key (id)=(1) is still referenced from table "videos".',
            ),
            ConflictError,
            None,
        ),
        (
            postgres_error(pg.NotNullViolationError, sqlstate="23502", column="slug"),
            InvalidInputError,
            "slug",
        ),
        (
            postgres_error(pg.CheckViolationError, sqlstate="23514", constraint="ck_videos_len"),
            InvalidInputError,
            "ck_videos_len",
        ),
        (postgres_error(pg.SerializationError, sqlstate="40001"), ConflictError, None),
        (postgres_error(pg.DeadlockDetectedError, sqlstate="40P01"), ConflictError, None),
        (
            postgres_error(pg.StringDataRightTruncationError, sqlstate="22001"),
            InvalidInputError,
            None,
        ),
        (postgres_error(pg.AdminShutdownError, sqlstate="57P01"), ServiceUnavailableError, None),
        (postgres_error(pg.QueryCanceledError, sqlstate="57014"), ServiceUnavailableError, None),
        (
            postgres_error(pg.TooManyConnectionsError, sqlstate="53300"),
            ServiceUnavailableError,
            None,
        ),
        (
            postgres_error(pg.ConnectionDoesNotExistError, sqlstate="08003"),
            ServiceUnavailableError,
            None,
        ),
    ],
)
def test_postgresql_codes(error: Exception, expected: type[Exception], field: str | None) -> None:
    translated = translate_db_error(wrapped(error), table=videos)
    assert isinstance(translated, expected)
    assert ([d.field for d in translated.details] or [None])[0] == field
    assert "secret-value" not in translated.message
    assert all("secret-value" not in d.message for d in translated.details)


def sqlite_error(cls: type[sqlite3.Error], message: str, code: int) -> sqlite3.Error:
    error = cls(message)
    error.sqlite_errorcode = code  # set by sqlite3 itself on errors it raises
    error.sqlite_errorname = "SQLITE_X"
    return error


@pytest.mark.parametrize(
    ("error", "expected", "fields"),
    [
        (
            sqlite_error(
                sqlite3.IntegrityError,
                "UNIQUE constraint failed: videos.owner, videos.slug",
                2067,
            ),
            ConflictError,
            ["owner", "slug"],
        ),
        (
            sqlite_error(sqlite3.IntegrityError, "UNIQUE constraint failed: videos.id", 1555),
            ConflictError,
            ["id"],
        ),
        (
            sqlite_error(sqlite3.OperationalError, "database is locked", 5),
            ServiceUnavailableError,
            [None],
        ),
        (
            sqlite_error(sqlite3.OperationalError, "database is locked", 517),
            ServiceUnavailableError,
            [None],
        ),
        (
            sqlite_error(sqlite3.DatabaseError, "disk I/O error", 10),
            ServiceUnavailableError,
            [None],
        ),
        (sqlite_error(sqlite3.DataError, "string or blob too big", 18), InvalidInputError, [None]),
    ],
)
def test_sqlite_codes(error: Exception, expected: type[Exception], fields: list[Any]) -> None:
    translated = translate_db_error(wrapped(error))
    assert isinstance(translated, expected)
    assert ([d.field for d in translated.details] or [None]) == fields


def test_unknown_codes_are_left_alone() -> None:
    assert (
        translate_db_error(wrapped(postgres_error(pg.SyntaxOrAccessError, sqlstate="42601")))
        is None
    )
    assert translate_db_error(wrapped(sqlite_error(sqlite3.OperationalError, "x", 1))) is None
    assert translate_db_error(ValueError("plain")) is None
    assert translate_db_error(ConflictError()) is None


async def test_connection_failures_are_503() -> None:
    assert isinstance(
        translate_db_error(PoolTimeoutError("QueuePool limit reached")), ServiceUnavailableError
    )
    lost = OperationalError("SELECT 1", {}, ConnectionResetError(), connection_invalidated=True)
    assert isinstance(translate_db_error(lost), ServiceUnavailableError)
    # A real refused connection, raised from inside the driver.
    database = Database("postgresql+asyncpg://nobody@127.0.0.1:1/nothing")
    try:
        with pytest.raises(ServiceUnavailableError) as caught:
            await database.ping()
    finally:
        await database.dispose()
    assert isinstance(caught.value.__cause__, OSError | OperationalError | InterfaceError)


def test_socket_errors_of_the_application_are_not_database_outages() -> None:
    # Raised by application code, not the database stack: a bug, answered 500.
    for error in (ConnectionRefusedError(), TimeoutError(), FileNotFoundError("x")):
        with pytest.raises(type(error)) as raised:
            raise error
        assert translate_db_error(raised.value) is None
    behind_adapter = InterfaceError("SELECT 1", {}, RuntimeError("adapter"))
    behind_adapter.orig.__cause__ = BrokenPipeError()  # type: ignore[union-attr]
    assert translate_db_error(behind_adapter) is None


def test_an_os_error_in_a_route_with_a_session_is_a_500(tmp_path: Any) -> None:
    app = FastAPI()
    install_exception_handlers(app)
    install_database(app, Database(f"sqlite+aiosqlite:///{tmp_path / 'e.db'}"))

    @app.get("/read")
    async def read(session: DBSession) -> None:
        open(tmp_path / "missing.txt").close()  # noqa: ASYNC230 - the bug being reported

    with TestClient(app) as client:
        response = client.get("/read")
    assert response.status_code == 500, response.text
    assert "retry-after" not in response.headers


def test_the_original_error_is_chained() -> None:
    original = wrapped(postgres_error(pg.UniqueViolationError, sqlstate="23505"))
    with pytest.raises(ConflictError) as caught, translate_db_errors():
        raise original
    assert caught.value.__cause__ is original


@pytest.mark.parametrize(
    "cause",
    [
        ValueError("badly formed hexadecimal UUID string"),
        TypeError("expected str"),
        LookupError("'purple' is not among the defined enum values"),  # validate_strings=True
    ],
)
def test_a_value_the_column_type_cannot_bind_is_invalid_input(cause: Exception) -> None:
    error = StatementError("(builtins.X) ...", "SELECT 1", None, cause)
    assert isinstance(translate_db_error(error), InvalidInputError)
