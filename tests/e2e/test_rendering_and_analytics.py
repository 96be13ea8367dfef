"""Rendering jobs (their races and crashes), analytics in one query, template removal."""

import asyncio
import uuid

import pytest

from examples.video_app.services import VideoService, render_video
from heygen_conventions.testing import assert_ok, capture_logs
from tests.e2e.conftest import Stack
from tests.fixtures.db import count_queries


async def make_video(stack: Stack, headers: dict[str, str], **fields: object) -> dict[str, object]:
    body = {"title": "Clip", "script": "one two three four five", **fields}
    response = await stack.client.post("/api/v1/videos", json=body, headers=headers)
    created: dict[str, object] = assert_ok(response, status=201)
    return created


async def test_two_jobs_for_one_video_render_it_once(stack: Stack) -> None:
    headers = await stack.register("ann@example.com")
    video = await make_video(stack, headers)
    video_id = uuid.UUID(str(video["id"]))
    with capture_logs() as logs:
        await asyncio.gather(
            *(
                render_video(stack.database, stack.cache, video_id, render_seconds=0.05)
                for _ in range(2)
            )
        )
    events = [e["event"] for e in logs if str(e.get("event", "")).startswith("Video processing")]
    assert sorted(events) == [
        "Video processing completed",
        "Video processing skipped: no longer pending",
        "Video processing started",
    ]
    done = assert_ok(await stack.client.get(f"/api/v1/videos/{video_id}", headers=headers))
    assert (done["status"], done["version"]) == ("completed", 3)


async def test_a_crashed_job_marks_the_video_failed(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = await stack.register("ben@example.com")
    video = await make_video(stack, headers)
    path = f"/api/v1/videos/{video['id']}"
    assert_ok(await stack.client.get(path, headers=headers))  # cached as pending

    async def explode(self: VideoService, video_id: uuid.UUID) -> None:
        raise RuntimeError("renderer out of memory")

    monkeypatch.setattr(VideoService, "finish_rendering", explode)
    with capture_logs() as logs:
        accepted = await stack.client.post(f"{path}/process", headers=headers)
    assert accepted.status_code == 202, accepted.text
    crash = next(e for e in logs if e["event"] == "Video processing crashed")
    assert crash["level"] == "error"
    assert crash["video_id"] == video["id"]
    failed = assert_ok(await stack.client.get(path, headers=headers))
    assert (failed["status"], failed["failure_reason"]) == (
        "failed",
        "Rendering stopped on an internal error",
    )


async def test_a_video_deleted_while_rendering_is_left_alone(stack: Stack) -> None:
    headers = await stack.register("cat@example.com")
    video = await make_video(stack, headers)
    video_id = uuid.UUID(str(video["id"]))
    async with stack.database.transaction() as session:
        assert await VideoService(session, stack.cache).start_rendering(video_id)
    deleted = await stack.client.delete(f"/api/v1/videos/{video_id}", headers=headers)
    assert deleted.status_code == 204
    async with stack.database.transaction() as session:
        assert await VideoService(session, stack.cache).finish_rendering(video_id) is None


async def test_a_video_is_not_edited_while_it_renders(stack: Stack) -> None:
    headers = await stack.register("dan@example.com")
    video = await make_video(stack, headers)
    video_id = uuid.UUID(str(video["id"]))
    async with stack.database.transaction() as session:
        assert await VideoService(session, stack.cache).start_rendering(video_id)
    busy = await stack.client.patch(
        f"/api/v1/videos/{video_id}", json={"title": "New", "version": 2}, headers=headers
    )
    assert busy.status_code == 409
    assert busy.json()["errors"][0]["code"] == "video_busy"
    again = await stack.client.post(f"/api/v1/videos/{video_id}/process", headers=headers)
    assert again.json()["errors"][0]["code"] == "video_busy"


async def test_analytics_take_one_query_whatever_the_audience(stack: Stack) -> None:
    client = stack.client
    owner = await stack.register("eva@example.com")
    fan = await stack.register("fan@example.com")
    video = await make_video(stack, owner)
    path = f"/api/v1/videos/{video['id']}"
    assert_ok(await client.post(f"{path}/process", headers=owner), status=202)

    counts = []
    for kinds in (["view"], ["view", "like", "comment", "share", "view", "view"] * 5):
        for kind in kinds:
            assert_ok(
                await client.post(f"{path}/engagements", json={"kind": kind}, headers=fan),
                status=201,
            )
        with count_queries(stack.database) as queries:
            figures = assert_ok(await client.get(f"{path}/analytics", headers=owner))
        counts.append([s for s in queries.statements if "video_engagements" in s])
    assert [len(c) for c in counts] == [1, 1]
    assert figures["views"] == 1 + 15
    assert figures["unique_viewers"] == 1
    assert figures["engagement_rate"] == round(15 / 16, 4)


async def test_removing_a_template_unlinks_its_videos_in_the_cache_too(stack: Stack) -> None:
    client = stack.client
    admin = await stack.register("gus@example.com", admin=True)
    template = assert_ok(
        await client.post("/api/v1/templates", json={"name": "Vertical"}, headers=admin),
        status=201,
    )
    video = await make_video(stack, admin, template_id=template["id"])
    path = f"/api/v1/videos/{video['id']}"
    assert assert_ok(await client.get(path, headers=admin))["template_id"] == template["id"]
    removed = await client.delete(f"/api/v1/templates/{template['id']}", headers=admin)
    assert removed.status_code == 204
    assert assert_ok(await client.get(path, headers=admin))["template_id"] is None
