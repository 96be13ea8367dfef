"""Cost of answering in the envelope versus returning the bare model.

    python -m benchmarks.bench_responses

Baseline: a FastAPI route returning a 10-field pydantic model with
``response_model`` set to it. Contenders: the same model wrapped with
``APIResponse[Model].ok(...)`` (built once, validated once) and with the bare
``APIResponse.ok(...)`` (FastAPI re-validates it from attributes), and the
library's 404 error path versus FastAPI's default ``HTTPException`` handler.
Rounds are interleaved and the median per-round ratio is printed.
"""

from __future__ import annotations

import asyncio
import statistics
from datetime import UTC, datetime
from uuid import UUID, uuid4

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from benchmarks._asgi import call, per_call_us
from heygen_conventions import APIResponse, NotFoundError, install_exception_handlers


class VideoResponse(BaseModel):
    id: UUID
    user_id: UUID
    title: str
    description: str | None
    status: str
    duration: int | None
    file_size: int | None
    views: int
    created_at: datetime
    updated_at: datetime


VIDEO = VideoResponse(
    id=uuid4(),
    user_id=uuid4(),
    title="A video title",
    description="Some description of the video",
    status="completed",
    duration=120,
    file_size=10_000_000,
    views=42,
    created_at=datetime.now(UTC),
    updated_at=datetime.now(UTC),
)


def build_apps() -> tuple[FastAPI, FastAPI]:
    plain = FastAPI()

    @plain.get("/bare", response_model=VideoResponse)
    async def bare() -> VideoResponse:
        return VIDEO

    @plain.get("/missing")
    async def plain_missing() -> None:
        raise HTTPException(status_code=404, detail="Video not found")

    enveloped = FastAPI()
    install_exception_handlers(enveloped)

    @enveloped.get("/typed", response_model=APIResponse[VideoResponse])
    async def typed() -> APIResponse[VideoResponse]:
        return APIResponse[VideoResponse].ok(VIDEO)

    @enveloped.get("/untyped", response_model=APIResponse[VideoResponse])
    async def untyped() -> APIResponse[VideoResponse]:
        return APIResponse.ok(VIDEO)

    @enveloped.get("/missing")
    async def missing() -> None:
        raise NotFoundError("Video not found")

    return plain, enveloped


async def main(rounds: int = 25, number: int = 400) -> None:
    plain, enveloped = build_apps()
    contenders = {
        "baseline: bare model, response_model=VideoResponse": (plain, "/bare"),
        "APIResponse[VideoResponse].ok(video)": (enveloped, "/typed"),
        "APIResponse.ok(video) (re-validated by FastAPI)": (enveloped, "/untyped"),
        "baseline: FastAPI HTTPException 404": (plain, "/missing"),
        "NotFoundError 404 in the envelope": (enveloped, "/missing"),
    }
    for app, path in contenders.values():  # warm up
        for _ in range(200):
            await call(app, "GET", path)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, (app, path) in contenders.items():
            times[name].append(
                await per_call_us(lambda a=app, p=path: call(a, "GET", p), number=number, repeat=1)
            )
    names = list(contenders)
    print(f"{'contender':55} {'us/req':>8} {'ratio':>6}")
    for name in names:
        base = names[0] if "404" not in name else names[3]
        ratio = statistics.median(t / b for t, b in zip(times[name], times[base], strict=True))
        print(f"{name:55} {statistics.median(times[name]):8.1f} {ratio:6.2f}")


if __name__ == "__main__":
    asyncio.run(main())
