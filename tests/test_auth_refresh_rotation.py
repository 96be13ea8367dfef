"""Refresh-token rotation with reuse detection: ``JWTAuth.rotate_refresh_token``.

A refresh token is spent once; presenting it again, later or concurrently,
revokes every token of its user issued so far. Each test runs on every store
(``cache_backend``: MemoryCache, fakeredis, and real Redis when configured).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import pytest

from heygen_conventions import (
    AuthenticationError,
    CacheBackend,
    JWTAuth,
    MemoryCache,
    RedisCache,
    ServiceUnavailableError,
    TokenClaims,
)
from heygen_conventions.auth import REFRESH_REUSE_WINDOW, TokenType
from tests.fixtures.auth import BrokenStore, FakeClock, assert_nothing_leaked, build_app

REUSED = "refresh_token_reused"


async def refused(auth: JWTAuth, token: str, kind: TokenType = "access") -> str:
    """The error code ``verify_token`` refuses ``token`` (of ``kind``) with."""
    with pytest.raises(AuthenticationError) as caught:
        await auth.verify_token(token, token_type=kind)
    return caught.value.code


async def rotation_refused(auth: JWTAuth, token: str) -> AuthenticationError:
    with pytest.raises(AuthenticationError) as caught:
        await auth.rotate_refresh_token(token)
    assert caught.value.status_code == 401
    assert caught.value.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    return caught.value


def pair(auth: JWTAuth, subject: str = "alice") -> tuple[str, str]:
    return auth.create_access_token(subject), auth.create_refresh_token(subject)


async def test_a_later_replay_revokes_every_token_of_the_user(
    cache_backend: CacheBackend, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    _, auth, _ = build_app(revocation_store=cache_backend, clock=clock)
    access1, refresh1 = pair(auth)
    other_access, other_refresh = pair(auth, "root")

    clock.now += 10
    claims = await auth.rotate_refresh_token(refresh1)
    assert (claims.subject, claims.token_type) == ("alice", "refresh")
    access2, refresh2 = pair(auth)
    assert (await auth.verify_token(access2)).subject == "alice"
    # Spent: verify_token refuses it like any revoked token.
    assert await refused(auth, refresh1, "refresh") == "invalid_token"

    clock.now += 60  # long after the rotation: not a concurrent double use
    with caplog.at_level(logging.INFO, logger="heygen_conventions.auth"):
        error = await rotation_refused(auth, refresh1)
    assert error.code == REUSED
    # Everything the user held is refused: before and after the rotation.
    for token in (access1, access2):
        assert await refused(auth, token) == "invalid_token"
    assert await refused(auth, refresh2, "refresh") == "invalid_token"
    assert (await rotation_refused(auth, refresh2)).code == "invalid_token"
    # Another user is untouched.
    assert (await auth.verify_token(other_access)).subject == "root"
    assert (await auth.rotate_refresh_token(other_refresh)).subject == "root"
    warnings = [r for r in caplog.records if r.getMessage().startswith("Refresh token reused")]
    assert [r.levelno for r in warnings] == [logging.WARNING]
    assert_nothing_leaked(caplog.records, [], refresh1, access1, access2, refresh2)

    # The user logs in again (next second) and is not logged out by further replays.
    clock.now += 1
    access3, refresh3 = pair(auth)
    assert (await rotation_refused(auth, refresh1)).code == REUSED
    assert (await auth.verify_token(access3)).subject == "alice"
    assert (await auth.rotate_refresh_token(refresh3)).subject == "alice"


class Gate:
    """A store whose revocation reads wait for each other while ``closed``.

    Both rotations read "not spent" before either marks the token, which is
    the interleaving a lock-free read-then-write would get wrong.
    """

    def __init__(self, inner: CacheBackend, parties: int) -> None:
        self.inner = inner
        self.barrier = asyncio.Barrier(parties)
        self.closed = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        values = await self.inner.get_many(keys)
        if self.closed:
            await asyncio.wait_for(self.barrier.wait(), 10)
        return values


async def test_concurrent_double_use_one_wins_and_the_family_is_revoked(
    cache_backend: CacheBackend,
) -> None:
    clock = FakeClock()
    gate = Gate(cache_backend, 2)
    _, auth, _ = build_app(revocation_store=gate, clock=clock)  # type: ignore[arg-type]
    access1, refresh1 = pair(auth)

    outcomes = await asyncio.gather(
        auth.rotate_refresh_token(refresh1),
        auth.rotate_refresh_token(refresh1),
        return_exceptions=True,
    )
    gate.closed = False
    won = [o for o in outcomes if isinstance(o, TokenClaims)]
    lost = [o for o in outcomes if isinstance(o, AuthenticationError)]
    assert len(won) == 1, outcomes
    assert len(lost) == 1, outcomes
    assert lost[0].code == REUSED

    # The winner mints its pair a moment later, in a later second: refused all the same.
    clock.now += 2
    access2, refresh2 = pair(auth)
    for token in (access1, access2):
        assert await refused(auth, token) == "invalid_token"
    assert (await rotation_refused(auth, refresh2)).code == "invalid_token"
    # Once the window has passed, a new login works.
    clock.now += REFRESH_REUSE_WINDOW
    access3, _ = pair(auth)
    assert (await auth.verify_token(access3)).subject == "alice"


async def test_many_concurrent_uses_spend_the_token_exactly_once(
    cache_backend: CacheBackend,
) -> None:
    _, auth, _ = build_app(revocation_store=cache_backend)
    _, refresh = pair(auth)
    outcomes = await asyncio.gather(
        *(auth.rotate_refresh_token(refresh) for _ in range(8)), return_exceptions=True
    )
    assert sum(isinstance(o, TokenClaims) for o in outcomes) == 1, outcomes
    assert all(
        isinstance(o, TokenClaims) or (isinstance(o, AuthenticationError) and o.code == REUSED)
        for o in outcomes
    ), outcomes


async def test_a_replay_through_another_instance_revokes_on_both(
    shared_cache_backends: tuple[RedisCache, RedisCache],
) -> None:
    first, second = shared_cache_backends
    clock = FakeClock()
    _, auth_a, _ = build_app(revocation_store=first, clock=clock)
    _, auth_b, _ = build_app(revocation_store=second, settings=auth_a.settings, clock=clock)
    _, refresh1 = pair(auth_a)
    await auth_a.rotate_refresh_token(refresh1)
    access2, refresh2 = pair(auth_a)
    clock.now += 30
    assert (await rotation_refused(auth_b, refresh1)).code == REUSED
    assert await refused(auth_a, access2) == "invalid_token"
    assert (await rotation_refused(auth_a, refresh2)).code == "invalid_token"


async def test_a_logged_out_refresh_token_is_a_plain_401(cache_backend: CacheBackend) -> None:
    clock = FakeClock()
    _, auth, _ = build_app(revocation_store=cache_backend, clock=clock)
    access, refresh = pair(auth)
    claims = await auth.verify_token(refresh, token_type="refresh")
    assert await auth.revoke_token(claims.jti, until=claims.expires_at) is True
    clock.now += 30
    assert (await rotation_refused(auth, refresh)).code == "invalid_token"
    assert (await rotation_refused(auth, refresh)).code == "invalid_token"
    # Not a reuse: the user's other tokens keep working.
    assert (await auth.verify_token(access)).subject == "alice"
    _, other_refresh = pair(auth)
    assert (await auth.rotate_refresh_token(other_refresh)).subject == "alice"


async def test_tokens_a_cutoff_refuses_are_a_plain_401(cache_backend: CacheBackend) -> None:
    clock = FakeClock()
    _, auth, _ = build_app(revocation_store=cache_backend, clock=clock)
    _, refresh = pair(auth)
    clock.now += 5
    await auth.revoke_tokens_issued_before("alice")  # log out everywhere
    access_after, refresh_after = pair(auth)
    assert (await rotation_refused(auth, refresh)).code == "invalid_token"
    assert (await auth.verify_token(access_after)).subject == "alice"
    assert (await auth.rotate_refresh_token(refresh_after)).subject == "alice"


async def test_only_a_valid_refresh_token_is_rotated(cache_backend: CacheBackend) -> None:
    clock = FakeClock()
    _, auth, _ = build_app(revocation_store=cache_backend, clock=clock)
    access, refresh = pair(auth)
    assert (await rotation_refused(auth, access)).code == "invalid_token"
    assert (await rotation_refused(auth, "not.a.token")).code == "invalid_token"
    clock.now += auth.settings.jwt_refresh_token_ttl.total_seconds() + 3600
    assert (await rotation_refused(auth, refresh)).code == "token_expired"


# --- the store fails -----------------------------------------------------------


class WriteFailingStore(MemoryCache):
    """Reads work; ``set_if_absent`` (or ``set``) fails while the flag is up."""

    fail_set_if_absent = False
    fail_set = False

    async def set_if_absent(self, key: str, value: bytes, *, ttl: float) -> bool:
        if self.fail_set_if_absent:
            raise ConnectionError("connection reset")
        return await super().set_if_absent(key, value, ttl=ttl)

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        if self.fail_set:
            raise ConnectionError("connection reset")
        await super().set(key, value, ttl=ttl)


class HangingStore(MemoryCache):
    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        await asyncio.sleep(30)
        raise AssertionError("unreachable")


@pytest.mark.parametrize("fail_closed", [False, True])
async def test_store_down_answers_503_and_spends_nothing(
    fail_closed: bool, caplog: pytest.LogCaptureFixture
) -> None:
    store = WriteFailingStore()
    _, auth, _ = build_app(revocation_store=store, revocation_fail_closed=fail_closed)
    _, refresh = pair(auth)
    broken = BrokenStore()
    auth._explicit_store = broken  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING, logger="heygen_conventions.auth"):
        for _ in range(2):
            with pytest.raises(ServiceUnavailableError) as caught:
                await auth.rotate_refresh_token(refresh)
            assert caught.value.headers["Retry-After"] == "1"
        # Access tokens follow the instance's mode meanwhile.
        access = auth.create_access_token("alice")
        if fail_closed:
            with pytest.raises(ServiceUnavailableError):
                await auth.verify_token(access)
        else:
            assert (await auth.verify_token(access)).subject == "alice"

        # The read works, the atomic write does not: still 503, still unspent.
        auth._explicit_store = store
        store.fail_set_if_absent = True
        with pytest.raises(ServiceUnavailableError):
            await auth.rotate_refresh_token(refresh)
        store.fail_set_if_absent = False
        assert (await auth.rotate_refresh_token(refresh)).subject == "alice"

    # One incident (the failed write continues it) and one recovery line.
    outages = [r for r in caplog.records if r.getMessage().startswith("Revocation store")]
    assert [r.levelno for r in outages] == [logging.ERROR, logging.WARNING]
    recovered = outages[1]
    assert recovered.getMessage() == "Revocation store recovered"
    # Every rotation is refused; an access token is refused or checked locally.
    expected = {"requests_refused": 4, "requests_checked_locally": 0}
    if not fail_closed:
        expected = {"requests_refused": 3, "requests_checked_locally": 1}
    assert {name: getattr(recovered, name) for name in expected} == expected
    assert_nothing_leaked(caplog.records, [], refresh)


async def test_a_replay_whose_revocation_cannot_be_stored_is_503_and_detected_again() -> None:
    store = WriteFailingStore()
    clock = FakeClock()
    _, auth, _ = build_app(revocation_store=store, clock=clock)
    _, refresh1 = pair(auth)
    await auth.rotate_refresh_token(refresh1)
    access2, _ = pair(auth)
    clock.now += 30
    store.fail_set = True
    with pytest.raises(ServiceUnavailableError):
        await auth.rotate_refresh_token(refresh1)
    store.fail_set = False
    assert (await rotation_refused(auth, refresh1)).code == REUSED
    assert await refused(auth, access2) == "invalid_token"


async def test_a_slow_store_is_cut_off_by_the_timeout() -> None:
    _, auth, _ = build_app(revocation_store=HangingStore(), revocation_timeout=0.05)
    _, refresh = pair(auth)
    with pytest.raises(ServiceUnavailableError):
        await asyncio.wait_for(auth.rotate_refresh_token(refresh), 10)


async def test_the_spent_mark_is_kept_locally_through_an_outage() -> None:
    store = WriteFailingStore()
    _, auth, _ = build_app(revocation_store=store)
    _, refresh = pair(auth)
    await auth.rotate_refresh_token(refresh)
    auth._explicit_store = BrokenStore()  # type: ignore[assignment]
    # Failing open, this instance still knows the token is spent.
    assert await refused(auth, refresh, "refresh") == "invalid_token"


async def test_an_unreadable_spent_time_still_counts_as_spent() -> None:
    store = MemoryCache()
    clock = FakeClock()
    _, auth, _ = build_app(revocation_store=store, clock=clock)
    access, refresh = pair(auth)
    claims = await auth.verify_token(refresh, token_type="refresh")
    await store.set(auth._jti_key(claims.jti), b"spent:garbage", ttl=60)
    clock.now += 30
    assert (await rotation_refused(auth, refresh)).code == REUSED
    assert await refused(auth, access) == "invalid_token"


async def test_a_refusal_after_an_outage_logs_the_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryCache()
    _, auth, _ = build_app(revocation_store=store)
    _, refresh = pair(auth)
    claims = await auth.verify_token(refresh, token_type="refresh")
    await auth.revoke_token(claims.jti, until=claims.expires_at)
    auth._explicit_store = BrokenStore()  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING, logger="heygen_conventions.auth"):
        with pytest.raises(ServiceUnavailableError):
            await auth.rotate_refresh_token(refresh)
        auth._explicit_store = store
        assert (await rotation_refused(auth, refresh)).code == "invalid_token"
    recovered = [r for r in caplog.records if r.getMessage() == "Revocation store recovered"]
    assert [r.requests_refused for r in recovered] == [1]  # type: ignore[attr-defined]
