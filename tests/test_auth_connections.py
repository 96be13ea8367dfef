"""Auth on WebSocket routes, scope separators, anonymous callers of owner checks, and
user and subject values that are not what they seem."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi import Depends, WebSocket
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse

from heygen_conventions import (
    ensure_owner_or_admin,
    get_current_user,
    get_optional_user,
    require_admin_role,
)
from tests.fixtures.auth import (
    SECRET,
    Directory,
    FakeClock,
    User,
    assert_nothing_leaked,
    bearer,
    build_app,
    claims_for,
    forge,
    make_settings,
)

INVALID = 'Bearer error="invalid_token"'


@pytest.mark.parametrize("handlers", [True, False])
def test_websocket_routes_answer_401_and_403_never_500(
    handlers: bool, caplog: pytest.LogCaptureFixture
) -> None:
    app, auth, _ = build_app(settings=make_settings(), handlers=handlers)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, user: Any = Depends(get_current_user)) -> None:
        await websocket.accept()
        await websocket.send_json({"id": user.id})

    @app.websocket("/ws/maybe")
    async def maybe(websocket: WebSocket, user: Any = Depends(get_optional_user)) -> None:
        await websocket.accept()
        await websocket.send_json({"id": None if user is None else user.id})

    @app.websocket("/ws/admin", dependencies=[Depends(require_admin_role)])
    async def admin(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"id": "admin"})

    client = TestClient(app)
    alice, root = auth.create_access_token("alice"), auth.create_access_token("root")
    with caplog.at_level(logging.DEBUG, logger="heygen_conventions"):
        for path, headers, seen in [
            ("/ws", bearer(alice), "alice"),
            ("/ws/maybe", {}, None),
            ("/ws/admin", bearer(root), "admin"),
        ]:
            with client.websocket_connect(path, headers=headers) as socket:
                assert socket.receive_json() == {"id": seen}
        for path, headers, status, challenge in [
            ("/ws", {}, 401, "Bearer"),
            ("/ws", bearer("not-a-jwt"), 401, INVALID),
            ("/ws/maybe", bearer("not-a-jwt"), 401, INVALID),
            ("/ws/admin", {}, 401, "Bearer"),
            ("/ws/admin", bearer(alice), 403, None),
        ]:
            with (
                pytest.raises(WebSocketDenialResponse) as denied,
                client.websocket_connect(path, headers=headers),
            ):
                pass  # pragma: no cover - the handshake is refused
            assert (denied.value.status_code, denied.value.headers.get("www-authenticate")) == (
                status,
                challenge,
            ), path
    assert_nothing_leaked(caplog.records, [], alice, root, SECRET)


@pytest.mark.parametrize("separator", ["\u3000", "\u2003", "\xa0", "\x1f", "\x85", "\t", "\n"])
def test_only_a_space_separates_scopes(separator: str) -> None:
    clock = FakeClock()
    client = TestClient(build_app(settings=make_settings(), clock=clock)[0])
    # One scope-token as an issuer signed it ("tenant:<name>", the name chosen by a
    # client); RFC 6749 section 3.3 separates scope-tokens with %x20 only.
    token = forge(claims_for(now=clock.now, scope=f"tenant:x{separator}videos:write"))
    response = client.get("/videos/write", headers=bearer(token))
    assert response.status_code == 403, response.text
    assert "videos:write" not in client.get("/claims", headers=bearer(token)).json()["scopes"]


def test_spaces_still_separate_scopes() -> None:
    clock = FakeClock()
    client = TestClient(build_app(settings=make_settings(), clock=clock)[0])
    token = forge(claims_for(now=clock.now, scope=" videos:read  videos:write "))
    assert client.get("/videos/write", headers=bearer(token)).status_code == 200
    assert client.get("/claims", headers=bearer(token)).json()["scopes"] == [
        "videos:read",
        "videos:write",
    ]


def test_ensure_owner_or_admin_without_a_user_is_401() -> None:
    app, auth, _ = build_app(settings=make_settings())

    @app.get("/drafts/{owner}")
    async def draft(owner: str, user: Any = Depends(get_optional_user)) -> dict[str, str]:
        ensure_owner_or_admin(user, owner)
        return {"owner": owner}

    client = TestClient(app)
    anonymous = client.get("/drafts/alice")
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.headers["www-authenticate"] == "Bearer"
    alice = bearer(auth.create_access_token("alice"))
    assert client.get("/drafts/alice", headers=alice).status_code == 200
    assert client.get("/drafts/root", headers=alice).status_code == 403


def test_roles_given_as_a_mapping_grant_nothing() -> None:
    # {"admin": False} iterates as its keys: refused loudly instead of granting "admin".
    odd = User("odd", roles={"admin": False})  # type: ignore[arg-type]
    app, auth, _ = build_app(settings=make_settings(), directory=Directory({"odd": odd}))
    client = TestClient(app, raise_server_exceptions=False)
    response = client.get("/admin", headers=bearer(auth.create_access_token("odd")))
    assert response.status_code == 500, response.text  # the application's bug, never a 200


@pytest.mark.parametrize("subject", [None, b"alice"])
def test_a_token_for_no_subject_is_refused(subject: Any) -> None:
    # str(None) is "None": an unflushed object's id would name a user called "None".
    _, auth, _ = build_app(settings=make_settings())
    with pytest.raises(ValueError, match="subject"):
        auth.create_access_token(subject)


def test_several_authorization_headers_are_refused() -> None:
    # A proxy that reads another of them than this server would see another identity.
    app, auth, _ = build_app(settings=make_settings())
    client = TestClient(app)
    alice = auth.create_access_token("alice")
    for headers in (
        [("authorization", f"Bearer {alice}"), ("authorization", f"Bearer {alice}")],
        [("authorization", f"Bearer {alice}"), ("authorization", "Basic eDp5")],
    ):
        for path in ("/me", "/maybe"):
            response = client.get(path, headers=headers)
            assert response.status_code == 401, response.text
            assert response.headers["www-authenticate"] == INVALID
    assert client.get("/me", headers=bearer(alice)).status_code == 200
    # No Bearer among them: nothing to confuse, the caller is anonymous as with one.
    basic = [("authorization", "Basic eDp5"), ("authorization", "Basic YTpi")]
    assert client.get("/maybe", headers=basic).json() == {"id": None}


@pytest.mark.parametrize(
    "head", ["+0000000001a", "-0000000001a", "0x000000001a", "0_000000001a", " 0000000001a"]
)
def test_only_hex_digits_carry_a_token_s_time(head: str) -> None:
    from heygen_conventions._tokens import _timed_id_ms, token_id

    made = token_id(1_700_000_000_000)
    assert _timed_id_ms(made) == 1_700_000_000_000
    assert _timed_id_ms(head + "a" + made[12:]) is None
