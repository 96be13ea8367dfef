"""What the convention checker learns about each route of an application.

FastAPI already resolved everything a route serves (path, dependency tree,
parameters, response model, documented responses); this module reads it back,
through included routers and mounted sub-applications, and adds the 4xx
statuses that the route's own functions can raise.
"""

from __future__ import annotations

import functools
import inspect
import re
import types
import typing
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from fastapi import FastAPI
from fastapi import routing as fastapi_routing
from fastapi.dependencies.models import Dependant
from fastapi.security.base import SecurityBase
from pydantic import AliasChoices, BaseModel
from pydantic.fields import FieldInfo
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute, Host, Mount

__all__ = [
    "STATUSES_ATTRIBUTE",
    "Param",
    "RouteFacts",
    "RouteInspector",
    "is_fastapi_validation_error",
    "iter_api_routes",
    "request_name",
    "strip_optional",
    "unalias",
]

STATUSES_ATTRIBUTE: Final = "__conventions_statuses__"
"""A dependency that sets this (to an iterable of statuses) is taken at its word:
its bytecode is not read. For shared plumbing whose errors are not the route's
to document (a session that turns a commit conflict into 409)."""

_MISSING: Final = object()
_VALIDATION_ERROR_REF: Final = "#/components/schemas/HTTPValidationError"


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    info: FieldInfo


@dataclass(slots=True)
class RouteFacts:
    """One API route and what its dependency tree reveals."""

    index: int
    route: Any  # APIRoute, or FastAPI's RouteContext proxy for an included router's route
    path: str
    methods: list[str]
    endpoint: Callable[..., Any]
    query: list[Param] = field(default_factory=list)
    security_schemes: list[str] = field(default_factory=list)
    refusing_scheme: bool = False  # a security scheme that answers 401 by itself
    scoped: bool = False
    raises: set[int] = field(default_factory=set)
    has_inputs: bool = False
    # Statuses the app's OpenAPI document gives this operation (a 422 only
    # with a body other than FastAPI's): install_exception_handlers documents
    # the 422 of routes with inputs, and the 401 and 403 of protected ones.
    app_documented: frozenset[str] = frozenset()
    body_types: list[Any] = field(default_factory=list)
    ignored: dict[str, str] = field(default_factory=dict)  # rule id -> reason

    @property
    def validation_documented(self) -> bool:
        """Whether the app's OpenAPI documents this route's 422 with its own body."""
        return "422" in self.app_documented

    @property
    def answers_401(self) -> bool:
        """Protected, and something refuses a missing or bad credential: the scheme, or code."""
        return bool(self.security_schemes) and (self.refusing_scheme or 401 in self.raises)

    @property
    def answers_403(self) -> bool:
        """Protected, and asks for scopes or can refuse with a 403 (a role)."""
        return bool(self.security_schemes) and (self.scoped or 403 in self.raises)


def iter_api_routes(app: Any) -> Iterator[tuple[str, Any, frozenset[str]]]:
    """(path prefix, route, statuses the app documents) for every route FastAPI serves.

    Walks included routers and mounts. The statuses are those the OpenAPI
    document of the application serving the route gives it, a 422 only with
    a body other than FastAPI's ``HTTPValidationError``, which is not what
    the library's handlers send (:func:`install_exception_handlers` documents
    theirs, and the 401 and 403 of protected routes). A router checked alone
    has no document.
    """
    yield from _walk_routes(getattr(app, "routes", []), "", _app_documented(app))


def _app_documented(app: Any) -> dict[tuple[str, str], frozenset[str]]:
    """(path, METHOD) -> the statuses the app's document gives the operation."""
    if not isinstance(app, FastAPI):
        return {}
    cached = app.openapi_schema
    try:
        with warnings.catch_warnings():
            # FastAPI's own warnings (duplicate operation ids) are for /docs to raise.
            warnings.simplefilter("ignore")
            document = app.openapi()
    finally:
        if cached is None:
            # Older FastAPI versions never regenerate a cached document: leave
            # none behind for routes added after the check.
            app.openapi_schema = None
    return {
        (path, method.upper()): frozenset(
            str(status).upper()
            for status, response in (operation.get("responses") or {}).items()
            if str(status) != "422" or not is_fastapi_validation_error(response)
        )
        for path, path_item in (document.get("paths") or {}).items()
        for method, operation in path_item.items()
        if isinstance(operation, dict)
    }


def is_fastapi_validation_error(response: Any) -> bool:
    """Whether a documented response is FastAPI's ``HTTPValidationError`` body.

    FastAPI documents it for the 422 of every route with inputs; it is not
    the body the library's handlers send.
    """
    if not isinstance(response, Mapping):
        return False
    if getattr(response.get("model"), "__name__", None) == "HTTPValidationError":
        return True
    content = response.get("content")
    return isinstance(content, Mapping) and any(
        isinstance(body, Mapping) and body.get("schema") == {"$ref": _VALIDATION_ERROR_REF}
        for body in content.values()
    )


def _walk_routes(
    routes: Sequence[BaseRoute], prefix: str, app_documented: dict[tuple[str, str], frozenset[str]]
) -> Iterator[tuple[str, Any, frozenset[str]]]:
    iter_contexts = getattr(fastapi_routing, "iter_route_contexts", None)
    # FastAPI >= 0.160 keeps included routers as nodes and resolves each route's
    # effective path, dependencies and responses lazily; older versions copy the
    # routes flat into the app.
    items: Iterable[Any] = iter_contexts(routes) if iter_contexts is not None else routes
    for item in items:
        original = getattr(item, "original_route", item)
        if isinstance(original, fastapi_routing.APIRoute):
            # What every method of the route has documented.
            documented = (
                frozenset.intersection(
                    *(
                        app_documented.get((item.path_format, method), frozenset())
                        for method in item.methods
                    )
                )
                if item.methods
                else frozenset()
            )
            yield prefix, item, documented
        elif isinstance(original, Mount | Host):
            # A mounted sub-application is served under the mount's path and
            # documents its routes in its own OpenAPI document. Middleware
            # (Mount(middleware=...) or an app wrapped by hand) is looked through.
            mounted = _routed_app(getattr(item, "_base_app", None) or item.app)
            if isinstance(original, Mount):  # served under the mount's path, like a route's
                mount_prefix = prefix + _CONVERTOR.sub(r"{\1}", item.path)
            else:  # a Host matches on the host name only
                mount_prefix = prefix
            yield from _walk_routes(
                getattr(mounted, "routes", None) or [],
                mount_prefix,
                _app_documented(mounted) if isinstance(mounted, FastAPI) else app_documented,
            )


_CONVERTOR: Final = re.compile(r"\{([^}:]+):[^}]*\}")


def _routed_app(app: Any) -> Any:
    """The application under the middleware wrapping ``app``: the first with routes."""
    seen: set[int] = set()
    while not hasattr(app, "routes") and hasattr(app, "app") and id(app) not in seen:
        seen.add(id(app))
        app = app.app
    return app


def _unwrap_call(call: Any) -> Any:
    while isinstance(call, functools.partial):
        call = call.func
    try:
        return inspect.unwrap(call)
    except ValueError:  # pragma: no cover - a __wrapped__ cycle
        return call


def _own_scopes(dependant: Dependant) -> list[str]:
    # FastAPI >= 0.160 names them own_oauth_scopes; earlier, security_scopes.
    scopes = getattr(dependant, "own_oauth_scopes", None) or getattr(
        dependant, "security_scopes", None
    )
    return list(scopes or [])


def _dependants(root: Dependant) -> list[Dependant]:
    """The route's dependency tree, each callable once per set of scopes (as FastAPI
    resolves it: ``Security(dep, scopes=[...])`` is not the ``Depends(dep)`` of a router)."""
    seen: set[tuple[int, tuple[str, ...]]] = set()
    ordered: list[Dependant] = []
    stack = [root]
    while stack:
        dependant = stack.pop()
        key = (
            id(dependant.call) if dependant.call is not None else id(dependant),
            tuple(sorted(_own_scopes(dependant))),
        )
        if key in seen:
            continue
        seen.add(key)
        ordered.append(dependant)
        stack.extend(reversed(dependant.dependencies))
    return ordered


def unalias(annotation: Any) -> Any:
    """The type a ``type X = ...`` alias (``TypeAliasType``) stands for, through ``X[...]`` too."""
    for _ in range(32):  # aliases of aliases; a bound against a cycle
        origin = typing.get_origin(annotation)
        if type(annotation).__name__ == "TypeAliasType":
            annotation = annotation.__value__
        elif type(origin).__name__ == "TypeAliasType":
            value, args = origin.__value__, typing.get_args(annotation)
            params = getattr(origin, "__type_params__", ())
            annotation = value[args] if params and typing.get_args(value) else value
        else:
            break
    return annotation


def strip_optional(annotation: Any) -> Any:
    annotation = unalias(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _query_params(fields: Iterable[Any]) -> Iterator[Param]:
    for model_field in fields:
        info: FieldInfo = model_field.field_info
        model = strip_optional(info.annotation)
        if isinstance(model, type) and issubclass(model, BaseModel):
            # A pydantic model as Query(): each of its fields is a query parameter.
            for name, sub_info in model.model_fields.items():
                yield Param(request_name(name, sub_info), sub_info)
        else:
            yield Param(request_name(model_field.alias or model_field.name, info), info)


def request_name(name: str, info: FieldInfo) -> str:
    """The key a client sends for a field: its validation alias, else its alias."""
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):  # as documented: the first choice
        alias = next((choice for choice in alias.choices if isinstance(choice, str)), None)
    if isinstance(alias, str) and alias:
        return alias
    return info.alias or name


_SKIPPED_MODULES: Final = ("fastapi.", "starlette.", "pydantic.")
_STATUS_CONSTANT: Final = re.compile(r"HTTP_(\d{3})_\w+")


def _python_functions(call: Any) -> list[types.FunctionType]:
    call = _unwrap_call(call)
    if isinstance(call, types.MethodType):
        call = call.__func__
    if isinstance(call, types.FunctionType):
        candidates = [call]
    elif isinstance(call, type):
        candidates = [call.__init__]  # type: ignore[misc]
    else:
        # A callable instance (a dependency class with a switch, like HTTPBearer).
        candidates = [inspect.getattr_static(type(call), "__call__", None)]
    return [
        function
        for function in candidates
        if isinstance(function, types.FunctionType)
        and not str(function.__module__).startswith(_SKIPPED_MODULES)
    ]


def _code_names(code: types.CodeType) -> tuple[set[str], set[object]]:
    names = set(code.co_names) | set(code.co_freevars)
    constants: set[object] = set()
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            inner_names, inner_constants = _code_names(constant)
            names |= inner_names
            constants |= inner_constants
        elif type(constant) is int:
            constants.add(constant)
    return names, constants


def _statuses_referenced(function: types.FunctionType) -> set[int]:
    """4xx statuses a function's own code can answer with.

    Reads the names its bytecode refers to: exception classes with a
    ``status_code`` (the library's ``NotFoundError``, an application's own),
    ``status.HTTP_404_NOT_FOUND``-style constants, and integer literals when it
    builds an ``HTTPException`` or a ``Response``. Functions it calls are not
    followed; their errors are the callee's to document.
    """
    names, constants = _code_names(function.__code__)
    globals_ = function.__globals__
    scope: dict[str, Any] = {name: globals_[name] for name in names & globals_.keys()}
    for name, cell in zip(function.__code__.co_freevars, function.__closure__ or (), strict=False):
        try:
            scope[name] = cell.cell_contents
        except ValueError:  # pragma: no cover - a cell not yet filled
            continue
    modules = [value for name in names if isinstance(value := scope.get(name), types.ModuleType)]
    statuses: set[int] = set()
    literals_are_statuses = False
    for name in names:
        constant = _STATUS_CONSTANT.fullmatch(name)
        if constant:
            statuses.add(int(constant.group(1)))
            continue
        value = scope.get(name, _MISSING)
        candidates = (
            [value]
            if value is not _MISSING
            else [vars(module)[name] for module in modules if name in vars(module)]
        )
        for candidate in candidates:
            if not isinstance(candidate, type):
                continue
            if issubclass(candidate, (StarletteHTTPException, Response)):
                literals_are_statuses = True
            elif issubclass(candidate, BaseException):
                status = getattr(candidate, "status_code", None)
                if isinstance(status, int):
                    statuses.add(status)
    if literals_are_statuses:
        statuses.update(c for c in constants if isinstance(c, int) and 400 <= c < 500)
    return {status for status in statuses if 400 <= status < 500}


class RouteInspector:
    """Builds :class:`RouteFacts`; shared dependencies are read once per check."""

    def __init__(self) -> None:
        self.function_statuses: dict[types.FunctionType, set[int]] = {}

    def statuses(self, call: Any) -> set[int]:
        declared = getattr(_unwrap_call(call), STATUSES_ATTRIBUTE, None)
        if declared is not None:
            return set(declared)
        found: set[int] = set()
        for function in _python_functions(call):
            cached = self.function_statuses.get(function)
            if cached is None:
                cached = self.function_statuses[function] = _statuses_referenced(function)
            found |= cached
        return found

    def route(
        self,
        index: int,
        prefix: str,
        api_route: Any,
        *,
        app_documented: frozenset[str] = frozenset(),
    ) -> RouteFacts:
        info = RouteFacts(
            index=index,
            route=api_route,
            path=prefix + api_route.path_format,
            methods=sorted(api_route.methods),
            endpoint=api_route.endpoint,
            app_documented=app_documented,
        )
        for dependant in _dependants(api_route.dependant):
            info.query.extend(_query_params(dependant.query_params))
            info.has_inputs = info.has_inputs or bool(
                dependant.path_params
                or dependant.query_params
                or dependant.header_params
                or dependant.cookie_params
                or dependant.body_params
            )
            info.body_types.extend(f.field_info.annotation for f in dependant.body_params)
            call = _unwrap_call(dependant.call)
            if isinstance(call, SecurityBase):
                # As the OpenAPI document names it (FastAPI's classes name theirs after the class).
                name = getattr(call, "scheme_name", None)
                info.security_schemes.append(name if isinstance(name, str) else type(call).__name__)
                # One with auto_error=False refuses nothing itself (the library's
                # bearer scheme has no such switch: its dependencies refuse).
                info.refusing_scheme = (
                    info.refusing_scheme or getattr(call, "auto_error", True) is not False
                )
            info.scoped = info.scoped or bool(_own_scopes(dependant))
            if dependant.call is not None and not isinstance(call, SecurityBase):
                info.raises |= self.statuses(dependant.call)
        return info
