"""Helpers for application test suites."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from heygen_conventions.logging import _capture_events

__all__ = ["capture_logs"]


@contextmanager
def capture_logs() -> Iterator[list[dict[str, Any]]]:
    """Collect the log events emitted inside the block, as the pipeline produced them.

    Each event is a dict taken just before rendering: request context merged
    in, secrets already masked, ``level``, ``logger`` and ``timestamp`` set.
    Lines from :func:`get_logger` and from standard-library loggers are both
    captured, from every thread. With :func:`configure_logging` already
    called, events below its level are not captured and lines are still
    written; otherwise the block runs with a temporary DEBUG pipeline that
    writes nothing::

        with capture_logs() as logs:
            client.get("/videos/1")
        assert logs[-1]["status_code"] == 200
    """
    with _capture_events() as events:
        yield events
