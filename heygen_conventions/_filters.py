"""Keyword filter values checked against their column's type before any SQL.

Filter values often come from clients (``?duration=abc``). Sent as they are,
a value of the wrong type fails differently on each database: PostgreSQL
refuses the comparison (``operator does not exist``), SQLite compares text
with a number and finds nothing, or cannot bind a large integer at all. A
value checked here is a 422 naming the field, the same on every database.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, NoReturn

from sqlalchemy import BigInteger, Integer, SmallInteger, TypeDecorator
from sqlalchemy.sql.schema import Column

from heygen_conventions.errors import InvalidInputError
from heygen_conventions.responses import ErrorDetail

_NUMBERS = (int, float, Decimal)


@dataclass(frozen=True)
class _Accepted:
    types: tuple[type, ...]
    name: str  # what to call them in the message
    bits: int = 64  # integers must fit in this many bits (SQLite binds no wider one)


# Column -> what its filters take, or None: not checked.
_ACCEPTED: dict[Column[Any], _Accepted | None] = {}


def _accepted(column: Column[Any]) -> _Accepted | None:
    type_ = column.type
    if isinstance(type_, TypeDecorator):
        return None  # a custom type may take values of its own kind and convert them
    try:
        python_type: type = type_.python_type
    except NotImplementedError:
        return None
    if python_type is bool:
        return _Accepted((bool,), "a boolean")
    if python_type in _NUMBERS:
        # The portable range of the declared integer type: PostgreSQL holds an
        # INTEGER to 32 bits (SQLite would store more, and compare it).
        bits = 64
        if isinstance(type_, SmallInteger):
            bits = 16
        elif isinstance(type_, Integer) and not isinstance(type_, BigInteger):
            bits = 32
        return _Accepted(_NUMBERS, "a number", bits)
    if python_type is str:
        return _Accepted((str,), "text")
    if python_type is uuid.UUID:
        return _Accepted((uuid.UUID, str), "a UUID")
    if issubclass(python_type, enum.Enum):
        return _Accepted((python_type, str), f"a {python_type.__name__} member or name")
    if python_type is datetime:
        return _Accepted((datetime,), "a datetime")
    if python_type is date:
        return _Accepted((date,), "a date")
    if python_type in (time, timedelta):
        return _Accepted((python_type,), f"a {python_type.__name__}")
    if python_type is bytes:
        return _Accepted((bytes, bytearray, memoryview), "bytes")
    return None  # JSON, arrays and the like: the column type decides


def filter_values(name: str, column: Column[Any], values: list[Any]) -> list[Any]:
    """``values`` checked against ``column``'s type; UUIDs given as text parsed.

    None is left as it is (IS NULL). A boolean is not a number here, and an
    integer must fit in 64 bits.

    Raises:
        InvalidInputError: A value the column cannot be compared with (422).
    """
    try:
        accepted = _ACCEPTED[column]
    except KeyError:
        accepted = _ACCEPTED[column] = _accepted(column)
    if accepted is None:
        return values
    types = accepted.types
    parse_uuids = uuid.UUID in types
    limit = 2 ** (accepted.bits - 1)
    for index, value in enumerate(values):
        if value is None:
            continue
        kind = type(value)
        if kind is int:
            if int in types and -limit <= value < limit:
                continue
        elif kind is bool:
            if bool in types:
                continue
        elif kind is str and parse_uuids:
            # Parsed here: SQLite's UUID column takes UUID objects only.
            try:
                values[index] = uuid.UUID(value)
            except ValueError:
                _refuse(name, "Not a valid UUID")
            continue
        elif isinstance(value, types) and not isinstance(value, bool):
            continue
        if isinstance(value, int) and not isinstance(value, bool) and int in types:
            _refuse(name, f"Number out of range ({accepted.bits}-bit integers)")
        _refuse(name, f"Expected {accepted.name}, got {kind.__name__}")
    return values


def _refuse(name: str, message: str) -> NoReturn:
    raise InvalidInputError(
        f"Invalid value for filter {name!r}: {message}",
        details=[ErrorDetail(code="invalid_filter_value", message=message, field=name)],
    )
