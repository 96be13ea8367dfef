from __future__ import annotations

import asyncio

from starlette.concurrency import run_in_threadpool

from heygen_conventions._context import (
    bind_request_context,
    end_request_context,
    get_request_context,
    safe_request_id,
    start_request_context,
)


def test_binding_outside_a_request_is_a_no_op() -> None:
    bind_request_context(user_id="u1")
    assert get_request_context() == {}


async def test_values_bound_in_a_threadpool_reach_the_request() -> None:
    token = start_request_context(request_id="r1")
    try:
        await run_in_threadpool(bind_request_context, user_id="u1")
        assert get_request_context() == {"request_id": "r1", "user_id": "u1"}
    finally:
        end_request_context(token)
    assert get_request_context() == {}


async def test_concurrent_requests_keep_their_own_context() -> None:
    async def request(n: int) -> dict[str, object]:
        token = start_request_context(request_id=f"r{n}")
        try:
            await asyncio.sleep(0)
            bind_request_context(user_id=f"u{n}")
            await asyncio.sleep(0)
            return dict(get_request_context())
        finally:
            end_request_context(token)

    results = await asyncio.gather(*(request(n) for n in range(20)))
    assert results == [{"request_id": f"r{n}", "user_id": f"u{n}"} for n in range(20)]


def test_safe_request_id_accepts_only_plain_tokens() -> None:
    assert safe_request_id("abc-123_x.y") == "abc-123_x.y"
    assert safe_request_id(b"abc") == "abc"
    for bad in ["", "a b", "a\nb", "é", "x" * 129, b"\xff\xfe", None]:
        assert safe_request_id(bad) is None
