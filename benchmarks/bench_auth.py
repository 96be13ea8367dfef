"""Resolving ``get_current_user`` per request against a bare ``jose.jwt.decode``.

Run: ``.venv/bin/python -m benchmarks.bench_auth`` (about 20 s).

Each round times every contender on the same token, interleaved, and the
table reports the median of the per-round ratios to the baseline
``jose.jwt.decode(token, secret, algorithms=[...])``. The library's path is
the whole dependency: reading the Authorization header, verifying (or the
claims-cache hit), the revocation and cutoff lookup (in-process store), the
user loader and binding the user id to the log context. The user loader here
is a dict lookup; its own cost is printed so the cold-path target
(<= 1.2x bare decode + loader) can be checked.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from fastapi.security import SecurityScopes
from jose import jwk
from jose import jwt as jose_jwt
from starlette.requests import Request

from heygen_conventions import Settings, get_current_user, install_auth
from heygen_conventions.auth import bearer_token

SECRET = "bench-" + "s" * 48
ROUNDS = 15
PER_ROUND = 400


class User:
    def __init__(self, id: str) -> None:
        self.id = id
        self.roles = ["member"]
        self.is_active = True


USERS = {"alice": User("alice")}


async def load_user(subject: str) -> User | None:
    return USERS.get(subject)


def app_with(settings: Settings, **install: Any) -> tuple[FastAPI, Any]:
    app = FastAPI()
    auth = install_auth(app, user_loader=load_user, settings=settings, **install)
    return app, auth


def resolver(app: FastAPI, token: str) -> Callable[[], Awaitable[Any]]:
    headers = [(b"authorization", f"Bearer {token}".encode())]
    scopes = SecurityScopes()

    async def resolve() -> Any:
        # A fresh scope per call, as each request has: nothing carries over
        # but the claims cache.
        request = Request({"type": "http", "headers": headers, "app": app, "state": {}})
        return await get_current_user(request, scopes, await bearer_token(request))

    return resolve


def sync_timer(fn: Callable[[], Any]) -> Callable[[], Awaitable[float]]:
    async def run() -> float:
        start = time.perf_counter()
        for _ in range(PER_ROUND):
            fn()
        return (time.perf_counter() - start) / PER_ROUND

    return run


def async_timer(fn: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[float]]:
    async def run() -> float:
        start = time.perf_counter()
        for _ in range(PER_ROUND):
            await fn()
        return (time.perf_counter() - start) / PER_ROUND

    return run


async def measure(title: str, contenders: dict[str, Callable[[], Awaitable[float]]]) -> None:
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm-up: imports, caches, first-call costs
        await contenders[name]()
    for _ in range(ROUNDS):
        for name in names:
            times[name].append(await contenders[name]())
    base = names[0]
    print(f"\n{title}")
    print(f"{'contender':<58} {'us/op':>8} {'ratio':>7}")
    for name in names:
        ratios = [t / b for t, b in zip(times[name], times[base], strict=True)]
        print(
            f"{name:<58} {statistics.median(times[name]) * 1e6:8.1f} "
            f"{statistics.median(ratios):7.3f}"
        )


async def bench_hs256() -> None:
    settings = Settings(environment="test", jwt_secret=SECRET)
    warm_app, warm_auth = app_with(settings)
    cold_app, _ = app_with(settings, claims_cache_size=0)
    token = warm_auth.create_access_token("alice")
    key = jwk.construct(SECRET, "HS256")
    await resolver(warm_app, token)()
    await measure(
        "HS256",
        {
            "baseline: jose.jwt.decode(token, secret, algorithms=[HS256])": sync_timer(
                lambda: jose_jwt.decode(token, SECRET, algorithms=["HS256"])
            ),
            "jose.jwt.decode with a key object built once": sync_timer(
                lambda: jose_jwt.decode(token, key, algorithms=["HS256"])
            ),
            "get_current_user, claims cache warm": async_timer(resolver(warm_app, token)),
            "get_current_user, cold (claims cache off)": async_timer(resolver(cold_app, token)),
            "the user loader alone": async_timer(lambda: load_user("alice")),
        },
    )


async def bench_rs256() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    settings = Settings(environment="test", jwt_algorithm="RS256", jwt_private_key=private_pem)
    warm_app, warm_auth = app_with(settings)
    cold_app, _ = app_with(settings, claims_cache_size=0)
    token = warm_auth.create_access_token("alice")
    key = jwk.construct(public_pem, "RS256")
    await resolver(warm_app, token)()
    await measure(
        "RS256 (2048-bit)",
        {
            "baseline: jose.jwt.decode(token, public_pem, algorithms=[RS256])": sync_timer(
                lambda: jose_jwt.decode(token, public_pem, algorithms=["RS256"])
            ),
            "jose.jwt.decode with a key object built once": sync_timer(
                lambda: jose_jwt.decode(token, key, algorithms=["RS256"])
            ),
            "get_current_user, claims cache warm": async_timer(resolver(warm_app, token)),
            "get_current_user, cold (claims cache off)": async_timer(resolver(cold_app, token)),
            "the user loader alone": async_timer(lambda: load_user("alice")),
        },
    )


async def main() -> None:
    print(f"{ROUNDS} rounds x {PER_ROUND} calls each; median us/op and median per-round ratio")
    await bench_hs256()
    await bench_rs256()


if __name__ == "__main__":
    asyncio.run(main())
