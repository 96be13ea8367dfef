"""Bulk writes for the repository: rows with their Python defaults, fast inserts, upserts.

When every value of a new row is known in Python (client-made UUID keys,
callable timestamp defaults), nothing needs reading back: PostgreSQL takes
a whole batch as one ``INSERT ... SELECT FROM unnest(...)`` with one array
parameter per column, SQLite an executemany, and the ORM instances are
built from the values sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
from sqlalchemy.orm import Mapper, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.schema import Column
from sqlalchemy.types import TypeDecorator, TypeEngine

# Bound parameters per statement stay under both PostgreSQL's (32767) and
# SQLite's (32766) limits.
MAX_PARAMETERS = 30_000

# Types PostgreSQL takes as arrays in one unnest() insert; others use executemany.
_ARRAY_SAFE_TYPES = (Boolean, Date, DateTime, Float, Integer, Interval, Numeric, String, Time, Uuid)

_UPSERT_INSERTS: dict[str, Any] = {"postgresql": postgresql_insert, "sqlite": sqlite_insert}


class _Scalar:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


@dataclass(frozen=True)
class BulkPlan:
    """What a model's bulk writes need to know, worked out once per mapper."""

    defaults: dict[str, Any]  # column key -> zero-argument callable or _Scalar
    from_database: frozenset[str]  # column keys the database fills in
    attribute_of: dict[str, str]  # column key -> mapped attribute key
    column_of: dict[str, str]  # mapped attribute key -> column key
    collections: tuple[str, ...]  # one-to-many / many-to-many relationship keys
    relationships: frozenset[str]


_PLANS: dict[Mapper[Any], BulkPlan] = {}


def plan_for(mapper: Mapper[Any]) -> BulkPlan:
    plan = _PLANS.get(mapper)
    if plan is not None:
        return plan
    table = mapper.local_table
    defaults: dict[str, Any] = {}
    from_database: set[str] = set()
    for column in table.columns:
        default: Any = column.default
        # SQLAlchemy wraps a function of no arguments (functools.wraps sets
        # __wrapped__); one that takes the execution context cannot run here.
        if getattr(default, "is_callable", False) and hasattr(default.arg, "__wrapped__"):
            defaults[column.key] = default.arg.__wrapped__
        elif getattr(default, "is_scalar", False):
            defaults[column.key] = _Scalar(default.arg)
        elif (
            default is not None
            or column.server_default is not None
            or column.computed is not None
            or column.identity is not None
            or column is getattr(table, "autoincrement_column", None)
        ):
            from_database.add(column.key)
    attribute_of = {
        column.key: mapper.get_property_by_column(column).key for column in mapper.columns
    }
    plan = BulkPlan(
        defaults=defaults,
        from_database=frozenset(from_database),
        attribute_of=attribute_of,
        column_of={attribute: column for column, attribute in attribute_of.items()},
        collections=tuple(rel.key for rel in mapper.relationships if rel.uselist),
        relationships=frozenset(rel.key for rel in mapper.relationships),
    )
    _PLANS[mapper] = plan
    return plan


def complete_row(plan: BulkPlan, values: Mapping[str, Any]) -> dict[str, Any]:
    """Column-keyed values of one new row, Python defaults filled in."""
    row = {plan.column_of[key]: value for key, value in values.items()}
    for key, default in plan.defaults.items():
        if key not in row:
            row[key] = default.value if isinstance(default, _Scalar) else default()
    return row


def needs_database_values(plan: BulkPlan, rows: Sequence[Mapping[str, Any]]) -> bool:
    return any(key not in row for row in rows for key in plan.from_database)


def mark_new_collections_empty(plan: BulkPlan, obj: Any) -> None:
    # A row that did not exist before this flush has no children yet; saying
    # so spares an (async-illegal) lazy load when the caller reads them.
    state_dict = obj.__dict__
    for key in plan.collections:
        if key not in state_dict:
            set_committed_value(obj, key, [])


def attach(mapper: Mapper[Any], plan: BulkPlan, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Persistent-ready instances for rows just inserted, without reading them back."""
    new_instance = mapper.class_manager.new_instance
    attribute_of = plan.attribute_of
    objects = []
    for row in rows:
        obj = new_instance()
        # Every column value is known (sent or defaulted; the rest NULL), so the
        # instance is complete; filling its dict directly leaves no change history.
        state_dict = obj.__dict__
        for column_key, attribute in attribute_of.items():
            state_dict[attribute] = row.get(column_key)
        make_transient_to_detached(obj)
        mark_new_collections_empty(plan, obj)
        objects.append(obj)
    return objects


def array_safe(type_: TypeEngine[Any]) -> bool:
    while isinstance(type_, TypeDecorator):
        type_ = type_.impl_instance
    return isinstance(type_, _ARRAY_SAFE_TYPES) and not isinstance(type_, SAEnum | ARRAY)


def unnest_insert(table: Table, keys: Sequence[str]) -> Any:
    """``INSERT INTO t (a, b) SELECT * FROM unnest(:p_a, :p_b)``: one parameter per column."""
    columns = [table.c[key] for key in keys]
    source = (
        func.unnest(*(bindparam(f"p_{c.key}", type_=ARRAY(c.type)) for c in columns))
        .table_valued(*keys)
        .render_derived()
    )
    return insert(table).from_select(list(keys), select(*(source.c[key] for key in keys)))


def upsert_statement(
    dialect: str,
    model: Any,
    mapper: Mapper[Any],
    values: list[dict[str, Any]],
    conflict_columns: Sequence[Column[Any]],
    update_columns: Sequence[str] | None,
    *,
    report_inserted: bool,
) -> Any:
    """One ``INSERT ... VALUES (...), (...) ON CONFLICT (...) DO UPDATE ... RETURNING``.

    Args:
        values: Rows keyed by mapped attribute, all with the same keys.
        update_columns: Column keys to overwrite; None for every given column
            but the conflict key, the primary key and ``created_at``.
        report_inserted: Also return whether each row was inserted
            (PostgreSQL's ``xmax = 0``), for keys the database makes.
    """
    if dialect not in _UPSERT_INSERTS:  # pragma: no cover - PostgreSQL and SQLite only
        raise NotImplementedError(f"upsert is not implemented for {dialect}")
    table = mapper.local_table
    plan = plan_for(mapper)
    statement = _UPSERT_INSERTS[dialect](model).values(values)
    excluded = statement.excluded
    given = {plan.column_of[key] for key in values[0]}
    conflict_keys = {column.key for column in conflict_columns}
    pk_keys = {column.key for column in mapper.primary_key}
    if update_columns is None:
        targets = [
            key
            for key in given
            if key not in conflict_keys and key not in pk_keys and key != "created_at"
        ]
    else:
        targets = list(update_columns)
    set_: dict[str, Any] = {key: excluded[key] for key in sorted(targets)}
    for column in table.columns:
        if column.onupdate is not None and column.key not in set_ and column.key in given:
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
    if report_inserted:
        # xmax is 0 on a row version this statement inserted (constant SQL, no input).
        return statement.returning(model, literal_column("(xmax = 0)", Boolean))
    return statement.returning(model)
