"""The opt-in pytest plugin's fixtures work in an application's own suite."""

import pytest

pytest_plugins = ["pytester"]


def test_plugin_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ["heygen_conventions.pytest_plugin"]')
    pytester.makepyfile(
        """
        import logging

        from sqlalchemy import text


        async def test_database(heygen_database):
            async with heygen_database.transaction() as session:
                assert (await session.execute(text("SELECT 1"))).scalar() == 1


        async def test_cache(memory_cache):
            await memory_cache.set("k", b"v", ttl=10)
            assert await memory_cache.get("k") == b"v"


        def test_logs(log_events):
            logging.getLogger("app").warning("hello")
            assert any(e["event"] == "hello" for e in log_events)
        """
    )
    result = pytester.runpytest_inprocess(
        "-p",
        "asyncio",
        "-o",
        "asyncio_mode=auto",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
    )
    result.assert_outcomes(passed=3)
