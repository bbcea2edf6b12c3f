"""How long tasks of each kind ran lately: what the poll schedule learns from.

A run time is the seconds from a task's submit to the moment its success was first seen (by a
poll or after a callback), as the ledger records them. A kind is (model, resolution, offline):
the same model at 4K runs longer than at 1K, and the built-in simulator runs on its own,
faster clock. Each kind keeps only its latest `per_kind` run times, so memory is flat in the
number of jobs ever run. `RunTimes.following(ledger)` seeds them from the ledger's latest
finished jobs (one bounded read, at start-up) and then hears of each new success as the ledger
records it. `schedule_for` places a request's poll schedule from them.

A success seen by a scheduled read says only that the task ended since the read before: where
the schedule was sparse (before its window, or everywhere when the service is faster or slower
than documented), the seen times would pile up on the schedule's own read times and the
learned schedule would only confirm itself. So each run time is kept as the span (earliest,
latest end) that the kind's schedule in force allows (`PollSchedule.ended_between`); run times
read from the ledger at start-up get theirs from the first schedule placed for the kind.

Run times longer than `longest` are dropped: a task resumed after a restart or checked again
hours later has not "run" that long, and one such value would widen the learned window.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Self

from providers.capabilities import ModelSpec
from providers.registry import schedule_for
from providers.types import GenerationRequest
from providers.watch import Ended, PollSchedule
from studio.backends import Backend
from studio.ledger import Ledger, RunTime

Kind = tuple[str, str, bool]  # model, resolution ("" when the model has none), offline

PER_KIND = 50
LONGEST = 900.0  # seconds; the watch deadline is 600 s by default
SEED_JOBS = 2000  # finished jobs read at start-up


def kind_of(model: str, resolution: str | None, offline: bool) -> Kind:
    return (model, resolution or "", bool(offline))


def kind_of_params(model: str, params: Mapping[str, Any]) -> Kind:
    """The kind of a job from its stored params (see `studio.job_spec.JobSpec.new_job`)."""
    resolution = params.get("resolution")
    return kind_of(model, str(resolution) if resolution else None, bool(params.get("offline")))


@dataclass
class _Kind:
    seen: deque[tuple[float, Ended | None]]  # run time, and its span once a schedule gave one
    schedule: PollSchedule | None = None  # the last one placed; None: must be placed again
    placed: PollSchedule | None = None  # the last one placed, even when stale


class RunTimes:
    """The latest run times per kind. Thread-safe: the ledger reports from worker threads."""

    def __init__(self, per_kind: int = PER_KIND, longest: float = LONGEST) -> None:
        self.per_kind = per_kind
        self.longest = longest
        self._kinds: dict[Kind, _Kind] = {}
        self._lock = threading.Lock()

    @classmethod
    def following(cls, ledger: Ledger, *, seed_jobs: int = SEED_JOBS, **options: Any) -> Self:
        """Seeded from `ledger`'s latest finished jobs, then told of each new success."""
        run_times = cls(**options)
        # Oldest first, so the newest stay when a kind has more than per_kind.
        run_times.add_all(reversed(ledger.recent_run_times(seed_jobs)))
        ledger.on_run_time(run_times.add)
        return run_times

    def _kind(self, kind: Kind) -> _Kind:
        found = self._kinds.get(kind)
        if found is None:
            found = self._kinds[kind] = _Kind(deque(maxlen=self.per_kind))
        return found

    def add(self, ran: RunTime) -> None:
        """Keep one run time (dropped when not in (0, longest] seconds)."""
        if not 0 < ran.seconds <= self.longest:
            return
        with self._lock:
            kind = self._kind(kind_of_params(ran.model, ran.params))
            span = kind.placed.ended_between(ran.seconds) if kind.placed else None
            kind.seen.append((ran.seconds, span))
            kind.schedule = None

    def add_all(self, runs: Iterable[RunTime]) -> None:
        for ran in runs:
            self.add(ran)

    def recent(self, model: str, resolution: str | None, offline: bool) -> tuple[float, ...]:
        """The kind's latest run times as seen, oldest first (empty when none was seen)."""
        with self._lock:
            kind = self._kinds.get(kind_of(model, resolution, offline))
            return tuple(seconds for seconds, _ in kind.seen) if kind else ()

    def schedule_for(
        self, spec: ModelSpec, request: GenerationRequest, backend: Backend
    ) -> PollSchedule:
        """The request's poll schedule on the backend's clock (the simulator runs faster),
        placed from the latest run times of its kind; its window is also when the page expects
        the task to end. Placed again only after a new run time arrived."""
        with self._lock:
            kind = self._kind(kind_of(spec.id, request.settings.resolution, backend.offline))
            if kind.schedule is not None:
                return kind.schedule
            reference = kind.placed or schedule_for(spec, request, backend.time_scale)
            spans = [span or reference.ended_between(seconds) for seconds, span in kind.seen]
            kind.seen = deque(zip((s for s, _ in kind.seen), spans, strict=True), self.per_kind)
            kind.schedule = kind.placed = schedule_for(spec, request, backend.time_scale, spans)
            return kind.schedule

    def __len__(self) -> int:
        """How many run times are held, over all kinds (at most per_kind for each)."""
        with self._lock:
            return sum(len(kind.seen) for kind in self._kinds.values())
