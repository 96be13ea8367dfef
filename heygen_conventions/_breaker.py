"""A circuit breaker that stops calling a failing dependency for a cool-down.

    closed ──(failure_threshold consecutive failures)──> open
    open ──(reset_timeout elapsed)──> half_open: one probe call is let through
    half_open ──probe succeeds──> closed
    half_open ──probe fails──> open (for another reset_timeout)

While open, :meth:`CircuitBreaker.allow` answers False in well under a
microsecond, so callers fail fast instead of each paying a connect or read
timeout. A probe whose caller vanished (cancelled) is replaced after another
``reset_timeout``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

__all__ = ["BreakerState", "CircuitBreaker"]

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Counts consecutive failures of one dependency and opens after too many.

    Args:
        failure_threshold: Consecutive failures that open the circuit.
        reset_timeout: Seconds the circuit stays open before one probe is allowed.
        clock: Monotonic clock in seconds (injectable for tests).
    """

    __slots__ = (
        "_clock",
        "_failures",
        "_opened_at",
        "_probe_started",
        "_state",
        "failure_threshold",
        "opened_count",
        "reset_timeout",
    )

    def __init__(
        self,
        *,
        failure_threshold: int = 3,
        reset_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if reset_timeout <= 0:
            raise ValueError(f"reset_timeout must be > 0 seconds, got {reset_timeout}")
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._state: BreakerState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probe_started = 0.0
        #: How many times the circuit has opened since creation.
        self.opened_count = 0

    @property
    def state(self) -> BreakerState:
        return self._state

    def allow(self) -> bool:
        """True when a call may go ahead now."""
        if self._state == "closed":
            return True
        now = self._clock()
        if self._state == "open":
            if now - self._opened_at < self.reset_timeout:
                return False
            self._state = "half_open"
            self._probe_started = now
            return True
        # half_open: one probe at a time; replace a probe that never reported back.
        if now - self._probe_started >= self.reset_timeout:
            self._probe_started = now
            return True
        return False

    def record_success(self) -> None:
        if self._state != "closed" or self._failures:
            self._state = "closed"
            self._failures = 0

    def record_failure(self) -> None:
        self._failures += 1
        if self._state == "half_open" or (
            self._state == "closed" and self._failures >= self.failure_threshold
        ):
            self._state = "open"
            self._opened_at = self._clock()
            self.opened_count += 1

    def probe_now(self) -> None:
        """Let the next call through as a probe, even before ``reset_timeout`` has passed.

        For a last attempt that cannot wait, such as work left at shutdown.
        A closed circuit is left as it is.
        """
        if self._state != "closed":
            self._state = "open"
            self._opened_at = self._clock() - self.reset_timeout

    def retry_after(self) -> float:
        """Seconds until the next probe is allowed (0 when closed)."""
        if self._state == "closed":
            return 0.0
        started = self._opened_at if self._state == "open" else self._probe_started
        return max(0.0, self.reset_timeout - (self._clock() - started))
