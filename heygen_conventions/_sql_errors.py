"""Translate database errors into the library's errors, by SQLSTATE or SQLite error code.

PostgreSQL (asyncpg) errors carry a five-character SQLSTATE and the name of
the violated constraint; SQLite errors carry an extended result code
(``sqlite_errorcode``). Messages are read only to name the columns SQLite
reports (``UNIQUE constraint failed: videos.slug``), never to decide the
class of error, and the values a driver quotes (PostgreSQL's ``DETAIL: Key
(slug)=(my-video) already exists``) never reach the client: they are user
data.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Table
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.sql.schema import ColumnCollectionConstraint

from heygen_conventions.errors import (
    AppError,
    ConflictError,
    InvalidInputError,
    ServiceUnavailableError,
)
from heygen_conventions.responses import ErrorDetail

__all__ = ["translate_db_error", "translate_db_errors"]

logger = logging.getLogger("heygen_conventions.db")

# SQLite extended result codes (https://www.sqlite.org/rescode.html).
_SQLITE_CONSTRAINT_CHECK = 275
_SQLITE_CONSTRAINT_FOREIGNKEY = 787
_SQLITE_CONSTRAINT_NOTNULL = 1299
_SQLITE_CONSTRAINT_PRIMARYKEY = 1555
_SQLITE_CONSTRAINT_UNIQUE = 2067
# Primary result codes (the low byte of an extended code).
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_TOOBIG = 18
_SQLITE_MISMATCH = 20
_SQLITE_UNAVAILABLE = frozenset(
    {_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN}
)

# SQLSTATE classes and codes (https://www.postgresql.org/docs/current/errcodes-appendix.html).
_UNIQUE = "23505"
_FOREIGN_KEY = "23503"
_NOT_NULL = "23502"
_CHECK = "23514"
_EXCLUSION = "23P01"
_PROGRAM_LIMIT = "54000"  # e.g. "index row requires 12016 bytes, maximum size is 8191"
_LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout, NOWAIT
_READ_ONLY_TRANSACTION = "25006"  # a standby (after a failover) refusing writes
_SERIALIZATION = frozenset({"40001", "40P01"})  # serialization failure, deadlock
_UNAVAILABLE_CLASSES = frozenset({"08", "53", "57"})  # connection, resources, operator

_SQLITE_COLUMNS = re.compile(r"constraint failed: (?P<columns>[\w.\"`, ]+)$")
# A unique index on expressions is reported by name: "UNIQUE constraint failed: index 'ix_x'".
_SQLITE_INDEX = re.compile(r"constraint failed: index '(?P<name>[^']+)'$")
# A CHECK is reported by its name, or by its expression (SQL, maybe values) when unnamed.
_IDENTIFIER = re.compile(r"^\w+$")
# Only the column list of PostgreSQL's "Key (a, b)=(...)" detail; the values are user data.
_PG_KEY_COLUMNS = re.compile(r"^Key \((?P<columns>[\w\", ]+)\)=")

_RETRY_AFTER_SECONDS = 1


def _driver_errors(exc: BaseException) -> Iterator[BaseException]:
    """The wrapped driver exception and its own causes (asyncpg's sits behind an adapter)."""
    seen: set[int] = set()
    current: BaseException | None = getattr(exc, "orig", None) or exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = getattr(current, "orig", None) or current.__cause__


# A socket error or timeout means "database unavailable" only when the database
# stack raised it; the same exception from application code is a bug (500).
_DATABASE_PACKAGES = frozenset({"sqlalchemy", "asyncpg", "aiosqlite", "sqlite3", "psycopg"})


def _raised_by_database_stack(exc: BaseException) -> bool:
    frame = exc.__traceback__
    while frame is not None:
        module = frame.tb_frame.f_globals.get("__name__", "")
        if module.partition(".")[0] in _DATABASE_PACKAGES:
            return True
        frame = frame.tb_next
    return False


def _first_attribute(exc: BaseException, name: str) -> Any:
    for error in _driver_errors(exc):
        value = getattr(error, name, None)
        if value is not None:
            return value
    return None


def _columns_of_constraint(table: Table | None, name: str | None) -> list[str]:
    if table is None or not name:
        return []
    for constraint in table.constraints:
        if constraint.name == name and isinstance(constraint, ColumnCollectionConstraint):
            return [column.name for column in constraint.columns]
    for index in table.indexes:
        if index.name == name:
            return [column.name for column in index.columns]
    return []


def _split_columns(text: str) -> list[str]:
    columns = []
    for part in text.split(","):
        name = part.strip().strip('"`')
        # SQLite reports "table.column".
        columns.append(name.rsplit(".", 1)[-1])
    return [c for c in columns if c]


def _details(code: str, message: str, columns: Sequence[str]) -> list[ErrorDetail]:
    if not columns:
        return [ErrorDetail(code=code, message=message)]
    return [ErrorDetail(code=code, message=message, field=column) for column in columns]


def _fields_phrase(columns: Sequence[str]) -> str:
    return ", ".join(columns)


def _unique(columns: list[str]) -> AppError:
    if columns:
        message = f"A record with the same {_fields_phrase(columns)} already exists"
    else:
        message = "A record with the same unique value already exists"
    return ConflictError(message, details=_details("unique_violation", message, columns))


def _only_referenced(table: Table | None) -> bool:
    """``table`` references no table but is referenced: its FK violations are "still referenced"."""
    if table is None or table.foreign_keys:
        return False
    return any(
        fk.references(table)
        for other in table.metadata.tables.values()
        for fk in other.foreign_keys
    )


def _foreign_key(
    exc: BaseException, columns: list[str], *, still_referenced: bool = False
) -> AppError:
    detail = str(_first_attribute(exc, "detail") or "")
    statement = str(getattr(exc, "statement", "") or "").lstrip().upper()
    if still_referenced or "still referenced" in detail or statement.startswith("DELETE"):
        message = "The record is still referenced by other records"
        return ConflictError(message, details=_details("foreign_key_violation", message, []))
    message = "A referenced record does not exist"
    return InvalidInputError(message, details=_details("foreign_key_violation", message, columns))


def _not_null(columns: list[str]) -> AppError:
    message = (
        f"Missing a value for {_fields_phrase(columns)}" if columns else "Missing a required value"
    )
    return InvalidInputError(message, details=_details("not_null_violation", message, columns))


def _check(constraint: str | None) -> AppError:
    message = "A value breaks a rule of the record"
    return InvalidInputError(
        message, details=[ErrorDetail(code="check_violation", message=message, field=constraint)]
    )


def _unavailable() -> AppError:
    return ServiceUnavailableError(
        "The database is temporarily unavailable", retry_after=_RETRY_AFTER_SECONDS
    )


def _concurrent() -> AppError:
    return ConflictError(
        "The record was changed by a concurrent request; retry",
        details=[ErrorDetail(code="concurrent_update", message="Retry the request", field=None)],
    )


# character_not_in_repertoire (a NUL in a UTF-8 database), untranslatable_character.
_UNSTORABLE_CHARACTER = frozenset({"22021", "22P05"})


def _from_sqlstate(exc: BaseException, sqlstate: str, table: Table | None) -> AppError | None:
    constraint = _first_attribute(exc, "constraint_name")
    if sqlstate in (_UNIQUE, _EXCLUSION):
        columns = _columns_of_constraint(table, constraint)
        if not columns:
            match = _PG_KEY_COLUMNS.match(str(_first_attribute(exc, "detail") or ""))
            columns = _split_columns(match["columns"]) if match else []
        return _unique(columns)
    if sqlstate == _FOREIGN_KEY:
        return _foreign_key(exc, _columns_of_constraint(table, constraint))
    if sqlstate == _NOT_NULL:
        column = _first_attribute(exc, "column_name")
        return _not_null([column] if column else [])
    if sqlstate == _CHECK:
        return _check(constraint)
    if sqlstate in _SERIALIZATION:
        return _concurrent()
    if sqlstate in (_LOCK_NOT_AVAILABLE, _READ_ONLY_TRANSACTION):
        return _unavailable()
    if sqlstate == _PROGRAM_LIMIT:
        return InvalidInputError("A value has the wrong type, format or size")
    if sqlstate[:2] in _UNAVAILABLE_CLASSES:
        return _unavailable()
    if sqlstate in _UNSTORABLE_CHARACTER:
        message = "A text value holds a character the database cannot store (such as NUL)"
        return InvalidInputError(
            message, details=[ErrorDetail(code="unstorable_character", message=message)]
        )
    if sqlstate.startswith("22"):  # data exception: out of range, too long, bad format
        return InvalidInputError("A value has the wrong type, format or size")
    return None


def _from_sqlite(exc: BaseException, code: int, table: Table | None) -> AppError | None:
    args = _first_attribute(exc, "args") or ("",)
    match = _SQLITE_COLUMNS.search(str(args[0]))
    named = _split_columns(match["columns"]) if match else []
    if code in (_SQLITE_CONSTRAINT_UNIQUE, _SQLITE_CONSTRAINT_PRIMARYKEY):
        index = _SQLITE_INDEX.search(str(args[0]))
        if index:
            named = _columns_of_constraint(table, index["name"])
        return _unique(named)
    if code == _SQLITE_CONSTRAINT_FOREIGNKEY:
        return _foreign_key(exc, [], still_referenced=_only_referenced(table))
    if code == _SQLITE_CONSTRAINT_NOTNULL:
        return _not_null(named)
    if code == _SQLITE_CONSTRAINT_CHECK:
        check = str(args[0]).partition("CHECK constraint failed: ")[2]
        return _check(check if _IDENTIFIER.match(check) else None)
    primary = code & 0xFF
    if primary in _SQLITE_UNAVAILABLE:
        return _unavailable()
    if primary in (_SQLITE_TOOBIG, _SQLITE_MISMATCH):
        return InvalidInputError("A value has the wrong type, format or size")
    return None


def translate_db_error(exc: BaseException, *, table: Table | None = None) -> AppError | None:
    """The library error ``exc`` stands for, or None when it is not a known database error.

    Args:
        exc: An exception raised while talking to the database.
        table: The table written to, when known; lets a violated constraint
            be reported by its columns.
    """
    if isinstance(exc, AppError):
        return None
    if isinstance(exc, StaleDataError):
        return ConflictError(
            "The record was changed by someone else; reload it and retry",
            details=[
                ErrorDetail(
                    code="stale_version", message="The record's version changed", field="version"
                )
            ],
        )
    if isinstance(exc, PoolTimeoutError):
        return _unavailable()
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return _unavailable()
    if isinstance(exc, OSError | TimeoutError) and _raised_by_database_stack(exc):
        return _unavailable()
    if isinstance(exc, OverflowError) and _raised_by_database_stack(exc):
        # sqlite3 binding an integer past 64 bits raises it bare, unwrapped.
        return InvalidInputError("A value has the wrong type, format or size")
    sqlstate = _first_attribute(exc, "sqlstate")
    if isinstance(sqlstate, str) and len(sqlstate) == 5:
        return _from_sqlstate(exc, sqlstate, table)
    sqlite_code = _first_attribute(exc, "sqlite_errorcode")
    if isinstance(sqlite_code, int):
        return _from_sqlite(exc, sqlite_code, table)
    if isinstance(exc, StatementError) and isinstance(
        exc.orig, TypeError | ValueError | AttributeError | LookupError
    ):
        # A value the column type could not bind (e.g. "abc" for a UUID column,
        # a name an Enum(validate_strings=True) column does not know).
        return InvalidInputError("A value has the wrong type or format")
    # asyncpg's own connection errors carry SQLSTATE class 08 and are handled above;
    # a socket error may sit behind a driver adapter.
    if any(
        isinstance(error, OSError) and _raised_by_database_stack(error)
        for error in _driver_errors(exc)
    ):
        return _unavailable()
    return None


@contextmanager
def translate_db_errors(*, table: Table | None = None) -> Iterator[None]:
    """Raise the library's error for any known database error raised inside, chaining it.

    Wrap hand-written queries with it the way the repository wraps its own::

        with translate_db_errors():
            await session.execute(text("..."))

    Unknown errors pass through unchanged (the handlers answer them 500).
    """
    try:
        yield
    except Exception as exc:
        translated = translate_db_error(exc, table=table)
        if translated is None:
            raise
        _log(exc, translated)
        raise translated from exc


def _log(exc: BaseException, translated: AppError) -> None:
    level = logging.WARNING if translated.status_code >= 500 else logging.INFO
    logger.log(
        level,
        "Database error translated",
        extra={
            "error_type": type(exc).__name__,
            "sqlstate": _first_attribute(exc, "sqlstate"),
            "sqlite_error": _first_attribute(exc, "sqlite_errorname"),
            "constraint": _first_attribute(exc, "constraint_name"),
            "translated_to": type(translated).__name__,
        },
    )
