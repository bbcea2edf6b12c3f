"""A gate before the wire: requests in flight to each service, bounded below the pool.

httpx queues the requests its connection pool cannot serve at once inside httpcore, whose
bookkeeping on every event grows with (queued x busy connections): with 1,000 tasks in flight
through one 100-connection client the event loop stalled for seconds and the waiters hit the
pool timeout, so nothing finished (issue 11). Here a request first takes a place in its lane
(an `asyncio.Semaphore`: first come, first served, O(1) per request) and only then reaches
httpx, through a pool with room for the whole lane (`pool_limits`), so the pool never has a
queue: no request waits on a pool, it waits on our gate.

Each kind of request has its own lane, so a burst of one cannot starve the others: 1,000
submits at once do not hold back the status reads of the tasks already running, nor the
downloads of the finished ones. Waiting in a lane is not part of a request's deadline (nothing
has been sent yet), and a request cancelled while it waits leaves without a trace.

A lane may also own its connections (`Lanes(pools=...)`): an httpx client whose pool holds
exactly as many connections as the lane lets requests in. httpcore's bookkeeping walks every
connection of its pool, for each idle one again, on every request that starts or ends
(bench/scale_bench.py measured it as most of the app's CPU with one 100-connection pool for all
lanes), so a pool per lane, as small as the lane, keeps that walk short.

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


def pool_limits(size: int) -> httpx.Limits:
    """A pool with room for `size` requests at once (and HEADROOM), all kept alive, so a lane
    of that size never waits on it and never reconnects."""
    return httpx.Limits(max_connections=size + HEADROOM, max_keepalive_connections=size + HEADROOM)


class Lane:
    """At most `limit` requests inside at once; the others wait their turn, in order."""

    def __init__(self, name: str, limit: int, http: httpx.AsyncClient | None = None) -> None:
        if limit < 1:
            raise ValueError("a lane needs room for at least one request")
        self.name = name
        self.limit = limit
        self.http = http  # the lane's own connections; None: the caller's client
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

    def __init__(
        self, limits: LaneLimits = DEFAULT_LIMITS, *, pools: httpx.Timeout | None = None
    ) -> None:
        """`pools`: give each lane an httpx client of its own with this timeout, its pool the
        lane's size (close them with `aclose`); None: requests use the caller's client."""
        self.limits = limits
        self.submits = Lane("submits", limits.submits, _pool(limits.submits, pools))
        self.status = Lane("status reads", limits.status, _pool(limits.status, pools))

    async def aclose(self) -> None:
        """Close the lanes' own clients (if they have any)."""
        for lane in (self.submits, self.status):
            if lane.http is not None:
                await lane.http.aclose()

    def for_method(self, method: str) -> Lane:
        """POST is a submit; every other request to a service reads a status."""
        return self.submits if method.upper() == "POST" else self.status


def _pool(size: int, timeout: httpx.Timeout | None) -> httpx.AsyncClient | None:
    if timeout is None:
        return None
    return httpx.AsyncClient(timeout=timeout, limits=pool_limits(size))
