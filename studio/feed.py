"""Jobs as the runner holds them while they run, and how pages follow them.

Each running job publishes a new `Progress` value on every change and notifies its condition;
`follow` merges any number of jobs into one stream of snapshots for a page. `LiveJobs` holds the
running jobs and a bounded window of the last ones to end: memory is flat in the number of jobs
ever run (older endings are read from the ledger). `Changes` tells a page's feed that one of its
visitor's jobs changed, so a feed re-reads only when there is something new.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from studio.backends import Backend
from studio.job_spec import JobSpec
from studio.ledger import JobRow
from studio.lifecycle import JobState
from studio.progress import Progress


@dataclass
class LiveJob:
    progress: Progress
    backend: Backend
    spec: JobSpec
    owner: str
    callback_token: str = ""
    resumed: bool = False  # taken up from the ledger rather than started here
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    task: asyncio.Task[None] | None = None
    on_change: Callable[[str], None] = lambda _owner: None  # set by LiveJobs.add

    @classmethod
    def of_row(
        cls,
        row: JobRow,
        spec: JobSpec,
        backend: Backend,
        model_label: str,
        expected_seconds: tuple[float, float],
        *,
        resumed: bool = False,
    ) -> LiveJob:
        """The live job for a ledger row, as recorded or as taken up again (`resumed`)."""
        progress = Progress(
            job_id=row.job_id,
            variant=int(str(row.params.get("variant") or 1)),
            model_label=model_label,
            state=JobState(row.state),
            provider_state=row.provider_state,
            task_id=row.task_id,
            offline=backend.offline,
            created_at=row.created_at,
            submitted_at=row.submitted_at,
            expected_seconds=expected_seconds,
        )
        return cls(
            progress=progress,
            backend=backend,
            spec=spec,
            owner=row.owner,
            callback_token=row.callback_token,
            resumed=resumed,
        )

    async def publish(self, **changes: object) -> None:
        self.progress = self.progress.evolve(**changes)
        async with self.changed:
            self.changed.notify_all()
        self.on_change(self.owner)


class Changes:
    """Per-visitor change signals: `notify(owner)` wakes the feeds of that owner and the feeds
    that watch everyone (owner None, single-user mode). Waiting costs one Event per feed."""

    def __init__(self) -> None:
        self._waiting: defaultdict[str | None, set[asyncio.Event]] = defaultdict(set)

    def notify(self, owner: str) -> None:
        for key in (owner, None):
            for event in self._waiting.get(key, ()):
                event.set()

    async def wait(self, owner: str | None, within: float) -> bool:
        """Until something of `owner`'s changes (True) or `within` seconds pass (False)."""
        event = asyncio.Event()
        self._waiting[owner].add(event)
        try:
            async with asyncio.timeout(within):
                await event.wait()
            return True
        except TimeoutError:
            return False
        finally:
            waiting = self._waiting[owner]
            waiting.discard(event)
            if not waiting:
                del self._waiting[owner]


class LiveJobs:
    """The jobs running now, and the last `keep_ended` to end.

    The just-ended window exists so that a page that starts following a job a moment after it
    ended (a fast task, a slow page) still sees its ending and its files."""

    def __init__(self, keep_ended: int) -> None:
        self.changes = Changes()
        self.running: dict[str, LiveJob] = {}
        self._ended: OrderedDict[str, LiveJob] = OrderedDict()
        self.keep_ended = keep_ended

    def __len__(self) -> int:
        return len(self.running) + len(self._ended)

    def add(self, job: LiveJob) -> None:
        job.on_change = self.changes.notify
        self.running[job.progress.job_id] = job
        self.changes.notify(job.owner)

    def get(self, job_id: str) -> LiveJob | None:
        return self.running.get(job_id) or self._ended.get(job_id)

    def running_of(self, job_ids: Iterable[str]) -> list[LiveJob]:
        return [self.running[job_id] for job_id in job_ids if job_id in self.running]

    def active(self, owner: str | None) -> list[str]:
        """Ids of the running jobs of `owner` (None: everyone), oldest first."""
        return [
            job_id
            for job_id, job in self.running.items()
            if job.progress.is_active and (owner is None or job.owner == owner)
        ]

    def let_go(self, job: LiveJob) -> None:
        """`job` has ended: move it from the running jobs to the just-ended window."""
        job_id = job.progress.job_id
        if self.running.get(job_id) is job:  # not replaced by a re-check meanwhile
            del self.running[job_id]
        self._ended.pop(job_id, None)
        # Ended, it needs no reference links (data URIs can be megabytes each): the window
        # keeps only what a page shows.
        job.spec = replace(job.spec, reference_urls=())
        self._ended[job_id] = job
        while len(self._ended) > self.keep_ended:
            self._ended.popitem(last=False)


async def cancel_watching(jobs: Iterable[LiveJob]) -> None:
    """Cancel the jobs' tasks and wait until each has recorded how it ended."""
    tasks = [job.task for job in jobs if job.task and not job.task.done()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def follow(jobs: Sequence[LiveJob]) -> AsyncIterator[list[Progress]]:
    """Yield the progress of all `jobs` each time any of them changes, until all end."""
    if not jobs:
        return
    changed = asyncio.Event()

    async def relay(job: LiveJob) -> None:
        while job.progress.is_active:
            async with job.changed:
                await job.changed.wait()
            changed.set()

    relays = [asyncio.create_task(relay(job)) for job in jobs]
    try:
        while True:
            changed.clear()
            snapshot = [job.progress for job in jobs]
            yield snapshot
            # Judge by what was yielded: a job may have ended while the reader was busy,
            # and its final state must still be yielded.
            if not any(progress.is_active for progress in snapshot):
                return
            with contextlib.suppress(TimeoutError):
                # Wake at least once a second so elapsed times in the status stay live.
                await asyncio.wait_for(changed.wait(), timeout=1.0)
    finally:
        for relay_task in relays:
            relay_task.cancel()
