"""Tokens: refresh rotation with replay detection, logout, disabled accounts."""

import asyncio
import time

import pytest
from pwdlib import PasswordHash

from examples.video_app import security
from examples.video_app.models import User
from examples.video_app.repositories import UserRepository
from heygen_conventions.testing import assert_error, assert_ok, auth_headers
from tests.e2e.conftest import PASSWORD, Stack


async def tokens(stack: Stack, email: str) -> dict[str, str]:
    response = await stack.client.post(
        "/api/v1/auth/token", data={"username": email, "password": PASSWORD}
    )
    body = response.json()
    assert_ok(response)
    # RFC 6749's fields at the top level, for OAuth2 clients.
    assert body["access_token"] == body["data"]["access_token"]
    assert (body["token_type"], body["expires_in"]) == ("bearer", 900)
    return dict(body["data"])


async def test_refresh_rotates_and_a_replay_revokes_everything(stack: Stack) -> None:
    client = stack.client
    await stack.register("ada@example.com")
    first = await tokens(stack, "ada@example.com")

    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    second = assert_ok(refreshed)
    assert refreshed.json()["message"] == "Tokens refreshed"
    assert second["refresh_token"] != first["refresh_token"]
    assert_ok(await client.get("/api/v1/users/me", headers=auth_headers(second["access_token"])))

    # Later, the old refresh token is presented again (stolen): every token of
    # the user is revoked, the pair issued by the rotation included.
    await asyncio.sleep(1.01 - time.time() % 1)
    replayed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert_error(replayed, status=401, code="refresh_token_reused")
    assert replayed.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    for access in (first["access_token"], second["access_token"]):
        me = await client.get("/api/v1/users/me", headers=auth_headers(access))
        assert_error(me, status=401, code="invalid_token")
    refused = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
    )
    assert_error(refused, status=401, code="invalid_token")
    # Replaying again answers the same and revokes nothing more.
    replayed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert_error(replayed, status=401, code="refresh_token_reused")


async def test_a_concurrent_double_refresh_succeeds_once_and_revokes_both(stack: Stack) -> None:
    client = stack.client
    await stack.register("ann@example.com")
    pair = await tokens(stack, "ann@example.com")
    body = {"refresh_token": pair["refresh_token"]}
    answers = await asyncio.gather(
        client.post("/api/v1/auth/refresh", json=body),
        client.post("/api/v1/auth/refresh", json=body),
    )
    assert sorted(answer.status_code for answer in answers) == [200, 401], answers
    winner = next(answer for answer in answers if answer.status_code == 200)
    loser = next(answer for answer in answers if answer.status_code == 401)
    assert_error(loser, status=401, code="refresh_token_reused")
    issued = assert_ok(winner)
    me = await client.get("/api/v1/users/me", headers=auth_headers(issued["access_token"]))
    assert_error(me, status=401, code="invalid_token")
    refused = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": issued["refresh_token"]}
    )
    assert_error(refused, status=401, code="invalid_token")


async def test_logout_revokes_the_access_and_refresh_tokens(stack: Stack) -> None:
    client = stack.client
    await stack.register("bob@example.com")
    pair = await tokens(stack, "bob@example.com")
    other = await tokens(stack, "bob@example.com")
    headers = auth_headers(pair["access_token"])

    out = await client.post(
        "/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]}, headers=headers
    )
    assert out.status_code == 204, out.text
    assert out.content == b""
    assert_error(await client.get("/api/v1/users/me", headers=headers), status=401)
    # Revoked by logout, not spent by a refresh: a plain 401 that revokes nothing else.
    refused = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert_error(refused, status=401, code="invalid_token")
    # The other session is untouched; logging it out with a garbage refresh token works.
    other_headers = auth_headers(other["access_token"])
    assert_ok(await client.get("/api/v1/users/me", headers=other_headers))
    out = await client.post(
        "/api/v1/auth/logout", json={"refresh_token": "garbage"}, headers=other_headers
    )
    assert out.status_code == 204
    assert_ok(
        await client.post("/api/v1/auth/refresh", json={"refresh_token": other["refresh_token"]})
    )


async def test_logout_everywhere_and_someone_elses_refresh_token(stack: Stack) -> None:
    client = stack.client
    await stack.register("cy@example.com")
    await stack.register("di@example.com")
    cy_laptop = await tokens(stack, "cy@example.com")
    cy_phone = await tokens(stack, "cy@example.com")
    di = await tokens(stack, "di@example.com")

    # Cy's logout cannot revoke Di's refresh token.
    out = await client.post(
        "/api/v1/auth/logout",
        json={"refresh_token": di["refresh_token"]},
        headers=auth_headers(cy_laptop["access_token"]),
    )
    assert out.status_code == 204
    assert_ok(
        await client.post("/api/v1/auth/refresh", json={"refresh_token": di["refresh_token"]})
    )

    # The cutoff counts whole seconds (tokens of the logout's own second stay
    # valid, so a client may log in again at once): log out a second later.
    await asyncio.sleep(1.01 - time.time() % 1)
    out = await client.post(
        "/api/v1/auth/logout",
        json={"everywhere": True},
        headers=auth_headers(cy_phone["access_token"]),
    )
    assert out.status_code == 204
    for token in (cy_laptop["access_token"], cy_phone["access_token"]):
        assert_error(await client.get("/api/v1/users/me", headers=auth_headers(token)), status=401)
    refused = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": cy_phone["refresh_token"]}
    )
    assert_error(refused, status=401)


async def test_a_disabled_account_is_refused_at_once(stack: Stack) -> None:
    client = stack.client
    headers = await stack.register("eve@example.com")
    pair = await tokens(stack, "eve@example.com")
    async with stack.database.transaction() as session:
        users = UserRepository(session)
        user: User | None = await users.get_by_email("eve@example.com")
        assert user is not None
        await users.update(user, {"is_active": False})

    assert_error(
        await client.get("/api/v1/users/me", headers=headers), status=401, code="inactive_user"
    )
    login = await client.post(
        "/api/v1/auth/token", data={"username": "eve@example.com", "password": PASSWORD}
    )
    assert_error(login, status=401, code="inactive_user")
    refresh = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert_error(refresh, status=401, code="inactive_user")


async def test_login_ignores_email_case_and_documented_form_fields(stack: Stack) -> None:
    await stack.register("Fay@Example.com")
    response = await stack.client.post(
        "/api/v1/auth/token",
        data={
            "username": "FAY@example.COM",
            "password": PASSWORD,
            "grant_type": "password",
            "scope": "",
            "client_id": "docs",
        },
    )
    assert assert_ok(response)["token_type"] == "bearer"


async def test_stored_hashes_are_upgraded_when_the_parameters_rise(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    await stack.register("gil@example.com")  # hashed at the tests' minimal cost
    monkeypatch.setattr(security, "_hasher", PasswordHash.recommended())
    await stack.log_in("gil@example.com")
    async with stack.database.transaction() as session:
        user = await UserRepository(session).get_by_email("gil@example.com")
    assert user is not None
    assert user.hashed_password.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    await stack.log_in("gil@example.com")
    assert_error(
        await stack.client.post(
            "/api/v1/auth/token", data={"username": "gil@example.com", "password": "not-it-at-all"}
        ),
        status=401,
        code="invalid_credentials",
    )
