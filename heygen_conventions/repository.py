"""``BaseRepository[Model]``: typed async data access, written once.

::

    class VideoRepository(BaseRepository[Video]):
        sortable_fields = ("created_at", "title")
        searchable_fields = ("title", "description")

    videos = VideoRepository(session)
    video = await videos.get_one(id=video_id)          # Video, or NotFoundError (404)
    page = await videos.paginate(params, status="published")

Repositories flush and never commit: the request's session commits once
(see :func:`heygen_conventions.get_db_session`). Database errors leave them
as the library's errors (duplicate -> 409, bad reference -> 422, database
down -> 503). Relationships load only when asked (``load=``); any other lazy
load raises instead of issuing hidden queries.
"""

from __future__ import annotations

import builtins
import functools
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from operator import itemgetter
from typing import Any, ClassVar, Generic, TypeVar, cast, get_args, get_origin

import orjson
from pydantic import BaseModel
from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    Table,
    Text,
    and_,
    func,
    insert,
    literal,
    or_,
    select,
    tuple_,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy import cast as cast_
from sqlalchemy import delete as sql_delete
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import update as sql_update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import (
    Mapper,
    QueryableAttribute,
    RelationshipProperty,
    joinedload,
    raiseload,
    selectinload,
)
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.interfaces import ORMOption
from sqlalchemy.sql.expression import ClauseElement, Executable
from sqlalchemy.sql.schema import Column
from sqlalchemy.types import TypeDecorator

from heygen_conventions import _bulk
from heygen_conventions._filters import checked_row, filter_values
from heygen_conventions._sql_errors import _first_attribute, translate_db_errors
from heygen_conventions.db import (
    _SQLITE_LOWER,
    _cursor_key,
    _session_cursor_key,
    _session_has_sqlite_lower,
)
from heygen_conventions.errors import ConflictError, InvalidInputError, NotFoundError
from heygen_conventions.pagination import (
    CountStrategy,
    CursorCodec,
    PageParams,
    SortKey,
    check_cursor_keys,
    check_search_text,
    cursor_can_hold,
    cursor_sort_refused,
    invalid_parameter,
    keyset_after,
    listing_fingerprint,
    order_clauses,
    process_cursor_key,
    unknown_sort_field,
)
from heygen_conventions.responses import CursorPage, ErrorDetail, PaginatedResponse

__all__ = ["BaseRepository", "UpsertResult"]

ModelT = TypeVar("ModelT")

#: What ``load=`` takes: a relationship name (``"owner"``, ``"owner.team"``) or attribute.
Load = str | QueryableAttribute[Any]
#: What ``order_by=`` takes: ``"title"``, ``"-created_at"`` (descending), or SQL.
Sort = str | ColumnElement[Any] | QueryableAttribute[Any]
Data = BaseModel | Mapping[str, Any]


@dataclass(frozen=True)
class UpsertResult(Generic[ModelT]):
    """Rows written by :meth:`BaseRepository.upsert_many`, in input order (duplicates merged)."""

    items: list[ModelT]
    created: int
    updated: int


class _Explain(Executable, ClauseElement):
    inherit_cache = False

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement


@compiles(_Explain, "postgresql")
def _compile_explain(element: _Explain, compiler: Any, **kw: Any) -> str:
    return "EXPLAIN (FORMAT JSON) " + str(compiler.process(element.statement, **kw))


def _model_from_bases(cls: type) -> Any:
    for base in getattr(cls, "__orig_bases__", ()):
        origin = get_origin(base)
        if isinstance(origin, type) and issubclass(origin, BaseRepository):
            args = get_args(base)
            if args and not isinstance(args[0], TypeVar):
                return args[0]
    return None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _as_text(attribute: QueryableAttribute[Any]) -> ColumnElement[Any] | QueryableAttribute[Any]:
    """A searchable column as text: PostgreSQL has no ILIKE for numbers, UUIDs or enums."""
    type_ = attribute.type
    while isinstance(type_, TypeDecorator):
        type_ = type_.impl_instance
    if isinstance(type_, String) and not isinstance(type_, SAEnum):
        return attribute
    return cast_(attribute, Text)


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _in_key_order(
    rows: Iterable[tuple[tuple[Any, ...], dict[str, Any]]],
) -> builtins.list[tuple[tuple[Any, ...], dict[str, Any]]]:
    # One order for every call, so that concurrent writers lock rows alike:
    # NULLs first, then the values' own order.
    rows = builtins.list(rows)
    try:
        # Keys compare as they are unless a NULL meets a value (None < x raises),
        # and then the order below is the same: no key object per row.
        return sorted(rows, key=itemgetter(0))
    except TypeError:
        pass
    try:
        return sorted(rows, key=lambda pair: [(value is not None, value) for value in pair[0]])
    except TypeError:  # values of one column of unlike types: their text is a fixed order
        return sorted(rows, key=lambda pair: [str(value) for value in pair[0]])


def _repeated_key(fields: Sequence[str]) -> InvalidInputError:
    message = f"Rows repeat a value of {', '.join(fields)} (given in different forms)"
    return InvalidInputError(
        message,
        details=[
            ErrorDetail(code="repeated_key", message=message, field=field) for field in fields
        ],
    )


def _stale_version() -> ConflictError:
    message = "The record was changed by someone else; reload it and retry"
    return ConflictError(
        message,
        details=[ErrorDetail(code="stale_version", message=message, field="version")],
    )


# Sortable when a repository names no sortable_fields: they tell no more than
# the default order (UUIDv7 keys are creation-ordered) or the response itself.
_TIMESTAMP_FIELDS = ("created_at", "updated_at")

# Largest OFFSET + LIMIT both databases take (a signed 64-bit integer).
_MAX_SQL_INTEGER = 2**63 - 1


class BaseRepository(Generic[ModelT]):
    """Data access for one model; subclass it as ``BaseRepository[Video]``.

    Class attributes a subclass may set:

    - ``model``: taken from the generic argument when omitted.
    - ``sortable_fields``: fields clients may sort by. None (the default)
      allows only the primary key and ``created_at``/``updated_at``: sorting
      by a column reveals its order (a salary ranking, say) even when the
      response leaves it out, and a keyset cursor carries the sort values of
      the page's last row, signed but readable.
    - ``searchable_fields``: text columns ``search`` matches (case-insensitive
      substring; ``%`` and ``_`` in the search text match themselves).
    - ``default_sort``: sort spec when none is given (default: primary key).
    - ``raise_on_lazy_load``: make unloaded relationships raise on access.
    - ``cursor_max_age``: how long a keyset cursor stays valid (None: no limit).

    Args:
        session: The session to work in (the request's, from ``get_db_session``).
        cursor_secret: Key signing keyset cursors; defaults to the one the
            session's :class:`~heygen_conventions.Database` was given.
    """

    model: type[ModelT]
    sortable_fields: ClassVar[Sequence[str] | None] = None
    searchable_fields: ClassVar[Sequence[str]] = ()
    default_sort: ClassVar[Sequence[str] | str | None] = None
    raise_on_lazy_load: ClassVar[bool] = True
    cursor_max_age: ClassVar[timedelta | None] = timedelta(days=1)
    #: Rows per statement in bulk writes.
    batch_size: ClassVar[int] = 5000
    #: Below this planner estimate, ``count="estimate"`` counts exactly (it is cheap).
    exact_count_below: ClassVar[int] = 10_000

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "model" not in cls.__dict__:
            found = _model_from_bases(cls)
            if found is not None:
                cls.model = found

    def __init__(self, session: AsyncSession, *, cursor_secret: str | bytes | None = None) -> None:
        if getattr(type(self), "model", None) is None:
            raise TypeError(
                f"{type(self).__name__} has no model: subclass BaseRepository[YourModel] "
                "or set `model = YourModel`"
            )
        self.session = session
        self._cursor_secret = cursor_secret

    # --- mapping helpers ---------------------------------------------------

    @property
    def _mapper(self) -> Mapper[Any]:
        return cast("Mapper[Any]", self.model.__mapper__)  # type: ignore[attr-defined]

    @property
    def _table(self) -> Table:
        return cast(Table, self._mapper.local_table)

    @property
    def _dialect_name(self) -> str:
        return self.session.get_bind().dialect.name

    def _pk_attributes(self) -> builtins.list[QueryableAttribute[Any]]:
        mapper = self._mapper
        return [
            getattr(self.model, mapper.get_property_by_column(column).key)
            for column in mapper.primary_key
        ]

    def _column_attribute(self, name: str) -> QueryableAttribute[Any]:
        # Looked up among mapped columns only: a client-supplied name never
        # reaches getattr() on the model.
        if name not in self._mapper.column_attrs:
            raise InvalidInputError(
                f"Unknown field {name!r}",
                details=[ErrorDetail(code="unknown_field", message="Unknown field", field=name)],
            )
        return cast("QueryableAttribute[Any]", getattr(self.model, name))

    def _column(self, name: str) -> Column[Any]:
        return cast("Column[Any]", self._column_attribute(name).property.columns[0])

    def _bulk_bind(self, plan: _bulk.BulkPlan) -> dict[str, Any]:
        # Bulk statements are Core inserts into the table: naming the model lets
        # do_orm_execute listeners and Session.get_bind() see it, as for ORM statements.
        return {"mapper": plan.mapper}

    def _guard(self) -> AbstractContextManager[None]:
        return translate_db_errors(table=self._table)

    # --- loading -----------------------------------------------------------

    def _load_options(self, load: Sequence[Load]) -> builtins.list[ORMOption]:
        options = [self._loader(item) for item in load]
        if self.raise_on_lazy_load:
            asked = {item.split(".", 1)[0] if isinstance(item, str) else item.key for item in load}
            options.extend(
                raiseload(getattr(self.model, rel.key))
                for rel in self._mapper.relationships
                # Plain lazy loads only: relationships configured to load eagerly keep doing so.
                if rel.lazy in ("select", True) and rel.key not in asked
            )
        return options

    def _loader(self, item: Load) -> ORMOption:
        path: builtins.list[Any] = item.split(".") if isinstance(item, str) else [item]
        entity: Any = self.model
        option: Any = None
        for step in path:
            if isinstance(step, str):
                rel = entity.__mapper__.relationships.get(step)
                if rel is None:
                    raise ValueError(f"{entity.__name__} has no relationship {step!r}")
                attribute = getattr(entity, step)
            else:
                attribute = step
                rel = getattr(attribute, "property", None)
                if not isinstance(rel, RelationshipProperty):
                    raise ValueError(f"{attribute} is not a relationship")
            # Collections in one extra IN query; scalars joined into the same query.
            strategy = selectinload if rel.uselist else joinedload
            option = (
                strategy(attribute)
                if option is None
                else getattr(option, strategy.__name__)(attribute)
            )
            entity = rel.mapper.class_
        return cast(ORMOption, option)

    # --- filtering and sorting ---------------------------------------------

    def _where(
        self,
        filters: Sequence[ColumnElement[bool]],
        equals: Mapping[str, Any],
        search: str | None = None,
    ) -> builtins.list[ColumnElement[bool]]:
        clauses = list(filters)
        for name, value in equals.items():
            attribute = self._column_attribute(name)
            column = cast("Column[Any]", attribute.property.columns[0])
            if value is None:
                clauses.append(attribute.is_(None))
            elif isinstance(value, list | tuple | set | frozenset):
                given = [item for item in value if item is not None]
                values = filter_values(name, column, given) if given else []
                # Many values bind as one parameter: no limit on their number.
                clause = _bulk.in_values(self._dialect_name, attribute, values)
                if len(given) < len(value):  # None in the list: NULL matches too, as alone
                    clause = or_(clause, attribute.is_(None)) if given else attribute.is_(None)
                clauses.append(clause)
            else:
                clauses.append(attribute == filter_values(name, column, [value])[0])
        if search and search.strip():
            # Here, not only in PageParams: paginate_cursor(), list() and count() take
            # a route's search as it is. SQLite ends a LIKE pattern at NUL (matching
            # every row) where PostgreSQL refuses the query.
            check_search_text(search.strip())
            clauses.append(self._search_clause(search.strip()))
        return clauses

    def _search_clause(self, text: str) -> ColumnElement[bool]:
        if not self.searchable_fields:
            raise InvalidInputError(
                "Search is not supported here",
                details=[ErrorDetail(code="search_unsupported", message="No searchable fields")],
            )
        columns = [_as_text(self._column_attribute(name)) for name in self.searchable_fields]
        if _session_has_sqlite_lower(self.session):
            # SQLite's LIKE and lower() fold ASCII only: "école" would miss "École".
            pattern = f"%{_escape_like(text.lower())}%"
            return or_(
                *(getattr(func, _SQLITE_LOWER)(c).like(pattern, escape="\\") for c in columns)
            )
        pattern = f"%{_escape_like(text)}%"
        return or_(*(column.ilike(pattern, escape="\\") for column in columns))

    def _sort_keys(self, sort: Sequence[str] | str | None) -> builtins.list[SortKey]:
        # Names may come from a client: held to sortable_fields. default_sort is
        # the repository's own (any column); code sorts by others with columns
        # (order_by=Video.slug).
        chosen = bool(sort)
        if not sort:
            sort = self.default_sort or ()
        specs = [sort] if isinstance(sort, str) else list(sort)
        columns = self._mapper.column_attrs
        allowed = self._sortable() if chosen else list(columns.keys())
        keys: builtins.list[SortKey] = []
        for spec in specs:
            descending = spec.startswith("-")
            name = spec[1:] if descending else spec
            if name not in allowed or name not in columns:
                if not chosen:
                    raise TypeError(
                        f"cannot sort {type(self).__name__} by {name!r}: "
                        f"not a column of {self.model.__name__}"
                    )
                raise unknown_sort_field(name, allowed)
            keys.append(self._sort_key(name, descending))
        # The primary key makes the order total (and every keyset cursor unique).
        direction = keys[0].descending if keys else False
        present = {key.attribute.key for key in keys}
        keys.extend(
            self._sort_key(attribute.key, direction)
            for attribute in self._pk_attributes()
            if attribute.key not in present
        )
        return keys

    def _sortable(self) -> builtins.list[str]:
        if self.sortable_fields is not None:
            return builtins.list(self.sortable_fields)
        columns = self._mapper.column_attrs
        safe = [attribute.key for attribute in self._pk_attributes()]
        return [*safe, *(name for name in _TIMESTAMP_FIELDS if name in columns)]

    def _sort_key(self, name: str, descending: bool) -> SortKey:
        column = self._column(name)
        return SortKey(
            attribute=self._column_attribute(name),
            descending=descending,
            # A column_property is an expression, which may be NULL.
            nullable=bool(getattr(column, "nullable", True)),
            enum_class=getattr(column.type, "enum_class", None),
        )

    def _order_by(self, order_by: Sequence[Sort] | Sort | None) -> builtins.list[Any]:
        if order_by is None:
            items: builtins.list[Any] = []
        elif isinstance(order_by, builtins.list | tuple):
            items = builtins.list(order_by)
        else:  # one name, column or SQL expression (Video.title, Video.title.desc())
            items = [order_by]
        if all(isinstance(item, str) for item in items):
            return order_clauses(self._sort_keys(cast("list[str]", items)))
        # Hand-written SQL ordering, made total with the primary key.
        return [*items, *self._pk_attributes()]

    # --- reads -------------------------------------------------------------

    def query(
        self,
        *filters: ColumnElement[bool],
        load: Sequence[Load] = (),
        search: str | None = None,
        **equals: Any,
    ) -> Select[ModelT]:
        """The repository's base query, for building special ones (loads and filters applied)."""
        return (
            select(self.model)
            .where(*self._where(filters, equals, search))
            .options(*self._load_options(load))
        )

    async def get_by_id(self, id: Any, *, load: Sequence[Load] = ()) -> ModelT | None:
        """The row with primary key ``id`` (a tuple for composite keys), or None."""
        with self._guard():
            return await self.session.get(self.model, id, options=self._load_options(load))

    async def get_one(
        self, *filters: ColumnElement[bool], load: Sequence[Load] = (), **equals: Any
    ) -> ModelT:
        """The one row matching; raises :class:`NotFoundError` (404) when there is none."""
        found = await self.get_one_or_none(*filters, load=load, **equals)
        if found is None:
            raise NotFoundError(f"{self.model.__name__} not found")
        return found

    async def get_one_or_none(
        self, *filters: ColumnElement[bool], load: Sequence[Load] = (), **equals: Any
    ) -> ModelT | None:
        """The one row matching, or None; more than one match is a programming error."""
        statement = self.query(*filters, load=load, **equals).limit(2)
        with self._guard():
            rows = (await self.session.scalars(statement)).unique().all()
        if len(rows) > 1:
            raise RuntimeError(f"more than one {self.model.__name__} matches")
        return rows[0] if rows else None

    async def list(
        self,
        *filters: ColumnElement[bool],
        order_by: Sequence[Sort] | Sort | None = None,
        limit: int | None = None,
        offset: int | None = None,
        search: str | None = None,
        load: Sequence[Load] = (),
        **equals: Any,
    ) -> builtins.list[ModelT]:
        """Rows matching every filter, in a total order (primary key as tiebreaker).

        Args:
            filters: SQLAlchemy conditions (``Video.duration > 60``).
            order_by: ``"title"``, ``"-created_at"``, a list of them, or SQL.
            limit: At most this many rows.
            offset: Skip this many rows first.
            search: Text matched in ``searchable_fields``.
            load: Relationships to load with the rows.
            equals: ``field=value`` filters; a list value means IN, None means IS NULL.
        """
        statement = self.query(*filters, load=load, search=search, **equals).order_by(
            *self._order_by(order_by)
        )
        if limit is not None:
            statement = statement.limit(limit)
        if offset:
            statement = statement.offset(offset)
        with self._guard():
            return builtins.list((await self.session.scalars(statement)).unique().all())

    async def count(
        self, *filters: ColumnElement[bool], search: str | None = None, **equals: Any
    ) -> int:
        """How many rows match."""
        # From the mapped class, not its table: a single-table subclass counts
        # its own rows (the discriminator applies) and a joined-table one joins
        # its tables instead of multiplying them.
        statement = (
            select(func.count())
            .select_from(self.model)
            .where(*self._where(filters, equals, search))
        )
        with self._guard():
            return int(await self.session.scalar(statement) or 0)

    async def exists(self, *filters: ColumnElement[bool], **equals: Any) -> bool:
        """Whether any row matches (``SELECT EXISTS``: stops at the first)."""
        # A FROM of its own (EXISTS (SELECT *) with no filter has none) and the
        # mapped class's rows only (inheritance).
        matching = select(literal(1)).select_from(self.model).where(*self._where(filters, equals))
        statement = select(matching.exists())
        with self._guard():
            return bool(await self.session.scalar(statement))

    async def stream(
        self,
        *filters: ColumnElement[bool],
        batch_size: int = 1000,
        load: Sequence[Load] = (),
        **equals: Any,
    ) -> AsyncIterator[ModelT]:
        """Every matching row in primary-key order, fetched ``batch_size`` at a time.

        Each batch is its own keyset query, so no server cursor stays open
        and memory stays flat however large the table.
        """
        pk = self._pk_attributes()
        statement = self.query(*filters, load=load, **equals).order_by(*pk).limit(batch_size)
        last: tuple[Any, ...] | None = None
        while True:
            batch = statement if last is None else statement.where(tuple_(*pk) > tuple_(*last))
            with self._guard():
                rows = (await self.session.scalars(batch)).unique().all()
            for row in rows:
                yield row
            if len(rows) < batch_size:
                return
            last = tuple(getattr(rows[-1], attribute.key) for attribute in pk)

    # --- writes ------------------------------------------------------------

    def _values(self, data: Data, *, partial: bool) -> dict[str, Any]:
        if type(data) is dict:  # the common case, without the ABC checks below
            values = dict(data)
        elif isinstance(data, BaseModel):
            values = data.model_dump(exclude_unset=partial)
        elif isinstance(data, Mapping):
            values = dict(data)
        else:
            raise TypeError(f"expected a pydantic model or a mapping, got {type(data).__name__}")
        known = _bulk.plan_for(self._mapper).attributes
        if not known.issuperset(values):
            unknown = [key for key in values if key not in known]
            raise InvalidInputError(
                f"Unknown field(s): {', '.join(unknown)}",
                details=[
                    ErrorDetail(code="unknown_field", message="Unknown field", field=key)
                    for key in unknown
                ],
            )
        self._check_writes(values)
        return values

    def _check_writes(self, values: dict[str, Any]) -> None:
        """Column values checked against their columns' types, UUID text parsed, in place.

        SQLite would store text in an INTEGER column (PostgreSQL refuses it):
        on both databases a value of the wrong type is a 422 naming the field.
        """
        checked_row(_bulk.plan_for(self._mapper).write_specs, values)

    def _rows(self, items: Iterable[Data]) -> tuple[builtins.list[dict[str, Any]], bool]:
        """New rows for ``items``, checked, and whether every key was made here."""
        plan = _bulk.plan_for(self._mapper)
        _bulk.require_one_table(plan)
        # The caller's generator, if any, runs with the collector on.
        items = items if isinstance(items, builtins.list | tuple) else builtins.list(items)
        with _bulk.collector_paused():
            rows, fresh_keys = _bulk.complete_rows(
                plan,
                [
                    _bulk.without_default_nones(plan, self._column_values(plan, item))
                    for item in items
                ],
            )
            _bulk.check_rows(plan, rows)
            return rows, fresh_keys

    def _column_values(self, plan: _bulk.BulkPlan, item: Data) -> Mapping[str, Any]:
        """``item``'s field values, read only: the caller copies them into a row
        (and checks its values: :func:`_bulk.check_rows`)."""
        columns = plan.column_of.keys()
        if type(item) is dict and columns >= item.keys():
            return item  # no copy per row: complete_rows() makes the row
        values = self._values(item, partial=False)  # unknown fields: 422
        if not columns >= values.keys():
            # Relationships, and attributes of no column (a column_property, a synonym).
            extra = sorted(key for key in values if key not in columns)
            relationships = [key for key in extra if key in plan.relationships]
            others = [key for key in extra if key not in plan.relationships]
            said = [f"{relationships} are relationships"] if relationships else []
            said += [f"{others} are not columns"] if others else []
            raise InvalidInputError(
                "Bulk writes take column values only; " + "; ".join(said),
                details=[
                    ErrorDetail(code="not_a_column", message="Not a column", field=key)
                    for key in extra
                ],
            )
        return values

    async def _flush(self) -> None:
        with self._guard():
            await self.session.flush()

    async def _refresh(self, obj: Any, load: Sequence[Load]) -> None:
        if load:
            names = [item if isinstance(item, str) else item.key for item in load]
            with self._guard():
                await self.session.refresh(obj, attribute_names=names)

    async def create(self, data: Data, *, load: Sequence[Load] = ()) -> ModelT:
        """Insert one row (flushed, not committed) and return it.

        Args:
            data: A pydantic model (all its fields) or a mapping of field values.
            load: Relationships to load on the new row (e.g. its ``owner``).
        """
        obj = self.model(**self._values(data, partial=False))
        self.session.add(obj)
        await self._flush()
        _bulk.mark_new_collections_empty(_bulk.plan_for(self._mapper), obj)
        await self._refresh(obj, load)
        return obj

    async def create_many(self, items: Iterable[Data]) -> builtins.list[ModelT]:
        """Insert many rows in few statements and return them, in order.

        Each batch of ``batch_size`` rows is one statement: ``INSERT ...
        SELECT FROM unnest(...)`` on PostgreSQL (one array parameter per
        column), multi-row ``VALUES`` elsewhere. The objects returned are
        built from the values sent, as :meth:`create` leaves them, and are
        persistent in the session (``session.get`` finds them); only columns
        the database fills in (server defaults) are read back, with
        ``RETURNING``. This needs primary keys made in Python
        (``UUIDPrimaryKeyMixin``); keys the database makes cost SQLAlchemy's
        batched ``INSERT ... RETURNING``. As for any bulk insert, model
        constructors and ``@validates`` hooks do not run. A None given for a
        column with a default takes the default, as with :meth:`create`.
        Single-table inheritance subclasses get their discriminator; a
        joined-table subclass (rows in several tables) raises ``TypeError``.
        """
        rows, fresh_keys = self._rows(items)
        if not rows:
            return []
        plan = _bulk.plan_for(self._mapper)
        if not plan.pk_made_here:
            return await self._create_many_returning(rows)
        _bulk.add_nulls(plan, rows)
        # Keys given in another type than the column's (str UUIDs) would not
        # find their rows in the identity map: every column is read back then.
        typed = fresh_keys or _bulk.keys_typed(plan, rows)
        dialect = self._dialect_name
        pk_keys = plan.pk_keys
        for keys, group_rows in _bulk.by_fields(rows):
            read_back = _bulk.filled_by_database(plan, keys if typed else ())
            size = _bulk.rows_per_statement(dialect, plan.table, keys, self.batch_size)
            for batch_rows in _chunks(group_rows, size):
                statement = _bulk.insert_statement(dialect, plan, keys, batch_rows)
                if read_back:
                    statement = statement.returning(*(plan.table.c[key] for key in read_back))
                with self._guard():
                    result = await self.session.execute(
                        statement, bind_arguments=self._bulk_bind(plan)
                    )
                if not read_back:
                    continue
                with _bulk.collector_paused():
                    returned = result.all()
                    if typed:
                        width = len(pk_keys)
                        by_key = {tuple(values[:width]): values for values in returned}
                        returned = [by_key[tuple([row[k] for k in pk_keys])] for row in batch_rows]
                    # else: RETURNING follows the order of the rows, on PostgreSQL and SQLite
                    for row, values in zip(batch_rows, returned, strict=True):
                        row.update(zip(read_back, values, strict=True))
        with _bulk.collector_paused():
            objects = _bulk.persist(self.session.sync_session, plan, rows, fresh_keys=fresh_keys)
            if plan.collections:
                for obj in objects:
                    _bulk.mark_new_collections_empty(plan, obj)
        return objects

    async def insert_many(self, items: Iterable[Data]) -> int:
        """Insert many rows without reading them back: the bulk-load path. Returns the count.

        The same batched statements as :meth:`create_many` (``unnest()`` on
        PostgreSQL) minus ``RETURNING`` and the ORM objects, which cost about
        as much again as the insert itself for large batches.
        """
        rows, _ = self._rows(items)
        plan = _bulk.plan_for(self._mapper)
        dialect = self._dialect_name
        table = plan.table
        for keys, group_rows in _bulk.by_fields(rows):
            size = _bulk.rows_per_statement(dialect, table, keys, self.batch_size)
            for batch_rows in _chunks(group_rows, size):
                with self._guard():
                    if _bulk.can_unnest(dialect, table, keys):
                        await self.session.execute(
                            _bulk.insert_statement(dialect, plan, keys, batch_rows),
                            bind_arguments=self._bulk_bind(plan),
                        )
                    else:
                        await self.session.execute(
                            insert(table), batch_rows, bind_arguments=self._bulk_bind(plan)
                        )
        return len(rows)

    async def _create_many_returning(
        self, rows: builtins.list[dict[str, Any]]
    ) -> builtins.list[ModelT]:
        plan = _bulk.plan_for(self._mapper)
        statement = insert(self.model).returning(self.model, sort_by_parameter_order=True)
        placed: dict[int, ModelT] = {}
        for _, group in _bulk.by_fields(builtins.list(enumerate(rows)), second=True):
            for batch in _chunks(group, self.batch_size):
                params = [
                    {plan.attribute_of[key]: value for key, value in row.items()}
                    for _, row in batch
                ]
                with self._guard():
                    result = await self.session.execute(statement, params)
                for (index, _), obj in zip(batch, result.scalars().all(), strict=True):
                    placed[index] = obj
        objects = [placed[index] for index in range(len(rows))]
        # Loaded from RETURNING, the objects are persistent but not known to the transaction.
        _bulk.inserted_in_transaction(self.session.sync_session, objects)
        for obj in objects:
            _bulk.mark_new_collections_empty(plan, obj)
        return objects

    async def update(self, id_or_obj: Any, data: Data, *, load: Sequence[Load] = ()) -> ModelT:
        """Change the fields ``data`` sets, and only those; return the row.

        A pydantic model contributes only the fields the client sent
        (``exclude_unset``), so omitted fields and relationships stay as they
        are. A relationship given is replaced (a collection by the list
        given); it is loaded first, since replacing it changes the rows it
        held, and relationships not given are not loaded. On a versioned
        model (:class:`~heygen_conventions.VersionMixin`), a ``version`` in
        ``data`` must be the row's current one.

        Raises:
            NotFoundError: No row has that primary key (404).
            ConflictError: The version is stale, or the row changed meanwhile (409).
        """
        obj = await self._resolve(id_or_obj)
        values = self._values(data, partial=True)
        await self._load_replaced(obj, values)
        version_column = self._mapper.version_id_col
        if version_column is not None:
            key = self._mapper.get_property_by_column(version_column).key
            expected = values.pop(key, None)
            if expected is not None:
                if key in sa_inspect(obj).unloaded:
                    # Expired (a Core UPDATE moved it): a lazy load here has no greenlet.
                    await self.session.refresh(obj, [key])
                if expected != getattr(obj, key):
                    raise _stale_version()
        for key, value in values.items():
            setattr(obj, key, value)
        await self._flush()
        await self._refresh(obj, load)
        return obj

    async def _load_replaced(self, obj: Any, values: Mapping[str, Any]) -> None:
        # Assigning a relationship needs its current value (a collection's
        # rows are unlinked, a one-to-one's row let go): relationships not
        # loaded yet would raise, so the ones being replaced load now. (A pending
        # object has nothing to load.)
        state = sa_inspect(obj)
        if not state.persistent:
            return
        unloaded = state.unloaded
        names = [name for name in values if name in unloaded and name in self._mapper.relationships]
        if names:
            with self._guard():
                await self.session.refresh(obj, attribute_names=names)

    async def _resolve(self, id_or_obj: Any) -> ModelT:
        if isinstance(id_or_obj, self.model):
            return id_or_obj
        obj = await self.get_by_id(id_or_obj)
        if obj is None:
            raise NotFoundError(f"{self.model.__name__} not found")
        return obj

    async def update_many(
        self, values: Mapping[str, Any], *filters: ColumnElement[bool], **equals: Any
    ) -> int:
        """Set ``values`` on every matching row in one UPDATE; the number of rows changed.

        ``updated_at`` (``TimestampMixin``) and ``version`` (``VersionMixin``)
        move too. With no filter at all it refuses, rather than update the
        whole table by accident: pass ``sqlalchemy.true()`` to mean it.
        """
        if not filters and not equals:
            raise ValueError("update_many() without filters would update every row")
        checked = dict(values)
        self._check_writes(checked)
        changes: dict[Any, Any] = {
            self._column_attribute(key): value for key, value in checked.items()
        }
        version_column = self._mapper.version_id_col
        if version_column is not None:
            version = getattr(self.model, self._mapper.get_property_by_column(version_column).key)
            changes[version] = version + 1
        statement = (
            sql_update(self.model)
            .where(*self._where(filters, equals))
            .values(changes)
            .execution_options(synchronize_session="fetch")
        )
        with self._guard():
            result = await self.session.execute(statement)
        return int(getattr(result, "rowcount", 0))

    async def delete(self, id_or_obj: Any) -> None:
        """Delete one row; ORM cascades apply.

        Raises:
            NotFoundError: No row has that primary key (404), or another
                transaction deleted it since it was read.
            ConflictError: On a versioned model, another transaction changed
                the row since it was read (409).
        """
        if isinstance(id_or_obj, self.model):
            obj: Any = id_or_obj
        else:
            with self._guard():
                obj = await self.session.get(self.model, id_or_obj)
            if obj is None:
                raise NotFoundError(f"{self.model.__name__} not found")
        await self._lock_read_version(obj)
        with self._guard():
            await self.session.delete(obj)
            await self.session.flush()

    async def _lock_read_version(self, obj: Any) -> None:
        # The ORM deletes a versioned row WHERE its version is the one read,
        # and takes 0 rows matched as a stale version: a row another
        # transaction deleted meanwhile would be a 409 (and the session left
        # needing a rollback) instead of a 404. Lock the row and compare first.
        version_column = self._mapper.version_id_col
        state = sa_inspect(obj)
        if version_column is None or not state.persistent or state.identity is None:
            return
        version_key = self._mapper.get_property_by_column(version_column).key
        statement = (
            select(getattr(self.model, version_key))
            .where(
                *(
                    attribute == value
                    for attribute, value in zip(self._pk_attributes(), state.identity, strict=True)
                )
            )
            .with_for_update()
        )
        with self._guard():
            current = (await self.session.execute(statement)).one_or_none()
        if current is None:
            raise NotFoundError(f"{self.model.__name__} not found")
        # Not getattr(): an expired version (a rollback, a Core UPDATE moving it)
        # would load outside the greenlet. Then there is no version read to compare.
        read = state.dict.get(version_key)
        if read is None:
            set_committed_value(obj, version_key, current[0])
        elif current[0] != read:
            raise _stale_version()

    async def delete_many(self, ids: Iterable[Any]) -> int:
        """Delete rows by primary key in chunked ``DELETE ... WHERE id IN`` statements.

        A bulk delete: ORM cascades do not run (foreign keys' ``ON DELETE`` do).
        Returns the number of rows deleted.
        """
        pk = self._pk_attributes()
        if len(pk) != 1:
            raise TypeError("delete_many() needs a single-column primary key")
        deleted = 0
        for chunk in _chunks(builtins.list(dict.fromkeys(ids)), self.batch_size):
            statement = (
                sql_delete(self.model)
                .where(pk[0].in_(builtins.list(chunk)))
                .execution_options(synchronize_session="fetch")
            )
            with self._guard():
                result = await self.session.execute(statement)
            deleted += int(getattr(result, "rowcount", 0))
        return deleted

    async def upsert(
        self, data: Data, *, on: str | Sequence[str], update: Sequence[str] | None = None
    ) -> tuple[ModelT, bool]:
        """Insert the row, or update the one with the same ``on`` key; ``(row, created)``.

        One ``INSERT ... ON CONFLICT DO UPDATE``: no race between a read and a write.
        """
        result = await self.upsert_many([data], on=on, update=update)
        return result.items[0], result.created == 1

    async def upsert_many(
        self,
        items: Iterable[Data],
        *,
        on: str | Sequence[str],
        update: Sequence[str] | None = None,
        returning: bool = True,
    ) -> UpsertResult[ModelT]:
        """Insert or update many rows: one ``INSERT ... ON CONFLICT DO UPDATE`` per batch.

        Args:
            items: Rows as pydantic models or mappings (all fields written).
            on: Fields of a unique constraint or index identifying a row
                (the primary key too).
            update: Fields to overwrite on an existing row; default: every
                given field except ``on``, the primary key and ``created_at``.
                ``updated_at`` and ``version`` move in either case.
            returning: Read the rows back as ORM objects (``items``); False
                returns only the counts, for bulk loads (much cheaper). Objects
                the session already holds for updated rows are read again either way.

        Rows repeating an ``on`` key are merged (the last wins): one
        statement cannot touch a row twice. Rows are written in the order of
        their ``on`` key, so concurrent calls over the same keys lock rows in
        the same order and never deadlock; ``items`` still follow the input.
        ``created`` counts the rows no ``on`` key matched before the call:
        PostgreSQL says so in the statement itself. On SQLite, when the key
        was given rather than made here, the keys that exist are read first,
        in the same transaction, once it holds the write lock.
        """
        on_fields = [on] if isinstance(on, str) else builtins.list(on)
        conflict = [self._column(name) for name in on_fields]
        update_columns = None if update is None else [self._column(name).key for name in update]
        plan = _bulk.plan_for(self._mapper)
        _bulk.require_one_table(plan)
        pk_keys, pk_made_here = plan.pk_keys, plan.pk_made_here
        pk_attributes = frozenset(plan.attribute_of[key] for key in pk_keys)
        key_of = _bulk.tuple_getter([column.key for column in conflict])
        merged: dict[tuple[Any, ...], dict[str, Any]] = {}
        on_postgresql = self._dialect_name == "postgresql"
        # SQLite only (PostgreSQL's statement says which rows it inserted): the
        # keys of rows whose primary key was made here. A new row returns that
        # key, an existing one its own; other rows need another witness.
        keyed_here: set[tuple[Any, ...]] = set()
        # The caller's generator, if any, runs with the collector on.
        items = items if isinstance(items, builtins.list | tuple) else builtins.list(items)
        values_of = functools.partial(self._column_values, plan)
        with _bulk.collector_paused():
            given_rows = builtins.list(map(values_of, items))
            rows, _ = _bulk.complete_rows(plan, given_rows)
            _bulk.check_rows(plan, rows)  # before keys are read from them
            for given, row in zip(given_rows, rows, strict=True):
                try:
                    key = key_of(row)
                except KeyError as missing:
                    raise InvalidInputError(
                        f"Upsert rows need a value for {missing.args[0]!r}"
                    ) from None
                merged.pop(key, None)  # the last one wins, in its own position
                merged[key] = row
                if on_postgresql:  # the statement itself tells inserted rows
                    continue
                if pk_made_here and pk_attributes.isdisjoint(given):
                    keyed_here.add(key)
                else:
                    keyed_here.discard(key)
        if not merged:
            return UpsertResult([], 0, 0)

        dialect = self._dialect_name
        inserted: set[tuple[Any, ...]] = set()
        touched: builtins.list[tuple[Any, ...]] = []  # primary keys, without objects
        created = 0
        write_locked = False
        # Key order within a group of rows, and a fixed order of groups: the same
        # lock order for every writer.
        groups = sorted(
            _bulk.by_fields(_in_key_order(merged.items()), second=True), key=itemgetter(0)
        )
        sizes = [
            _bulk.rows_per_statement(dialect, plan.table, keys, self.batch_size)
            for keys, _ in groups
        ]
        # Primary keys of the rows written: two rows of the call writing one row
        # (keys unlike in Python but stored alike: "light" and Shade.light, "Ann"
        # and "ann" under NOCASE) are refused. SQLite writes such a row twice, and
        # so does a second statement; PostgreSQL refuses it within one statement.
        several = len(groups) > 1 or len(groups[0][1]) > sizes[0]
        written: set[tuple[Any, ...]] | None = set() if several or not on_postgresql else None
        for (keys, group), size in zip(groups, sizes, strict=True):
            for batch in _chunks(group, size):
                existing: set[tuple[Any, ...]] = set()
                if not on_postgresql:
                    asked = [key for key, _ in batch if key not in keyed_here]
                    if asked:
                        if not write_locked:
                            await self._hold_write_lock()
                            write_locked = True
                        existing = await self._existing_keys(conflict, asked)
                with _bulk.collector_paused():
                    statement, read = _bulk.upsert_statement(
                        dialect,
                        plan,
                        keys,
                        [row for _, row in batch],
                        conflict,
                        update_columns,
                        report_inserted=on_postgresql,
                        objects=returning,
                    )
                with self._guard():
                    try:
                        result = await self.session.execute(
                            statement, bind_arguments=self._bulk_bind(plan)
                        )
                    except DBAPIError as error:
                        # PostgreSQL: two rows of the statement hit one row (cardinality_violation).
                        if _first_attribute(error, "sqlstate") == "21000":
                            raise _repeated_key(on_fields) from error
                        raise
                    with _bulk.collector_paused():  # the rows are made here, in sync code
                        returned = result.all()
                with _bulk.collector_paused():
                    sent = dict(batch)
                    width = len(read)
                    pk_at = _bulk.tuple_getter([read.index(key) for key in pk_keys])
                    stored_key_of = _bulk.tuple_getter([read.index(c.key) for c in conflict])
                    for position, values in enumerate(returned):
                        stored = stored_key_of(values)
                        # A key the column type normalised is found by position; order still holds.
                        key = stored if stored in sent else batch[position][0]
                        if written is not None:
                            written_key = pk_at(values)
                            if written_key in written:
                                raise _repeated_key(on_fields)
                            written.add(written_key)
                        row = sent[key]
                        if on_postgresql:
                            # xmax = 0: this statement inserted it. (Two rows writing one
                            # row fail the statement there: cardinality_violation.)
                            is_new = bool(values[width])
                        elif key in keyed_here:
                            is_new = pk_at(values) == tuple([row[k] for k in pk_keys])
                        else:
                            is_new = stored not in existing
                        created += is_new
                        if returning:
                            # What an existing row kept (key, created_at...) replaces what was
                            # sent, and an inserted row's columns come back as the column
                            # reads them (an enum given by name, a UUID given as text); the
                            # inserted flag, if any, is past the columns (zip stops before it).
                            row.update(zip(read, values, strict=False))
                            if is_new:
                                inserted.add(key)
                        elif not is_new:
                            touched.append(pk_at(values))
        objects: builtins.list[ModelT] = []
        if not returning:
            await self._refresh_held(plan, touched)
        else:
            with _bulk.collector_paused():
                # Every row came back (each is inserted or updated), so each holds its columns.
                objects = _bulk.persist(
                    self.session.sync_session,
                    plan,
                    builtins.list(merged.values()),
                    [key in inserted for key in merged],
                )
        return UpsertResult(objects, created, len(merged) - created)

    async def _refresh_held(self, plan: _bulk.BulkPlan, keys: Sequence[tuple[Any, ...]]) -> None:
        # Objects the session already holds for rows written without reading them
        # back take the rows' values, as they would from a query with populate_existing:
        # kept as they were, a later change of theirs was a false conflict (old version).
        held = _bulk.held_keys(self.session.sync_session, plan, keys)
        pk = [plan.table.c[key] for key in plan.pk_keys]
        for chunk in _chunks(held, _bulk.MAX_PARAMETERS // len(pk)):
            statement = select(*plan.table.columns).where(tuple_(*pk).in_(chunk))
            with self._guard():
                result = await self.session.execute(statement, bind_arguments=self._bulk_bind(plan))
                with _bulk.collector_paused():
                    rows = result.all()
            _bulk.persist(
                self.session.sync_session,
                plan,
                [dict(zip(plan.columns, row, strict=True)) for row in rows],
                [False] * len(rows),
            )

    async def _hold_write_lock(self) -> None:
        # SQLite: sqlite3 opens a transaction only at the first write, so a read
        # before it sees a state another writer can change before the write.
        # BEGIN IMMEDIATE takes the database's write lock first (waiting up to
        # the busy timeout); a transaction already open has written, so holds it
        # (or, opened by a savepoint, fails the write as busy rather than let a
        # stale read through).
        with self._guard():
            connection = await self.session.connection()
            raw = await connection.get_raw_connection()
            if not raw.driver_connection.in_transaction:  # type: ignore[union-attr]
                await connection.exec_driver_sql("BEGIN IMMEDIATE")

    async def _existing_keys(
        self, conflict: Sequence[Column[Any]], keys: Sequence[tuple[Any, ...]]
    ) -> set[tuple[Any, ...]]:
        statement = select(*conflict).where(tuple_(*conflict).in_(keys))
        with self._guard():
            return {tuple(row) for row in (await self.session.execute(statement)).all()}

    # --- pagination ----------------------------------------------------------

    async def paginate(
        self,
        params: PageParams,
        *filters: ColumnElement[bool],
        count: CountStrategy = "exact",
        load: Sequence[Load] = (),
        statement: Select[Any] | None = None,
        **equals: Any,
    ) -> PaginatedResponse[ModelT]:
        """One page by OFFSET, with the total counted as asked.

        Args:
            params: Page, size, sort and search (``PageParams``).
            filters: SQLAlchemy conditions.
            count: ``"exact"``: ``count(*)`` of the filtered rows (and no
                data query when the page is past the end); ``"none"``: no
                count, ``has_next`` from one extra row; ``"estimate"``:
                PostgreSQL's planner estimate, flagged ``metadata.count ==
                "estimated"`` (exact when small, or when this page shows where
                the listing ends; always exact on SQLite).
            load: Relationships to load with the rows.
            statement: A hand-built ``select(Model)`` (joins, DISTINCT) to
                page through instead of the plain one; counted as a subquery.
            equals: ``field=value`` filters.
        """
        base = statement if statement is not None else select(self.model)
        base = base.where(*self._where(filters, equals, params.search))
        order = order_clauses(self._sort_keys(params.sort))
        offset, per_page = params.offset, params.per_page

        total: int | None = None
        used: str = count
        if count == "estimate":
            used = "exact"
            if self._dialect_name == "postgresql":
                estimate = await self._estimate(base)
                if estimate >= self.exact_count_below:
                    total, used = estimate, "estimated"
        if used == "exact":
            total = await self._exact_count(base, custom=statement is not None)
            if total == 0 or offset >= total:
                return PaginatedResponse.create(
                    [],
                    page=params.page,
                    per_page=per_page,
                    total_count=total,
                    metadata={"count": "exact"},
                )

        fetch = per_page if used == "exact" else per_page + 1
        rows: builtins.list[Any] = []
        # An offset past 64 bits (a large max_per_page) is past the end of any
        # table: both databases refuse it as a parameter.
        queried = offset + fetch <= _MAX_SQL_INTEGER
        if queried:
            page_query = (
                base.options(*self._load_options(load)).order_by(*order).offset(offset).limit(fetch)
            )
            with self._guard():
                rows = builtins.list((await self.session.scalars(page_query)).unique().all())
        if used == "estimated" and total is not None:
            if len(rows) > per_page:
                total = max(total, offset + per_page + 1)
            elif rows or offset == 0:
                total, used = offset + len(rows), "exact"  # this page shows where the end is
            elif queried:
                # Past the end: the page query just read every matching row (fewer
                # than `offset`), so counting them costs no more, and is the truth.
                total, used = await self._exact_count(base, custom=statement is not None), "exact"
            else:
                total = min(total, offset)  # past the end: at most `offset` rows
        return PaginatedResponse.create(
            rows, page=params.page, per_page=per_page, total_count=total, metadata={"count": used}
        )

    async def _exact_count(self, base: Select[Any], *, custom: bool) -> int:
        if custom or not _plain_select(base):
            counted = select(func.count()).select_from(base.order_by(None).subquery())
        else:
            # count(*) straight over the filtered table: the plan PostgreSQL runs best.
            counted = base.with_only_columns(func.count(), maintain_column_froms=True)
        with self._guard():
            return int(await self.session.scalar(counted.order_by(None)) or 0)

    async def _estimate(self, base: Select[Any]) -> int:
        with self._guard():
            plan = await self.session.scalar(_Explain(base.order_by(None)))
        parsed = orjson.loads(plan) if isinstance(plan, str | bytes) else plan
        return int(parsed[0]["Plan"]["Plan Rows"])

    def _cursor_codec(
        self, keys: Sequence[SortKey], where: Sequence[ColumnElement[bool]]
    ) -> CursorCodec:
        if self._cursor_secret is not None:
            key = _cursor_key(self._cursor_secret)
        else:
            key = _session_cursor_key(self.session) or process_cursor_key()
        sort = ",".join(("-" if k.descending else "") + k.attribute.key for k in keys)
        filters = ""
        if where:
            compiled = and_(*where).compile(dialect=self.session.get_bind().dialect)
            params = compiled.params
            filters = compiled.string + "".join(f"|{n}={params[n]!r}" for n in sorted(params))
        # None: no limit. A zero (or negative) age is an age, every cursor past it.
        max_age = None if self.cursor_max_age is None else self.cursor_max_age.total_seconds()
        # The mapped class, not only its table: single-table subclasses share one.
        model = f"{self.model.__module__}.{self.model.__qualname__}"
        listing = listing_fingerprint(model, self._table.fullname, sort, filters)
        return CursorCodec(key, listing, max_age)

    async def paginate_cursor(
        self,
        *filters: ColumnElement[bool],
        cursor: str | None = None,
        limit: int = 20,
        sort: Sequence[str] | str | None = None,
        search: str | None = None,
        load: Sequence[Load] = (),
        **equals: Any,
    ) -> CursorPage[ModelT]:
        """One page by keyset, ``WHERE (sort key) > (last row's)``: any depth costs the same.

        Pass back ``next_cursor`` or ``previous_cursor`` as ``cursor`` with
        the same filters and sort to move. The primary key breaks ties, so
        every row appears exactly once; NULLs sort last.

        Raises:
            BadRequestError: The cursor is malformed, altered, expired or
                issued for another sort or other filters (400).
            InvalidInputError: The sort names a column whose values no
                cursor can hold, such as JSON (422).
        """
        if limit < 1:
            raise invalid_parameter("limit", f"limit must be >= 1, got {limit}")
        keys = self._sort_keys(sort)
        check_cursor_keys(keys)
        where = self._where(filters, equals, search)
        codec = self._cursor_codec(keys, where)
        backwards = False
        statement = select(self.model).where(*where).options(*self._load_options(load))
        if cursor is not None:
            values, backwards = codec.decode(cursor, [k.enum_class for k in keys])
            statement = statement.where(keyset_after(keys, values, reverse=backwards))
        statement = statement.order_by(*order_clauses(keys, reverse=backwards)).limit(limit + 1)
        with self._guard():
            rows = builtins.list((await self.session.scalars(statement)).unique().all())
        more = len(rows) > limit
        if backwards and len(rows) < limit:
            # Back at the start with less than a page (rows before were deleted
            # meanwhile, perhaps all of them): the first page, not a short or
            # empty one that says nothing follows.
            return await self.paginate_cursor(
                *filters, limit=limit, sort=sort, search=search, load=load, **equals
            )
        rows = rows[:limit]
        if backwards:
            rows.reverse()
        # Going forward, rows follow when one more was found; coming back,
        # the page we came from follows.
        has_next = bool(rows) and (backwards or more)
        has_previous = bool(rows) and (more if backwards else cursor is not None)

        def cursor_at(row: Any, *, back: bool) -> str:
            values = [getattr(row, k.attribute.key) for k in keys]
            for key, value in zip(keys, values, strict=True):
                if not cursor_can_hold(value):  # a custom type not refused up front
                    raise cursor_sort_refused(key.attribute.key)
            return codec.encode(values, backwards=back)

        return CursorPage(
            data=rows,
            next_cursor=cursor_at(rows[-1], back=False) if has_next else None,
            previous_cursor=cursor_at(rows[0], back=True) if has_previous else None,
            has_more=has_next,
        )


def _plain_select(query: Select[Any]) -> bool:
    """Whether ``query`` has no DISTINCT and no GROUP BY, so that its rows can be
    counted by replacing its columns with ``count(*)``.

    SQLAlchemy has no public accessor for either; should these attributes go
    away, every count takes the subquery form, which is always right.
    """
    return getattr(query, "_distinct", True) is False and not getattr(
        query, "_group_by_clauses", True
    )
