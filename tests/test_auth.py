"""The auth dependencies as an application uses them."""

from __future__ import annotations

import logging
from datetime import timedelta
from enum import Enum
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from heygen_conventions import (
    create_access_token,
    create_refresh_token,
    ensure_owner_or_admin,
    get_current_user,
    install_auth,
    install_exception_handlers,
    require_roles,
    require_scopes,
)
from heygen_conventions._context import end_request_context, start_request_context
from heygen_conventions.errors import PermissionDeniedError
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


@pytest.fixture
def setup() -> tuple[TestClient, Any, Directory]:
    app, auth, directory = build_app()
    return TestClient(app), auth, directory


def test_valid_token_returns_the_loaded_user(setup: Any) -> None:
    client, auth, _ = setup
    response = client.get("/me", headers=bearer(auth.create_access_token("alice")))
    assert response.status_code == 200, response.text
    assert response.json() == {"id": "alice"}


def test_missing_token_is_401_with_bearer_challenge_in_the_envelope(setup: Any) -> None:
    client, _, _ = setup
    response = client.get("/me", headers={"X-Request-ID": "req-1"})
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {
        "success": False,
        "message": "Not authenticated",
        "data": None,
        "errors": [{"code": "not_authenticated", "message": "Not authenticated", "field": None}],
        "metadata": {"request_id": "req-1", "error_code": "not_authenticated"},
    }


def test_invalid_token_answers_rfc6750_invalid_token(setup: Any) -> None:
    client, _, _ = setup
    response = client.get("/me", headers=bearer("a.b.c"))
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.json()["errors"][0]["code"] == "invalid_token"


def test_expired_token_says_so(setup: Any) -> None:
    client, auth, _ = setup
    now = int(auth.codec.clock())
    token = forge(claims_for(iat=now - 100, nbf=now - 100, exp=now - 10))
    response = client.get("/me", headers=bearer(token))
    assert response.status_code == 401, response.text
    assert response.json()["errors"][0]["code"] == "token_expired"
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert "expired" in response.headers["www-authenticate"]


def test_problem_format_is_honoured() -> None:
    directory = Directory({"alice": User("alice")})
    app = FastAPI()
    install_exception_handlers(app, format="problem")
    install_auth(app, user_loader=directory.load, settings=make_settings())

    @app.get("/me")
    async def me(user: User = Depends(get_current_user)) -> dict[str, str]:
        return {"id": user.id}

    response = TestClient(app).get("/me")
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "not_authenticated"


def test_auth_without_exception_handlers_still_answers_401_not_500() -> None:
    app, auth, _ = build_app(handlers=False)
    client = TestClient(app)
    missing = client.get("/me")
    assert missing.status_code == 401, missing.text
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["errors"][0]["code"] == "not_authenticated"
    token = auth.create_access_token("alice")
    assert client.get("/admin", headers=bearer(token)).status_code == 403


def test_handlers_installed_after_auth_take_over(setup: Any) -> None:
    app = FastAPI()
    directory = Directory({"alice": User("alice")})
    install_auth(app, user_loader=directory.load, settings=make_settings())
    install_exception_handlers(app, format="problem")

    @app.get("/me")
    async def me(user: User = Depends(get_current_user)) -> dict[str, str]:
        return {"id": user.id}

    response = TestClient(app).get("/me")
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_dependency_without_install_auth_fails_loudly_naming_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = FastAPI()
    install_exception_handlers(app)

    @app.get("/me")
    async def me(user: Any = Depends(get_current_user)) -> dict[str, str]:
        return {}

    with caplog.at_level(logging.ERROR, logger="heygen_conventions.errors"):
        response = TestClient(app).get("/me", headers=bearer("x.y.z"))
    assert response.status_code == 500, response.text
    assert "install_auth" not in response.text  # internals stay in the log
    assert "install_auth(app, user_loader=...)" in caplog.text


def test_install_auth_twice_is_refused() -> None:
    app, _, directory = build_app()
    with pytest.raises(RuntimeError, match="install_auth"):
        install_auth(app, user_loader=directory.load, settings=make_settings())


def test_user_loader_must_be_callable() -> None:
    with pytest.raises(TypeError, match="user_loader"):
        install_auth(FastAPI(), user_loader="load_user", settings=make_settings())  # type: ignore[arg-type]


# --- optional user -------------------------------------------------------------


def test_optional_user_without_token_is_none(setup: Any) -> None:
    client, _, _ = setup
    response = client.get("/maybe")
    assert response.status_code == 200, response.text
    assert response.json() == {"id": None}


def test_optional_user_with_other_scheme_is_none(setup: Any) -> None:
    client, _, _ = setup
    response = client.get("/maybe", headers={"Authorization": "Basic YWxpY2U6cHc="})
    assert response.status_code == 200, response.text
    assert response.json() == {"id": None}


def test_optional_user_with_valid_token_is_the_user(setup: Any) -> None:
    client, auth, _ = setup
    response = client.get("/maybe", headers=bearer(auth.create_access_token("alice")))
    assert response.status_code == 200, response.text
    assert response.json() == {"id": "alice"}


@pytest.mark.parametrize("value", ["Bearer not-a-jwt", "Bearer ", "Bearer"])
def test_optional_user_with_bad_token_is_still_401(setup: Any, value: str) -> None:
    client, _, _ = setup
    response = client.get("/maybe", headers={"Authorization": value})
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_optional_user_without_install_auth_fails_loudly() -> None:
    from heygen_conventions import get_optional_user

    app = FastAPI()

    @app.get("/maybe")
    async def maybe(user: Any = Depends(get_optional_user)) -> dict[str, str]:
        return {}

    with pytest.raises(RuntimeError, match="install_auth"):
        TestClient(app).get("/maybe")


# --- roles -------------------------------------------------------------------


def test_admin_route_accepts_admin(setup: Any) -> None:
    client, auth, _ = setup
    response = client.get("/admin", headers=bearer(auth.create_access_token("root")))
    assert response.status_code == 200, response.text


def test_admin_route_without_token_is_401(setup: Any) -> None:
    client, _, _ = setup
    assert client.get("/admin").status_code == 401


def test_admin_route_for_non_admin_is_403(setup: Any) -> None:
    client, auth, _ = setup
    response = client.get("/admin", headers=bearer(auth.create_access_token("alice")))
    assert response.status_code == 403, response.text
    assert response.json()["errors"][0]["code"] == "permission_denied"
    assert "www-authenticate" not in response.headers


def test_roles_in_the_token_grant_nothing(setup: Any) -> None:
    client, auth, _ = setup
    token = auth.create_access_token("alice", roles=["admin"])
    assert client.get("/admin", headers=bearer(token)).status_code == 403


def test_demoted_user_loses_admin_at_once_with_an_old_token(setup: Any) -> None:
    client, auth, directory = setup
    token = auth.create_access_token("root", roles=["admin"])
    assert client.get("/admin", headers=bearer(token)).status_code == 200
    directory.users["root"].roles = []
    response = client.get("/admin", headers=bearer(token))
    assert response.status_code == 403, response.text


def test_require_roles_accepts_any_listed_role(setup: Any) -> None:
    client, auth, directory = setup
    directory.users["ed"] = User("ed", roles=["editor"])
    assert client.get("/editors", headers=bearer(auth.create_access_token("ed"))).status_code == 200
    assert (
        client.get("/editors", headers=bearer(auth.create_access_token("root"))).status_code == 200
    )
    denied = client.get("/editors", headers=bearer(auth.create_access_token("alice")))
    assert denied.status_code == 403, denied.text


class Role(Enum):
    ADMIN = "admin"
    MEMBER = "member"


class SeedUser:
    """The seed's user shape: one ``role`` enum, no ``roles``."""

    def __init__(self, id: str, role: Role) -> None:
        self.id = id
        self.role = role


def test_single_role_enum_users_work() -> None:
    users = {"a": SeedUser("a", Role.ADMIN), "m": SeedUser("m", Role.MEMBER)}

    async def load(subject: str) -> SeedUser | None:
        return users.get(subject)

    app = FastAPI()
    install_exception_handlers(app)
    auth = install_auth(app, user_loader=load, settings=make_settings())

    @app.get("/admin", dependencies=[Depends(require_roles(Role.ADMIN))])
    async def admin() -> dict[str, bool]:
        return {"ok": True}

    client = TestClient(app)
    assert client.get("/admin", headers=bearer(auth.create_access_token("a"))).status_code == 200
    assert client.get("/admin", headers=bearer(auth.create_access_token("m"))).status_code == 403


def test_mapping_users_work() -> None:
    async def load(subject: str) -> dict[str, Any]:
        return {"id": subject, "roles": ["admin"], "is_active": subject != "off"}

    app = FastAPI()
    install_exception_handlers(app)
    auth = install_auth(app, user_loader=load, settings=make_settings())

    @app.get("/admin", dependencies=[Depends(require_roles("admin"))])
    async def admin() -> dict[str, bool]:
        return {"ok": True}

    client = TestClient(app)
    assert client.get("/admin", headers=bearer(auth.create_access_token("x"))).status_code == 200
    assert client.get("/admin", headers=bearer(auth.create_access_token("off"))).status_code == 401


def test_require_roles_needs_a_role() -> None:
    with pytest.raises(ValueError, match="at least one role"):
        require_roles()


# --- scopes ------------------------------------------------------------------


def test_scope_present_is_allowed(setup: Any) -> None:
    client, auth, _ = setup
    token = auth.create_access_token("alice", scopes=["videos:write", "videos:read"])
    response = client.get("/videos/write", headers=bearer(token))
    assert response.status_code == 200, response.text


def test_missing_scope_is_403_insufficient_scope(setup: Any) -> None:
    client, auth, _ = setup
    token = auth.create_access_token("alice", scopes=["videos:read"])
    response = client.get("/videos/write", headers=bearer(token))
    assert response.status_code == 403, response.text
    assert response.json()["errors"][0]["code"] == "insufficient_scope"
    assert response.headers["www-authenticate"] == (
        'Bearer error="insufficient_scope", scope="videos:write"'
    )


def test_security_scopes_need_every_scope(setup: Any) -> None:
    client, auth, _ = setup
    partial = auth.create_access_token("alice", scopes=["videos:read"])
    assert client.get("/videos/security", headers=bearer(partial)).status_code == 403
    full = auth.create_access_token("alice", scopes=["videos:read", "videos:list"])
    response = client.get("/videos/security", headers=bearer(full))
    assert response.status_code == 200, response.text


def test_scope_route_without_token_is_401(setup: Any) -> None:
    client, _, _ = setup
    assert client.get("/videos/write").status_code == 401


def test_require_scopes_rejects_malformed_scopes() -> None:
    with pytest.raises(ValueError, match="at least one scope"):
        require_scopes()
    with pytest.raises(ValueError, match="invalid scope"):
        require_scopes('a"b')


def test_scopes_appear_in_openapi(setup: Any) -> None:
    client, _, _ = setup
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["BearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    assert schema["paths"]["/videos/write"]["get"]["security"] == [{"BearerAuth": ["videos:write"]}]
    assert schema["paths"]["/me"]["get"]["security"] == [{"BearerAuth": []}]


def test_token_url_publishes_the_password_flow() -> None:
    app, _, _ = build_app(token_url="/auth/token", scopes={"videos:write": "Upload videos"})
    schema = TestClient(app).get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["BearerAuth"] == {
        "type": "oauth2",
        "flows": {
            "password": {"tokenUrl": "/auth/token", "scopes": {"videos:write": "Upload videos"}}
        },
    }
    assert app.openapi() is app.openapi()  # generated once


# --- users -------------------------------------------------------------------


def test_unknown_user_is_401(setup: Any) -> None:
    client, auth, _ = setup
    response = client.get("/me", headers=bearer(auth.create_access_token("nobody")))
    assert response.status_code == 401, response.text
    assert response.json()["errors"][0]["code"] == "invalid_token"


def test_deleted_user_is_401_with_a_still_valid_token(setup: Any) -> None:
    client, auth, directory = setup
    token = auth.create_access_token("alice")
    assert client.get("/me", headers=bearer(token)).status_code == 200
    del directory.users["alice"]
    assert client.get("/me", headers=bearer(token)).status_code == 401


def test_inactive_user_is_401(setup: Any) -> None:
    client, auth, _ = setup
    response = client.get("/me", headers=bearer(auth.create_access_token("bob")))
    assert response.status_code == 401, response.text
    assert response.json()["errors"][0]["code"] == "inactive_user"


def test_user_is_loaded_once_per_request_across_dependencies(setup: Any) -> None:
    client, auth, directory = setup
    token = auth.create_access_token("root", scopes=["videos:write"])
    app = client.app

    @app.get("/both", dependencies=[Depends(require_roles("admin"))])
    async def both(
        user: User = Depends(require_scopes("videos:write")),
        same: User = Depends(get_current_user),
    ) -> dict[str, bool]:
        return {"same": user is same}

    before = directory.loads
    response = client.get("/both", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json() == {"same": True}
    assert directory.loads - before == 1


# --- ownership -----------------------------------------------------------------


def test_owner_may_delete(setup: Any) -> None:
    client, auth, _ = setup
    response = client.delete("/videos/alice", headers=bearer(auth.create_access_token("alice")))
    assert response.status_code == 200, response.text


def test_admin_may_delete_what_others_own(setup: Any) -> None:
    client, auth, _ = setup
    response = client.delete("/videos/alice", headers=bearer(auth.create_access_token("root")))
    assert response.status_code == 200, response.text


def test_other_users_may_not_delete(setup: Any) -> None:
    client, auth, directory = setup
    directory.users["carol"] = User("carol")
    response = client.delete("/videos/alice", headers=bearer(auth.create_access_token("carol")))
    assert response.status_code == 403, response.text


def test_ownership_compares_uuid_and_text() -> None:
    from uuid import UUID

    owner = UUID(int=7)
    user = User(str(owner))
    ensure_owner_or_admin(user, owner)
    with pytest.raises(PermissionDeniedError):
        ensure_owner_or_admin(user, UUID(int=8))


# --- tokens ------------------------------------------------------------------


def test_access_token_carries_the_registered_claims(setup: Any) -> None:
    client, auth, _ = setup
    token = auth.create_access_token("alice", roles=["member"], scopes=["a", "b"])
    claims = auth.codec.decode(token)
    assert set(claims) == {"sub", "type", "iat", "nbf", "exp", "jti", "roles", "scope"}
    assert claims["type"] == "access"
    assert claims["exp"] - claims["iat"] == 15 * 60
    assert claims["scope"] == "a b"
    response = client.get("/claims", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json() == {"jti": claims["jti"], "roles": ["member"], "scopes": ["a", "b"]}


def test_each_token_gets_a_fresh_jti(setup: Any) -> None:
    _, auth, _ = setup
    ids = {auth.codec.decode(auth.create_access_token("alice"))["jti"] for _ in range(20)}
    assert len(ids) == 20


def test_issuer_and_audience_are_set_when_configured() -> None:
    settings = make_settings(jwt_issuer="https://id.example", jwt_audience="videos-api")
    _, auth, _ = build_app(settings=settings)
    claims = auth.codec.decode(auth.create_access_token("alice"))
    assert (claims["iss"], claims["aud"]) == ("https://id.example", "videos-api")


def test_refresh_token_lifetime_and_type(setup: Any) -> None:
    _, auth, _ = setup
    claims = auth.codec.decode(auth.create_refresh_token("alice"))
    assert claims["type"] == "refresh"
    assert claims["exp"] - claims["iat"] == 7 * 86400


async def test_verify_refresh_token_refuses_access_tokens(setup: Any) -> None:
    from heygen_conventions import AuthenticationError

    _, auth, _ = setup
    refresh = auth.create_refresh_token("alice")
    assert (await auth.verify_token(refresh, token_type="refresh")).subject == "alice"
    with pytest.raises(AuthenticationError):
        await auth.verify_token(auth.create_access_token("alice"), token_type="refresh")


def test_expires_in_overrides_the_ttl_within_the_maximum(setup: Any) -> None:
    _, auth, _ = setup
    claims = auth.codec.decode(auth.create_access_token("alice", expires_in=timedelta(minutes=1)))
    assert claims["exp"] - claims["iat"] == 60
    with pytest.raises(ValueError, match="expires_in"):
        auth.create_access_token("alice", expires_in=timedelta(days=365))
    with pytest.raises(ValueError, match="expires_in"):
        auth.create_access_token("alice", expires_in=timedelta(0))
    # exp counts whole seconds: under one second would mint a token that is never valid.
    with pytest.raises(ValueError, match="expires_in"):
        auth.create_access_token("alice", expires_in=timedelta(milliseconds=500))


def test_expires_in_takes_seconds_as_the_settings_do(setup: Any) -> None:
    _, auth, _ = setup
    for seconds in (90, 90.0):
        claims = auth.codec.decode(auth.create_access_token("alice", expires_in=seconds))
        assert claims["exp"] - claims["iat"] == 90
    claims = auth.codec.decode(auth.create_refresh_token("alice", expires_in=3600))
    assert claims["exp"] - claims["iat"] == 3600
    # The limit is said in seconds, not as a timedelta's text ("30 days, 0:00:00").
    with pytest.raises(ValueError, match=r"at most .* \(2592000 seconds\), got 31536000 seconds"):
        auth.create_access_token("alice", expires_in=365 * 86400)
    for bad in (float("nan"), -5, 0.5):
        with pytest.raises(ValueError, match="expires_in"):
            auth.create_access_token("alice", expires_in=bad)
    for wrong in (True, "900", None.__class__):
        with pytest.raises(TypeError, match="expires_in must be a timedelta or seconds"):
            auth.create_access_token("alice", expires_in=wrong)


def test_extra_claims_are_kept_but_cannot_override_registered_ones(setup: Any) -> None:
    _, auth, _ = setup
    token = auth.create_access_token("alice", extra_claims={"tenant": "t1"})
    assert auth.codec.decode(token)["tenant"] == "t1"
    with pytest.raises(ValueError, match="registered claims"):
        auth.create_access_token("alice", extra_claims={"exp": 1})
    with pytest.raises(ValueError, match="registered claims"):
        auth.create_access_token("alice", extra_claims={"type": "refresh"})


def test_bad_subjects_and_scopes_are_refused_when_minting(setup: Any) -> None:
    _, auth, _ = setup
    with pytest.raises(ValueError, match="subject"):
        auth.create_access_token("")
    with pytest.raises(ValueError, match="invalid scope"):
        auth.create_access_token("alice", scopes=["two words"])


@pytest.mark.parametrize("argument", ["roles", "scopes"])
def test_a_bare_string_is_not_split_into_letters(setup: Any, argument: str) -> None:
    # "admin" is iterable: without the check it would grant the scopes a, d, m, i, n.
    _, auth, _ = setup
    with pytest.raises(TypeError, match=argument):
        auth.create_access_token("alice", **{argument: "admin"})
    with pytest.raises(TypeError, match=argument):
        create_refresh_token("alice", settings=make_settings(), **{argument: "admin"})


def test_module_level_creation_uses_the_same_settings(setup: Any) -> None:
    settings = make_settings()
    app, _, _ = build_app(settings=settings)
    client = TestClient(app)
    token = create_access_token("alice", settings=settings)
    assert client.get("/me", headers=bearer(token)).status_code == 200
    refresh = create_refresh_token("alice", settings=settings)
    assert client.get("/me", headers=bearer(refresh)).status_code == 401
    other = create_access_token("alice", settings=make_settings(jwt_secret=SECRET + "x"))
    assert client.get("/me", headers=bearer(other)).status_code == 401


def test_module_level_creation_defaults_to_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HEYGEN_JWT_SECRET", SECRET)
    monkeypatch.setenv("HEYGEN_ENVIRONMENT", "test")
    app, _, _ = build_app(settings=make_settings(app_name="heygen-app"))
    token = create_access_token("alice")
    assert TestClient(app).get("/me", headers=bearer(token)).status_code == 200


# --- claims cache ------------------------------------------------------------


def test_warm_claims_cache_skips_the_codec_but_not_the_user(setup: Any) -> None:
    client, auth, directory = setup
    token = auth.create_access_token("alice")
    calls = []
    decode = auth.codec.decode
    auth.codec.decode = lambda t: calls.append(1) or decode(t)
    for _ in range(3):
        assert client.get("/me", headers=bearer(token)).status_code == 200
    assert len(calls) == 1
    before = directory.loads
    assert client.get("/me", headers=bearer(token)).status_code == 200
    assert directory.loads == before + 1


def test_cached_claims_expire_with_the_token() -> None:
    clock = FakeClock()
    app, auth, _ = build_app(clock=clock)
    client = TestClient(app)
    token = auth.create_access_token("alice", expires_in=timedelta(seconds=30))
    assert client.get("/me", headers=bearer(token)).status_code == 200
    clock.now += 30
    response = client.get("/me", headers=bearer(token))
    assert response.status_code == 401, response.text
    assert response.json()["errors"][0]["code"] == "token_expired"


def test_claims_cache_is_bounded() -> None:
    app, auth, _ = build_app(claims_cache_size=3)
    client = TestClient(app)
    for _ in range(10):
        assert (
            client.get("/me", headers=bearer(auth.create_access_token("alice"))).status_code == 200
        )
    assert len(auth._claims_cache) == 3


def test_claims_cache_can_be_disabled() -> None:
    app, auth, _ = build_app(claims_cache_size=0)
    client = TestClient(app)
    assert client.get("/me", headers=bearer(auth.create_access_token("alice"))).status_code == 200
    assert len(auth._claims_cache) == 0


def test_cached_access_token_is_still_refused_as_refresh(setup: Any) -> None:
    client, auth, _ = setup
    refresh = auth.create_refresh_token("alice")
    for _ in range(2):
        assert client.get("/me", headers=bearer(refresh)).status_code == 401


# --- logging -----------------------------------------------------------------


def test_user_id_is_bound_into_the_request_log_context(setup: Any) -> None:
    client, auth, _ = setup
    seen: dict[str, Any] = {}
    app = client.app

    @app.get("/context")
    async def context(user: User = Depends(get_current_user)) -> dict[str, str]:
        from heygen_conventions._context import get_request_context

        seen.update(get_request_context())
        return {}

    # The logging middleware starts the context; stand in for it here.
    class StartContext:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            token = start_request_context()
            try:
                await self.inner(scope, receive, send)
            finally:
                end_request_context(token)

    response = TestClient(StartContext(app)).get(
        "/context", headers=bearer(auth.create_access_token("alice"))
    )
    assert response.status_code == 200, response.text
    assert seen["user_id"] == "alice"


def test_rejections_are_logged_with_a_reason_and_no_token(
    capture_auth_logs: pytest.LogCaptureFixture, setup: Any
) -> None:
    client, auth, _ = setup
    good = auth.create_access_token("alice")
    tampered = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    responses = [client.get("/me", headers=bearer(tampered))]
    assert responses[0].status_code == 401
    reasons = [getattr(r, "auth_failure", None) for r in capture_auth_logs.records]
    assert "signature" in reasons or "malformed" in reasons
    assert_nothing_leaked(capture_auth_logs.records, responses, tampered, good, SECRET)


# --- loader and role shapes ---------------------------------------------------------


def test_lambda_returning_a_coroutine_is_a_fine_loader() -> None:
    directory = Directory({"alice": User("alice")})
    app = FastAPI()
    install_exception_handlers(app)
    auth = install_auth(app, user_loader=lambda sub: directory.load(sub), settings=make_settings())

    @app.get("/me")
    async def me(user: User = Depends(get_current_user)) -> dict[str, str]:
        return {"id": user.id}

    response = TestClient(app).get("/me", headers=bearer(auth.create_access_token("alice")))
    assert response.status_code == 200, response.text


def test_sync_loader_fails_loudly(caplog: pytest.LogCaptureFixture) -> None:
    app = FastAPI()
    install_exception_handlers(app)
    auth = install_auth(app, user_loader=User, settings=make_settings())  # type: ignore[arg-type]

    @app.get("/me")
    async def me(user: User = Depends(get_current_user)) -> dict[str, str]:
        return {}

    with caplog.at_level(logging.ERROR, logger="heygen_conventions.errors"):
        response = TestClient(app).get("/me", headers=bearer(auth.create_access_token("alice")))
    assert response.status_code == 500, response.text
    assert "user_loader must be async" in caplog.text


@pytest.mark.parametrize(
    "roles",
    [["admin"], "admin", [Role.ADMIN], [type("RoleRow", (), {"name": "admin"})()]],
    ids=["list", "string", "enum", "orm-row"],
)
def test_role_shapes(roles: Any) -> None:
    class Person:
        id = "p"

    person = Person()
    person.roles = roles  # type: ignore[attr-defined]

    async def load(subject: str) -> Person:
        return person

    app = FastAPI()
    install_exception_handlers(app)
    auth = install_auth(app, user_loader=load, settings=make_settings())

    @app.get("/admin", dependencies=[Depends(require_roles("admin"))])
    async def admin() -> dict[str, bool]:
        return {"ok": True}

    response = TestClient(app).get("/admin", headers=bearer(auth.create_access_token("p")))
    assert response.status_code == 200, response.text


def test_user_without_any_role_attribute_has_no_role(setup: Any) -> None:
    class Bare:
        id = "alice"

    ensure_owner_or_admin(Bare(), "alice")
    with pytest.raises(PermissionDeniedError):
        ensure_owner_or_admin(Bare(), "someone-else")


def test_overriding_get_current_user_in_tests(setup: Any, caplog: pytest.LogCaptureFixture) -> None:
    client, _, _ = setup
    app = client.app
    app.dependency_overrides[get_current_user] = lambda: User("root", roles=["admin"])
    try:
        assert client.get("/me").json() == {"id": "root"}
        assert client.get("/admin").status_code == 200
        with caplog.at_level(logging.ERROR, logger="heygen_conventions.errors"):
            assert client.get("/claims").status_code == 500
        assert "override get_token_claims too" in caplog.text
    finally:
        app.dependency_overrides.clear()
