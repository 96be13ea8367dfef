"""Bad input against every endpoint: always the standard error body, never a 500."""

import uuid
from typing import Any

from heygen_conventions.testing import assert_error, assert_ok
from tests.e2e.conftest import Stack

LONG = "x" * 10_000


def tampered(cursor: str) -> str:
    """The cursor (or token) with one character of its payload changed.

    Not the last character: in unpadded base64 its low bits are padding,
    so changing it may decode to the very same bytes.
    """
    middle = len(cursor) // 4
    return cursor[:middle] + ("A" if cursor[middle] != "A" else "B") + cursor[middle + 1 :]


async def test_bad_input_answers_the_error_envelope(stack: Stack) -> None:
    client = stack.client
    user = await stack.register("user@example.com")
    admin = await stack.register("admin@example.com", admin=True)
    videos = [
        assert_ok(
            await client.post("/api/v1/videos", json={"title": f"Video {n}"}, headers=user),
            status=201,
        )
        for n in range(2)
    ]
    video = f"/api/v1/videos/{videos[0]['id']}"
    missing = f"/api/v1/videos/{uuid.uuid4()}"
    feed = (await client.get("/api/v1/users/me/videos", params={"limit": 1}, headers=user)).json()
    cursor = feed["next_cursor"]
    assert cursor
    refresh_token = (
        await client.post(
            "/api/v1/auth/token",
            data={"username": "user@example.com", "password": "correct-horse-battery"},
        )
    ).json()["data"]["refresh_token"]
    bearer = user["Authorization"]
    access_token = bearer.removeprefix("Bearer ")

    # (what, method, path, request options, status, code or None)
    cases: list[tuple[str, str, str, dict[str, Any], int, str | None]] = [
        # --- registration
        ("register: empty body", "POST", "/api/v1/users", {"json": {}}, 422, "missing"),
        ("register: not JSON", "POST", "/api/v1/users", {"content": b"{nope"}, 422, None),
        (
            "register: not UTF-8",
            "POST",
            "/api/v1/users",
            {"content": b'{"email": "\xff"}', "headers": {"Content-Type": "application/json"}},
            400,
            "bad_request",
        ),
        ("register: a list", "POST", "/api/v1/users", {"json": []}, 422, None),
        (
            "register: wrong types",
            "POST",
            "/api/v1/users",
            {"json": {"email": 1, "password": 2, "full_name": 3}},
            422,
            "string_type",
        ),
        (
            "register: not an email",
            "POST",
            "/api/v1/users",
            {"json": {"email": "nobody", "password": "p" * 12, "full_name": "N"}},
            422,
            "value_error",
        ),
        (
            "register: short password",
            "POST",
            "/api/v1/users",
            {"json": {"email": "a@b.co", "password": "short", "full_name": "N"}},
            422,
            "string_too_short",
        ),
        (
            "register: oversized fields",
            "POST",
            "/api/v1/users",
            {"json": {"email": LONG + "@b.co", "password": LONG, "full_name": LONG}},
            422,
            "string_too_long",
        ),
        (
            "register: blank name",
            "POST",
            "/api/v1/users",
            {"json": {"email": "a@b.co", "password": "long-enough-1", "full_name": "\t"}},
            422,
            "string_too_short",
        ),
        (
            "register: unknown field",
            "POST",
            "/api/v1/users",
            {"json": {"email": "a@b.co", "password": "p" * 12, "full_name": "N", "role": "admin"}},
            422,
            "extra_forbidden",
        ),
        (
            "register: NUL in the name",
            "POST",
            "/api/v1/users",
            {"json": {"email": "a@b.co", "password": "p" * 12, "full_name": "a\x00b"}},
            422,
            "value_error",
        ),
        (
            "register: taken email",
            "POST",
            "/api/v1/users",
            {"json": {"email": "USER@example.com", "password": "p" * 12, "full_name": "N"}},
            409,
            "unique_violation",
        ),
        # --- tokens
        ("login: nothing", "POST", "/api/v1/auth/token", {}, 422, "missing"),
        (
            "login: JSON instead of a form",
            "POST",
            "/api/v1/auth/token",
            {"json": {"username": "user@example.com", "password": "correct-horse-battery"}},
            422,
            "missing",
        ),
        (
            "login: oversized",
            "POST",
            "/api/v1/auth/token",
            {"data": {"username": LONG, "password": LONG}},
            422,
            "string_too_long",
        ),
        (
            "login: wrong grant type",
            "POST",
            "/api/v1/auth/token",
            {"data": {"username": "u@x.io", "password": "p", "grant_type": "client_credentials"}},
            422,
            "string_pattern_mismatch",
        ),
        (
            "login: wrong password",
            "POST",
            "/api/v1/auth/token",
            {"data": {"username": "user@example.com", "password": "wrong-password"}},
            401,
            "invalid_credentials",
        ),
        (
            "login: unknown user",
            "POST",
            "/api/v1/auth/token",
            {"data": {"username": "ghost@example.com", "password": "whatever-it-is"}},
            401,
            "invalid_credentials",
        ),
        ("refresh: empty", "POST", "/api/v1/auth/refresh", {"json": {}}, 422, "missing"),
        (
            "refresh: wrong type",
            "POST",
            "/api/v1/auth/refresh",
            {"json": {"refresh_token": 42}},
            422,
            "string_type",
        ),
        (
            "refresh: oversized",
            "POST",
            "/api/v1/auth/refresh",
            {"json": {"refresh_token": LONG}},
            422,
            "string_too_long",
        ),
        (
            "refresh: garbage",
            "POST",
            "/api/v1/auth/refresh",
            {"json": {"refresh_token": "not.a.token"}},
            401,
            "invalid_token",
        ),
        (
            "refresh: an access token",
            "POST",
            "/api/v1/auth/refresh",
            {"json": {"refresh_token": access_token}},
            401,
            "invalid_token",
        ),
        ("logout: anonymous", "POST", "/api/v1/auth/logout", {}, 401, "not_authenticated"),
        (
            "logout: refresh token as bearer",
            "POST",
            "/api/v1/auth/logout",
            {"headers": {"Authorization": f"Bearer {refresh_token}"}},
            401,
            "invalid_token",
        ),
        (
            "logout: wrong type",
            "POST",
            "/api/v1/auth/logout",
            {"json": {"everywhere": "sometimes"}, "headers": user},
            422,
            "bool_type",
        ),
        (
            "logout: a number for a boolean",
            "POST",
            "/api/v1/auth/logout",
            {"json": {"everywhere": 0}, "headers": user},
            422,
            "bool_type",
        ),
        # --- the caller
        ("me: anonymous", "GET", "/api/v1/users/me", {}, 401, "not_authenticated"),
        (
            "me: another scheme",
            "GET",
            "/api/v1/users/me",
            {"headers": {"Authorization": "Basic dXNlcjpwYXNz"}},
            401,
            "not_authenticated",
        ),
        (
            "me: tampered token",
            "GET",
            "/api/v1/users/me",
            {"headers": {"Authorization": tampered(bearer)}},
            401,
            "invalid_token",
        ),
        (
            "me: oversized token",
            "GET",
            "/api/v1/users/me",
            {"headers": {"Authorization": f"Bearer {LONG}"}},
            401,
            "invalid_token",
        ),
        # --- the keyset feed
        *[
            (
                f"feed: {what}",
                "GET",
                "/api/v1/users/me/videos",
                {"params": params, "headers": user},
                422,
                code,
            )
            for what, params, code in [
                ("limit 0", {"limit": 0}, "greater_than_equal"),
                ("limit 101", {"limit": 101}, "less_than_equal"),
                ("limit not a number", {"limit": "ten"}, "int_parsing"),
                ("unknown status", {"status": "archived"}, "enum"),
                ("oversized cursor", {"cursor": LONG}, "string_too_long"),
            ]
        ],
        *[
            (
                f"feed: {what}",
                "GET",
                "/api/v1/users/me/videos",
                {"params": params, "headers": user},
                400,
                "invalid_cursor",
            )
            for what, params in [
                ("tampered cursor", {"cursor": tampered(cursor), "limit": 1}),
                ("garbage cursor", {"cursor": "not-a-cursor"}),
                ("cursor of another filter", {"cursor": cursor, "limit": 1, "status": "failed"}),
                ("cursor with bad base64", {"cursor": "@@@.@@@"}),
            ]
        ],
        ("feed: anonymous", "GET", "/api/v1/users/me/videos", {}, 401, "not_authenticated"),
        # --- video listing
        *[
            (
                f"list: {what}",
                "GET",
                "/api/v1/videos",
                {"params": params, "headers": user},
                422,
                code,
            )
            for what, params, code in [
                ("page 0", {"page": 0}, "greater_than_equal"),
                ("page not a number", {"page": "first"}, "int_parsing"),
                ("page too deep", {"page": 10**16}, "less_than_equal"),
                ("per_page 101", {"per_page": 101}, "less_than_equal"),
                ("unknown sort field", {"sort_by": "hashed_password"}, "literal_error"),
                ("bad sort order", {"sort_order": "up"}, "literal_error"),
                ("oversized search", {"search": LONG}, "string_too_long"),
                ("unknown status", {"status": "archived"}, "enum"),
            ]
        ],
        ("list: anonymous", "GET", "/api/v1/videos", {}, 401, "not_authenticated"),
        # --- video creation
        *[
            (
                f"create: {what}",
                "POST",
                "/api/v1/videos",
                {"json": body, "headers": user},
                422,
                code,
            )
            for what, body, code in [
                ("no title", {"description": "x"}, "missing"),
                ("title a number", {"title": 7}, "string_type"),
                ("blank title", {"title": "   "}, "string_too_short"),
                ("oversized title", {"title": "t" * 201}, "string_too_long"),
                # The documented maxLength is about what is sent, not what stripping leaves.
                ("oversized with padding", {"title": "t" + " " * 200}, "string_too_long"),
                ("forbidden characters", {"title": "a/b<c>"}, "value_error"),
                ("oversized description", {"title": "t", "description": LONG}, "string_too_long"),
                ("oversized script", {"title": "t", "script": "s" * 5001}, "string_too_long"),
                ("malformed template id", {"title": "t", "template_id": "nope"}, "uuid_parsing"),
                (
                    "same title and description",
                    {"title": "Same", "description": "same"},
                    "value_error",
                ),
                ("unknown field", {"title": "t", "status": "completed"}, "extra_forbidden"),
                ("NUL in the script", {"title": "t", "script": "a\x00b"}, "value_error"),
                ("null body", None, "missing"),
            ]
        ],
        (
            "create: unknown template",
            "POST",
            "/api/v1/videos",
            {"json": {"title": "t", "template_id": str(uuid.uuid4())}, "headers": user},
            422,
            None,
        ),
        # --- one video
        (
            "get: malformed id",
            "GET",
            "/api/v1/videos/not-a-uuid",
            {"headers": user},
            422,
            "uuid_parsing",
        ),
        ("get: unknown id", "GET", missing, {"headers": user}, 404, "video_not_found"),
        ("get: anonymous", "GET", video, {}, 401, "not_authenticated"),
        *[
            (f"put: {what}", "PUT", path, {"json": body, "headers": user}, status, code)
            for what, path, body, status, code in [
                ("no version", video, {"title": "t"}, 422, "missing"),
                ("version 0", video, {"title": "t", "version": 0}, 422, "greater_than_equal"),
                ("version a word", video, {"title": "t", "version": "one"}, 422, "int_type"),
                ("version a numeral", video, {"title": "t", "version": "1"}, 422, "int_type"),
                ("no title", video, {"version": 1}, 422, "missing"),
                (
                    "malformed id",
                    "/api/v1/videos/42",
                    {"title": "t", "version": 1},
                    422,
                    "uuid_parsing",
                ),
                ("unknown id", missing, {"title": "t", "version": 1}, 404, "video_not_found"),
                ("stale version", video, {"title": "t", "version": 7}, 409, "stale_version"),
            ]
        ],
        *[
            (f"patch: {what}", "PATCH", video, {"json": body, "headers": user}, status, code)
            for what, body, status, code in [
                ("only the version", {"version": 1}, 422, "value_error"),
                ("title removed", {"title": None, "version": 1}, 422, "value_error"),
                ("oversized title", {"title": LONG, "version": 1}, 422, "string_too_long"),
                ("unknown field", {"views": 10, "version": 1}, 422, "extra_forbidden"),
            ]
        ],
        (
            "patch: admin's own rules",
            "PATCH",
            video,
            {"json": {"version": 1, "title": "ok"}, "headers": {}},
            401,
            None,
        ),
        (
            "delete: malformed id",
            "DELETE",
            "/api/v1/videos/%20",
            {"headers": user},
            422,
            "uuid_parsing",
        ),
        ("delete: unknown id", "DELETE", missing, {"headers": user}, 404, "video_not_found"),
        (
            "process: malformed id",
            "POST",
            "/api/v1/videos/xyz/process",
            {"headers": user},
            422,
            "uuid_parsing",
        ),
        (
            "process: unknown id",
            "POST",
            f"{missing}/process",
            {"headers": user},
            404,
            "video_not_found",
        ),
        (
            "engage: unknown kind",
            "POST",
            f"{video}/engagements",
            {"json": {"kind": "dislike"}, "headers": user},
            422,
            "enum",
        ),
        ("engage: no body", "POST", f"{video}/engagements", {"headers": user}, 422, "missing"),
        (
            "engage: not rendered",
            "POST",
            f"{video}/engagements",
            {"json": {"kind": "view"}, "headers": user},
            409,
            "video_not_ready",
        ),
        (
            "analytics: malformed id",
            "GET",
            "/api/v1/videos/1/analytics",
            {"headers": user},
            422,
            "uuid_parsing",
        ),
        (
            "analytics: unknown id",
            "GET",
            f"{missing}/analytics",
            {"headers": user},
            404,
            "video_not_found",
        ),
        # --- templates
        *[
            (
                f"template: {what}",
                "POST",
                "/api/v1/templates",
                {"json": body, "headers": admin},
                422,
                code,
            )
            for what, body, code in [
                ("no name", {}, "missing"),
                ("oversized name", {"name": LONG}, "string_too_long"),
                ("unknown aspect ratio", {"name": "T", "aspect_ratio": "4:3"}, "literal_error"),
            ]
        ],
        (
            "template: as a user",
            "POST",
            "/api/v1/templates",
            {"json": {"name": "T"}, "headers": user},
            403,
            "permission_denied",
        ),
        (
            "template: anonymous",
            "POST",
            "/api/v1/templates",
            {"json": {"name": "T"}},
            401,
            "not_authenticated",
        ),
        ("template: list page 0", "GET", "/api/v1/templates", {"params": {"page": 0}}, 422, None),
        (
            "template: list unknown sort",
            "GET",
            "/api/v1/templates",
            {"params": {"sort_by": "id"}},
            422,
            None,
        ),
        (
            "template: delete malformed id",
            "DELETE",
            "/api/v1/templates/abc",
            {"headers": admin},
            422,
            "uuid_parsing",
        ),
        (
            "template: delete unknown id",
            "DELETE",
            f"/api/v1/templates/{uuid.uuid4()}",
            {"headers": admin},
            404,
            "template_not_found",
        ),
        (
            "template: delete as a user",
            "DELETE",
            f"/api/v1/templates/{uuid.uuid4()}",
            {"headers": user},
            403,
            "permission_denied",
        ),
        # --- the router itself
        ("unknown path", "GET", "/api/v1/nothing-here", {}, 404, "not_found"),
        ("wrong method", "DELETE", "/api/v1/videos", {"headers": user}, 405, None),
    ]

    failures = []
    for what, method, path, options, status, code in cases:
        response = await client.request(method, path, **options)
        if response.status_code >= 500:
            failures.append(f"{what}: {response.status_code} {response.text}")
            continue
        try:
            body = assert_error(response, status=status, code=code)
            assert body["metadata"]["request_id"], body
            assert LONG not in response.text, "the submitted value was echoed back"
        except AssertionError as exc:
            failures.append(f"{what}: {exc}")
    assert not failures, "\n".join(failures)
    # Nothing above changed the video.
    assert assert_ok(await client.get(video, headers=user))["version"] == 1
