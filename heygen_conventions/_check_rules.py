"""The convention rules: each function yields (rule id, message, fix) findings.

They read a :class:`~heygen_conventions._check_routes.RouteFacts` or a
pydantic model and know nothing of ignores, severities or reports, which
:mod:`heygen_conventions.checks` adds.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import re
import types
import typing
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final, Literal

from fastapi.dependencies.utils import get_typed_return_annotation
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from starlette.responses import JSONResponse, Response

from heygen_conventions._check_routes import (
    RouteFacts,
    is_fastapi_validation_error,
    request_name,
    strip_optional,
    unalias,
)
from heygen_conventions._naming import (
    is_kebab_or_snake,
    is_plural,
    is_snake_case,
    leading_verb,
    pluralize,
    singular_candidates,
    singularize,
    to_snake,
    words,
)

__all__ = [
    "Finding",
    "doc_findings",
    "model_findings",
    "model_label",
    "models_in",
    "path_findings",
    "query_findings",
    "response_findings",
    "returns_collection",
]

_PARAM_SEGMENT: Final = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
_VERSION_SEGMENT: Final = re.compile(r"v\d+(?:[a-z]+\d*)?")
_VERSIONED_PREFIX: Final = re.compile(r"/api/v\d+(?:[a-z]+\d*)?(?:/|$)")
_PAGE_SIZE_NAMES: Final = frozenset(
    {"perpage", "pagesize", "limit", "itemsperpage", "pagelimit", "maxresults"}
)
_PAGE_NAMES: Final = frozenset({"page", "pagenum", "pagenumber", "pageno"})
_OFFSET_NAMES: Final = frozenset({"offset", "skip"})
_SORT_ORDER_NAMES: Final = frozenset(
    {"sortorder", "sortdir", "sortdirection", "orderdir", "orderdirection"}
)
# Strings a sort_order pattern must refuse.
_SORT_ORDER_PROBES: Final = ("", "ascending", "descending", "random", "asc,desc", "1")

Finding = tuple[str, str, str]
"""(rule id, message, how to fix it)."""


def _is_static(segment: str) -> bool:
    return bool(segment) and "{" not in segment


def _resource_words(segment: str) -> list[str]:
    """Words of a static segment, ignoring a leading dot and a file extension."""
    return words(segment.lstrip(".").split(".")[0])


def _is_version(segment: str) -> bool:
    return _VERSION_SEGMENT.fullmatch(segment) is not None or segment == "api"


def _suggest_path(path: str, *, collection_last: bool) -> str:
    segments = path.split("/")
    suggested: list[str] = []
    for position, segment in enumerate(segments):
        if not _is_static(segment) or _is_version(segment):
            suggested.append(
                _PARAM_SEGMENT.sub(lambda m: "{" + to_snake(m.group(1)) + "}", segment)
            )
            continue
        parts = _resource_words(segment)
        verb = leading_verb(parts)
        if verb is not None:
            parts = parts[1:]
            if not parts:  # `/videos/{video_id}/delete`: the method says it all
                continue
        is_last = position == len(segments) - 1
        before_param = not is_last and segments[position + 1].startswith("{")
        creates = verb in {"add", "create", "insert"}
        if before_param or (is_last and (collection_last or creates)):
            parts[-1] = pluralize(parts[-1])
        suggested.append("-".join(parts))
    return "/".join(suggested) or "/"


def path_findings(path: str, *, returns_collection: bool) -> Iterator[Finding]:
    segments = path.split("/")
    suggest = functools.partial(_suggest_path, path, collection_last=returns_collection)
    for position, segment in enumerate(segments):
        if not _is_static(segment):
            continue
        parts = _resource_words(segment)
        if leading_verb(parts):
            yield (
                "HC101",
                f"segment {segment!r} starts with the verb {parts[0]!r}; "
                "the HTTP method already says what the request does",
                f"name the resource: {suggest()}",
            )
        bare = segment.lstrip(".")
        if "." in bare:
            bare = bare.rsplit(".", 1)[0]
        if not is_kebab_or_snake(bare):
            yield (
                "HC102",
                f"segment {segment!r} is not lowercase kebab- or snake-case",
                f"rename the path: {suggest()}",
            )
        if _is_version(segment) or not parts:
            continue
        is_last = position == len(segments) - 1
        before_param = not is_last and segments[position + 1].startswith("{")
        if (before_param or (is_last and returns_collection)) and not is_plural(parts[-1]):
            role = (
                "the collection addressed by the parameter after it"
                if before_param
                else ("the collection this route lists")
            )
            yield (
                "HC103",
                f"segment {segment!r} names {role}; collections are plural nouns",
                f"use {pluralize(parts[-1])!r}: {suggest()}",
            )
    yield from _path_param_findings(segments)
    # RFC 8615 well-known URIs live at the root by definition.
    if not _VERSIONED_PREFIX.match(path) and not path.startswith("/.well-known/"):
        yield (
            "HC106",
            f"{path!r} is not under a versioned prefix such as /api/v1",
            "include the router with prefix='/api/v1' (or hide internal routes with "
            "include_in_schema=False)",
        )
    if path != "/" and path.endswith("/"):
        yield (
            "HC107",
            f"{path!r} ends with a slash; the path without it answers a redirect",
            f"declare {path.rstrip('/')!r} (route path '' under a prefixed router)",
        )


def _path_param_findings(segments: list[str]) -> Iterator[Finding]:
    for position, segment in enumerate(segments):
        names = _PARAM_SEGMENT.findall(segment)
        for name in names:
            if not is_snake_case(name):
                yield (
                    "HC104",
                    f"path parameter {{{name}}} is not snake_case",
                    f"rename it {{{to_snake(name)}}}",
                )
        previous = segments[position - 1] if position else ""
        if len(names) != 1 or segment != f"{{{names[0]}}}" or not _is_static(previous):
            continue
        if _is_version(previous):
            continue
        param = to_snake(names[0])
        parts = _resource_words(previous)
        if not parts:
            continue
        heads = {
            "_".join([*parts[:-1], singular]) for singular in singular_candidates(parts[-1])
        } | singular_candidates(parts[-1])
        if any(param == f"{head}_id" or param.startswith(f"{head}_") for head in heads):
            continue
        expected = "_".join([*parts[:-1], singularize(parts[-1])]) + "_id"
        yield (
            "HC105",
            f"path parameter {{{names[0]}}} identifies a {previous!r} item; "
            f"name it after the resource",
            f"rename it {{{expected}}}",
        )


def _bounds(info: FieldInfo) -> tuple[float | None, bool]:
    """(smallest allowed value, whether there is a largest) of a numeric parameter."""
    annotation = strip_optional(info.annotation)
    values = _finite_values(annotation)
    if values is not None:
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        return (min(numbers) if numbers else None), True
    lowest: float | None = None
    has_upper = False
    for constraint in info.metadata:
        ge = getattr(constraint, "ge", None)
        gt = getattr(constraint, "gt", None)
        for candidate in (ge, None if gt is None else gt + 1):
            if isinstance(candidate, int | float):
                lowest = candidate if lowest is None else max(lowest, candidate)
        has_upper = has_upper or any(
            getattr(constraint, bound, None) is not None for bound in ("le", "lt")
        )
    return lowest, has_upper


def _finite_values(annotation: Any) -> list[Any] | None:
    if typing.get_origin(annotation) is Literal:
        return list(typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [member.value for member in annotation]
    return None


def _sort_order_problem(info: FieldInfo) -> str | None:
    values = _finite_values(strip_optional(info.annotation))
    if values is not None:
        accepted = {v.value if isinstance(v, enum.Enum) else v for v in values}
        extra = sorted({str(v) for v in accepted} - {"asc", "desc"}, key=str)
        if extra:
            return f"it also accepts {', '.join(map(repr, extra))}"
        missing = [value for value in ("asc", "desc") if value not in accepted]
        return f"it refuses {missing[0]!r}" if missing else None
    patterns = [getattr(c, "pattern", None) for c in info.metadata]
    pattern = next((p for p in patterns if isinstance(p, str)), None)
    if pattern is None:
        return "any string is accepted"
    try:
        compiled = re.compile(pattern)
    except re.error:  # pydantic's (Rust) regex syntax Python cannot read: no verdict
        return None
    loose = [probe for probe in _SORT_ORDER_PROBES if compiled.search(probe)]
    if loose:
        return f"its pattern {pattern!r} also accepts {loose[0]!r}"
    missing = [value for value in ("asc", "desc") if not compiled.search(value)]
    if missing:
        return f"its pattern {pattern!r} refuses {missing[0]!r}"
    return None


def query_findings(route: RouteFacts) -> Iterator[Finding]:
    seen: set[str] = set()
    for param in route.query:
        if param.name in seen or getattr(param.info, "include_in_schema", True) is False:
            continue
        seen.add(param.name)
        key = "".join(words(param.name))
        if not is_snake_case(param.name):
            yield (
                "HC201",
                f"query parameter {param.name!r} is not snake_case",
                f"rename it {to_snake(param.name)!r}",
            )
        if key in _PAGE_SIZE_NAMES:
            lowest, has_upper = _bounds(param.info)
            missing = [
                text
                for text, absent in (
                    ("an upper bound (le=...)", not has_upper),
                    ("a lower bound of 1 (ge=1)", lowest is None or lowest < 1),
                )
                if absent
            ]
            if missing:
                consequence = "; one request can ask for every row" if not has_upper else ""
                yield (
                    "HC202",
                    f"page-size parameter {param.name!r} lacks {' and '.join(missing)}"
                    + consequence,
                    f"{param.name}: int = Query(20, ge=1, le=100)",
                )
        if key in _PAGE_NAMES | _OFFSET_NAMES:
            floor = 1 if key in _PAGE_NAMES else 0
            lowest, _ = _bounds(param.info)
            if lowest is None or lowest < floor:
                yield (
                    "HC203",
                    f"{param.name!r} accepts values below {floor}",
                    f"{param.name}: int = Query({floor}, ge={floor})",
                )
        if key in _SORT_ORDER_NAMES:
            problem = _sort_order_problem(param.info)
            if problem:
                yield (
                    "HC204",
                    f"{param.name!r} should accept only 'asc' and 'desc', but {problem}",
                    f'{param.name}: Literal["asc", "desc"] = "desc"',
                )
        if not (param.info.description or "").strip():
            yield (
                "HC205",
                f"query parameter {param.name!r} has no description",
                f'Query(..., description="...") on {param.name!r}',
            )


def _status_code(route: RouteFacts) -> int:
    declared = route.route.status_code
    if declared is not None:
        return int(declared)
    response_class = _response_class(route)
    status = _DEFAULT_STATUS.get(response_class)
    if status is None:
        parameter = inspect.signature(response_class.__init__).parameters.get("status_code")
        default = parameter.default if parameter is not None else None
        status = _DEFAULT_STATUS[response_class] = default if isinstance(default, int) else 200
    return status


_DEFAULT_STATUS: dict[type[Response], int] = {}


def _response_class(route: RouteFacts) -> type[Response]:
    response_class = route.route.response_class
    value = getattr(response_class, "value", response_class)  # DefaultPlaceholder
    return value if isinstance(value, type) else JSONResponse


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    return repr(annotation).replace("typing.", "")


def _untyped_part(annotation: Any) -> str | None:
    """What in a response annotation is not a model (None when all of it is)."""
    annotation = unalias(annotation)
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = unalias(typing.get_args(annotation)[0])
    if annotation is Any or annotation is object:
        return "Any"
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return next(filter(None, map(_untyped_part, members)), None) if members else "None"
    if origin in (list, set, frozenset, tuple, Sequence, Iterable):
        items = [arg for arg in typing.get_args(annotation) if arg is not Ellipsis]
        if not items:
            return _type_name(annotation)
        return next(filter(None, map(_untyped_part, items)), None)
    if origin is None and isinstance(annotation, type):
        loose = _loose_type_argument(annotation)
        if loose is not None:
            return loose
        if issubclass(annotation, BaseModel) or dataclasses.is_dataclass(annotation):
            return None
        if typing.is_typeddict(annotation):
            return None
    return _type_name(annotation)


def _loose_type_argument(model: type) -> str | None:
    """``Any`` or a dict that a generic model (``APIResponse``) is parametrised with.

    ``-> APIResponse`` leaves ``data`` as Any, and ``APIResponse[dict[str, Any]]``
    wraps a dict: neither documents the payload. Other type arguments (``int``,
    a model) are the model's business.
    """
    own = vars(model).get("__pydantic_generic_metadata__") or {}
    if own.get("parameters"):
        return f"{model.__name__} without its type argument (Any)"
    for klass in model.__mro__:
        args = (vars(klass).get("__pydantic_generic_metadata__") or {}).get("args")
        if args:
            for arg in args:
                part = _untyped_part(arg)
                if part is not None and (part == "Any" or part.startswith(("dict", "Mapping"))):
                    return part
            return None
    return None


def returns_collection(annotation: Any) -> bool:
    annotation = strip_optional(annotation)
    if typing.get_origin(annotation) in (list, set, frozenset, tuple, Sequence):
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name in ("data", "items", "results"):
            model_field = annotation.model_fields.get(name)
            if model_field is not None:
                inner = strip_optional(model_field.annotation)
                if typing.get_origin(inner) in (list, set, frozenset, tuple, Sequence):
                    return True
    return False


def _returns_response_object(route: RouteFacts) -> bool:
    try:
        annotation = get_typed_return_annotation(route.endpoint)
    except Exception:  # an unresolvable hint is FastAPI's concern, not ours
        return False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    else:
        members = [annotation]
    # `-> RedirectResponse | JSONResponse` with response_model=None: it builds each one.
    return bool(members) and all(
        isinstance(member, type) and issubclass(member, Response) for member in members
    )


def response_findings(route: RouteFacts, method: str) -> Iterator[Finding]:
    status = _status_code(route)
    last = route.path.rstrip("/").rsplit("/", 1)[-1]
    last_words = _resource_words(last) if _is_static(last) and not _is_version(last) else []
    if method == "POST" and last_words and is_plural(last_words[-1]) and status not in (201, 202):
        yield (
            "HC301",
            f"POST to the collection {last!r} creates an item but answers {status}",
            "status_code=201 (202 when the item is created asynchronously)",
        )
    if method == "DELETE" and status not in (204, 202):
        yield (
            "HC302",
            f"DELETE answers {status}; a deletion answers 204 No Content with no body",
            "status_code=204 and return None",
        )
    if method in ("HEAD", "OPTIONS") or status < 200 or status in (204, 205, 304):
        return
    response_class = _response_class(route)
    if not issubclass(response_class, JSONResponse) and response_class.media_type != (
        "application/json"
    ):
        return  # files, HTML, redirects and streams have no JSON model to declare
    stream_item = getattr(route.route, "stream_item_type", None)
    declared = stream_item if stream_item is not None else route.route.response_model
    if declared is None:
        if _returns_response_object(route):
            return  # the endpoint builds its own Response
        yield (
            "HC303",
            "declares no response model, so the response is neither validated nor documented",
            "declare response_model=... or a return annotation with a pydantic model",
        )
        return
    untyped = _untyped_part(declared)
    if untyped is not None:
        yield (
            "HC303",
            f"responds with {untyped}, not a pydantic model (declared: {_type_name(declared)})",
            "declare a pydantic model, e.g. APIResponse[VideoResponse]",
        )


def _documented(route: RouteFacts, status: int) -> bool:
    keys = {
        str(key).upper()
        for key, response in route.route.responses.items()
        if not is_fastapi_validation_error(response)
    } | route.app_documented
    return bool({str(status), f"{status // 100}XX", "DEFAULT"} & keys)


def doc_findings(route: RouteFacts) -> Iterator[Finding]:
    api_route = route.route
    docstring = (inspect.getdoc(route.endpoint) or "").strip()
    if not (api_route.summary or docstring):
        yield (
            "HC401",
            "has neither a summary nor a docstring",
            'summary="..." or a one-line docstring',
        )
    if not (api_route.description or "").strip():
        yield (
            "HC402",
            "has no description",
            'description="..." or a docstring',
        )
    if not api_route.tags:
        yield (
            "HC403",
            "has no tags, so the documentation lists it under 'default'",
            'tags=["..."] on the route or its APIRouter',
        )
    if route.answers_401 and not _documented(route, 401):
        schemes = ", ".join(sorted(set(route.security_schemes)))
        yield (
            "HC404",
            f"is protected ({schemes} in its dependencies) but does not document 401",
            'responses=error_responses({401: "Not authenticated"})',
        )
    possible = set(route.raises)
    if "{" in route.path:
        possible.add(404)  # the resource a path parameter names may not exist
    if route.scoped:
        possible.add(403)  # a token without the required scope
    if route.security_schemes:
        possible.discard(401)  # HC404's finding
    if route.has_inputs:
        if route.validation_documented:
            possible.discard(422)  # install_exception_handlers documents the automatic 422
        else:
            possible.add(422)  # FastAPI's HTTPValidationError is not the body clients get
    missing = sorted(status for status in possible if not _documented(route, status))
    if missing:
        listed = ", ".join(map(str, missing))
        fix = "responses=error_responses({" + ", ".join(f'{s}: "..."' for s in missing) + "})"
        if 422 in missing and route.has_inputs:
            fix += (
                "; setup_app() or install_exception_handlers() on the app checked "
                "documents the 422 of every route with inputs"
            )
        yield (
            "HC405",
            f"can answer {listed} but does not document {'it' if len(missing) == 1 else 'them'}",
            fix,
        )


def models_in(
    annotations: Iterable[Any], cache: dict[type[BaseModel], list[type[BaseModel]]]
) -> list[type[BaseModel]]:
    """Every pydantic model reachable from ``annotations``, in order, each once.

    ``cache`` keeps the models each model's fields name, for the rest of the
    check, so the envelope and page models every route shares are read once.
    """
    found: dict[type[BaseModel], None] = {}
    pending = [model for annotation in annotations for model in _models_named(annotation)]
    pending.reverse()
    while pending:
        model = pending.pop()
        if model in found:
            continue
        found[model] = None
        children = cache.get(model)
        if children is None:
            children = cache[model] = [
                child
                for annotation in [
                    *(model_field.annotation for model_field in model.model_fields.values()),
                    *(computed.return_type for computed in model.model_computed_fields.values()),
                ]
                for child in _models_named(annotation)
            ]
        pending.extend(reversed(children))
    return list(found)


def _models_named(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation names directly (through unions, lists and generics)."""
    annotation = unalias(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _models_named(arg)]


def model_label(model: type[BaseModel]) -> str:
    return f"model {model.__module__}.{model.__qualname__}"


def model_findings(model: type[BaseModel], *, response: bool) -> Iterator[Finding]:
    fields = {name: info for name, info in model.model_fields.items() if name != "root"}
    wire_names = {
        name: (
            (info.serialization_alias or info.alias or name)
            if response
            else request_name(name, info)
        )
        for name, info in fields.items()
    }
    # Computed fields are serialised with the others: they are response fields too.
    computed = (
        {(info.alias or name): info for name, info in model.model_computed_fields.items()}
        if response
        else {}
    )
    not_snake = [wire for wire in [*wire_names.values(), *computed] if not is_snake_case(wire)]
    if not_snake:
        yield (
            "HC501",
            f"{_fields(not_snake)} not snake_case",
            "use "
            + ", ".join(repr(to_snake(wire)) for wire in not_snake)
            + " (no camelCase alias or alias_generator)",
        )
    if response:
        undescribed = [
            wire_names[name]
            for name, info in fields.items()
            if not (info.description or "").strip()
        ] + [wire for wire, info in computed.items() if not (info.description or "").strip()]
        if undescribed:
            yield (
                "HC502",
                f"response {_fields(undescribed)} no description".replace(
                    " is no ", " has no "
                ).replace(" are no ", " have no "),
                'Field(..., description="...")',
            )


def _fields(names: list[str]) -> str:
    listed = ", ".join(map(repr, names))
    return f"field {listed} is" if len(names) == 1 else f"fields {listed} are"
