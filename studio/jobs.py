"""The life of a generation: check, record, submit once, watch, keep the results.

Each job runs as a background task owned by `JobRunner`, not by the page that asked for it: a
closed tab or a dropped connection stops the page's view, never the work. Pages subscribe to
progress; Stop ends the watching (the services have no cancel endpoint) and keeps the task id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from providers.catalog import Catalog
from providers.errors import InvalidRequestError, task_failure
from providers.types import TaskState, TaskStatus
from providers.watch import PollSchedule, watch_task
from studio.admission import Admission
from studio.backends import Backend, Backends
from studio.callbacks import accepts_callback, callback_url, revealed_task_id
from studio.downloads import ResultFetcher
from studio.feed import LiveJob, LiveJobs, cancel_watching, follow
from studio.files import remove_partial_files
from studio.job_spec import JobSpec
from studio.keeper import ResultKeeper, owner_folder
from studio.ledger import JobRow, Ledger, LedgerError, NewJob
from studio.lifecycle import (
    KEY_NEEDED,
    RECHECKABLE_STATES,
    Ending,
    JobState,
    ending_for,
    reveals_task_id,
    state_for,
    stopped_ending,
)
from studio.progress import Progress
from studio.run_times import RunTimes
from studio.spending import NO_LIMITS, SpendingRules
from studio.visitors import Visitor

__all__ = ["JobRunner", "JobSpec", "owner_folder"]  # JobSpec and owner_folder: for callers

log = logging.getLogger(__name__)


class JobRunner:
    """Runs jobs in the background and lets pages follow them."""

    def __init__(
        self,
        *,
        backends: Backends,
        ledger: Ledger,
        outputs_dir: Path,
        fetcher: ResultFetcher | None = None,
        deadline: float = 600.0,
        public_url: str | None = None,
        clock: Callable[[], float] = time.time,
        keep_ended: int = 256,
        rules: SpendingRules = NO_LIMITS,
    ) -> None:
        self.backends = backends
        self.catalog: Catalog = backends.catalog
        self.ledger = ledger
        # Without one given, a fetcher that trusts the services' own origins, closed in close().
        self._owns_fetcher = fetcher is None
        self.fetcher = fetcher or ResultFetcher(trusted=backends.trusted_origins())
        self.outputs_dir = outputs_dir
        self.keeper = ResultKeeper(ledger, self.fetcher, outputs_dir)
        self.deadline = deadline
        self.public_url = public_url
        self.clock = clock
        self.live = LiveJobs(keep_ended)
        self._closing = False  # shutting down: leave each job's ledger row for the restart
        self.run_times = RunTimes.following(ledger)  # what the poll schedules learn from
        self.admission = Admission(rules, ledger, owner_keys=backends.owner_keys, clock=clock)

    def _schedule(self, spec: JobSpec, backend: Backend) -> PollSchedule:
        """The spec's poll schedule, learned from its kind's run times (see studio.run_times)."""
        return self.run_times.schedule_for(self.catalog.model(spec.model), spec.request(), backend)

    # ---- starting and following -------------------------------------------------------------

    async def start(
        self,
        spec: JobSpec,
        *,
        variants: int = 1,
        owner: str = "",
        visitor_keys: Mapping[str, str] | None = None,
        visitor: Visitor | None = None,
    ) -> list[str]:
        """Record and launch `variants` tasks; returns their job ids at once.

        `visitor_keys` are the visitor's own keys by service id; only the one for the spec's
        service is used (no key reaches another service). On the owner's keys, `visitor` passes
        `studio.admission` first (unknown callers share a count): LimitReached sends nothing."""
        problems = spec.problems(self.catalog)
        if problems:
            raise InvalidRequestError(" ".join(problems))
        service = self.catalog.service_of(spec.model).id
        visitor_key = (visitor_keys or {}).get(service)
        backend = self.backends.for_service(service, visitor_key)
        key_source = "offline" if backend.offline else "visitor" if visitor_key else "server"
        job_ids = [uuid.uuid4().hex for _ in range(variants)]
        await self.admission.admit(visitor, job_ids, owner_key=key_source == "server")
        generation = uuid.uuid4().hex  # the jobs of one press of Generate, shown as one card
        for n, job_id in enumerate(job_ids):
            new_job = spec.new_job(
                job_id,
                owner=owner,
                service=service,
                variant=n + 1,
                offline=backend.offline,
                key_source=key_source,
                generation=generation,
                variants=variants,
            )
            try:
                await self._launch(spec, backend, new_job)
            except BaseException:  # the recorded ones leave the line as they end
                await self.admission.leave(*job_ids[n:])
                raise
        return job_ids

    @property
    def held_jobs(self) -> int:
        """Jobs held in memory: the running ones and the just-ended window, never more."""
        return len(self.live)

    def progress(self, job_id: str) -> Progress | None:
        job = self.live.get(job_id)
        return job.progress if job else None

    async def follow(self, job_ids: Sequence[str]) -> AsyncIterator[list[Progress]]:
        """Yield the progress of all `job_ids` each time any of them changes, until all end.
        A job that ended a moment ago is still found (see `keep_ended`)."""
        jobs = [job for job in map(self.live.get, job_ids) if job is not None]
        async for snapshot in follow(jobs):
            yield snapshot

    def active_jobs(self, owner: str | None) -> list[str]:
        """Ids of the jobs being watched now for `owner` (None: everyone), oldest first."""
        return self.live.active(owner)

    async def recheck(
        self, job_id: str, owner: str | None = None, visitor_keys: Mapping[str, str] | None = None
    ) -> str:
        """Watch again a stopped, timed-out or not-downloaded job (it keeps its task id)."""
        row = await asyncio.to_thread(self.ledger.job, job_id, owner=owner)
        if row is None or row.task_id is None or row.state not in RECHECKABLE_STATES:
            raise InvalidRequestError(
                "Only a stopped, timed-out or not-downloaded task with a "
                "task id can be checked again."
            )
        service = self.catalog.service_of(row.model).id
        # A key no header can carry is refused before the job changes state.
        self.backends.check_visitor_key(service, (visitor_keys or {}).get(service))
        row = await asyncio.to_thread(
            self.ledger.record_state, job_id, JobState.QUEUED, "", detail="checked again"
        )
        return await self.resume(row, visitor_keys)

    async def stop(self, job_ids: Sequence[str]) -> None:
        """Stop watching; the task may still run and bill on the service."""
        jobs = self.live.running_of(job_ids)
        await cancel_watching(jobs)
        for job in jobs:
            if job.progress.is_active:  # cancelled before its first step: nothing ran
                await self._finish_quietly(job, stopped_ending(job.progress.state))
            await self.admission.leave(job.progress.job_id)  # (then no `finally` ran)
            self.live.let_go(job)

    async def receive_callback(self, job_id: str, token: str, payload: Any) -> bool:
        """A service called back for `job_id`: wake its watcher if the call is genuine. A
        genuine call for a job whose submit outcome was unknown reveals its task: watch it."""
        row = await asyncio.to_thread(self.ledger.job, job_id)
        if row is not None and reveals_task_id(row.state, row.task_id):
            service = self.catalog.service_of(row.model).id
            parse = self.backends.for_service(service).client.parse_callback
            task_id = revealed_task_id(row, token, payload, parse)
            if task_id is None:
                return False
            try:
                row = await asyncio.to_thread(self.ledger.reveal_task_id, job_id, task_id)
            except LedgerError:  # another callback took it up first (or the id is taken)
                return self.wake(job_id)
            await self.resume(row)
            return True
        job = self.live.running.get(job_id)
        if job is None:
            return False
        if not accepts_callback(row, token, payload, job.backend.client.parse_callback):
            return False
        return self.wake(job_id)

    def wake(self, job_id: str) -> bool:
        """Read the job's status now (a callback arrived). False when no such job is watched."""
        job = self.live.running.get(job_id)
        if job is None or not job.progress.is_active:
            return False
        job.wake.set()
        return True

    async def close(self) -> None:
        """Cancel the watching of every job; their ledger rows let a restart resume them."""
        self._closing = True
        await cancel_watching(list(self.live.running.values()))
        if self._owns_fetcher:
            await self.fetcher.aclose()

    # ---- one job ------------------------------------------------------------------------------

    async def _launch(self, spec: JobSpec, backend: Backend, new_job: NewJob) -> None:
        row = await asyncio.to_thread(self.ledger.record_job, new_job)
        job = self._live_job(row, spec, backend)
        self.live.add(job)
        job.task = asyncio.create_task(self._run(job), name=f"job-{row.job_id}")

    def _live_job(
        self, row: JobRow, spec: JobSpec, backend: Backend, *, resumed: bool = False
    ) -> LiveJob:
        label, window = self.catalog.model(row.model).label, self._schedule(spec, backend).window
        return LiveJob.of_row(row, spec, backend, label, window, resumed=resumed)

    async def _set_state(
        self, job: LiveJob, state: JobState, provider_state: str = "", **changes: object
    ) -> None:
        credits = changes.get("credits")
        await asyncio.to_thread(
            self.ledger.record_state,
            job.progress.job_id,
            state,
            provider_state,
            credits=credits if isinstance(credits, float) else None,
        )
        await job.publish(state=state, provider_state=provider_state, **changes)

    async def _run(self, job: LiveJob, submitted_at: float | None = None) -> None:
        """Submit (unless the job has a task already), watch, keep; every ending is recorded."""
        try:
            if submitted_at is None:
                await self.admission.wait_turn(job)  # a task on the owner's keys may wait
                submitted_at = await self._submit(job)
            await self._watch_and_keep(job, submitted_at=submitted_at)
        except asyncio.CancelledError:
            await self._finish_quietly(job, stopped_ending(job.progress.state))
            raise
        except Exception as exc:  # every ending is recorded, a bug's too (see ending_for)
            ending = ending_for(exc, resumed_offline=job.resumed and job.backend.offline)
            if ending.is_bug:
                log.exception("job %s crashed", job.progress.job_id)
            await self._finish_quietly(job, ending)
        finally:
            await self.admission.leave(job.progress.job_id)
            if not self._closing:
                self.live.let_go(job)

    async def _submit(self, job: LiveJob) -> float:
        """Send the POST once; returns when it was answered."""
        job_id = job.progress.job_id
        await asyncio.to_thread(self.ledger.mark_submitting, job_id)
        await job.publish(state=JobState.SUBMITTING, provider_state="submitting")
        # With a public address, the service calls back when the task ends: the watcher then
        # reads the status at once instead of waiting for its next scheduled poll.
        hook = (
            callback_url(self.public_url, job_id, job.callback_token) if self.public_url else None
        )
        submitted = await job.backend.client.submit(job.spec.request(hook))
        now = self.clock()
        await asyncio.to_thread(self.ledger.set_task_id, job_id, submitted.task_id, now)
        await job.publish(
            state=JobState.QUEUED,
            task_id=submitted.task_id,
            submitted_at=now,
            provider_state="submitted",
        )
        return now

    async def resume_unfinished(self) -> list[str]:
        """At start-up: clear half-written files, settle the ledger, and watch again every job
        that has a task id. Returns the ids of the jobs taken up."""
        removed = await asyncio.to_thread(remove_partial_files, self.outputs_dir)
        if removed:
            log.info("removed %d half-written result file(s)", removed)
        rows = await asyncio.to_thread(self.ledger.recover_after_restart)
        return [await self.resume(row) for row in rows]

    async def resume(self, row: JobRow, visitor_keys: Mapping[str, str] | None = None) -> str:
        """Watch again a job found unfinished in the ledger (after a restart or a re-check)."""
        service = self.catalog.service_of(row.model).id
        visitor_key = (visitor_keys or {}).get(service)
        if (
            row.params.get("key_source") == "visitor"
            and not visitor_key
            and not self.backends.has_key(service)
        ):
            await asyncio.to_thread(
                self.ledger.record_error,
                row.job_id,
                KEY_NEEDED.state,
                kind=KEY_NEEDED.kind,
                message=KEY_NEEDED.message,
            )
            return row.job_id
        backend = self.backends.for_resumed(service, visitor_key, row.params.get("key_source"))
        job = self._live_job(row, JobSpec.from_row(row), backend, resumed=True)
        self.live.add(job)
        if not (backend.offline or visitor_key):  # on the owner's key: it holds a running slot
            self.admission.occupy(row.job_id)

        job.task = asyncio.create_task(
            self._run(job, submitted_at=row.submitted_at or row.created_at),
            name=f"job-{row.job_id}",
        )
        return row.job_id

    async def _watch_and_keep(self, job: LiveJob, *, submitted_at: float) -> None:
        assert job.progress.task_id is not None
        backend = job.backend
        schedule = self._schedule(job.spec, backend)
        elapsed = self.clock() - submitted_at
        final: TaskStatus | None = None
        async for status in watch_task(
            backend.client,
            job.progress.task_id,
            schedule=schedule,
            deadline=max(self.deadline - elapsed, 1.0),
            submitted_at=time.monotonic() - elapsed,
            wake=job.wake,
        ):
            final = status
            if status.is_terminal:
                break
            state = state_for(status.state)
            changes: dict[str, object] = {}
            if state is JobState.RUNNING and job.progress.running_since is None:
                changes["running_since"] = self.clock()
            if state != job.progress.state or status.provider_state != job.progress.provider_state:
                await self._set_state(job, state, status.provider_state, **changes)
            else:
                await job.publish(**changes)
        assert final is not None
        if final.state is TaskState.FAILED:
            raise task_failure(
                final.fail_message,
                final.fail_code,
                provider=backend.client.provider,
                task_id=final.task_id,
            )
        await self._set_state(
            job,
            JobState.SAVING,
            final.provider_state,
            credits=final.credits,
            running_since=job.progress.running_since or self.clock(),
        )
        lifetime = self.catalog.service(backend.service).result_lifetime
        files = await self.keeper.keep(
            job.progress.job_id,
            owner=job.owner,
            created_at=job.progress.created_at,
            spec=job.spec,
            status=final,
            # When the service's result links stop working, if the service says.
            links_expire_at=self.clock() + lifetime if lifetime else None,
        )
        await self._set_state(
            job,
            JobState.DONE,
            final.provider_state,
            files=files,
            finished_at=self.clock(),
            credits=final.credits,
        )

    # ---- endings ------------------------------------------------------------------------------

    async def _finish_quietly(self, job: LiveJob, ending: Ending) -> None:
        """Record and publish an ending, even while being cancelled."""
        if self._closing:
            return  # not an ending: the next start resumes the job from its ledger row
        with contextlib.suppress(Exception):
            await asyncio.shield(
                asyncio.to_thread(
                    self.ledger.record_error,
                    job.progress.job_id,
                    ending.state,
                    kind=ending.kind,
                    message=ending.message,
                )
            )
        await job.publish(state=ending.state, message=ending.message, finished_at=self.clock())
