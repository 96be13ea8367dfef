"""One user's whole journey through the HTTP API, on every configured stack."""

import uuid
from typing import Any

from examples.video_app.models import VideoStatus
from heygen_conventions import cache_stats
from heygen_conventions.testing import assert_error, assert_ok, capture_logs
from tests.e2e.conftest import Stack

SCRIPT = "Hello team. Here is how the quarter went, in twenty words or so, for everyone."


def video_stats(stack: Stack) -> dict[str, Any]:
    stats: dict[str, Any] = cache_stats(stack.cache)["namespaces"].get("videos", {})
    return stats


async def test_user_journey(stack: Stack) -> None:
    client = stack.client
    ada = await stack.register("ada@example.com")
    admin = await stack.register("root@example.com", admin=True)

    me = assert_ok(await client.get("/api/v1/users/me", headers=ada))
    assert (me["email"], me["role"], me["is_active"]) == ("ada@example.com", "user", True)

    # Templates: admins add them, anyone lists them, users may not add them.
    template_body = {"name": "Studio", "description": "Avatar at a desk"}
    refused = await client.post("/api/v1/templates", json=template_body, headers=ada)
    assert_error(refused, status=403, code="permission_denied")
    template = assert_ok(
        await client.post("/api/v1/templates", json=template_body, headers=admin), status=201
    )
    listed = (await client.get("/api/v1/templates")).json()
    assert [t["name"] for t in listed["data"]] == ["Studio"]

    # Create videos.
    created = []
    for n, title in enumerate(["Quarterly update", "Launch teaser", "Team intro"]):
        body = {
            "title": f"  {title}  ",
            "description": f"Video number {n}",
            "script": SCRIPT if n != 1 else None,
            "template_id": template["id"] if n == 0 else None,
        }
        response = await client.post("/api/v1/videos", json=body, headers=ada)
        video = assert_ok(response, status=201)
        assert video["title"] == title  # trimmed
        assert (video["status"], video["version"]) == ("pending", 1)
        assert response.json()["message"] == "Video created"
        created.append(video)
    quarterly, teaser, intro = created
    assert_ok(
        await client.post("/api/v1/videos", json={"title": "Admin's own"}, headers=admin),
        status=201,
    )

    # List with every query parameter.
    listing = await client.get(
        "/api/v1/videos",
        params={
            "page": 1,
            "per_page": 2,
            "sort_by": "title",
            "sort_order": "asc",
            "search": "T",
            "status": "pending",
        },
        headers=ada,
    )
    page = listing.json()
    assert listing.status_code == 200, listing.text
    assert [v["title"] for v in page["data"]] == ["Launch teaser", "Quarterly update"]
    assert (page["total_count"], page["total_pages"], page["has_next"]) == (3, 2, True)
    second = (
        await client.get(
            "/api/v1/videos",
            params={"page": 2, "per_page": 2, "sort_by": "title", "sort_order": "asc"},
            headers=ada,
        )
    ).json()
    assert [v["title"] for v in second["data"]] == ["Team intro"]
    assert second["has_previous"]
    assert not second["has_next"]
    searched = (await client.get("/api/v1/videos", params={"search": "TEASER"}, headers=ada)).json()
    assert [v["id"] for v in searched["data"]] == [teaser["id"]]
    newest_first = (await client.get("/api/v1/videos", headers=ada)).json()
    assert [v["id"] for v in newest_first["data"]] == [intro["id"], teaser["id"], quarterly["id"]]
    everyone = (await client.get("/api/v1/videos", headers=admin)).json()
    assert everyone["total_count"] == 4  # admins see every user's videos
    none_done = await client.get("/api/v1/videos", params={"status": "completed"}, headers=ada)
    assert none_done.json()["data"] == []

    # The keyset variant: the caller's videos newest first, one page at a time.
    first = (await client.get("/api/v1/users/me/videos", params={"limit": 2}, headers=ada)).json()
    assert [v["id"] for v in first["data"]] == [intro["id"], teaser["id"]]
    assert first["has_more"]
    assert first["previous_cursor"] is None
    rest = (
        await client.get(
            "/api/v1/users/me/videos",
            params={"limit": 2, "cursor": first["next_cursor"]},
            headers=ada,
        )
    ).json()
    assert [v["id"] for v in rest["data"]] == [quarterly["id"]]
    assert not rest["has_more"]
    back = (
        await client.get(
            "/api/v1/users/me/videos",
            params={"limit": 2, "cursor": rest["previous_cursor"]},
            headers=ada,
        )
    ).json()
    assert [v["id"] for v in back["data"]] == [intro["id"], teaser["id"]]

    # Read through the cache: the second read is a hit.
    path = f"/api/v1/videos/{quarterly['id']}"
    before = video_stats(stack).get("hits", 0)
    assert assert_ok(await client.get(path, headers=ada))["title"] == "Quarterly update"
    assert assert_ok(await client.get(path, headers=ada))["id"] == quarterly["id"]
    assert video_stats(stack)["hits"] == before + 1
    # Unlisted: another signed-in user with the id can read it, not change it.
    assert assert_ok(await client.get(path, headers=admin))["id"] == quarterly["id"]
    bob = await stack.register("bob@example.com")
    assert_error(
        await client.patch(path, json={"title": "Mine now", "version": 1}, headers=bob),
        status=403,
        code="permission_denied",
    )

    # Update (PUT then PATCH), each with the version read; the cache follows at once.
    replaced = assert_ok(
        await client.put(
            path,
            json={
                "title": "Q3 update",
                "script": SCRIPT,
                "template_id": template["id"],
                "version": 1,
            },
            headers=ada,
        )
    )
    assert (replaced["title"], replaced["description"], replaced["version"]) == (
        "Q3 update",
        None,
        2,
    )
    assert assert_ok(await client.get(path, headers=ada))["title"] == "Q3 update"
    patched = assert_ok(
        await client.patch(path, json={"description": "For the team", "version": 2}, headers=ada)
    )
    assert (patched["title"], patched["description"], patched["version"]) == (
        "Q3 update",
        "For the team",
        3,
    )
    # A stale version is refused and changes nothing.
    stale = await client.patch(path, json={"title": "Lost update", "version": 2}, headers=ada)
    assert_error(stale, status=409, field="version")
    assert stale.json()["errors"][0]["code"] == "stale_version"
    assert assert_ok(await client.get(path, headers=ada))["title"] == "Q3 update"

    # Process to completion; every log line of the job carries the request's id.
    with capture_logs() as logs:
        accepted = await client.post(
            f"{path}/process", headers={**ada, "X-Request-ID": "render-42"}
        )
    assert assert_ok(accepted, status=202)["status"] == "pending"
    assert accepted.json()["message"] == "Processing started"
    job = [e for e in logs if str(e.get("event", "")).startswith("Video processing")]
    assert [e["event"] for e in job] == [
        "Video processing requested",
        "Video processing started",
        "Video processing completed",
    ]
    assert {e["request_id"] for e in job} == {"render-42"}
    assert {e["video_id"] for e in job} == {quarterly["id"]}
    done = assert_ok(await client.get(path, headers=ada))
    assert done["status"] == VideoStatus.COMPLETED
    assert done["duration"] >= 1
    assert done["file_size"] > 0
    assert done["version"] == 5
    again = await client.post(f"{path}/process", headers=ada)
    assert_error(again, status=409, code="video_busy")

    # A video without a script fails to render; given a script, it renders.
    teaser_path = f"/api/v1/videos/{teaser['id']}"
    assert_ok(await client.post(f"{teaser_path}/process", headers=ada), status=202)
    failed = assert_ok(await client.get(teaser_path, headers=ada))
    assert (failed["status"], failed["failure_reason"]) == (
        "failed",
        "The video has no script to speak",
    )
    fixed = assert_ok(
        await client.patch(
            teaser_path, json={"script": "Coming soon.", "version": failed["version"]}, headers=ada
        )
    )
    assert (fixed["status"], fixed["failure_reason"]) == ("pending", None)
    assert_ok(await client.post(f"{teaser_path}/process", headers=admin), status=202)
    assert assert_ok(await client.get(teaser_path, headers=ada))["status"] == "completed"

    # Engagement and analytics.
    for headers, kind in [
        (ada, "view"),
        (bob, "view"),
        (bob, "view"),
        (admin, "view"),
        (bob, "like"),
        (admin, "share"),
    ]:
        recorded = await client.post(f"{path}/engagements", json={"kind": kind}, headers=headers)
        assert assert_ok(recorded, status=201)["kind"] == kind
    not_ready = await client.post(
        f"/api/v1/videos/{intro['id']}/engagements", json={"kind": "view"}, headers=bob
    )
    assert_error(not_ready, status=409, code="video_not_ready")
    analytics = assert_ok(await client.get(f"{path}/analytics", headers=ada))
    assert analytics == {
        "video_id": quarterly["id"],
        "views": 4,
        "unique_viewers": 3,
        "likes": 1,
        "shares": 1,
        "comments": 0,
        "engagement_rate": 0.5,
    }
    assert_error(await client.get(f"{path}/analytics", headers=bob), status=403)
    assert assert_ok(await client.get(f"{path}/analytics", headers=admin))["views"] == 4

    # Delete: 204 with no body; then 404, from the database and then from the cache.
    assert_error(await client.delete(path, headers=bob), status=403)
    deleted = await client.delete(path, headers=ada)
    assert deleted.status_code == 204, deleted.text
    assert deleted.content == b""
    negative_before = video_stats(stack).get("negative_hits", 0)
    for _ in range(2):
        assert_error(await client.get(path, headers=ada), status=404, code="video_not_found")
    assert video_stats(stack)["negative_hits"] == negative_before + 1
    assert_error(await client.delete(path, headers=ada), status=404)
    assert_error(await client.get(f"{path}/analytics", headers=ada), status=404)

    # Admin-only template removal: 403 for users; for admins it unlinks the videos.
    template_path = f"/api/v1/templates/{template['id']}"
    assert_error(await client.delete(template_path, headers=ada), status=403)
    removed = await client.delete(template_path, headers=admin)
    assert removed.status_code == 204
    assert removed.content == b""
    assert_error(await client.delete(template_path, headers=admin), status=404)
    assert (await client.get("/api/v1/templates")).json()["data"] == []

    assert assert_ok(await client.get("/api/v1/health"))["status"] == "ok"


async def test_admin_edits_and_deletes_any_video(stack: Stack) -> None:
    client = stack.client
    owner = await stack.register("owner@example.com")
    admin = await stack.register("boss@example.com", admin=True)
    video = assert_ok(
        await client.post("/api/v1/videos", json={"title": "Owned"}, headers=owner), status=201
    )
    path = f"/api/v1/videos/{video['id']}"
    renamed = await client.patch(path, json={"title": "Moderated", "version": 1}, headers=admin)
    assert assert_ok(renamed)["title"] == "Moderated"
    assert (await client.delete(path, headers=admin)).status_code == 204
    assert_error(await client.get(path, headers=owner), status=404)
    assert_error(
        await client.get(f"/api/v1/videos/{uuid.uuid4()}", headers=owner),
        status=404,
        code="video_not_found",
    )
