"""Liveness and readiness for load balancers and orchestrators: ``/api/v1/health``."""

from typing import Literal

from fastapi import APIRouter

from examples.video_app.dependencies import Cache, DatabaseDep
from examples.video_app.docs import ok
from examples.video_app.schemas import HealthResponse
from heygen_conventions import APIResponse, __version__, error_responses, get_logger

router = APIRouter(prefix="/health", tags=["health"])
logger = get_logger(__name__)

_HEALTH_KEY = "health:probe"


@router.get(
    "",
    response_model=APIResponse[HealthResponse],
    summary="Health check",
    description="200 while the database answers (`status: degraded` when only the cache is "
    "down: the API keeps serving from the database); 503 while the database does not.",
    response_description="The instance can serve",
    responses={
        **ok({"status": "ok", "database": "ok", "cache": "ok", "version": __version__}),
        **error_responses({503: "Service temporarily unavailable"}),
    },
)
async def check_health(database: DatabaseDep, cache: Cache) -> APIResponse[HealthResponse]:
    """Check the database (required) and the cache (optional)."""
    await database.ping()  # ServiceUnavailableError (503) when it does not answer
    cache_state: Literal["ok", "unavailable"]
    try:
        await cache.get(_HEALTH_KEY)
        cache_state = "ok"
    except Exception as exc:
        logger.warning("Health check: cache unavailable", error_type=type(exc).__name__)
        cache_state = "unavailable"
    health = HealthResponse(
        status="ok" if cache_state == "ok" else "degraded",
        database="ok",
        cache=cache_state,
        version=__version__,
    )
    return APIResponse.ok(health)
