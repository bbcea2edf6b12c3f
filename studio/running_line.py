"""The line for running slots on the owner's keys: MAX_RUNNING and MAX_RUNNING_PER_VISITOR.

The runner holds it, not the page, so it holds whether or not a page is still connected: a
job joins the line when it is started, runs when a slot is free, and leaves when it ends (any
ending, Stop included). First come, first served, except that a job whose visitor is at its
own cap lets the jobs behind it pass. The line itself is bounded: a start that would make it
longer than its size is refused as a whole (`LineFull`), before anything is recorded.

Everything here runs on the event loop, and nothing awaits between a check and its change, so
two starts at once cannot both take the last place.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field


class LineFull(Exception):
    """The line cannot take these jobs: `size` may wait (`own`: for this visitor)."""

    def __init__(self, size: int, *, own: bool) -> None:
        super().__init__(f"the line is full ({size} may wait{' per visitor' if own else ''})")
        self.size = size
        self.own = own  # the visitor's own share of the line is full, not the whole line


@dataclass(eq=False)
class Ticket:
    job_id: str
    ids: tuple[str, ...]  # the visitor's ids (browser, address): each has its own cap
    place: int = 0  # 1 = next in line; 0 = running
    started: bool = False
    moved: asyncio.Event = field(default_factory=asyncio.Event)


class RunningLine:
    """At most `max_running` jobs at once (None: no cap), `per_visitor` for each visitor id;
    at most `size` waiting, `size_per_visitor` for each visitor id."""

    def __init__(
        self,
        max_running: int | None = None,
        per_visitor: int | None = None,
        *,
        size: int | None = None,
        size_per_visitor: int | None = None,
    ) -> None:
        self.max_running = max_running
        self.per_visitor = per_visitor
        self.size = size
        self.size_per_visitor = size_per_visitor
        self._running: dict[str, Ticket] = {}
        self._waiting: dict[str, Ticket] = {}  # in line order
        self._running_by: Counter[str] = Counter()

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def place(self, job_id: str) -> int | None:
        """1 for the next in line; 0 while running; None when not in the line."""
        ticket = self._waiting.get(job_id) or self._running.get(job_id)
        return None if ticket is None else ticket.place

    def join(self, job_ids: Sequence[str], ids: Sequence[str]) -> None:
        """Put `job_ids` in line; those with room run at once. Raises LineFull (and leaves
        the line as it was) when the line cannot hold the rest."""
        tickets = [Ticket(job_id, tuple(ids)) for job_id in job_ids]
        for ticket in tickets:
            self._waiting[ticket.job_id] = ticket
        self._admit()
        refusal = self._overflow(tuple(ids))
        if refusal is not None:
            for ticket in tickets:  # the last in line: taking them out moves no one else
                self._drop(ticket.job_id)
            self._admit()
            raise refusal

    def occupy(self, job_id: str, ids: Sequence[str] = ()) -> None:
        """A job that was sent already (taken up after a restart) runs without waiting."""
        ticket = Ticket(job_id, tuple(ids), started=True)
        self._running[job_id] = ticket
        self._running_by.update(ticket.ids)

    def leave(self, job_id: str) -> bool:
        """The job ended (or was never recorded). Returns whether it had its turn."""
        started = self._drop(job_id)
        self._admit()
        return started

    async def wait_turn(self, job_id: str, on_place: Callable[[int], Awaitable[None]]) -> None:
        """Return when `job_id` may run, calling `on_place(place)` each time its place
        changes, and `on_place(0)` when its turn comes after a wait."""
        ticket = self._waiting.get(job_id)
        shown: int | None = None
        while ticket is not None and not ticket.started:
            if ticket.place != shown:
                shown = ticket.place
                await on_place(shown)
                continue  # the place may have moved while on_place ran
            ticket.moved.clear()
            await ticket.moved.wait()
        if shown is not None:
            await on_place(0)

    # ---- inside -------------------------------------------------------------------------------

    def _fits(self, ticket: Ticket) -> bool:
        if self.max_running is not None and len(self._running) >= self.max_running:
            return False
        return self.per_visitor is None or all(
            self._running_by[i] < self.per_visitor for i in ticket.ids
        )

    def _admit(self) -> None:
        """Start every waiting job that fits, in line order; number the rest 1, 2, 3..."""
        for ticket in list(self._waiting.values()):
            if self._fits(ticket):
                del self._waiting[ticket.job_id]
                ticket.started, ticket.place = True, 0
                self._running[ticket.job_id] = ticket
                self._running_by.update(ticket.ids)
                ticket.moved.set()
        for place, ticket in enumerate(self._waiting.values(), start=1):
            if ticket.place != place:
                ticket.place = place
                ticket.moved.set()

    def _overflow(self, ids: tuple[str, ...]) -> LineFull | None:
        if self.size is not None and len(self._waiting) > self.size:
            return LineFull(self.size, own=False)
        if self.size_per_visitor is not None:
            for visitor_id in ids:
                mine = sum(visitor_id in t.ids for t in self._waiting.values())
                if mine > self.size_per_visitor:
                    return LineFull(self.size_per_visitor, own=True)
        return None

    def _drop(self, job_id: str) -> bool:
        if job_id in self._waiting:
            del self._waiting[job_id]
            return False
        ticket = self._running.pop(job_id, None)
        if ticket is None:
            return False
        self._running_by.subtract(ticket.ids)
        self._running_by += Counter()  # drop the zero counts
        return True
