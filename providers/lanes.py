"""A gate before the wire: requests in flight to each service, bounded below the pool.

httpx queues the requests its connection pool cannot serve at once inside httpcore, whose
bookkeeping on every event grows with (queued x busy connections): with 1,000 tasks in flight
through one 100-connection client the event loop stalled for seconds and the waiters hit the
pool timeout, so nothing finished (issue 11). Here a request first takes a place in its lane
(an `asyncio.Semaphore`: first come, first served, O(1) per request) and only then reaches
httpx, and the lanes of every service together stay below the pool (`pool_limits`), so the
pool never has a queue: no request waits on a pool, it waits on our gate.

Each kind of request has its own lane, so a burst of one cannot starve the others: 1,000
submits at once do not hold back the status reads of the tasks already running, nor the
downloads of the finished ones. Waiting in a lane is not part of a request's deadline (nothing
has been sent yet), and a request cancelled while it waits leaves without a trace.

`Lane` also counts (in flight, waiting, their peaks, how many passed) for the benchmarks.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import TracebackType

import httpx


@dataclass(frozen=True)
class LaneLimits:
    """How many requests of each kind may be in flight to one service (downloads: in all)."""

    submits: int = 8
    status: int = 32
    downloads: int = 16

    def __post_init__(self) -> None:
        if min(self.submits, self.status, self.downloads) < 1:
            raise ValueError("every lane needs room for at least one request")


DEFAULT_LIMITS = LaneLimits()
HEADROOM = 4  # connections above the lanes' sum: the pool must never be the bottleneck


def pool_limits(services: int, limits: LaneLimits = DEFAULT_LIMITS) -> httpx.Limits:
    """Limits for one httpx client shared by `services` services and the result downloads
    from their origins: room for every lane at once, all kept alive (no reconnect churn)."""
    size = services * (limits.submits + limits.status) + limits.downloads + HEADROOM
    return httpx.Limits(max_connections=size, max_keepalive_connections=size)


class Lane:
    """At most `limit` requests inside at once; the others wait their turn, in order."""

    def __init__(self, name: str, limit: int) -> None:
        if limit < 1:
            raise ValueError("a lane needs room for at least one request")
        self.name = name
        self.limit = limit
        self._slots = asyncio.Semaphore(limit)
        self.in_flight = 0
        self.waiting = 0
        self.peak_in_flight = 0
        self.peak_waiting = 0
        self.passed = 0

    def __repr__(self) -> str:
        return (
            f"Lane({self.name!r}, {self.in_flight}/{self.limit} in flight, {self.waiting} waiting)"
        )

    async def __aenter__(self) -> Lane:
        self.waiting += 1
        self.peak_waiting = max(self.peak_waiting, self.waiting)
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.in_flight -= 1
        self.passed += 1
        self._slots.release()


class Lanes:
    """The lanes of one service: its submits and its status reads (one object per service,
    shared by every client of that service, whoever's key it carries)."""

    def __init__(self, limits: LaneLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self.submits = Lane("submits", limits.submits)
        self.status = Lane("status reads", limits.status)

    def for_method(self, method: str) -> Lane:
        """POST is a submit; every other request to a service reads a status."""
        return self.submits if method.upper() == "POST" else self.status
