"""Revocation and per-user cutoffs on every store, and what happens when the store fails."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import fakeredis
import httpx
import pytest
from fastapi import FastAPI

from heygen_conventions import (
    AuthenticationError,
    CacheBackend,
    JWTAuth,
    MemoryCache,
    RedisCache,
    ServiceUnavailableError,
)
from tests.fixtures.auth import BrokenStore, assert_nothing_leaked, build_app, make_settings
from tests.fixtures.cache import RedisServer


async def get(app: FastAPI, token: str, path: str = "/me", method: str = "GET") -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.request(method, path, headers={"Authorization": f"Bearer {token}"})


async def remaining_ttl(store: CacheBackend, key: str) -> float:
    if isinstance(store, RedisCache):
        return int(await store.client.pttl(store.prefix + key)) / 1000
    assert isinstance(store, MemoryCache)
    expires = store._data[store.prefix + key][1]
    assert expires is not None
    return expires - time.monotonic()


async def test_revoked_token_is_refused(cache_backend: CacheBackend) -> None:
    app, auth, _ = build_app(revocation_store=cache_backend)
    token = auth.create_access_token("alice")
    assert (await get(app, token)).status_code == 200
    claims = await auth.verify_token(token)
    assert await auth.revoke_token(claims.jti, until=claims.expires_at) is True
    assert await auth.revoke_token(claims.jti, until=claims.expires_at) is False
    response = await get(app, token)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    other = auth.create_access_token("alice")
    assert (await get(app, other)).status_code == 200


async def test_revocation_lasts_as_long_as_the_token(cache_backend: CacheBackend) -> None:
    _, auth, _ = build_app(revocation_store=cache_backend, settings=make_settings(jwt_leeway=5))
    claims = await auth.verify_token(auth.create_access_token("alice"))
    await auth.revoke_token(claims.jti, until=claims.expires_at)
    ttl = await remaining_ttl(cache_backend, auth._jti_key(claims.jti))
    expected = claims.expires_at + 5 - time.time()
    assert expected - 2 <= ttl <= expected + 1


async def test_logout_route_revokes_the_current_token(cache_backend: CacheBackend) -> None:
    app, auth, _ = build_app(revocation_store=cache_backend)
    token = auth.create_access_token("alice")
    response = await get(app, token, "/logout", method="POST")
    assert response.status_code == 200, response.text
    assert (await get(app, token)).status_code == 401


async def test_revocation_is_seen_by_another_instance(cache_backend: CacheBackend) -> None:
    settings = make_settings()
    _, auth_a, _ = build_app(settings=settings, revocation_store=cache_backend)
    app_b, _, _ = build_app(settings=settings, revocation_store=cache_backend)
    token = auth_a.create_access_token("alice")
    assert (await get(app_b, token)).status_code == 200  # warms b's claims cache
    claims = await auth_a.verify_token(token)
    await auth_a.revoke_token(claims.jti, until=claims.expires_at)
    assert (await get(app_b, token)).status_code == 401


async def test_cutoff_refuses_older_tokens_of_that_user_only(
    cache_backend: CacheBackend,
) -> None:
    clock_now = float(int(time.time()))
    app, auth, _ = build_app(revocation_store=cache_backend, clock=lambda: clock_now)
    old_alice = auth.create_access_token("alice")
    old_root = auth.create_access_token("root")
    clock_now += 5
    await auth.revoke_tokens_issued_before("alice")
    assert (await get(app, old_alice)).status_code == 401
    assert (await get(app, old_root)).status_code == 200
    assert (await get(app, auth.create_access_token("alice"))).status_code == 200
    ttl = await remaining_ttl(cache_backend, auth._cutoff_key("alice"))
    assert 30 * 86400 - 5 <= ttl <= 30 * 86400


async def test_cutoff_counts_milliseconds_within_the_second(cache_backend: CacheBackend) -> None:
    """A token refreshed a moment before "log out everywhere" is refused, although
    ``iat`` is the same second; one issued right after the cutoff is accepted."""
    clock_now = float(int(time.time())) + 0.2
    app, auth, _ = build_app(revocation_store=cache_backend, clock=lambda: clock_now)
    stolen = auth.create_access_token("alice")  # an attacker refreshing every few ms
    clock_now += 0.3
    await auth.revoke_tokens_issued_before("alice")
    fresh = auth.create_access_token("alice")  # the route's own new token, same millisecond
    clock_now += 0.001
    later = auth.create_access_token("alice")
    assert (await get(app, stolen)).status_code == 401
    assert (await get(app, fresh)).status_code == 200
    assert (await get(app, later)).status_code == 200


async def test_a_refreshed_token_is_cut_off_with_the_login_it_continues(
    cache_backend: CacheBackend,
) -> None:
    """The cutoff lands while a refresh is in flight: the pair that refresh mints
    after it is refused with the rest of the session; a new login is not."""
    clock_now = float(int(time.time()))
    app, auth, _ = build_app(revocation_store=cache_backend, clock=lambda: clock_now)
    refresh = auth.create_refresh_token("alice")
    clock_now += 60
    claims = await auth.rotate_refresh_token(refresh)  # the thief's refresh, in flight...
    await auth.revoke_tokens_issued_before("alice")  # ...when alice logs out everywhere
    clock_now += 0.5
    access = auth.create_access_token("alice", session=claims)  # ...mints after the cutoff
    next_refresh = auth.create_refresh_token("alice", session=claims)
    assert (await get(app, access)).status_code == 401
    with pytest.raises(AuthenticationError):
        await auth.rotate_refresh_token(next_refresh)
    # Without session= the pair would have outlived the logout.
    assert (await get(app, auth.create_access_token("alice"))).status_code == 200
    fresh_claims = await auth.rotate_refresh_token(auth.create_refresh_token("alice"))
    continued = auth.create_access_token("alice", session=fresh_claims)
    assert (await get(app, continued)).status_code == 200  # a session begun after the cutoff


async def test_the_session_passes_from_refresh_to_refresh() -> None:
    _, auth, _ = build_app()
    first = await auth.rotate_refresh_token(auth.create_refresh_token("alice"))
    second = await auth.rotate_refresh_token(auth.create_refresh_token("alice", session=first))
    third = auth._verified_claims(auth.create_access_token("alice", session=second))
    assert third.claims["sid"] == first.jti
    with pytest.raises(ValueError, match="same subject"):
        auth.create_access_token("bob", session=first)
    with pytest.raises(ValueError, match="registered claims"):
        auth.create_access_token("alice", extra_claims={"sid": first.jti})


async def test_a_token_without_a_timed_id_counts_from_the_start_of_its_second(
    cache_backend: CacheBackend,
) -> None:
    second = float(int(time.time()))
    clock_now = second + 0.9
    app, auth, _ = build_app(revocation_store=cache_backend, clock=lambda: clock_now)
    # Signed by this app, but with an id that says nothing of the time (a uuid4).
    claims = {"sub": "alice", "type": "access", "iat": int(second), "nbf": int(second)}
    claims |= {"exp": int(second) + 600, "jti": uuid.uuid4().hex}
    untimed = auth.codec.encode(claims)
    assert (await get(app, untimed)).status_code == 200
    await auth.revoke_tokens_issued_before("alice", second)  # at the start of its second
    assert (await get(app, untimed)).status_code == 200
    await auth.revoke_tokens_issued_before("alice", second + 0.5)  # within it: refused
    assert (await get(app, untimed)).status_code == 401


def test_token_ids_carry_the_issue_time_and_are_unique() -> None:
    from heygen_conventions._tokens import issued_ms, token_id

    ids = {token_id(1_732_650_000_123) for _ in range(1000)}
    assert len(ids) == 1000
    for jti in ids:
        parsed = uuid.UUID(jti)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert int(jti[:12], 16) == 1_732_650_000_123
    _, auth, _ = build_app()
    claims = auth._verified_claims(auth.create_access_token("alice"))
    assert int(claims.issued_at) * 1000 <= issued_ms(claims) < int(claims.issued_at) * 1000 + 1000


async def test_an_earlier_cutoff_never_undoes_a_later_one(
    cache_backend: CacheBackend,
) -> None:
    clock_now = float(int(time.time()))
    app, auth, _ = build_app(revocation_store=cache_backend, clock=lambda: clock_now)
    old = auth.create_access_token("alice")
    clock_now += 5
    await auth.revoke_tokens_issued_before("alice")  # log out everywhere
    await auth.revoke_tokens_issued_before("alice", clock_now - 3600)  # an older event
    assert (await get(app, old)).status_code == 401


async def test_a_future_cutoff_is_kept_until_the_tokens_it_refuses_expire() -> None:
    store = MemoryCache()
    _, auth, _ = build_app(revocation_store=store)
    await auth.revoke_tokens_issued_before("alice", time.time() + 3600)
    ttl = await remaining_ttl(store, auth._cutoff_key("alice"))
    assert ttl >= 3600 + 30 * 86400 - 5


async def test_cutoff_accepts_a_datetime() -> None:
    from datetime import UTC, datetime, timedelta

    app, auth, _ = build_app()
    token = auth.create_access_token("alice")
    await auth.revoke_tokens_issued_before("alice", datetime.now(UTC) - timedelta(hours=1))
    assert (await get(app, token)).status_code == 200
    await auth.revoke_tokens_issued_before("alice", datetime.now(UTC) + timedelta(seconds=2))
    assert (await get(app, token)).status_code == 401


async def test_the_apps_cache_is_used_when_no_store_is_given() -> None:
    store = RedisCache(fakeredis.FakeAsyncRedis(), prefix="test:auth:app:")
    app, auth, _ = build_app()
    app.state.heygen_cache = store  # as install_cache() does, even after install_auth()
    claims = await auth.verify_token(auth.create_access_token("alice"))
    await auth.revoke_token(claims.jti, until=claims.expires_at)
    assert await store.get(auth._jti_key(claims.jti)) == b"1"
    # Kept locally too, so this instance still refuses it if the shared store fails.
    assert await auth._local_store.get(auth._jti_key(claims.jti)) == b"1"


async def test_an_apps_in_process_cache_does_not_hold_revocations() -> None:
    # It is no more shared than auth's own store, and its LRU bound would let
    # cache traffic evict a revocation before the token expires.
    cache = MemoryCache(maxsize=2)
    app, auth, _ = build_app()
    app.state.heygen_cache = cache
    token = auth.create_access_token("alice")
    claims = await auth.verify_token(token)
    await auth.revoke_token(claims.jti, until=claims.expires_at)
    await cache.set_many({f"entry{i}": b"cached" for i in range(10)})
    assert (await get(app, token)).status_code == 401
    assert await cache.get(auth._jti_key(claims.jti)) is None


async def test_without_any_cache_the_in_process_store_works() -> None:
    app, auth, _ = build_app()
    token = auth.create_access_token("alice")
    claims = await auth.verify_token(token)
    await auth.revoke_token(claims.jti, until=claims.expires_at)
    assert (await get(app, token)).status_code == 401


async def test_in_process_store_in_production_logs_a_warning_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(environment="production", jwt_secret="p" * 48)
    app, auth, _ = build_app(settings=settings)
    with caplog.at_level(logging.WARNING, logger="heygen_conventions.auth"):
        for _ in range(3):
            assert (await get(app, auth.create_access_token("alice"))).status_code == 200
    warnings = [r for r in caplog.records if "in-process store" in r.getMessage()]
    assert len(warnings) == 1


# --- the store fails ---------------------------------------------------------------


class FlakyStore(MemoryCache):
    """Works until ``down`` is set, then every read fails."""

    down = False

    async def get_many(self, keys: Any) -> list[bytes | None]:
        if self.down:
            raise ConnectionError("connection refused")
        return await super().get_many(keys)


async def test_fail_closed_refuses_every_token_while_the_store_is_down() -> None:
    store = FlakyStore()
    app, auth, _ = build_app(revocation_store=store, revocation_fail_closed=True)
    token = auth.create_access_token("alice")
    claims = await auth.verify_token(token)
    await auth.revoke_token(claims.jti, until=claims.expires_at)
    assert (await get(app, token)).status_code == 401
    store.down = True
    response = await get(app, token)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    fresh = auth.create_access_token("alice")
    assert (await get(app, fresh)).status_code == 503


async def test_by_default_an_outage_keeps_serving_and_honours_local_revocations() -> None:
    store = FlakyStore()
    app, auth, _ = build_app(revocation_store=store)
    revoked = auth.create_access_token("alice")
    claims = await auth.verify_token(revoked)
    await auth.revoke_token(claims.jti, until=claims.expires_at)
    await auth.revoke_tokens_issued_before("bob", time.time() + 5)
    bob_before_cutoff = auth.create_access_token("bob")
    fresh = auth.create_access_token("alice")
    store.down = True
    # This instance made the revocations, so it still refuses those tokens...
    assert (await get(app, revoked)).status_code == 401
    assert (await get(app, bob_before_cutoff)).status_code == 401
    # ...and keeps serving everyone else.
    response = await get(app, fresh)
    assert response.status_code == 200, response.text
    store.down = False
    assert (await get(app, revoked)).status_code == 401


class WritesRefused(MemoryCache):
    """Reads work, writes fail (Redis at maxmemory under noeviction)."""

    refusing = False

    async def set_if_absent(self, key: str, value: bytes, *, ttl: float) -> bool:
        if self.refusing:
            raise ConnectionError("OOM command not allowed")
        return await super().set_if_absent(key, value, ttl=ttl)


async def test_a_refused_revocation_changes_nothing_so_its_retry_goes_through() -> None:
    # 503 and nothing half done: the token still authenticates (here and on every other
    # instance alike), so the client's retry of its logout reaches the store once it is back.
    store = WritesRefused()
    app, auth, _ = build_app(revocation_store=store)
    token = auth.create_access_token("alice")
    claims = await auth.verify_token(token)
    store.refusing = True
    with pytest.raises(ServiceUnavailableError):
        await auth.revoke_token(claims.jti, until=claims.expires_at)
    assert (await get(app, token)).status_code == 200
    store.refusing = False
    assert await auth.revoke_token(claims.jti, until=claims.expires_at) is True
    assert (await get(app, token)).status_code == 401


async def test_a_redis_outage_keeps_the_revocations_this_instance_made(
    redis_server: RedisServer,
) -> None:
    store = RedisCache(redis_server.url, prefix="test:auth:outage:")
    try:
        app, auth, _ = build_app(revocation_store=store)
        revoked = auth.create_access_token("alice")
        claims = await auth.verify_token(revoked)
        assert await auth.revoke_token(claims.jti, until=claims.expires_at) is True
        fresh = auth.create_access_token("alice")
        redis_server.stop()
        assert (await get(app, revoked)).status_code == 401
        response = await get(app, fresh)
        assert response.status_code == 200, response.text
    finally:
        await store.close()


async def test_store_down_fails_open_with_one_error_per_incident(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = BrokenStore()
    app, auth, _ = build_app(revocation_store=broken, revocation_fail_closed=False)
    tokens = [auth.create_access_token("alice") for _ in range(3)]
    with caplog.at_level(logging.DEBUG, logger="heygen_conventions"):
        for token in tokens:
            response = await get(app, token)
            assert response.status_code == 200, response.text
        errors = [r for r in caplog.records if r.getMessage().startswith("Revocation store")]
        assert [r.levelno for r in errors] == [logging.ERROR]
        assert errors[0].error_type == "ConnectionError"  # type: ignore[attr-defined]

        auth._explicit_store = MemoryCache()  # the store comes back
        assert (await get(app, tokens[0])).status_code == 200
    recovered = [r for r in caplog.records if r.getMessage() == "Revocation store recovered"]
    assert len(recovered) == 1
    assert recovered[0].requests_checked_locally == 3  # type: ignore[attr-defined]
    assert_nothing_leaked(caplog.records, [], *tokens)


async def test_store_down_fails_closed_with_503_when_asked() -> None:
    app, auth, _ = build_app(revocation_store=BrokenStore(), revocation_fail_closed=True)
    response = await get(app, auth.create_access_token("alice"))
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert response.json()["errors"][0]["code"] == "service_unavailable"


async def test_unreachable_real_redis_fails_open_then_closed() -> None:
    # A port nobody listens on: connection refused.
    store = RedisCache("redis://127.0.0.1:1/0", prefix="test:auth:dead:")
    try:
        app, auth, _ = build_app(revocation_store=store, revocation_fail_closed=False)
        assert (await get(app, auth.create_access_token("alice"))).status_code == 200
        closed_app, closed_auth, _ = build_app(revocation_store=store, revocation_fail_closed=True)
        response = await get(closed_app, closed_auth.create_access_token("alice"))
        assert response.status_code == 503, response.text
    finally:
        await store.close()


class HangingStore(MemoryCache):
    async def get_many(self, keys: Any) -> list[bytes | None]:
        await asyncio.sleep(30)
        raise AssertionError("unreachable")


async def test_slow_store_is_cut_off_by_the_timeout(caplog: pytest.LogCaptureFixture) -> None:
    app, auth, _ = build_app(
        revocation_store=HangingStore(), revocation_timeout=0.05, revocation_fail_closed=True
    )
    with caplog.at_level(logging.ERROR, logger="heygen_conventions.auth"):
        response = await asyncio.wait_for(get(app, auth.create_access_token("alice")), 10)
    assert response.status_code == 503, response.text
    open_app, open_auth, _ = build_app(revocation_store=HangingStore(), revocation_timeout=0.05)
    response = await asyncio.wait_for(get(open_app, open_auth.create_access_token("alice")), 10)
    assert response.status_code == 200, response.text
    assert caplog.records[0].error_type == "TimeoutError"  # type: ignore[attr-defined]


async def test_garbage_cutoff_counts_as_a_store_failure() -> None:
    store = MemoryCache()
    app, auth, _ = build_app(revocation_store=store, revocation_fail_closed=True)
    await store.set(auth._cutoff_key("alice"), b"not-a-number")
    token = auth.create_access_token("alice")
    response = await get(app, token)
    assert response.status_code == 503, response.text
    await auth.revoke_tokens_issued_before("alice", time.time() + 5)  # replaces the garbage
    assert (await get(app, token)).status_code == 401


async def test_revoking_while_the_store_is_down_is_an_error_not_a_silent_success() -> None:
    app, auth, _ = build_app(revocation_store=BrokenStore())
    response = await get(app, auth.create_access_token("alice"), "/logout", method="POST")
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"  # a logout is worth retrying soon
    with pytest.raises(ServiceUnavailableError) as refused:
        await auth.revoke_tokens_issued_before("alice")
    assert refused.value.retry_after == 1
    with pytest.raises(ValueError, match="jti"):
        await auth.revoke_token("", until=0)


def test_revocation_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="revocation_timeout"):
        JWTAuth(user_loader=MemoryCache().get, settings=make_settings(), revocation_timeout=0)
