"""Check a FastAPI application against the API conventions.

The checker reads the application object itself: its routes, their dependency
trees, parameters, status codes, documented responses and pydantic models. It
sees what FastAPI serves, not what the source text suggests.

    violations = check_app(app)                  # list[Violation]
    assert_follows_conventions(app)              # in an application's tests
    heygen-conventions check myapp.main:app      # on the command line

Every rule has a stable id (``HC101``), a name (``path-verb``) and a severity.
A rule can be switched off for the whole check (``check_app(app,
ignore={"HC106": "health checks live at the root"})``), for one route
(``openapi_extra={"x-conventions-ignore": {"HC103": "reason"}}`` or the
:func:`ignore_conventions` decorator) or for one model (the decorator on the
class). Ignored findings are kept with their reason, never silently dropped.

Routes hidden from the schema (``include_in_schema=False``) and websocket
routes are not part of the documented API and are not checked.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal, TypeVar

from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.routing import Router

from heygen_conventions._check_routes import RouteFacts, RouteInspector, iter_api_routes
from heygen_conventions._check_rules import (
    Finding,
    doc_findings,
    model_findings,
    model_label,
    models_in,
    path_findings,
    query_findings,
    response_findings,
    returns_collection,
)

__all__ = [
    "IGNORE_MARKER",
    "RULES",
    "Rule",
    "Severity",
    "Violation",
    "assert_follows_conventions",
    "check_app",
    "format_report",
    "ignore_conventions",
]

logger = logging.getLogger("heygen_conventions.checks")

Severity = Literal["error", "warning"]
_SEVERITY_RANK: Final = {"warning": 0, "error": 1}

IGNORE_MARKER: Final = "x-conventions-ignore"
"""Key in a route's ``openapi_extra`` mapping rule ids (or names) to the reason."""

_IGNORE_ATTRIBUTE: Final = "__conventions_ignore__"


@dataclass(frozen=True, slots=True)
class Rule:
    """One convention the checker enforces."""

    id: str
    name: str
    severity: Severity
    summary: str


@dataclass(frozen=True, slots=True)
class Violation:
    """One place where the application breaks a rule.

    ``where`` is the operation (``GET /api/v1/videos``; several methods when a
    path rule fails for all of them) or the model (``model app.VideoResponse``).
    ``ignored_reason`` is set only on findings that an ignore switched off.
    """

    rule: str
    name: str
    severity: Severity
    where: str
    message: str
    fix: str
    ignored_reason: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return dataclasses.asdict(self)


_RULE_LIST: Final = (
    Rule(
        "HC101", "path-verb", "error", "Path segments name resources, not actions the method says"
    ),
    Rule("HC102", "path-case", "error", "Static path segments are lowercase kebab- or snake-case"),
    Rule("HC103", "path-plural", "error", "Collections are plural nouns"),
    Rule("HC104", "path-param-case", "error", "Path parameters are snake_case"),
    Rule("HC105", "path-param-name", "warning", "A collection's id parameter is <resource>_id"),
    Rule("HC106", "path-version", "error", "Routes live under a versioned prefix (/api/v1)"),
    Rule("HC107", "path-trailing-slash", "warning", "Paths do not end with a slash"),
    Rule("HC201", "query-param-case", "error", "Query parameters are snake_case"),
    Rule("HC202", "page-size-bounds", "error", "Page-size parameters are bounded (1..max)"),
    Rule("HC203", "page-lower-bound", "error", "page starts at 1, offset at 0"),
    Rule("HC204", "sort-order-values", "error", "sort_order accepts only asc and desc"),
    Rule("HC205", "query-param-description", "warning", "Query parameters are described"),
    Rule("HC301", "create-status", "error", "POST to a collection answers 201 Created"),
    Rule("HC302", "delete-status", "error", "DELETE answers 204 No Content, without a body"),
    Rule("HC303", "response-model", "error", "JSON responses declare a pydantic model"),
    Rule("HC401", "route-summary", "warning", "Routes have a summary or a docstring"),
    Rule("HC402", "route-description", "warning", "Routes have a description or a docstring"),
    Rule("HC403", "route-tags", "warning", "Routes are tagged"),
    Rule("HC404", "auth-401-documented", "error", "Protected routes document 401"),
    Rule(
        "HC405", "errors-documented", "warning", "Error statuses a route can answer are documented"
    ),
    Rule("HC501", "field-case", "error", "Request and response fields are snake_case"),
    Rule("HC502", "field-description", "warning", "Response model fields are described"),
)

RULES: Final[Mapping[str, Rule]] = MappingProxyType({rule.id: rule for rule in _RULE_LIST})
"""Every rule, by id."""

_RULES_BY_NAME: Final = {rule.name: rule.id for rule in _RULE_LIST}
# Path rules fail for a path whatever the method; their findings are merged.
_PATH_RULES: Final = frozenset({"HC101", "HC102", "HC103", "HC104", "HC105", "HC106", "HC107"})


def _expand_selector(selector: str) -> set[str]:
    """Rule ids named by an id (HC101), a name (path-verb) or an id prefix (HC1)."""
    key = selector.strip()
    if key.upper() in RULES:
        return {key.upper()}
    if key.lower() in _RULES_BY_NAME:
        return {_RULES_BY_NAME[key.lower()]}
    if re.fullmatch(r"HC\d{0,2}", key, re.IGNORECASE):
        matched = {rule_id for rule_id in RULES if rule_id.startswith(key.upper())}
        if matched:
            return matched
    raise ValueError(
        f"unknown convention rule {selector!r}; the rules are "
        + ", ".join(f"{rule.id} ({rule.name})" for rule in _RULE_LIST)
    )


def _expand_ignores(
    ignores: Mapping[str, str] | Iterable[str] | None, default: str
) -> dict[str, str]:
    if ignores is None:
        return {}
    pairs: Iterable[tuple[str, str]]
    if isinstance(ignores, Mapping):
        pairs = ((str(key), str(reason)) for key, reason in ignores.items())
    elif isinstance(ignores, str):
        pairs = [(ignores, default)]
    else:
        pairs = ((key, default) for key in ignores)
    expanded: dict[str, str] = {}
    for key, reason in pairs:
        for rule_id in _expand_selector(key):
            expanded[rule_id] = reason or default
    return expanded


_T = TypeVar("_T")


def ignore_conventions(*rules: str, reason: str) -> Callable[[_T], _T]:
    """Switch rules off for one endpoint function or one model class, with a reason.

    Stacks with FastAPI's route decorators in either order, since it marks the
    object instead of wrapping it::

        @router.get("/api/v1/me")
        @ignore_conventions("path-plural", reason="the caller's own profile")
        async def read_me() -> UserResponse: ...

    Raises:
        ValueError: No rule given, an unknown rule, or an empty reason.
    """
    if not rules:
        raise ValueError("name at least one rule to ignore")
    if not reason.strip():
        raise ValueError("give the reason the rule does not apply here")
    rule_ids = set().union(*(_expand_selector(rule) for rule in rules))

    def mark(target: _T) -> _T:
        existing = dict(vars(target).get(_IGNORE_ATTRIBUTE, {}))
        existing.update(dict.fromkeys(rule_ids, reason))
        setattr(target, _IGNORE_ATTRIBUTE, existing)
        return target

    return mark


def _marked_ignores(target: object) -> dict[str, str]:
    try:
        marked = vars(target).get(_IGNORE_ATTRIBUTE)
    except TypeError:  # no __dict__ (a builtin, a slotted callable)
        return {}
    return dict(marked) if isinstance(marked, dict) else {}


def _model_ignores(model: type[BaseModel]) -> dict[str, str]:
    """The rules a model's class switches off, or the generic it parametrises
    (``Envelope[Video]`` is a subclass pydantic makes of the marked ``Envelope``)."""
    ignored: dict[str, str] = {}
    for klass in reversed(model.__mro__):
        origin = (vars(klass).get("__pydantic_generic_metadata__") or {}).get("origin")
        if origin is not None:
            ignored.update(_marked_ignores(origin))
    ignored.update(_marked_ignores(model))
    return ignored


def _route_ignores(route: RouteFacts) -> dict[str, str]:
    """The rules a route switches off: its ``openapi_extra`` marker and its decorator."""
    where = f"{', '.join(route.methods)} {route.path}"
    marker = (route.route.openapi_extra or {}).get(IGNORE_MARKER, {})
    if not isinstance(marker, Mapping):
        raise ValueError(
            f"{where}: openapi_extra[{IGNORE_MARKER!r}] must map each rule to the reason "
            "it does not apply, e.g. {'HC103': 'singleton resource'}"
        )
    try:
        ignored = _expand_ignores(marker, "")
        ignored.update(_expand_ignores(_marked_ignores(route.endpoint), ""))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if not all(reason.strip() for reason in ignored.values()):
        raise ValueError(f"{where}: give each ignored rule the reason it does not apply")
    return ignored


_MODELS_LAST: Final = 1 << 30


@dataclass(slots=True)
class _Pending:
    """One finding, gathered over the operations (or models) that share it."""

    rule: str
    order: tuple[int, int]
    path: str | None
    message: str
    fix: str
    active: list[str]
    ignored: list[tuple[str, str]]


class _Findings:
    def __init__(self, selected: set[str], global_ignores: dict[str, str]) -> None:
        self.selected = selected
        self.global_ignores = global_ignores
        self.pending: dict[tuple[str, str, str, str], _Pending] = {}

    def add(
        self,
        found: Iterable[Finding],
        *,
        where: str,
        order: tuple[int, int],
        path: str | None = None,
        ignored: Mapping[str, str] | None = None,
        note: str = "",
    ) -> None:
        for rule, message, fix in found:
            if rule not in self.selected:
                continue
            # Path findings merge over the methods of one path.
            merge_on = path if path is not None and rule in _PATH_RULES else where
            key = (rule, merge_on, message, fix)
            entry = self.pending.get(key)
            if entry is None:
                entry = self.pending[key] = _Pending(
                    rule, order, path if rule in _PATH_RULES else None, message + note, fix, [], []
                )
            reason = (ignored or {}).get(rule) or self.global_ignores.get(rule)
            if reason is None:
                entry.active.append(where)
            else:
                entry.ignored.append((where, reason))

    def violations(self, *, include_ignored: bool) -> list[Violation]:
        violations: list[Violation] = []
        for entry in sorted(self.pending.values(), key=lambda e: (e.order, e.rule)):
            rule = RULES[entry.rule]
            place: list[tuple[str, str | None]] = (
                [(_merge_where(entry.active, entry.path), None)] if entry.active else []
            )
            if include_ignored:
                place += entry.ignored
            violations += [
                Violation(
                    rule.id, rule.name, rule.severity, where, entry.message, entry.fix, reason
                )
                for where, reason in place
            ]
        return violations


def _merge_where(operations: list[str], path: str | None) -> str:
    if path is None or len(operations) == 1:
        return operations[0]
    methods = dict.fromkeys(operation.split(" ", 1)[0] for operation in operations)
    return f"{', '.join(methods)} {path}"


def check_app(
    app: Starlette | Router,
    *,
    select: Iterable[str] | None = None,
    ignore: Mapping[str, str] | Iterable[str] | None = None,
    include_ignored: bool = False,
) -> list[Violation]:
    """Every place where ``app`` breaks a convention, in route order, models last.

    Args:
        app: A FastAPI application, an APIRouter, or a Starlette app mounting them.
        select: Check only these rules (ids, names or id prefixes such as ``HC1``).
        ignore: Rules switched off everywhere; a mapping gives the reason for each.
        include_ignored: Also return the findings an ignore switched off, with
            ``ignored_reason`` set.

    Raises:
        ValueError: An unknown rule in ``select``, ``ignore`` or a route's marker,
            a ``select`` naming no rule, or a route's ignore without a reason.
    """
    started = time.perf_counter()
    if isinstance(select, str):
        select = [select]
    selected = set(RULES) if select is None else set().union(*map(_expand_selector, select))
    if not selected:
        raise ValueError("select names no rule; leave it out to check every rule")
    findings = _Findings(selected, _expand_ignores(ignore, "ignored for the whole application"))
    inspector = RouteInspector()
    model_users: dict[tuple[type[BaseModel], bool], list[RouteFacts]] = {}
    model_cache: dict[type[BaseModel], list[type[BaseModel]]] = {}
    operations = 0
    for index, (prefix, api_route, app_documented) in enumerate(iter_api_routes(app)):
        if not api_route.include_in_schema:
            continue
        route = inspector.route(index, prefix, api_route, app_documented=app_documented)
        route.ignored = _route_ignores(route)
        response_model = api_route.response_model
        on_path = list(
            path_findings(
                route.path,
                returns_collection=response_model is not None
                and returns_collection(response_model),
            )
        )
        on_route = [*query_findings(route), *doc_findings(route)]
        for position, method in enumerate(route.methods):
            operations += 1
            findings.add(
                [*on_path, *on_route, *response_findings(route, method)],
                where=f"{method} {route.path}",
                order=(index, position),
                path=route.path,
                ignored=route.ignored,
            )
        extra_models = [
            r.get("model") for r in api_route.responses.values() if isinstance(r, Mapping)
        ]
        # A streamed route's items (`-> AsyncIterator[VideoResponse]`) are its response.
        stream_item = getattr(api_route, "stream_item_type", None)
        returned = models_in([response_model, stream_item, *extra_models], model_cache)
        received = models_in(route.body_types, model_cache)
        for model in returned:
            model_users.setdefault((model, True), []).append(route)
        for model in received:
            if model not in returned:
                model_users.setdefault((model, False), []).append(route)

    by_name = sorted(model_users.items(), key=lambda item: (model_label(item[0][0]), item[0][1]))
    for position, ((model, is_response), users) in enumerate(by_name):
        first = users[0]
        more = f" and {len(users) - 1} more" if len(users) > 1 else ""
        # A model is exempt from a rule when every route using it is, or when marked itself.
        exempt = {
            rule: reason
            for rule, reason in first.ignored.items()
            if all(rule in user.ignored for user in users)
        }
        findings.add(
            model_findings(model, response=is_response),
            where=model_label(model),
            order=(_MODELS_LAST, position),
            ignored={**exempt, **_model_ignores(model)},
            note=f" (used by {first.methods[0]} {first.path}{more})",
        )

    violations = findings.violations(include_ignored=include_ignored)
    logger.debug(
        "convention check done",
        extra={
            "operations": operations,
            "violations": len(violations),
            "elapsed_ms": round((time.perf_counter() - started) * 1000, 2),
        },
    )
    return violations


def format_report(violations: Sequence[Violation]) -> str:
    """The readable table the CLI prints and :func:`assert_follows_conventions` shows."""
    active = [v for v in violations if v.ignored_reason is None]
    ignored = [v for v in violations if v.ignored_reason is not None]
    lines: list[str] = []
    if active:
        rule_width = max(len(f"{v.rule} {v.name}") for v in active)
        where_width = max(len(v.where) for v in active)
        header = f"{'rule':<{rule_width}}  {'severity':<8}  {'route':<{where_width}}  message"
        lines += [header, "-" * len(header)]
        indent = " " * (rule_width + where_width + 14)
        for v in active:
            rule = f"{v.rule} {v.name}"
            lines.append(
                f"{rule:<{rule_width}}  {v.severity:<8}  {v.where:<{where_width}}  {v.message}"
            )
            lines.append(f"{indent}fix: {v.fix}")
    if ignored:
        lines += ["", "ignored:"] if lines else ["ignored:"]
        lines += [f"  {v.rule} {v.name}  {v.where}: {v.ignored_reason}" for v in ignored]
    errors = sum(v.severity == "error" for v in active)
    summary = (
        f"{_count(len(active), 'violation')} "
        f"({_count(errors, 'error')}, {_count(len(active) - errors, 'warning')})"
        if active
        else "no violations"
    )
    if ignored:
        summary += f", {len(ignored)} ignored"
    return "\n".join([*lines, "", summary] if lines else [summary])


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def assert_follows_conventions(
    app: Starlette | Router,
    *,
    ignore: Mapping[str, str] | Iterable[str] | None = None,
    select: Iterable[str] | None = None,
    fail_on: Severity = "warning",
) -> None:
    """Fail with the full report when ``app`` breaks a convention.

    For an application's own test suite::

        def test_api_follows_conventions():
            assert_follows_conventions(app)

    Args:
        ignore: As for :func:`check_app`; a mapping records why.
        select: As for :func:`check_app`.
        fail_on: ``"warning"`` (default) fails on any violation; ``"error"``
            only on error-severity ones, still showing the warnings.

    Raises:
        AssertionError: The report, when a violation at ``fail_on`` or above exists.
    """
    violations = check_app(app, select=select, ignore=ignore, include_ignored=True)
    threshold = _SEVERITY_RANK[fail_on]
    if any(
        v.ignored_reason is None and _SEVERITY_RANK[v.severity] >= threshold for v in violations
    ):
        raise AssertionError(
            "the application breaks the API conventions:\n" + format_report(violations)
        )
