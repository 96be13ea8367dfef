"""How long the convention checker takes on a large application.

    python benchmarks/bench_checks.py [--resources 100] [--rounds 7]

Builds an application of ``5 * resources`` routes (list, create, get, delete
and a sub-resource per resource, each resource on its own router with its own
models, an auth dependency and a pagination dependency), then times, in
interleaved rounds:

- baseline: ``app.openapi()``, FastAPI walking the same routes to document them;
- ``check_app(app)``.

It prints the median time per route and the median same-round ratio to the
baseline. FastAPI >= 0.160 resolves included routes lazily, on the first
request or the first walk over them; on a fresh app the first check pays for
that once, so it is timed separately (``iter_route_contexts`` alone).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi import routing as fastapi_routing
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import Field, create_model

from heygen_conventions import (
    APIResponse,
    NotFoundError,
    PaginatedResponse,
    check_app,
)

bearer = HTTPBearer(auto_error=False)


async def current_user(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    return credentials.credentials if credentials else ""


class Paging:
    def __init__(
        self,
        page: Annotated[int, Query(ge=1, description="Page number")] = 1,
        per_page: Annotated[int, Query(ge=1, le=100, description="Items per page")] = 20,
        sort_order: Annotated[Literal["asc", "desc"], Query(description="Direction")] = "desc",
    ) -> None:
        self.page, self.per_page = page, per_page


def resource_router(index: int) -> APIRouter:
    name = f"item{index}"
    out: Any = create_model(
        f"Item{index}Response",
        id=(UUID, Field(..., description="ID")),
        title=(str, Field(..., description="Title")),
        view_count=(int, Field(0, description="Views")),
    )
    body: Any = create_model(f"Item{index}Create", title=(str, Field(..., description="Title")))
    router = APIRouter(
        prefix=f"/{name}s",
        tags=[name],
        dependencies=[Depends(current_user)],
        responses={401: {"description": "Not authenticated"}},
    )
    missing = {404: {"description": "Not found"}}

    async def list_items(paging: Annotated[Paging, Depends()]) -> Any:
        """List items."""

    async def create_item(data: Any) -> Any:
        """Create an item."""

    async def get_item(item_id: UUID) -> Any:
        """Get an item."""
        raise NotFoundError()

    async def delete_item(item_id: UUID) -> None:
        """Delete an item."""

    async def item_stats(item_id: UUID) -> Any:
        """Figures of an item."""

    create_item.__annotations__["data"] = body
    router.add_api_route("", list_items, response_model=PaginatedResponse[out])
    router.add_api_route(
        "", create_item, methods=["POST"], status_code=201, response_model=APIResponse[out]
    )
    router.add_api_route(
        f"/{{{name}_id}}", _renamed(get_item, name), response_model=APIResponse[out],
        responses=missing,
    )  # fmt: skip
    router.add_api_route(
        f"/{{{name}_id}}", _renamed(delete_item, name), methods=["DELETE"], status_code=204,
        responses=missing,
    )  # fmt: skip
    router.add_api_route(
        f"/{{{name}_id}}/stats", _renamed(item_stats, name), response_model=APIResponse[out],
        responses=missing,
    )  # fmt: skip
    return router


def _renamed(endpoint: Any, name: str) -> Any:
    """The endpoint with its `item_id` parameter named after the resource."""
    import inspect

    signature = inspect.signature(endpoint)
    parameters = [
        p.replace(name=f"{name}_id", annotation=UUID) for p in signature.parameters.values()
    ]
    endpoint.__signature__ = signature.replace(parameters=parameters)
    return endpoint


def build_app(resources: int) -> FastAPI:
    app = FastAPI()
    for index in range(resources):
        app.include_router(resource_router(index), prefix="/api/v1")
    return app


def timed(function: Any) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--resources", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    app = build_app(args.resources)
    routes = args.resources * 5
    iter_contexts = getattr(fastapi_routing, "iter_route_contexts", None)
    resolution = timed(lambda: list(iter_contexts(app.routes))) if iter_contexts else 0.0
    first = timed(lambda: check_app(app))
    violations = check_app(app)
    if violations:
        raise SystemExit(f"the benchmark app should be clean, got {violations[:3]}")

    def openapi() -> None:
        app.openapi_schema = None
        app.openapi()

    openapi()
    baseline_times, check_times, ratios = [], [], []
    for _ in range(args.rounds):
        baseline = timed(openapi)
        check = timed(lambda: check_app(app))
        baseline_times.append(baseline)
        check_times.append(check)
        ratios.append(check / baseline)
    per_route_us = statistics.median(check_times) / routes * 1e6
    print(f"app: {routes} routes on {args.resources} included routers, {args.rounds} rounds")
    print(f"baseline app.openapi():   {statistics.median(baseline_times) * 1000:8.1f} ms  1.00")
    print(
        f"check_app(app):           {statistics.median(check_times) * 1000:8.1f} ms  "
        f"{statistics.median(ratios):.2f}  ({per_route_us:.0f} us per route)"
    )
    print(f"first check after that:   {first * 1000:8.1f} ms")
    print(f"FastAPI resolving the included routes, once per app: {resolution * 1000:.1f} ms")


if __name__ == "__main__":
    main()
