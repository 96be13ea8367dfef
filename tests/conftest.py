"""Shared test configuration.

Tests that touch a database or a cache run on the embedded defaults (SQLite,
fakeredis, the in-process cache) and, when ``TEST_DATABASE_URL`` /
``TEST_REDIS_URL`` are set, on the real servers too. In CI (``CI=true``) a
real server that cannot be reached fails the run instead of being skipped.
"""

from __future__ import annotations

import os

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL") or None
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL") or None
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# Each area keeps its fixtures in its own plugin module.
pytest_plugins = [
    "tests.fixtures.auth",
    "tests.fixtures.cache",
    "tests.fixtures.checks",
    "tests.fixtures.db",
    "tests.fixtures.logging",
]
