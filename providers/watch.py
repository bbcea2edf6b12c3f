"""Watching one task: a poll schedule (a value) and one async loop with a deadline.

The schedule spends its requests where they pay. One early check catches fast failures (a content
violation shows within seconds); then it stays quiet until the model's expected finish window
(from the capability table), polls briskly inside it, and afterwards never waits longer than the
seed's 3 s. A wake-up (a callback arrived) triggers an immediate read at any time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from providers.errors import (
    RateLimitedError,
    ServiceError,
    ServiceUnreachableError,
    WatchTimeoutError,
)
from providers.types import TaskStatus

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class StatusSource(Protocol):
    @property
    def provider(self) -> str: ...

    async def fetch_status(self, task_id: str) -> TaskStatus: ...


@dataclass(frozen=True)
class PollSchedule:
    """When to read the status next, given the seconds since submit.

    `window` is when the task is expected to finish (earliest, latest). Before it, the schedule
    checks once at `first_check` and then every `quiet_interval`; from `settle` seconds into it
    every `near_interval`; after it every `late_interval` (at most the seed's 3 s).
    """

    window: tuple[float, float] = (20.0, 30.0)
    first_check: float = 2.0
    quiet_interval: float = 60.0
    near_interval: float = 1.4
    late_interval: float = 3.0
    # Brisk polling starts this long after the window opens (negative: before it). Tasks rarely
    # finish in the window's first seconds; bench/watch_bench.py measured 2.5 s as the point
    # where the schedule uses fewer requests than the seed's recipe at under half its delay.
    settle: float = 2.5

    def scaled(self, factor: float) -> PollSchedule:
        """The same schedule with every duration multiplied (for a time-scaled simulator)."""
        lo, hi = self.window
        return PollSchedule(
            window=(lo * factor, hi * factor),
            first_check=self.first_check * factor,
            quiet_interval=self.quiet_interval * factor,
            near_interval=self.near_interval * factor,
            late_interval=self.late_interval * factor,
            settle=self.settle * factor,
        )

    def next_delay(self, elapsed: float) -> float:
        """Seconds to wait from `elapsed` (seconds since submit) until the next read."""
        lo, hi = self.window
        start = max(lo + self.settle, self.first_check)
        if elapsed < self.first_check:
            return self.first_check - elapsed
        if elapsed < start:
            return min(self.quiet_interval, start - elapsed)
        if elapsed < hi:
            return self.near_interval
        return self.late_interval


async def _wait(delay: float, wake: asyncio.Event | None, sleep: Sleep) -> None:
    """Sleep for `delay`, or less if `wake` is set meanwhile (then clear it)."""
    if wake is None:
        await sleep(delay)
        return
    if not wake.is_set():
        sleeper = asyncio.ensure_future(sleep(delay))
        waiter = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pending in (sleeper, waiter):
                pending.cancel()
            await asyncio.gather(sleeper, waiter, return_exceptions=True)
    wake.clear()


_TRANSIENT = (RateLimitedError, ServiceError, ServiceUnreachableError)


async def watch_task(
    source: StatusSource,
    task_id: str,
    *,
    schedule: PollSchedule,
    deadline: float = 600.0,
    submitted_at: float | None = None,
    wake: asyncio.Event | None = None,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
) -> AsyncIterator[TaskStatus]:
    """Yield each status read until the task is terminal; raise WatchTimeoutError at the deadline.

    `submitted_at` (a `clock` reading) places the schedule when re-attaching to an older task.
    Status reads that still fail after the transport's own retries are logged and tried again on
    the schedule: a service hiccup must not abandon a task that is still running.
    """
    started = clock() if submitted_at is None else submitted_at
    ends = clock() + deadline
    last_error: Exception | None = None
    hold_off = 0.0  # a Retry-After the transport handed back: never ask sooner than that
    while True:
        now = clock()
        if now >= ends:
            raise WatchTimeoutError(
                f"no final state after {deadline:.0f} s",
                provider=source.provider,
                task_id=task_id,
            ) from last_error
        delay = min(max(schedule.next_delay(now - started), hold_off), ends - now)
        hold_off = 0.0
        await _wait(delay, wake, sleep)
        try:
            status = await source.fetch_status(task_id)
        except _TRANSIENT as exc:
            log.warning("%s task %s: status read failed: %s", source.provider, task_id, exc)
            last_error = exc
            hold_off = getattr(exc, "retry_after", None) or 0.0
            continue
        yield status
        if status.is_terminal:
            return
