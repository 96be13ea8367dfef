"""Bulk writes for the repository: rows with their Python defaults, batched statements.

On PostgreSQL a batch of rows is one ``INSERT ... SELECT FROM unnest(:a,
:b, ...)``: one array parameter per column however many rows, instead of a
parameter per value (which caps a statement at a few thousand rows) or a
statement per row. Elsewhere (SQLite) batches are multi-row ``VALUES``.

The ORM objects a bulk write returns are built from the values sent, not
loaded from ``RETURNING`` rows: the primary key and timestamps are made in
Python, so only the columns the database fills in (server defaults, or the
columns an upsert kept) are read back, as plain tuples. Building an object
and putting it in the session's identity map costs a few microseconds;
loading it from a row costs several times that, as much as the insert itself
for large batches.

Filters on many values (``id=[...]``) are bulk input too: past
``IN_LIST_MAX`` values they bind as one parameter (an array on PostgreSQL,
a JSON array read with ``json_each`` on SQLite), never one per value.
"""

from __future__ import annotations

import gc
import math
import numbers
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import orjson
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
    Text,
    Time,
    Uuid,
    any_,
    bindparam,
    func,
    insert,
    literal_column,
    select,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapper, QueryableAttribute, Session
from sqlalchemy.orm.attributes import instance_state, set_committed_value
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.schema import Column
from sqlalchemy.types import TypeDecorator, TypeEngine

from heygen_conventions._filters import WriteSpec, check_columns, write_specs
from heygen_conventions.db import utcnow, uuid7, uuid7_many
from heygen_conventions.errors import InvalidInputError
from heygen_conventions.responses import ErrorDetail

# Bound parameters per statement stay under both PostgreSQL's (32767) and
# SQLite's (32766) limits.
MAX_PARAMETERS = 30_000
# Values an IN filter sends one parameter each; a longer list is one parameter,
# so that several lists and the other filters of a statement stay under the limits.
IN_LIST_MAX = 1_000

# Types PostgreSQL takes as arrays in one unnest(); a batch with others is sent as VALUES.
_ARRAY_SAFE_TYPES = (Boolean, Date, DateTime, Float, Integer, Interval, Numeric, String, Time, Uuid)

# Primary-key defaults that never repeat a value: a key one made cannot be held yet.
_UNIQUE_IDS: frozenset[Any] = frozenset(
    function for function in (uuid7, uuid.uuid4, getattr(uuid, "uuid7", None)) if function
)

_UPSERT_INSERTS: dict[str, Any] = {"postgresql": postgresql_insert, "sqlite": sqlite_insert}

# What Session.add() runs for a detached object, minus a cascade walk that
# rows without related objects never need and that costs several times the
# rest. Private to SQLAlchemy: without it, Session.add() does the same work.
_ATTACH_DETACHED: Any = getattr(Session, "_update_impl", None)
# Cheaper still: what the ORM's own loader does with a row it has not seen
# (sqlalchemy/orm/loading.py): the state joins the identity map directly.
# Used when the identity map has that (private) method.
_ATTACH_AS_LOADED = True


@contextmanager
def collector_paused() -> Iterator[None]:
    """Hold off CPython's cyclic garbage collector for a burst of long-lived objects.

    Building the objects of a bulk write makes about ten tracked containers
    per row, none of them garbage; with the collector running, 10,000 rows
    set off two or three full collections, each walking the whole heap (as
    much time as the SQL in a large application). Only synchronous sections
    are wrapped, so no other coroutine runs meanwhile; the collector's
    counters keep counting, and it runs as usual at the next allocation
    after. Nested or concurrent pauses leave it to the one that turned it off.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def require_one_table(plan: BulkPlan) -> None:
    """Refuse a bulk write of rows that span several tables (joined-table inheritance)."""
    if not plan.one_table:
        name = plan.mapper.class_.__name__
        raise TypeError(
            f"Bulk writes insert into one table; a {name} row spans several tables "
            "(joined-table inheritance): use create() for each row"
        )


def tuple_getter(keys: Sequence[Any]) -> Callable[[Any], tuple[Any, ...]]:
    """``row -> tuple(row[key] for key in keys)``, with ``operator.itemgetter``'s speed."""
    if len(keys) == 1:
        get_one = itemgetter(keys[0])
        return lambda row: (get_one(row),)
    return itemgetter(*keys)


class _Scalar:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


@dataclass(frozen=True)
class BulkPlan:
    """What a model's bulk writes need to know, worked out once per mapper."""

    mapper: Mapper[Any]
    table: Table
    columns: tuple[str, ...]  # every column key of the table
    defaults: dict[str, Any]  # column key -> zero-argument callable or _Scalar
    attribute_of: dict[str, str]  # column key -> mapped attribute key
    column_of: dict[str, str]  # mapped attribute key -> column key
    pk_keys: tuple[str, ...]  # column keys of the primary key
    pk_types: tuple[type, ...] | None  # their Python types (None: unknown)
    pk_made_here: bool  # every primary key column has a Python default
    nulls: tuple[str, ...]  # nullable columns with no default at all: NULL unless given
    keys_match: bool  # every column is mapped, under its own key
    collections: tuple[str, ...]  # one-to-many / many-to-many relationship keys
    relationships: frozenset[str]
    attributes: frozenset[str]  # every mapped attribute key
    # Attribute keys of columns with a default (Python or server) that take None
    # as "not given", as the ORM's INSERT does (types that store None as JSON null aside).
    defaulted: frozenset[str]
    one_table: bool  # False for joined-table inheritance: a row spans several tables
    write_specs: dict[str, WriteSpec]  # attribute key -> how its written values are checked
    column_write_specs: dict[str, WriteSpec]  # the same by column key
    stamped: tuple[str, ...]  # column keys whose default is utcnow: one instant per new row


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
    discriminator = mapper.polymorphic_on
    if (
        isinstance(discriminator, Column)
        and discriminator.table is table
        and mapper.polymorphic_identity is not None
    ):
        # Single-table inheritance: each row says which class it is, as the ORM's INSERT does.
        defaults[str(discriminator.key)] = _Scalar(mapper.polymorphic_identity)
    # The table's own columns: mapper.columns also holds column_property expressions.
    attribute_of = {
        column.key: mapper.get_property_by_column(column).key
        for column in mapper.columns
        if table.c.contains_column(column)
    }
    pk_keys = tuple(str(column.key) for column in mapper.primary_key)
    checks = write_specs(
        {
            prop.key: prop.columns[0]
            for prop in mapper.column_attrs
            if isinstance(prop.columns[0], Column)
        }
    )
    column_of = {attribute: column for column, attribute in attribute_of.items()}
    plan = BulkPlan(
        mapper=mapper,
        table=table,
        columns=tuple(str(column.key) for column in table.columns),
        defaults=defaults,
        attribute_of=attribute_of,
        column_of=column_of,
        pk_keys=pk_keys,
        pk_types=_python_types(mapper.primary_key),
        pk_made_here=all(key in defaults for key in pk_keys),
        nulls=tuple(
            str(column.key)
            for column in table.columns
            if column.nullable
            and not column.primary_key
            and column.default is None
            and column.server_default is None
        ),
        keys_match=all(attribute_of.get(column.key) == column.key for column in table.columns),
        collections=tuple(rel.key for rel in mapper.relationships if rel.uselist),
        relationships=frozenset(rel.key for rel in mapper.relationships),
        attributes=frozenset(mapper.attrs.keys()),
        defaulted=frozenset(
            attribute_of[str(column.key)]
            for column in table.columns
            if str(column.key) in attribute_of
            and (column.default is not None or column.server_default is not None)
            and not column.type.should_evaluate_none
        ),
        one_table=len(mapper.tables) == 1,
        write_specs=checks,
        column_write_specs={
            column_of[key]: spec for key, spec in checks.items() if key in column_of
        },
        stamped=tuple(key for key, default in defaults.items() if default is utcnow),
    )
    _PLANS[mapper] = plan
    return plan


def _python_types(columns: Sequence[ColumnElement[Any]]) -> tuple[type, ...] | None:
    try:
        return tuple(column.type.python_type for column in columns)
    except NotImplementedError:  # pragma: no cover - every built-in key type has one
        return None


def without_default_nones(plan: BulkPlan, values: Mapping[str, Any]) -> Mapping[str, Any]:
    """``values`` less the None given for columns with a default: they take the default,
    as with ``Session.add()`` (a pydantic model dumps its unset optional fields as None)."""
    defaulted = plan.defaulted
    if not defaulted:
        return values
    try:
        if None not in values.values():  # C speed; compares with ==
            return values
    except Exception:  # noqa: S110 - a value whose == raises (a SQL expression): look at each
        pass
    return {k: v for k, v in values.items() if v is not None or k not in defaulted}


def check_rows(plan: BulkPlan, rows: Sequence[dict[str, Any]]) -> None:
    """Column-keyed rows of this call's own checked against the column types, in place."""
    if rows:
        check_columns(plan.column_write_specs, rows, plan.attribute_of)


def complete_rows(
    plan: BulkPlan, given: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], bool]:
    """Column-keyed values of new rows, Python defaults filled in, a column at a time.

    Ids from :func:`~heygen_conventions.uuid7` are made for the whole batch
    at once; a row taking both timestamps from ``utcnow`` gets one instant
    for both (``updated_at == created_at`` on a new row). Other defaults run
    once per row and column, as in the ORM's INSERT.

    Returns:
        The rows, and whether every row's primary key was made here by a
        unique-id generator (no object can hold it yet).
    """
    # ``given`` holds column attributes only (the repository refuses others).
    column_of = plan.column_of
    if plan.keys_match:  # attribute keys are column keys: a plain copy
        rows = [dict(values) for values in given]
    else:
        rows = [{column_of[key]: value for key, value in values.items()} for values in given]
    # Made here, and of the column's own type: a Uuid(as_uuid=False) key is read
    # back as text, which the object's identity must be (see keys_typed()).
    fresh_keys = plan.pk_types is not None and all(
        type_ is uuid.UUID
        and plan.defaults.get(key) in _UNIQUE_IDS
        and not any(key in row for row in rows)
        for key, type_ in zip(plan.pk_keys, plan.pk_types, strict=True)
    )
    for key, default in plan.defaults.items():
        if default is utcnow:
            continue  # below, for all such columns of a row at once
        missing = [row for row in rows if key not in row]
        if not missing:
            continue
        if type(default) is _Scalar:
            value = default.value
            for row in missing:
                row[key] = value
        elif default is uuid7:
            for row, made in zip(missing, uuid7_many(len(missing)), strict=True):
                row[key] = made
        else:
            for row in missing:
                row[key] = default()
    stamped = plan.stamped
    if stamped:
        for row in rows:
            now = None
            for key in stamped:
                if key not in row:
                    if now is None:
                        now = utcnow()
                    row[key] = now
    return rows, fresh_keys


def by_fields(items: Sequence[Any], *, second: bool = False) -> list[tuple[tuple[str, ...], Any]]:
    """Rows grouped by the columns they give: each group can share statements.

    ``items`` are rows, or with ``second`` pairs whose second item is the row.
    A row leaving out a column must not send NULL for it (it would override
    the column's server default), so rows giving different columns never
    share a statement. Groups come in the order of their first row; when all
    rows give the same columns (the usual case), the one group is ``items``.
    """
    if not items:
        return []
    rows: Iterable[dict[str, Any]] = map(itemgetter(1), items) if second else items
    first = (items[0][1] if second else items[0]).keys()
    if all(map(first.__eq__, map(dict.keys, rows))):
        return [(tuple(sorted(first)), items)]
    groups: dict[frozenset[str], list[Any]] = {}
    for item in items:
        fields = frozenset(item[1] if second else item)
        group = groups.get(fields)
        if group is None:
            groups[fields] = group = []
        group.append(item)
    return [(tuple(sorted(fields)), group) for fields, group in groups.items()]


def mark_new_collections_empty(plan: BulkPlan, obj: Any) -> None:
    # A row that did not exist before this statement has no children yet;
    # saying so spares an (async-illegal) lazy load when the caller reads them.
    state_dict = obj.__dict__
    for key in plan.collections:
        if key not in state_dict:
            set_committed_value(obj, key, [])


def keys_typed(plan: BulkPlan, rows: Iterable[Mapping[str, Any]]) -> bool:
    """Whether every row's primary key has its column's Python type.

    An object keyed by, say, a ``str`` UUID would sit in the identity map
    under another key than the row read back; such rows are loaded instead.
    """
    types = plan.pk_types
    if types is None:  # pragma: no cover - every built-in key type has one
        return False
    return all(
        isinstance(row[key], type_)
        for row in rows
        for key, type_ in zip(plan.pk_keys, types, strict=True)
    )


def add_nulls(plan: BulkPlan, rows: Iterable[dict[str, Any]]) -> None:
    """Give each row NULL for the columns it leaves out that have no default at all.

    What the ORM's own INSERT sends for them; it also lets rows that leave
    out different such columns share statements.
    """
    nulls = plan.nulls
    if nulls:
        for row in rows:
            for key in nulls:
                if key not in row:
                    row[key] = None


def filled_by_database(plan: BulkPlan, keys: Collection[str]) -> tuple[str, ...]:
    """Columns an INSERT of rows giving ``keys`` reads back: the primary key, then the
    ones the database fills in (server defaults); none when every column is given."""
    missing = [key for key in plan.columns if key not in keys]
    if not missing:
        return ()
    return (*plan.pk_keys, *(key for key in missing if key not in plan.pk_keys))


def persist(
    session: Session,
    plan: BulkPlan,
    rows: Iterable[dict[str, Any]],
    inserted: Sequence[bool] | None = None,
    *,
    fresh_keys: bool = False,
) -> list[Any]:
    """Objects for rows this session's transaction has just written, as a query would load them.

    Each row gives every column's value (by column key). An object the
    session already holds for a row takes the row's values, as with
    ``populate_existing``. The others are made without ``__init__``, their
    values committed (no history), and put in the identity map: persistent,
    with no SQL. ``load`` event listeners (``@reconstructor``) and the
    session's ``loaded_as_persistent`` listeners run, as for loaded objects.
    The rows are the caller's to give away: a row can become its new
    object's ``__dict__`` as it is, so it must not be used afterwards.

    The transaction learns of them as a flush tells it of the rows it
    writes: if it (or a savepoint) rolls back, objects for rows it inserted
    (``inserted``, by row; None: every row) leave the session, as
    :meth:`Session.add`-ed ones do, and the others are expired.
    ``fresh_keys`` says every row's key was just made (no object can hold it).
    The rows' primary keys must differ from one another (the caller's duty):
    when nothing is held, no row's key is looked up.
    """
    mapper = plan.mapper
    manager = mapper.class_manager
    new_instance = manager.new_instance
    on_load = manager.dispatch.load
    held = session.identity_map
    # Nothing to find when the keys were just made, or the session holds no
    # object at all (the rows' keys differ from one another).
    look_up = None if fresh_keys or not len(held) else held.get
    add_unpresent = getattr(held, "_add_unpresent", None) if _ATTACH_AS_LOADED else None
    # With the loader's own path: build the state and hand it the row as the
    # object's __dict__, as unpickling does, rather than copy every value into
    # a new dict (half the cost of an object, in building and in freeing).
    make_state: Any = getattr(manager, "_state_constructor", None) if add_unpresent else None
    state_attribute = manager.STATE_ATTR
    cls: Any = mapper.class_
    session_id = session.hash_key
    loaded_as_persistent = session.dispatch.loaded_as_persistent
    attribute_of = None if plan.keys_match else plan.attribute_of
    # What Session._register_altered() does for the states a flush wrote (private too).
    transaction = getattr(session, "_transaction", None)
    new_states: Any = getattr(transaction, "_new", None)
    changed_states: Any = getattr(transaction, "_dirty", None)
    track = new_states is not None and changed_states is not None
    objects: list[Any] = []
    pk_of = tuple_getter(plan.pk_keys)
    identity_key = mapper.identity_key_from_primary_key
    identity_class: Any = None  # the key's class and token, as that method makes them
    token: Any = None
    for index, row in enumerate(rows):
        if identity_class is None:
            key = identity_key(pk_of(row))
            identity_class, token = key[0], key[2]
        else:
            key = (identity_class, pk_of(row), token)
        values = (
            row
            if attribute_of is None
            else {attribute_of[k]: v for k, v in row.items() if k in attribute_of}
        )
        obj = None if look_up is None else look_up(key)
        if obj is not None:
            for name, value in values.items():
                set_committed_value(obj, name, value)
            if track:
                changed_states[instance_state(obj)] = True
        else:
            if make_state is not None:
                obj = cls.__new__(cls)
                state = make_state(obj, manager)
                values[state_attribute] = state
                obj.__dict__ = values
            else:
                obj = new_instance()
                state = instance_state(obj)
                state.dict.update(values)
            state.key = key
            if add_unpresent is not None:
                state.session_id = session_id
                add_unpresent(state, key)
            elif _ATTACH_DETACHED is not None:
                _ATTACH_DETACHED(session, state)
            else:
                session.add(obj)
            if on_load:
                on_load(state, None)
            if loaded_as_persistent:  # on every path: the objects are as loaded ones
                loaded_as_persistent(session, state)
            if track:
                if inserted is None or inserted[index]:
                    new_states[state] = True
                else:
                    changed_states[state] = True
        objects.append(obj)
    return objects


def inserted_in_transaction(session: Session, objects: Iterable[Any]) -> None:
    """Tell the session's transaction it inserted these objects' rows, as a flush does:
    if it (or a savepoint) rolls back, they leave the session (see :func:`persist`)."""
    new_states: Any = getattr(getattr(session, "_transaction", None), "_new", None)
    if new_states is not None:
        for obj in objects:
            new_states[instance_state(obj)] = True


def held_keys(
    session: Session, plan: BulkPlan, keys: Iterable[tuple[Any, ...]]
) -> list[tuple[Any, ...]]:
    """Those of these primary keys the session holds an object for."""
    held = session.identity_map
    if not len(held):
        return []
    identity_key = plan.mapper.identity_key_from_primary_key
    return [key for key in keys if held.get(identity_key(key)) is not None]


def _array_safe(type_: TypeEngine[Any]) -> bool:
    type_ = _unwrapped(type_)
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
    plan: BulkPlan,
    keys: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
) -> Any:
    """``INSERT`` of ``rows`` (all giving ``keys``, by column key) into the model's table.

    A Core statement: what it returns comes back as plain rows, without
    the ORM's bulk-insert machinery in between.
    """
    table = plan.table
    insert_ = _UPSERT_INSERTS.get(dialect, insert)
    if can_unnest(dialect, table, keys):
        return insert_(table).from_select(
            [table.c[key] for key in keys], _unnest(table, keys, rows)
        )
    return insert_(table).values([{key: row[key] for key in keys} for row in rows])


def upsert_statement(
    dialect: str,
    plan: BulkPlan,
    keys: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    conflict_columns: Sequence[Column[Any]],
    update_columns: Sequence[str] | None,
    *,
    report_inserted: bool,
    objects: bool = True,
) -> tuple[Any, tuple[str, ...]]:
    """One ``INSERT ... ON CONFLICT (...) DO UPDATE ... RETURNING`` for ``rows``.

    Args:
        keys: Column keys every row gives.
        update_columns: Column keys to overwrite; None for every given column
            but the conflict key, the primary key and ``created_at``.
        report_inserted: Also return whether each row was inserted
            (PostgreSQL's ``xmax = 0``): neither the key sent nor the key
            returned tells, when the caller gives the row's key.
        objects: Also return what the rows' objects need beyond the values
            sent: every column an existing row may keep (or the database
            fills in). Else only the primary key and the conflict key.

    Returns:
        The statement, and the column keys it returns, in order (the
        inserted flag, when asked for, follows them).
    """
    if dialect not in _UPSERT_INSERTS:  # pragma: no cover - PostgreSQL and SQLite only
        raise NotImplementedError(f"upsert is not implemented for {dialect}")
    statement = insert_statement(dialect, plan, keys, rows)
    excluded = statement.excluded
    conflict_keys = [str(column.key) for column in conflict_columns]
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
    # Columns that end up with the value sent, whether the row is inserted or updated
    # (a column not sent takes its default, which only the database knows).
    as_sent = {key for key in set_ if key in keys}
    version_column = plan.mapper.version_id_col
    if version_column is not None:
        version_key = str(version_column.key)
        set_[version_key] = plan.table.c[version_key] + 1
        as_sent.discard(version_key)
    if not set_:
        # Nothing to change, but RETURNING needs the row: a no-op update.
        set_ = {conflict_keys[0]: excluded[conflict_keys[0]]}
    statement = statement.on_conflict_do_update(index_elements=list(conflict_columns), set_=set_)
    returned = [*plan.pk_keys, *(key for key in conflict_keys if key not in plan.pk_keys)]
    if objects:
        returned.extend(key for key in plan.columns if key not in as_sent and key not in returned)
    columns: list[Any] = [plan.table.c[key] for key in returned]
    if report_inserted:
        # xmax is 0 on a row version this statement inserted (constant SQL, no input).
        columns.append(literal_column("(xmax = 0)", Boolean))
    return statement.returning(*columns), tuple(returned)


class _JSONList(TypeDecorator[list[Any]]):
    """A list bound as one JSON array, each value first bound as ``item_type`` would bind it."""

    impl = Text
    cache_ok = True

    def __init__(self, item_type: TypeEngine[Any]) -> None:
        super().__init__()
        self.item_type = item_type

    def process_bind_param(self, value: list[Any] | None, dialect: Dialect) -> str | None:
        if value is None:  # pragma: no cover - in_values() always binds a list
            return None
        bind = self.item_type.dialect_impl(dialect).bind_processor(dialect)
        items = [bind(item) for item in value] if bind is not None else value
        # Array-safe types bind on SQLite as text, integers, floats or NULL;
        # anything else is a value the column cannot take (422), as is what
        # JSON cannot carry (an int past 64 bits, a lone surrogate: orjson
        # raises TypeError).
        return orjson.dumps([_json_scalar(item) for item in items]).decode()


def _json_scalar(value: Any) -> Any:
    if isinstance(value, float):
        # What sqlite3 binds for the floats JSON has no number for: NaN is
        # NULL, and SQLite reads 9e999 as infinity.
        if math.isfinite(value):
            return value
        if math.isnan(value):
            return None
        return orjson.Fragment(b"9e999" if value > 0 else b"-9e999")
    if value is None or isinstance(value, str | int):
        return value
    raise TypeError(f"cannot bind a {type(value).__name__} in a list of values")


def _unwrapped(type_: TypeEngine[Any]) -> TypeEngine[Any]:
    while isinstance(type_, TypeDecorator):
        type_ = type_.impl_instance
    return type_


def in_values(
    dialect: str, attribute: QueryableAttribute[Any], values: Sequence[Any]
) -> ColumnElement[bool]:
    """``attribute IN values``, as one parameter when there are many values.

    Up to ``IN_LIST_MAX`` values, a plain ``IN (...)``. Past it,
    ``= ANY(:array)`` on PostgreSQL and ``IN (SELECT value FROM
    json_each(:json))`` on SQLite: the same rows, with no limit on the
    number of values. A column of another type than ``unnest()`` takes
    (enums, arrays, JSON) keeps ``IN`` (its distinct values), up to
    ``MAX_PARAMETERS`` of them, on both databases alike.

    Raises:
        InvalidInputError: Too many distinct values for such a column (422).
    """
    if len(values) <= IN_LIST_MAX:
        return attribute.in_(values)
    type_: TypeEngine[Any] = attribute.type
    if isinstance(_unwrapped(type_), Integer) and not all(
        value is None or isinstance(value, numbers.Integral) for value in values
    ):
        # Bound as INTEGER[], 1.7 would be truncated to 1 (and match it): numbers
        # that are not integers compare as NUMERIC, as IN (...) compares them.
        type_ = Numeric()
    if dialect == "postgresql" and _array_safe(type_):
        return attribute == any_(bindparam(None, list(values), type_=ARRAY(type_)))
    if dialect == "sqlite" and _array_safe(type_):
        source = func.json_each(bindparam(None, list(values), type_=_JSONList(type_)))
        return attribute.in_(select(source.table_valued("value").c.value))
    try:
        distinct = list(dict.fromkeys(values))
    except TypeError:  # unhashable values: sent as they are
        distinct = list(values)
    if len(distinct) > MAX_PARAMETERS:
        message = f"Too many values (at most {MAX_PARAMETERS})"
        raise InvalidInputError(
            f"Too many values for {attribute.key!r} (at most {MAX_PARAMETERS})",
            details=[ErrorDetail(code="too_many_values", message=message, field=attribute.key)],
        )
    return attribute.in_(distinct)
