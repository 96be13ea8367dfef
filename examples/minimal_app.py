"""A minimal API showing the response envelope and the error handling.

Run it with ``make demo`` and try:

    curl -s http://127.0.0.1:8000/api/v1/videos
    curl -s http://127.0.0.1:8000/api/v1/videos/00000000-0000-0000-0000-000000000009
    curl -s http://127.0.0.1:8000/api/v1/videos?per_page=1000
    curl -s -X DELETE http://127.0.0.1:8000/api/v1/videos
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID, uuid4

from fastapi import FastAPI, Query
from pydantic import BaseModel, Field

from heygen_conventions import (
    APIResponse,
    ConflictError,
    NotFoundError,
    PaginatedResponse,
    install_exception_handlers,
)


class VideoCreate(BaseModel):
    """Fields a client sends to create a video."""

    title: str = Field(..., min_length=1, max_length=200, description="Video title")
    description: str | None = Field(None, max_length=1000, description="Video description")


class VideoResponse(VideoCreate):
    """A video as the API returns it."""

    id: UUID = Field(..., description="Video ID")


VIDEOS: dict[UUID, VideoResponse] = {
    UUID(int=n): VideoResponse(id=UUID(int=n), title=f"Demo video {n}") for n in range(1, 6)
}

app = FastAPI(title="heygen-conventions minimal demo")
install_exception_handlers(app)


@app.get("/api/v1/videos", response_model=PaginatedResponse[VideoResponse])
async def list_videos(
    page: Annotated[int, Query(ge=1, description="Page number")] = 1,
    per_page: Annotated[int, Query(ge=1, le=100, description="Items per page")] = 2,
) -> PaginatedResponse[VideoResponse]:
    """List videos, a page at a time."""
    items = list(VIDEOS.values())
    start = (page - 1) * per_page
    return PaginatedResponse.create(
        items[start : start + per_page], page=page, per_page=per_page, total_count=len(items)
    )


@app.get("/api/v1/videos/{video_id}", response_model=APIResponse[VideoResponse])
async def get_video(video_id: UUID) -> APIResponse[VideoResponse]:
    """Get one video; 404 in the envelope when it does not exist."""
    video = VIDEOS.get(video_id)
    if video is None:
        raise NotFoundError("Video not found")
    return APIResponse.ok(video)


@app.post("/api/v1/videos", response_model=APIResponse[VideoResponse], status_code=201)
async def create_video(body: VideoCreate) -> APIResponse[VideoResponse]:
    """Create a video; titles are unique (409 otherwise)."""
    if any(v.title == body.title for v in VIDEOS.values()):
        raise ConflictError(f"A video titled {body.title!r} already exists")
    video = VideoResponse(id=uuid4(), **body.model_dump())
    VIDEOS[video.id] = video
    return APIResponse.ok(video, message="Video created")


@app.get("/api/v1/boom", include_in_schema=False)
async def boom() -> None:
    """Shows that an unexpected error answers a generic 500."""
    raise RuntimeError("this text stays in the log, never in the response")


def main() -> None:  # pragma: no cover - runs the server
    import uvicorn

    print("Demo API on http://127.0.0.1:8000 - docs at http://127.0.0.1:8000/docs")
    uvicorn.run(app, host="127.0.0.1", port=8000)


if __name__ == "__main__":  # pragma: no cover
    main()
