"""The retry policy for status reads and result downloads, as a value apart from the loops
that apply it."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


@dataclass(frozen=True)
class RetryPolicy:
    """Jittered exponential backoff with a cap on attempts and on the total time spent waiting.

    The n-th retry waits a random time in [ceiling/2, ceiling] with
    ceiling = min(max_delay, base_delay * 2**(n-1)): half is fixed so that clients do not hammer
    a struggling service, half is random so that many clients spread out. A `Retry-After` from the
    service replaces the computed wait (the service knows best); one longer than `max_total_wait`
    ends the retries, so the caller can show the wait instead of asking too early.
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_total_wait: float = 30.0

    def delay(
        self, retry: int, retry_after: float | None = None, rng: Callable[[], float] = random.random
    ) -> float:
        """Seconds to wait before retry number `retry` (1 for the first retry)."""
        if retry_after is not None:
            return max(retry_after, 0.0)
        ceiling = min(self.max_delay, self.base_delay * 2 ** (retry - 1))
        return ceiling / 2 + rng() * ceiling / 2

    def allows(self, attempts_made: int, waited: float, next_delay: float) -> bool:
        """Whether one more attempt fits within the caps."""
        return attempts_made < self.max_attempts and waited + next_delay <= self.max_total_wait


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a `Retry-After` header: delta-seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)
