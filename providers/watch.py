"""Watching one task: a poll schedule (a value) and one async loop with a deadline.

The schedule spends its requests where they pay. One early check catches fast failures (a
content violation shows within seconds); then, until the task's expected finish, the gaps grow
with the time already waited (never more than `early_fraction` of it, nor less than
`early_gap`: a task that ends early is still noticed soon); the reads are brisk where tasks
actually finish, and afterwards never further apart than the seed's 3 s. A wake-up (a callback
arrived) triggers an immediate read at any time.

Where tasks finish is learned (`PollSchedule.learned`): the recent run times the studio
observed for the same kind of task, with the model's documented window as the prior that
observations replace one by one.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
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

# Learning (see PollSchedule.learned). The documented window counts as PRIOR_WEIGHT run times
# spread evenly over it; each observed run time replaces one of them, so after PRIOR_WEIGHT
# observations the schedule follows the service alone. Brisk reads cover the run times between
# the BRISK_FROM and BRISK_TO quantiles: a read late in the spread is cheap (few tasks are still
# running to pay for it), an early one is paid by almost every task. bench/watch_bench.py
# measured these against the seed's recipe (README, "Poll schedule").
PRIOR_WEIGHT = 20
BRISK_FROM = 0.25
BRISK_TO = 0.95
WINDOW_QUANTILES = (0.05, 0.95)  # the expected finish shown to the user
SPREAD = 4  # points standing for each (earliest, latest) end
MAX_READS = 10_000  # read_times gives up here (a schedule of zero delays would never end)
MIN_DELAY = 1e-3

Ended = tuple[float, float]  # when a task ended: (earliest, latest), seconds since its submit


def _span(ended: Ended | float) -> Ended | None:
    low, high = ended if isinstance(ended, tuple) else (ended, ended)
    if not (0 < low <= high and math.isfinite(high)):
        return None
    return (low, high)


class StatusSource(Protocol):
    @property
    def provider(self) -> str: ...

    async def fetch_status(self, task_id: str) -> TaskStatus: ...


def quantile(ordered: Sequence[float], p: float) -> float:
    """The `p` quantile of the sorted, non-empty `ordered`, linearly interpolated."""
    position = p * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class PollSchedule:
    """When to read the status next, given the seconds since submit.

    `window` is when the task is expected to finish (earliest, latest). The schedule checks
    once at `first_check`; from then until the brisk phase the gap is `early_fraction` of the
    time waited, at least `early_gap` and at most `quiet_interval` (inside the window at most
    `late_interval` too). `brisk` (start, end) is where it reads every `near_interval`; None
    means from `settle` seconds into the window to its end. After it, every `late_interval`
    (at most the seed's 3 s).
    """

    window: tuple[float, float] = (20.0, 30.0)
    first_check: float = 2.0
    quiet_interval: float = 60.0
    near_interval: float = 1.0
    late_interval: float = 3.0
    # Brisk polling starts this long after the window opens (negative: before it), when no
    # `brisk` phase is given.
    settle: float = 2.5
    brisk: tuple[float, float] | None = None
    # The growing gaps before the brisk phase: a task that ends at t seconds is seen by
    # t + max(early_gap, early_fraction * t) at the latest (issue 11's bound: 2 s and 30 %).
    early_gap: float = 2.0
    early_fraction: float = 0.3

    def scaled(self, factor: float) -> PollSchedule:
        """The same schedule with every duration multiplied (for a time-scaled simulator)."""
        lo, hi = self.window
        return replace(
            self,
            window=(lo * factor, hi * factor),
            first_check=self.first_check * factor,
            quiet_interval=self.quiet_interval * factor,
            near_interval=self.near_interval * factor,
            late_interval=self.late_interval * factor,
            settle=self.settle * factor,
            brisk=(self.brisk[0] * factor, self.brisk[1] * factor) if self.brisk else None,
            early_gap=self.early_gap * factor,
        )

    def learned(self, prior: tuple[float, float], ended: Sequence[Ended | float]) -> PollSchedule:
        """This schedule with its window and brisk phase placed where tasks finish.

        `ended`: when recent tasks of the kind ended, in seconds since their submit on this
        schedule's clock, each as (earliest, latest) (see `ended_between`) or as one number;
        `prior`: the documented window, which stands for PRIOR_WEIGHT tasks spread evenly over
        it, one fewer for each observation. Non-positive and non-finite values are ignored.
        """
        observed = [span for span in map(_span, ended) if span is not None]
        lo, hi = prior
        if not observed:
            return replace(self, window=prior, brisk=(lo + (hi - lo) * BRISK_FROM, hi))
        pseudo = max(0, PRIOR_WEIGHT - len(observed))
        spans = observed + [
            (lo + (hi - lo) * i / pseudo, lo + (hi - lo) * (i + 1) / pseudo) for i in range(pseudo)
        ]
        # Each span stands for SPREAD points evenly inside it: a task seen done by a sparse read
        # ended anywhere since the read before, not at the read.
        ordered = sorted(a + (b - a) * (j + 0.5) / SPREAD for a, b in spans for j in range(SPREAD))
        window = (quantile(ordered, WINDOW_QUANTILES[0]), quantile(ordered, WINDOW_QUANTILES[1]))
        brisk = (quantile(ordered, BRISK_FROM), quantile(ordered, BRISK_TO) + self.near_interval)
        return replace(self, window=window, brisk=brisk)

    def read_times(self, until: float) -> list[float]:
        """The reads this schedule makes from submit up to `until` seconds (no wake-ups)."""
        reads: list[float] = []
        elapsed = 0.0
        while len(reads) < MAX_READS:
            elapsed += max(self.next_delay(elapsed), MIN_DELAY)
            if elapsed > until:
                break
            reads.append(elapsed)
        return reads

    def ended_between(self, seen: float, tolerance: float | None = None) -> Ended:
        """When a task ended that a read `seen` seconds after its submit found done.

        A read of this schedule (at most `tolerance`, default half of `near_interval`, after
        one of its read times: a request takes a moment) means the task ended after the read
        before it; any other read (a wake-up by a callback, a retry) is taken as the moment."""
        reads = self.read_times(seen)
        if tolerance is None:
            tolerance = self.near_interval / 2
        if not reads or seen - reads[-1] > tolerance:
            return (seen, seen)
        late = seen - reads[-1]
        before = reads[-2] if len(reads) > 1 else 0.0
        return (before + late, seen)

    def next_delay(self, elapsed: float) -> float:
        """Seconds to wait from `elapsed` (seconds since submit) until the next read."""
        lo, hi = self.window
        start, end = self.brisk or (lo + self.settle, hi)
        start = max(start, self.first_check)
        if elapsed < self.first_check:
            return self.first_check - elapsed
        patient = min(self.quiet_interval, max(self.early_gap, self.early_fraction * elapsed))
        if elapsed < start:
            gap = patient if elapsed < lo else min(patient, self.late_interval)
            return min(gap, start - elapsed)
        if elapsed < end:
            return self.near_interval
        return min(patient, self.late_interval)


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
