"""Page parameters for routes, and the signed cursors of keyset pagination.

``PageParams`` is what a listing route takes: ``page``, ``per_page``,
``sort_by`` (from an allow-list), ``sort_order`` and ``search``. Use
``PageParams.depends(...)`` to configure it per endpoint; the allowed sort
fields then show as an enum in OpenAPI, and anything else is a 422 in the
standard error body listing them::

    VideoPage = Annotated[
        PageParams,
        Depends(PageParams.depends(sort_fields=("created_at", "title"), max_per_page=50)),
    ]

    @router.get("/videos")
    async def list_videos(params: VideoPage, db: DBSession) -> PaginatedResponse[VideoOut]:
        return await VideoRepository(db).paginate(params)

Keyset cursors are opaque to clients: base64url JSON plus an HMAC-SHA256 tag,
bound to the listing (model, sort, filters) they were issued for. A cursor
that was altered, comes from another listing or is too old is a 400.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import inspect
import logging
import math
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as time_of_day
from decimal import Decimal
from typing import Annotated, Any, Literal

import orjson
from fastapi import Query
from pydantic import AfterValidator
from sqlalchemy import ColumnElement, PickleType, and_, false, literal, or_, tuple_
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.types import Indexable, TypeDecorator, TypeEngine

from heygen_conventions.errors import BadRequestError, InvalidInputError
from heygen_conventions.responses import ErrorDetail

__all__ = ["MAX_PAGE", "CountStrategy", "PageParams", "SortOrder"]

logger = logging.getLogger("heygen_conventions.pagination")

SortOrder = Literal["asc", "desc"]
CountStrategy = Literal["exact", "estimate", "none"]

#: Highest page number accepted. With a page size past 9,223 its offset can pass 64 bits:
#: such a page is past the end of any table and answers empty without a query.
MAX_PAGE = 10**15

DEFAULT_PER_PAGE = 20
DEFAULT_MAX_PER_PAGE = 100
MAX_SEARCH_LENGTH = 200

# C0 control characters but tab. PostgreSQL text cannot hold NUL (the query
# fails) while SQLite ends the pattern there and matches every row: refused
# up front, both databases answer the same 422.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0a-\x1f]")


def _check_search(search: str | None) -> str | None:
    if search is not None and _CONTROL_CHARACTERS.search(search):
        raise ValueError("must not contain control characters (tab excepted)")
    return search


class InvalidPageParameter(InvalidInputError, ValueError):
    """A page parameter out of range: a 422 when it came from a client (a route
    building ``PageParams(page=page)`` or passing ``limit=``), a ValueError for code."""


def invalid_parameter(field: str, message: str) -> InvalidPageParameter:
    return InvalidPageParameter(
        message, details=[ErrorDetail(code="invalid_parameter", message=message, field=field)]
    )


def check_search_text(search: str) -> None:
    """Refuse search text with control characters, wherever it comes from.

    Raises:
        InvalidPageParameter: It holds one (422, field ``search``).
    """
    if _CONTROL_CHARACTERS.search(search):
        raise invalid_parameter(
            "search", "search must not contain control characters (tab excepted)"
        )


# The ``search`` query parameter: bounded, without control characters.
_SearchQuery = Annotated[
    str | None,
    Query(max_length=MAX_SEARCH_LENGTH, description="Text to search for."),
    AfterValidator(_check_search),
]


class PageParams:
    """Which page of a listing to return, and in what order.

    Construct it directly (``PageParams(page=2, per_page=10, sort_by="title",
    sort_order="desc")``) or let FastAPI build it from the query string with
    ``Depends(PageParams)`` or, to restrict ``sort_by`` and the page size,
    ``Depends(PageParams.depends(...))``.
    """

    __slots__ = ("page", "per_page", "search", "sort_by", "sort_order")

    def __init__(
        self,
        page: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page number, from 1.")] = 1,
        per_page: Annotated[
            int, Query(ge=1, le=DEFAULT_MAX_PER_PAGE, description="Items per page.")
        ] = DEFAULT_PER_PAGE,
        sort_by: Annotated[
            str | None, Query(max_length=64, description="Field to sort by.")
        ] = None,
        sort_order: Annotated[SortOrder, Query(description="Sort direction.")] = "asc",
        search: _SearchQuery = None,
    ) -> None:
        # Checked again here: routes pass client values straight in (the README's
        # ``PageParams(page=page)``), so each is a 422 as well as a ValueError.
        if not 1 <= page <= MAX_PAGE:
            raise invalid_parameter("page", f"page must be between 1 and {MAX_PAGE}, got {page}")
        if per_page < 1:
            raise invalid_parameter("per_page", f"per_page must be >= 1, got {per_page}")
        if sort_order not in ("asc", "desc"):
            raise invalid_parameter(
                "sort_order", f"sort_order must be 'asc' or 'desc', got {sort_order!r}"
            )
        self.page = page
        self.per_page = per_page
        self.sort_by = sort_by
        self.sort_order: SortOrder = sort_order
        if search is not None:
            check_search_text(search)
        self.search = (search.strip() or None) if search is not None else None

    @property
    def offset(self) -> int:
        """Rows before this page."""
        return (self.page - 1) * self.per_page

    @property
    def sort(self) -> str | None:
        """The repository sort spec: ``"title"``, ``"-title"``, or None for the default."""
        if self.sort_by is None:
            return None
        return f"-{self.sort_by}" if self.sort_order == "desc" else self.sort_by

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PageParams):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, name) for name in self.__slots__))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"PageParams({fields})"

    @classmethod
    def depends(
        cls,
        *,
        sort_fields: Sequence[str] | None = (),
        default_sort: str | None = None,
        default_order: SortOrder = "asc",
        default_per_page: int = DEFAULT_PER_PAGE,
        max_per_page: int = DEFAULT_MAX_PER_PAGE,
        search: bool = True,
    ) -> Callable[..., Awaitable[PageParams]]:
        """A dependency building :class:`PageParams` with this endpoint's rules.

        Args:
            sort_fields: The fields ``sort_by`` may name; published as an enum.
                Pass the repository's (``VideoRepository.sortable_fields``) to
                keep one list. Empty or None: the endpoint has no ``sort_by``.
            default_sort: Sort used when the client gives none (one of
                ``sort_fields``); None leaves the repository's default.
            default_order: Direction used when the client gives none.
            default_per_page: Page size used when the client gives none.
            max_per_page: Largest page size accepted (422 above it).
            search: Whether the endpoint takes a ``search`` parameter.

        Raises:
            ValueError: The configuration contradicts itself.
        """
        fields = tuple(dict.fromkeys(sort_fields or ()))
        if default_sort is not None and default_sort not in fields:
            raise ValueError(f"default_sort {default_sort!r} is not one of {fields}")
        if not 1 <= default_per_page <= max_per_page:
            raise ValueError(
                f"default_per_page must be between 1 and max_per_page ({max_per_page}), "
                f"got {default_per_page}"
            )
        if default_order not in ("asc", "desc"):
            raise ValueError(f"default_order must be 'asc' or 'desc', got {default_order!r}")

        parameters = [
            inspect.Parameter(
                "page",
                inspect.Parameter.KEYWORD_ONLY,
                default=1,
                annotation=Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page number.")],
            ),
            inspect.Parameter(
                "per_page",
                inspect.Parameter.KEYWORD_ONLY,
                default=default_per_page,
                annotation=Annotated[
                    int, Query(ge=1, le=max_per_page, description="Items per page.")
                ],
            ),
        ]
        if fields:
            # Literal[...] over the allowed names: an enum in OpenAPI, and a 422
            # listing them for anything else.
            allowed: Any = Literal[fields]
            parameters += [
                inspect.Parameter(
                    "sort_by",
                    inspect.Parameter.KEYWORD_ONLY,
                    default=default_sort,
                    annotation=Annotated[allowed | None, Query(description="Field to sort by.")],
                ),
                inspect.Parameter(
                    "sort_order",
                    inspect.Parameter.KEYWORD_ONLY,
                    default=default_order,
                    annotation=Annotated[SortOrder, Query(description="Sort direction.")],
                ),
            ]
        if search:
            parameters.append(
                inspect.Parameter(
                    "search",
                    inspect.Parameter.KEYWORD_ONLY,
                    default=None,
                    annotation=_SearchQuery,
                )
            )

        async def page_params(**values: Any) -> PageParams:
            return cls(**values)

        page_params.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            parameters, return_annotation=cls
        )
        return page_params


# --- Signed cursors ----------------------------------------------------------

_CURSOR_VERSION = 1
_MAX_CURSOR_LENGTH = 4096
_TAG_BYTES = 16  # 128-bit HMAC-SHA256 tag
_PROCESS_KEY: bytes | None = None


def process_cursor_key() -> bytes:
    """A random key for this process, used when no secret was configured.

    Its cursors do not survive a restart nor work across instances, so using
    it is logged once.
    """
    global _PROCESS_KEY
    if _PROCESS_KEY is None:
        _PROCESS_KEY = secrets.token_bytes(32)
        logger.warning(
            "No cursor secret configured: keyset cursors are signed with a per-process key "
            "and will not validate on other instances or after a restart. Set "
            "HEYGEN_CURSOR_SECRET (or an HMAC HEYGEN_JWT_SECRET) for Database.from_settings, "
            "or pass cursor_secret= to Database or to the repository."
        )
    return _PROCESS_KEY


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_MICROSECOND = timedelta(microseconds=1)

#: What a cursor carries exactly (see ``_encode_value``): the Python values of
#: the column types a keyset may sort by.
_CURSOR_VALUE_TYPES = (
    *(bool, int, float, str, bytes, Decimal, uuid.UUID, enum.Enum),
    *(datetime, date, time_of_day, timedelta),
)


def _encode_value(value: Any) -> Any:
    # Tagged so that decoding gives back the exact type the column compares with.
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        # JSON has no NaN nor infinities (orjson would write null).
        return value if math.isfinite(value) else {"f": repr(value)}
    if isinstance(value, datetime):
        return {"dt": value.isoformat()}
    if isinstance(value, date):
        return {"d": value.isoformat()}
    if isinstance(value, time_of_day):
        return {"t": value.isoformat()}
    if isinstance(value, timedelta):
        return {"td": str(value // _MICROSECOND)}  # whole microseconds: exact, signed
    if isinstance(value, uuid.UUID):
        return {"u": value.hex}
    if isinstance(value, Decimal):
        return {"n": str(value)}
    if isinstance(value, enum.Enum):
        return {"e": value.name}
    if isinstance(value, bytes):
        return {"b": _b64encode(value)}
    raise TypeError(f"cannot put a {type(value).__name__} in a cursor")


def _decode_value(value: Any, enum_class: type[enum.Enum] | None) -> Any:
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        raise ValueError("bad value")
    ((tag, raw),) = value.items()
    if not isinstance(raw, str):
        raise ValueError("bad value")
    if tag == "dt":
        return datetime.fromisoformat(raw)
    if tag == "d":
        return date.fromisoformat(raw)
    if tag == "t":
        return time_of_day.fromisoformat(raw)
    if tag == "td":
        return timedelta(microseconds=int(raw))
    if tag == "u":
        return uuid.UUID(hex=raw)
    if tag == "n":
        return Decimal(raw)
    if tag == "e" and enum_class is not None:
        return enum_class[raw]
    if tag == "b":
        return _b64decode(raw)
    if tag == "f":
        return float(raw)
    raise ValueError("bad value")


def _invalid_cursor(message: str) -> BadRequestError:
    return BadRequestError(
        message, details=[ErrorDetail(code="invalid_cursor", message=message, field="cursor")]
    )


class CursorCodec:
    """Signs and checks the cursors of one listing.

    Args:
        key: HMAC key.
        listing: Identifies the listing (model, sort, filters); a cursor
            issued for another listing is refused.
        max_age: Seconds a cursor stays valid; None for no limit.
    """

    __slots__ = ("_key", "_listing", "_max_age")

    def __init__(self, key: bytes, listing: str, max_age: float | None) -> None:
        self._key = key
        self._listing = listing
        self._max_age = max_age

    def _tag(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:_TAG_BYTES]

    def encode(self, values: Sequence[Any], *, backwards: bool) -> str:
        payload = {
            "v": _CURSOR_VERSION,
            "l": self._listing,
            "k": [_encode_value(v) for v in values],
            "b": backwards,
            "t": int(time.time()),
        }
        body = orjson.dumps(payload)
        return f"{_b64encode(body)}.{_b64encode(self._tag(body))}"

    def decode(
        self, cursor: str, enum_classes: Sequence[type[enum.Enum] | None]
    ) -> tuple[list[Any], bool]:
        """The key values and direction (backwards or not) of ``cursor``.

        Raises:
            BadRequestError: The cursor is malformed, altered, for another
                listing or expired.
        """
        if len(cursor) > _MAX_CURSOR_LENGTH or cursor.count(".") != 1:
            raise _invalid_cursor("The cursor is malformed")
        body_text, tag_text = cursor.split(".")
        try:
            body, tag = _b64decode(body_text), _b64decode(tag_text)
        except (binascii.Error, ValueError):
            raise _invalid_cursor("The cursor is malformed") from None
        if not hmac.compare_digest(tag, self._tag(body)):
            raise _invalid_cursor("The cursor was altered or signed by another key")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:  # pragma: no cover - only our own JSON is signed
            raise _invalid_cursor("The cursor is malformed") from None
        if not isinstance(payload, dict) or payload.get("v") != _CURSOR_VERSION:
            raise _invalid_cursor("The cursor is from an older version; start from the first page")
        if payload.get("l") != self._listing:
            raise _invalid_cursor(
                "The cursor belongs to another listing (different sort or filters); "
                "start from the first page"
            )
        issued = payload.get("t")
        if self._max_age is not None and (
            not isinstance(issued, int) or time.time() - issued > self._max_age
        ):
            raise _invalid_cursor("The cursor has expired; start from the first page")
        keys = payload.get("k")
        if not isinstance(keys, list) or len(keys) != len(enum_classes):
            raise _invalid_cursor("The cursor does not match this listing")
        try:
            values = [_decode_value(v, e) for v, e in zip(keys, enum_classes, strict=True)]
        except (ValueError, KeyError, TypeError, OverflowError):
            raise _invalid_cursor("The cursor does not match this listing") from None
        return values, bool(payload.get("b"))


def listing_fingerprint(*parts: str) -> str:
    """A short digest naming one listing (model, sort, filters) inside its cursors."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return _b64encode(digest[:12])


def unknown_sort_field(name: str, allowed: Sequence[str]) -> InvalidInputError:
    message = f"Cannot sort by {name!r}; allowed: {', '.join(allowed)}"
    return InvalidInputError(
        message, details=[ErrorDetail(code="invalid_sort_field", message=message, field="sort_by")]
    )


# --- Keyset ordering ---------------------------------------------------------


@dataclass(frozen=True)
class SortKey:
    """One column of a listing's order."""

    attribute: QueryableAttribute[Any]
    descending: bool
    nullable: bool
    enum_class: type[enum.Enum] | None = None


def order_clauses(keys: Sequence[SortKey], *, reverse: bool = False) -> list[Any]:
    """ORDER BY for ``keys``; NULLs last in the listing's order (first when ``reverse``)."""
    clauses = []
    for key in keys:
        descending = key.descending != reverse
        clause = key.attribute.desc() if descending else key.attribute.asc()
        if key.nullable:
            # Explicit, so PostgreSQL and SQLite agree (their defaults differ).
            clause = clause.nulls_first() if reverse else clause.nulls_last()
        clauses.append(clause)
    return clauses


def _carried_by_cursors(column_type: TypeEngine[Any]) -> bool:
    if isinstance(column_type, Indexable | PickleType):
        # JSON, arrays, hstore, pickled objects: no order a cursor could resume from.
        return False
    try:
        python_type: Any = column_type.python_type
    except NotImplementedError:  # SQLAlchemy 2.0, for types that do not say
        python_type = object
    if not isinstance(python_type, type) or python_type is object:
        if isinstance(column_type, TypeDecorator):
            return _carried_by_cursors(column_type.impl_instance)
        return True  # its values decide, when the cursor is made
    return issubclass(python_type, _CURSOR_VALUE_TYPES)


def cursor_can_hold(value: Any) -> bool:
    """Whether a cursor carries ``value`` exactly (a custom type's values may not)."""
    return value is None or isinstance(value, _CURSOR_VALUE_TYPES)


def cursor_sort_refused(name: str) -> InvalidInputError:
    """The error for a keyset sort by a column whose values no cursor can hold (JSON, arrays)."""
    message = f"Cannot page with a cursor sorted by {name!r}; sort by another field"
    return InvalidInputError(
        message, details=[ErrorDetail(code="invalid_sort_field", message=message, field="sort_by")]
    )


def check_cursor_keys(keys: Sequence[SortKey]) -> None:
    """Refuse, before any query, a keyset sort by a column a cursor cannot carry.

    Raises:
        InvalidInputError: Such a column is among ``keys`` (422).
    """
    for key in keys:
        if not _carried_by_cursors(key.attribute.expression.type):
            raise cursor_sort_refused(key.attribute.key)


def keyset_after(
    keys: Sequence[SortKey], values: Sequence[Any], *, reverse: bool = False
) -> ColumnElement[bool]:
    """Rows after ``values`` in the order of ``keys`` (before them when ``reverse``)."""
    directions = [key.descending != reverse for key in keys]
    # Values are bound with their column's type: what the column's own comparisons
    # do, and what lets a boolean be compared at all (SQLAlchemy refuses `col > True`).
    types = [key.attribute.expression.type for key in keys]
    if not any(key.nullable for key in keys) and len(set(directions)) == 1:
        # One row-value comparison, which an index on the sort columns serves.
        left = tuple_(*(key.attribute for key in keys))
        right = tuple_(*values, types=types)
        return left < right if directions[0] else left > right
    # Mixed directions or NULLs: (a > x) OR (a = x AND b > y) OR ...
    alternatives: list[ColumnElement[bool]] = []
    equal_so_far: list[ColumnElement[bool]] = []
    for key, value, column_type, descending in zip(keys, values, types, directions, strict=True):
        attribute = key.attribute
        nulls_first = reverse and key.nullable
        beyond: ColumnElement[bool]
        equal: ColumnElement[bool]
        if value is None:
            beyond = attribute.is_not(None) if nulls_first else false()
            equal = attribute.is_(None)
        else:
            bound = literal(value, column_type)
            beyond = attribute < bound if descending else attribute > bound
            if key.nullable and not nulls_first:
                beyond = or_(beyond, attribute.is_(None))
            equal = attribute == bound
        alternatives.append(and_(*equal_so_far, beyond))
        equal_so_far.append(equal)
    return or_(*alternatives)
