"""Keyword filter values checked against their column's type, for every column type."""

from __future__ import annotations

import enum
import gc
import uuid
import weakref
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Enum,
    Float,
    Integer,
    Interval,
    LargeBinary,
    Numeric,
    SmallInteger,
    String,
    Time,
    Uuid,
)

from heygen_conventions import InvalidInputError
from heygen_conventions._filters import filter_values
from heygen_conventions.db import UTCDateTime


class Color(enum.Enum):
    RED = "red"


ID = uuid.uuid4()
NOW = datetime.now(UTC)


@pytest.mark.parametrize(
    ("type_", "good", "bad", "message"),
    [
        (SmallInteger(), [2**15 - 1, -(2**15)], 2**15, "Number out of range (16-bit integers)"),
        (Integer(), [2**31 - 1, 1.5, Decimal(2)], -(2**31) - 1, "(32-bit integers)"),
        (BigInteger(), [2**63 - 1, -(2**63)], 2**63, "Number out of range (64-bit integers)"),
        (Numeric(), [Decimal("1.5"), 2, 0.5], "1.5", "Expected a number, got str"),
        (Float(), [0.5, 2], True, "Expected a number, got bool"),
        (Boolean(), [True, False], 1, "Expected a boolean, got int"),
        (String(), ["a", Color.RED.value], b"a", "Expected text, got bytes"),
        (Uuid(), [ID], "zz", "Not a valid UUID"),
        (Enum(Color), [Color.RED, "RED"], 1, "Expected a Color member or name, got int"),
        (Enum(Color), [Color.RED], "purple", "Color member or name, got an unknown name"),
        (Uuid(as_uuid=False), [ID, str(ID)], 7, "Expected a UUID, got int"),
        (DateTime(timezone=True), [NOW], "2024-01-01", "Expected a datetime, got str"),
        (Date(), [date(2024, 1, 1), NOW], "2024-01-01", "Expected a date, got str"),
        (Time(), [time(1, 2)], 3600, "Expected a time, got int"),
        (LargeBinary(), [b"a", bytearray(b"a")], "a", "Expected bytes, got str"),
    ],
)
def test_each_column_type_takes_its_own_values(
    type_: Any, good: list[Any], bad: Any, message: str
) -> None:
    column: Column[Any] = Column("field", type_)
    assert filter_values("field", column, [*good, None]) == [*good, None]
    with pytest.raises(InvalidInputError) as raised:
        filter_values("field", column, [*good, bad])
    (detail,) = raised.value.details
    assert (detail.code, detail.field) == ("invalid_filter_value", "field")
    assert message in detail.message
    assert "field" in str(raised.value)


def test_uuids_given_as_text_are_parsed() -> None:
    column: Column[Any] = Column("id", Uuid())
    assert filter_values("id", column, [str(ID), ID.hex]) == [ID, ID]


@pytest.mark.parametrize("type_", [JSON(), UTCDateTime(), Interval()])
def test_types_that_decide_for_themselves_are_not_checked(type_: Any) -> None:
    # JSON takes any shape; a TypeDecorator (Interval is one) may convert values of its own kind.
    column: Column[Any] = Column("field", type_)
    values = [{"a": 1}, "text", 5]
    assert filter_values("field", column, values) == values


class Wide(int):
    """An int subclass (IntEnum members, numpy-style integers): range-checked all the same."""


class bool_:  # named as numpy names its boolean, which is no subclass of bool
    def __bool__(self) -> bool:
        return True


def test_integers_of_any_integral_type_are_range_checked() -> None:
    column: Column[Any] = Column("n", BigInteger())
    assert filter_values("n", column, [Wide(5)]) == [Wide(5)]
    with pytest.raises(InvalidInputError, match="out of range"):
        filter_values("n", column, [Wide(2**70)])


def test_numpy_style_booleans_are_booleans_not_numbers() -> None:
    flag = bool_()
    assert filter_values("f", Column("f", Boolean()), [flag]) == [flag]
    with pytest.raises(InvalidInputError, match="Expected a number, got bool_"):
        filter_values("n", Column("n", Integer()), [flag])


def test_text_for_a_uuid_column_that_keeps_text_stays_text() -> None:
    column: Column[Any] = Column("id", Uuid(as_uuid=False))
    assert filter_values("id", column, [str(ID)]) == [str(ID)]


def test_columns_dropped_at_run_time_are_not_kept_alive() -> None:
    column: Column[Any] = Column("n", Integer())
    filter_values("n", column, [1])
    alive = weakref.ref(column)
    del column
    gc.collect()
    assert alive() is None
