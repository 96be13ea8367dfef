"""Filter and write values checked against their column's type before any SQL.

Filter values often come from clients (``?duration=abc``). Sent as they are,
a value of the wrong type fails differently on each database: PostgreSQL
refuses the comparison (``operator does not exist``), SQLite compares text
with a number and finds nothing, or cannot bind a large integer at all; and
SQLite stores text in an INTEGER column that PostgreSQL refuses. A value
checked here is a 422 naming the field, the same on every database.
"""

from __future__ import annotations

import enum
import numbers
import operator
import uuid
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from operator import itemgetter
from typing import Any, NoReturn

from sqlalchemy import BigInteger, Integer, SmallInteger, TypeDecorator, Uuid
from sqlalchemy import Enum as SAEnum
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.schema import Column

from heygen_conventions.errors import InvalidInputError
from heygen_conventions.responses import ErrorDetail

_NUMBERS = (int, float, Decimal)
# bool, and numpy's bool_ (no subclass of bool): booleans are not numbers here.
_BOOLEAN_TYPES = frozenset({"bool", "bool_"})


@dataclass(frozen=True)
class _Accepted:
    kind: str  # "number", "boolean", "uuid", "enum" or "types"
    name: str  # what to call the values in the message
    types: tuple[type, ...] = ()
    bits: int = 64  # integers must fit in this many bits (SQLite binds no wider one)
    integer: bool = False  # an integer column: written values must be integers
    parse_uuids: bool = False  # text for a UUID column becomes a UUID
    names: frozenset[str] = frozenset()  # the strings an enum column stores


# Column -> what its filters take, or None: not checked. Weak: models made
# and dropped at run time (tests, dynamic tables) take their columns along.
_ACCEPTED: weakref.WeakKeyDictionary[Column[Any], _Accepted | None] = weakref.WeakKeyDictionary()


def _accepted(column: Column[Any]) -> _Accepted | None:
    type_ = column.type
    if isinstance(type_, TypeDecorator):
        return None  # a custom type may take values of its own kind and convert them
    try:
        python_type: type = type_.python_type
    except NotImplementedError:
        return None
    if isinstance(type_, Uuid):
        # UUID objects or text, whichever the column hands back (as_uuid).
        return _Accepted("uuid", "a UUID", parse_uuids=python_type is uuid.UUID)
    if python_type is bool:
        return _Accepted("boolean", "a boolean")
    if python_type in _NUMBERS:
        # The portable range of the declared integer type: PostgreSQL holds an
        # INTEGER to 32 bits (SQLite would store more, and compare it).
        bits = 64
        if isinstance(type_, SmallInteger):
            bits = 16
        elif isinstance(type_, Integer) and not isinstance(type_, BigInteger):
            bits = 32
        return _Accepted("number", "a number", bits=bits, integer=python_type is int)
    if isinstance(type_, SAEnum) and issubclass(python_type, enum.Enum):
        return _Accepted(
            "enum",
            f"a {python_type.__name__} member or name",
            types=(python_type,),
            names=frozenset(type_.enums),
        )
    if python_type is str:
        return _Accepted("types", "text", (str,))
    if python_type is datetime:
        return _Accepted("types", "a datetime", (datetime,))
    if python_type is date:
        return _Accepted("types", "a date", (date,))
    if python_type in (time, timedelta):
        return _Accepted("types", f"a {python_type.__name__}", (python_type,))
    if python_type is bytes:
        return _Accepted("types", "bytes", (bytes, bytearray, memoryview))
    return None  # JSON, arrays and the like: the column type decides


def filter_values(name: str, column: Column[Any], values: list[Any]) -> list[Any]:
    """``values`` checked against ``column``'s type; UUIDs given as text parsed.

    None is left as it is (IS NULL). A boolean is not a number here, an
    integer (numpy's too) must fit the declared integer type, and an enum
    column takes its members or the strings it stores.

    Raises:
        InvalidInputError: A value the column cannot be compared with (422).
    """
    return _checked(name, column, values, writing=False)


def write_values(name: str, column: Column[Any], values: list[Any]) -> list[Any]:
    """``values`` to store in ``column``, checked as :func:`filter_values` checks them,
    except that an integer column takes integers only (1.7 is not rounded) and a
    float or numeric column takes integers of any size (stored, not compared).
    SQL expressions (``Video.views + 1``) are left to the database.

    Raises:
        InvalidInputError: A value the column cannot hold (422, ``invalid_value``).
    """
    return _checked(name, column, values, writing=True)


@dataclass(frozen=True, slots=True)
class WriteSpec:
    """How to check one column's written values quickly (see :func:`checked_row`)."""

    column: Column[Any]
    exact: frozenset[type]  # values of exactly these types pass at once
    limit: int  # ints in [-limit, limit) pass at once


def write_specs(columns: Mapping[str, Column[Any]]) -> dict[str, WriteSpec]:
    """A :class:`WriteSpec` for each of ``columns`` (by field name) whose type is checked."""
    specs: dict[str, WriteSpec] = {}
    for name, column in columns.items():
        accepted = _accepted(column)
        if accepted is None:
            continue
        exact: set[type] = set()
        limit = 0
        if accepted.kind == "number":
            if accepted.integer:
                limit = 2 ** (accepted.bits - 1)
            else:  # a float or numeric column stores an integer of any size
                exact = {int, float, Decimal}
        elif accepted.kind == "boolean":
            exact = {bool}
        elif accepted.kind == "uuid":
            exact = {uuid.UUID} if accepted.parse_uuids else {uuid.UUID, str}
        else:  # enum members, text, datetimes...: names given for an enum take the full check
            exact = set(accepted.types)
        specs[name] = WriteSpec(column, frozenset(exact), limit)
    return specs


def checked_row(specs: Mapping[str, WriteSpec], row: dict[str, Any]) -> None:
    """``row`` (the caller's own) with its values checked as :func:`write_values`
    checks them, converted in place (UUID text). Cheap for the values that pass
    at once (an exact type).

    Raises:
        InvalidInputError: A value its column cannot hold (422).
    """
    for key, value in row.items():
        if value is None:
            continue
        spec = specs.get(key)
        if spec is None:
            continue
        kind = type(value)
        if kind in spec.exact or (kind is int and -spec.limit <= value < spec.limit):
            continue
        checked = write_values(key, spec.column, [value])[0]
        if checked is not value:
            row[key] = checked  # a new value, not a new key: iterating on is safe


def check_columns(
    specs: Mapping[str, WriteSpec],
    rows: Sequence[dict[str, Any]],
    names: Mapping[str, str],
) -> None:
    """``rows`` (the caller's own) checked as :func:`checked_row` checks one, column by
    column, converted in place: the bulk writes' check, cheaper than one row at a time.

    Args:
        specs: By the rows' keys.
        names: The field name to report for each key.

    Raises:
        InvalidInputError: A value its column cannot hold (422).
    """
    for key, spec in specs.items():
        try:
            types = set(map(type, map(itemgetter(key), rows)))  # no Python frame per row
        except KeyError:  # rows that leave the column out (it takes its server default)
            types = {type(row.get(key)) for row in rows}
        types.discard(type(None))
        if types <= spec.exact:
            continue
        if int in types and types - {int} <= spec.exact:
            ints = [value for row in rows if type(value := row.get(key)) is int]
            if -spec.limit <= min(ints) and max(ints) < spec.limit:
                continue
        name = names.get(key, key)
        for row in rows:
            value = row.get(key)
            if value is not None:
                checked = write_values(name, spec.column, [value])[0]
                if checked is not value:
                    row[key] = checked


def _checked(name: str, column: Column[Any], values: list[Any], *, writing: bool) -> list[Any]:
    try:
        accepted = _ACCEPTED[column]
    except KeyError:
        accepted = _ACCEPTED[column] = _accepted(column)
    if accepted is None:
        return values
    kind = accepted.kind
    for index, value in enumerate(values):
        if value is None:
            continue
        if kind == "number":
            if type(value).__name__ in _BOOLEAN_TYPES:
                pass
            elif isinstance(value, numbers.Integral):
                if writing and not accepted.integer:
                    continue  # stored as a float or numeric: the drivers convert any size
                limit = 2 ** (accepted.bits - 1)
                if -limit <= operator.index(value) < limit:
                    continue
                _refuse(name, f"Number out of range ({accepted.bits}-bit integers)", writing)
            elif isinstance(value, numbers.Real | Decimal):
                if not (writing and accepted.integer):
                    continue
                _refuse(name, "Expected an integer", writing)
        elif kind == "boolean":
            if type(value).__name__ in _BOOLEAN_TYPES:
                continue
        elif kind == "uuid":
            if isinstance(value, uuid.UUID):
                continue
            if isinstance(value, str):
                if not accepted.parse_uuids:
                    continue
                # Parsed here: SQLite's UUID column takes UUID objects only.
                try:
                    values[index] = uuid.UUID(value)
                except ValueError:
                    _refuse(name, "Not a valid UUID", writing)
                continue
        elif kind == "enum":
            if isinstance(value, accepted.types):
                continue
            if isinstance(value, str):
                if value in accepted.names:
                    continue
                _refuse(name, f"Expected {accepted.name}, got an unknown name", writing)
        elif isinstance(value, accepted.types):
            continue
        if writing and isinstance(value, ClauseElement | QueryableAttribute):
            continue  # computed by the database
        expected = "an integer" if writing and accepted.integer else accepted.name
        _refuse(name, f"Expected {expected}, got {type(value).__name__}", writing)
    return values


def _refuse(name: str, message: str, writing: bool) -> NoReturn:
    if writing:
        raise InvalidInputError(
            f"Invalid value for field {name!r}: {message}",
            details=[ErrorDetail(code="invalid_value", message=message, field=name)],
        )
    raise InvalidInputError(
        f"Invalid value for filter {name!r}: {message}",
        details=[ErrorDetail(code="invalid_filter_value", message=message, field=name)],
    )
