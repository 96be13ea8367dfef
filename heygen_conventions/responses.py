"""Response models: the envelope every route answers with, and pages of items.

``APIResponse[T]`` is the seed's envelope (``success``, ``message``, ``data``,
``errors``, ``metadata``); ``PaginatedResponse[T]`` is its page of items with
the page arithmetic done once, in :meth:`PaginatedResponse.create`;
``CursorPage[T]`` is the keyset-pagination page.

Parametrised models get readable OpenAPI names: ``APIResponse[VideoResponse]``
is published as ``APIResponseOfVideoResponse`` and
``APIResponse[list[VideoResponse]]`` as ``APIResponseOfListOfVideoResponse``.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Sequence
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "APIResponse",
    "CursorPage",
    "ErrorDetail",
    "ErrorResponse",
    "PaginatedResponse",
    "total_pages",
]

T = TypeVar("T")

_NON_WORD = re.compile(r"[^0-9A-Za-z]+")
_ADDRESS = re.compile(r" at 0x[0-9A-Fa-f]+")  # `<function f at 0x7f...>` differs every run


def _display_name(tp: Any) -> str:
    """CamelCase name of a type parameter, stable across runs (no ids, no modules)."""
    if tp is None or tp is type(None):
        return "Null"
    if tp is Any:
        return "Any"
    origin = typing.get_origin(tp)
    if origin is not None:
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        if origin is tuple and len(args) == 1 and Ellipsis not in typing.get_args(tp):
            return "TupleOfOne" + _display_name(args[0])  # `tuple[int, ...]` is TupleOfInt
        if origin in (typing.Union, types.UnionType):
            return "Or".join(_display_name(a) for a in args)
        if origin is typing.Literal:
            return "Literal" + "Or".join(_NON_WORD.sub("", str(a)).capitalize() for a in args)
        head = _display_name(origin)
        if not args:
            return head
        return f"{head}Of" + "And".join(_display_name(a) for a in args)
    name = getattr(tp, "__name__", None) or _NON_WORD.sub("", _ADDRESS.sub("", repr(tp)))
    return name[:1].upper() + name[1:]


_GENERIC_MODULES = frozenset({"builtins", "typing", "types", "collections.abc"})


def _defining_module(tp: Any) -> str | None:
    """The module of the first application type in ``tp``, looking inside ``list[...]`` etc.

    ``APIResponse[list[videos.Item]]`` and ``APIResponse[list[users.Item]]`` then
    carry different modules, which FastAPI uses to tell their schemas apart.
    """
    if typing.get_origin(tp) is None and isinstance(tp, type):
        module = getattr(tp, "__module__", None)
        if module not in _GENERIC_MODULES:
            return module
    return next((m for m in map(_defining_module, typing.get_args(tp)) if m is not None), None)


class _ReadableGenericName(BaseModel):
    """Gives every fully parametrised model a concrete class with a readable name.

    Pydantic names the JSON schema of ``APIResponse[Video]`` after its origin
    and arguments, which FastAPI mangles to ``APIResponse_Video_``. Returning a
    named subclass instead makes the schema ``APIResponseOfVideo``; it is
    created once per parametrisation, so ``APIResponse[Video] is
    APIResponse[Video]`` still holds.
    """

    @classmethod
    def model_parametrized_name(cls, params: tuple[Any, ...]) -> str:
        return f"{cls.__name__}Of" + "And".join(_display_name(p) for p in params)

    def __class_getitem__(cls, params: Any) -> Any:
        parametrised = super().__class_getitem__(params)
        metadata = getattr(parametrised, "__pydantic_generic_metadata__", None)
        if not isinstance(parametrised, type) or not metadata or metadata["parameters"]:
            return parametrised
        concrete = _CONCRETE.get(parametrised)
        if concrete is None:
            name = parametrised.__name__
            module = next(
                (m for m in map(_defining_module, metadata["args"]) if m is not None),
                cls.__module__,
            )
            concrete = type(name, (parametrised,), {"__module__": module, "__qualname__": name})
            _CONCRETE[parametrised] = concrete
        return concrete


_CONCRETE: dict[type[BaseModel], type[BaseModel]] = {}


class ErrorDetail(BaseModel):
    """One problem with a request: what went wrong, for machines and for people."""

    model_config = ConfigDict(frozen=True)

    code: str = Field(..., description="Stable machine-readable error code, e.g. `not_found`.")
    message: str = Field(..., description="Human-readable explanation.")
    field: str | None = Field(
        default=None,
        description="Location of the offending input for input errors, dotted "
        "(`body.owner.email`, `query.per_page`).",
    )


class APIResponse(_ReadableGenericName, Generic[T]):
    """The envelope every route answers with.

    Build it with :meth:`ok` in routes; the exception handlers build the error
    form (``success=False``, ``data=None``, one :class:`ErrorDetail` or more).
    """

    success: bool = Field(..., description="Whether the request succeeded.")
    message: str = Field(..., description="Human-readable summary.")
    data: T | None = Field(default=None, description="The payload; null on errors.")
    errors: list[ErrorDetail] = Field(default_factory=list, description="Problems, if any.")
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Request id and other per-response facts."
    )

    @classmethod
    def ok(
        cls,
        data: T,
        message: str = "OK",
        *,
        metadata: dict[str, Any] | None = None,
    ) -> APIResponse[T]:
        """A success envelope around ``data``.

        Call it on the parametrised class (``APIResponse[VideoResponse].ok(v)``)
        to have ``data`` validated into that type at once; on the bare class
        the route's ``response_model`` validates it.
        """
        return cls(success=True, message=message, data=data, metadata=metadata or {})


class ErrorResponse(BaseModel):
    """The envelope every error answers with, as OpenAPI documents it.

    The exception handlers build these bodies; routes name this model in
    ``responses=`` (see :func:`heygen_conventions.error_responses`).
    """

    success: Literal[False] = Field(default=False, description="Always false for an error.")
    message: str = Field(..., description="Human-readable summary of what went wrong.")
    data: None = Field(default=None, description="Always null for an error.")
    errors: list[ErrorDetail] = Field(..., description="One entry per problem found.")
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="`request_id`, to quote when reporting the error."
    )


def total_pages(total_count: int, per_page: int) -> int:
    """Number of pages holding ``total_count`` items, ``per_page`` a page (0 when empty)."""
    if total_count < 0:
        raise ValueError(f"total_count must be >= 0, got {total_count}")
    if per_page < 1:
        raise ValueError(f"per_page must be >= 1, got {per_page}")
    return -(-total_count // per_page)


class PaginatedResponse(_ReadableGenericName, Generic[T]):
    """One page of items with the seed's pagination fields.

    ``total_count`` and ``total_pages`` are null when the caller chose not to
    count; ``has_next`` is exact either way. Build it with :meth:`create`.
    """

    data: list[T] = Field(..., description="The items on this page.")
    total_count: int | None = Field(
        ..., ge=0, description="Items over all pages; null when not counted."
    )
    page: int = Field(..., ge=1, description="This page's number, from 1.")
    per_page: int = Field(..., ge=1, description="Page size asked for.")
    total_pages: int | None = Field(..., ge=0, description="Pages in all; null when not counted.")
    has_next: bool = Field(..., description="Whether a later page has items.")
    has_previous: bool = Field(..., description="Whether this is not the first page.")
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="E.g. `count: estimated` for a planner estimate."
    )

    @classmethod
    def create(
        cls,
        items: Sequence[T],
        *,
        page: int,
        per_page: int,
        total_count: int | None,
        metadata: dict[str, Any] | None = None,
    ) -> PaginatedResponse[T]:
        """A page with every derived field computed.

        Args:
            items: The rows fetched for this page. When ``total_count`` is
                None, fetch ``per_page + 1`` rows: the extra row only tells
                ``has_next`` and is dropped.
            page: 1-based page number; a page past the end is fine (empty
                ``data``, true totals).
            per_page: Page size.
            total_count: Items over all pages, or None when not counted.
            metadata: Extra facts, e.g. ``{"count": "estimated"}``.

        Raises:
            ValueError: ``page`` or ``per_page`` below 1, or a negative total.
        """
        if page < 1:
            raise ValueError(f"page must be >= 1, got {page}")
        if per_page < 1:
            raise ValueError(f"per_page must be >= 1, got {per_page}")
        page_items = list(items[:per_page])
        pages: int | None
        if total_count is None:
            pages = None
            has_next = len(items) > per_page
        else:
            pages = total_pages(total_count, per_page)
            has_next = page < pages
        return cls(
            data=page_items,
            total_count=total_count,
            page=page,
            per_page=per_page,
            total_pages=pages,
            has_next=has_next,
            has_previous=page > 1,
            metadata=metadata or {},
        )


class CursorPage(_ReadableGenericName, Generic[T]):
    """One page of a keyset (cursor) listing; deep pages cost what the first does."""

    data: list[T] = Field(..., description="The items on this page.")
    next_cursor: str | None = Field(
        default=None, description="Opaque cursor of the next page, if any."
    )
    previous_cursor: str | None = Field(
        default=None, description="Opaque cursor of the previous page, if any."
    )
    has_more: bool = Field(..., description="Whether items follow this page.")
