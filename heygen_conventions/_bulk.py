"""Bulk writes for the repository: rows with their Python defaults, batched statements.

On PostgreSQL a batch of rows is one ``INSERT ... SELECT FROM unnest(:a,
:b, ...)``: one array parameter per column however many rows, instead of a
parameter per value (which caps a statement at a few thousand rows) or a
statement per row. ``RETURNING`` hands the rows back as ORM objects, put
back in input order by the primary key made in Python. Elsewhere (SQLite)
batches are multi-row ``VALUES``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ARRAY,
    Boolean,
    Date,
    DateTime,
    Float,
    Integer,
    Interval,
    Numeric,
    Select,
    String,
    Table,
    Time,
    Uuid,
    bindparam,
    func,
    insert,
    literal_column,
    select,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapper
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.schema import Column
from sqlalchemy.types import TypeDecorator, TypeEngine

# Bound parameters per statement stay under both PostgreSQL's (32767) and
# SQLite's (32766) limits.
MAX_PARAMETERS = 30_000

# Types PostgreSQL takes as arrays in one unnest(); a batch with others is sent as VALUES.
_ARRAY_SAFE_TYPES = (Boolean, Date, DateTime, Float, Integer, Interval, Numeric, String, Time, Uuid)

_UPSERT_INSERTS: dict[str, Any] = {"postgresql": postgresql_insert, "sqlite": sqlite_insert}


class _Scalar:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


@dataclass(frozen=True)
class BulkPlan:
    """What a model's bulk writes need to know, worked out once per mapper."""

    table: Table
    defaults: dict[str, Any]  # column key -> zero-argument callable or _Scalar
    attribute_of: dict[str, str]  # column key -> mapped attribute key
    column_of: dict[str, str]  # mapped attribute key -> column key
    pk_keys: tuple[str, ...]  # column keys of the primary key
    pk_made_here: bool  # every primary key column has a Python default
    collections: tuple[str, ...]  # one-to-many / many-to-many relationship keys
    relationships: frozenset[str]
    attributes: frozenset[str]  # every mapped attribute key


_PLANS: dict[Mapper[Any], BulkPlan] = {}


def plan_for(mapper: Mapper[Any]) -> BulkPlan:
    plan = _PLANS.get(mapper)
    if plan is not None:
        return plan
    table = mapper.local_table
    assert isinstance(table, Table)
    defaults: dict[str, Any] = {}
    for column in table.columns:
        default: Any = column.default
        # SQLAlchemy wraps a function of no arguments (functools.wraps sets
        # __wrapped__); one that takes the execution context runs in the
        # statement instead.
        if getattr(default, "is_callable", False) and hasattr(default.arg, "__wrapped__"):
            defaults[column.key] = default.arg.__wrapped__
        elif getattr(default, "is_scalar", False):
            defaults[column.key] = _Scalar(default.arg)
    attribute_of = {
        column.key: mapper.get_property_by_column(column).key for column in mapper.columns
    }
    pk_keys = tuple(str(column.key) for column in mapper.primary_key)
    plan = BulkPlan(
        table=table,
        defaults=defaults,
        attribute_of=attribute_of,
        column_of={attribute: column for column, attribute in attribute_of.items()},
        pk_keys=pk_keys,
        pk_made_here=all(key in defaults for key in pk_keys),
        collections=tuple(rel.key for rel in mapper.relationships if rel.uselist),
        relationships=frozenset(rel.key for rel in mapper.relationships),
        attributes=frozenset(mapper.attrs.keys()),
    )
    _PLANS[mapper] = plan
    return plan


def complete_row(plan: BulkPlan, values: Mapping[str, Any]) -> dict[str, Any]:
    """Column-keyed values of one new row, Python defaults filled in."""
    column_of = plan.column_of
    row = {column_of[key]: value for key, value in values.items()}
    for key, default in plan.defaults.items():
        if key not in row:
            row[key] = default.value if type(default) is _Scalar else default()
    return row


def by_fields(
    rows: Iterable[tuple[Any, dict[str, Any]]],
) -> list[tuple[tuple[str, ...], list[tuple[Any, dict[str, Any]]]]]:
    """Rows (tagged) grouped by the columns they give: each group can share statements.

    A row leaving out a column must not send NULL for it (it would override
    the column's server default), so rows giving different columns never
    share a statement. Groups come in the order of their first row.
    """
    groups: dict[frozenset[str], list[tuple[Any, dict[str, Any]]]] = {}
    for pair in rows:
        fields = frozenset(pair[1])
        group = groups.get(fields)
        if group is None:
            groups[fields] = group = []
        group.append(pair)
    return [(tuple(sorted(fields)), group) for fields, group in groups.items()]


def mark_new_collections_empty(plan: BulkPlan, obj: Any) -> None:
    # A row that did not exist before this statement has no children yet;
    # saying so spares an (async-illegal) lazy load when the caller reads them.
    state_dict = obj.__dict__
    for key in plan.collections:
        if key not in state_dict:
            set_committed_value(obj, key, [])


def _array_safe(type_: TypeEngine[Any]) -> bool:
    while isinstance(type_, TypeDecorator):
        type_ = type_.impl_instance
    return isinstance(type_, _ARRAY_SAFE_TYPES) and not isinstance(type_, SAEnum | ARRAY)


def can_unnest(dialect: str, table: Table, keys: Sequence[str]) -> bool:
    return dialect == "postgresql" and all(_array_safe(table.c[key].type) for key in keys)


def rows_per_statement(dialect: str, table: Table, keys: Sequence[str], batch_size: int) -> int:
    if can_unnest(dialect, table, keys):
        return batch_size
    return max(1, min(batch_size, MAX_PARAMETERS // max(1, len(keys))))


def _unnest(table: Table, keys: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> Select[Any]:
    source = (
        func.unnest(
            *(
                bindparam(
                    f"p_{key}", value=[row[key] for row in rows], type_=ARRAY(table.c[key].type)
                )
                for key in keys
            )
        )
        .table_valued(*keys)
        .render_derived()
    )
    return select(*(source.c[key] for key in keys))


def insert_statement(
    dialect: str,
    model: Any,
    plan: BulkPlan,
    keys: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
) -> Any:
    """``INSERT`` of ``rows`` (all giving ``keys``), ``RETURNING`` the ORM objects."""
    table = plan.table
    insert_ = _UPSERT_INSERTS.get(dialect, insert)
    if can_unnest(dialect, table, keys):
        statement = insert_(model).from_select(
            [table.c[key] for key in keys], _unnest(table, keys, rows)
        )
    else:
        attribute_of = plan.attribute_of
        statement = insert_(model).values(
            [{attribute_of[key]: row[key] for key in keys} for row in rows]
        )
    return statement


def upsert_statement(
    dialect: str,
    model: Any,
    mapper: Mapper[Any],
    keys: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    conflict_columns: Sequence[Column[Any]],
    update_columns: Sequence[str] | None,
    *,
    report_inserted: bool,
    objects: bool = True,
) -> Any:
    """One ``INSERT ... ON CONFLICT (...) DO UPDATE ... RETURNING`` for ``rows``.

    Args:
        keys: Column keys every row gives.
        update_columns: Column keys to overwrite; None for every given column
            but the conflict key, the primary key and ``created_at``.
        report_inserted: Also return whether each row was inserted
            (PostgreSQL's ``xmax = 0``), for keys the database makes.
        objects: Return the ORM objects; else only the primary key and the
            conflict key of each row.
    """
    if dialect not in _UPSERT_INSERTS:  # pragma: no cover - PostgreSQL and SQLite only
        raise NotImplementedError(f"upsert is not implemented for {dialect}")
    plan = plan_for(mapper)
    statement = insert_statement(dialect, model, plan, keys, rows)
    excluded = statement.excluded
    conflict_keys = {column.key for column in conflict_columns}
    if update_columns is None:
        targets = [
            key
            for key in keys
            if key not in conflict_keys and key not in plan.pk_keys and key != "created_at"
        ]
    else:
        targets = list(update_columns)
    set_: dict[str, Any] = {key: excluded[key] for key in sorted(targets)}
    for column in plan.table.columns:
        if column.onupdate is not None and column.key not in set_ and column.key in keys:
            set_[column.key] = excluded[column.key]  # e.g. updated_at: this write's time
    version_column = mapper.version_id_col
    if version_column is not None:
        version_key = mapper.get_property_by_column(version_column).key
        set_[plan.column_of[version_key]] = getattr(model, version_key) + 1
    index_elements = [column.key for column in conflict_columns]
    if not set_:
        # Nothing to change, but RETURNING needs the row: a no-op update.
        set_ = {index_elements[0]: excluded[index_elements[0]]}
    statement = statement.on_conflict_do_update(index_elements=index_elements, set_=set_)
    returned: list[Any] = (
        [model] if objects else [*(plan.table.c[key] for key in plan.pk_keys), *conflict_columns]
    )
    if report_inserted:
        # xmax is 0 on a row version this statement inserted (constant SQL, no input).
        returned.append(literal_column("(xmax = 0)", Boolean))
    return statement.returning(*returned)
