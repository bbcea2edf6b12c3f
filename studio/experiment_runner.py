"""Running a planned experiment: its cells as ordinary jobs, a few at a time, resumable.

Each cell is started through `JobRunner.start` like a press of Generate (so the ledger,
History, the feed and every card action work on it), at most `plan.cells_in_flight` cells of
one experiment at once, so one large experiment leaves room for the visitor's other work.

The experiment's file (`studio.experiment_store`) is written before the first cell is sent,
then whenever a cell changes: `starting` before a cell's jobs are recorded, its job ids once
they are. After a restart (`resume_unfinished`, after `JobRunner.resume_unfinished`), a
`starting` cell is looked up in the ledger by the experiment id and coordinates its jobs carry
in their params; sent cells are only followed (their jobs were resumed or settled by the job
runner, never resent), and only the cells never sent are started. Stop ends the whole
experiment: the cells not yet sent never will be, and its running jobs are stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping

from providers.errors import ImageServiceError
from studio.admission import LimitReached
from studio.experiment_quota import owner_key_tasks, quota_problem, tasks_left
from studio.experiment_store import CellRun, CellStatus, ExperimentRun, ExperimentStore, RunState
from studio.experiment_views import ExperimentView, TaskView, view_of
from studio.experiments import COLUMN_PARAM, MAX_TASKS, ROW_PARAM, Cell, Plan
from studio.feed import Changes
from studio.jobs import JobRunner
from studio.ledger import JobRow
from studio.reference_host import ReferenceHost
from studio.reference_store import URL_PREFIX, ReferenceStore
from studio.visitors import UNKNOWN_VISITOR, Visitor

log = logging.getLogger(__name__)

STOPPED_NOTE = "Not sent: the experiment was stopped."
TICK = 1.0  # seconds between views while an experiment runs (times stay live)
KEEP_ENDED = 4096  # ended tasks whose view is kept in memory


class ExperimentError(Exception):
    """An experiment cannot be started or found; the message is a plain sentence."""


class ExperimentRunner:
    def __init__(
        self,
        runner: JobRunner,
        store: ExperimentStore,
        reference_store: ReferenceStore,
        reference_host: ReferenceHost,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.runner = runner
        self.store = store
        self.reference_store = reference_store
        self.reference_host = reference_host
        self.clock = clock
        self.changes = Changes()  # keyed by experiment and by owner (see _notify)
        self._runs: dict[str, ExperimentRun] = {}  # the running ones (and those just ended)
        self._drivers: dict[str, asyncio.Task[None]] = {}
        self._writes: set[asyncio.Future[None]] = set()  # file writes under way
        # Job id → its final view, so an ended task's ledger row is read once (bounded).
        self._ended: OrderedDict[str, TaskView] = OrderedDict()

    # ---- starting, stopping, resuming ---------------------------------------------------------

    async def start(
        self,
        plan: Plan,
        *,
        owner: str = "",
        visitor_keys: Mapping[str, str] | None = None,
        visitor: Visitor | None = None,
    ) -> ExperimentRun:
        """Persist the plan, then send its cells in the background; returns at once. An
        experiment that needs more tasks on the owner's keys than `visitor` has left is
        refused whole (ExperimentError), before anything is recorded."""
        catalog = self.runner.catalog
        keys = {k: v for k, v in (visitor_keys or {}).items() if (v or "").strip()}
        services = {catalog.model(c.model).service for c in plan.cells}
        for service in services:  # a key no header can carry: refused before anything
            try:
                self.runner.backends.check_visitor_key(service, keys.get(service))
            except ImageServiceError as exc:
                raise ExperimentError(exc.user_message()) from None
        await self.check_quota(plan, keys, visitor)
        run = ExperimentRun(
            plan=plan,
            owner=owner,
            created_at=self.clock(),
            keyed_services=tuple(sorted(s for s in services if s in keys)),
            visitor=visitor or UNKNOWN_VISITOR,
        )
        await self._save(run)  # before the first cell is sent
        self._launch(run, keys)
        return run

    async def check_quota(
        self, plan: Plan, visitor_keys: Mapping[str, str], visitor: Visitor | None
    ) -> None:
        """ExperimentError if the plan needs more tasks on the owner's keys than are left."""
        needed = owner_key_tasks(plan, self.runner.backends, visitor_keys)
        if not needed:
            return
        left = await asyncio.to_thread(tasks_left, self.runner.admission, visitor)
        problem = quota_problem(needed, left)
        if problem:
            raise ExperimentError(problem)

    async def stop(self, experiment_id: str, owner: str | None) -> ExperimentRun | None:
        """End the whole experiment: no more cells are sent; its running jobs are stopped."""
        run = await self.get(experiment_id, owner)
        if run is None:
            return None
        driver = self._drivers.pop(run.id, None)
        if driver is not None:
            driver.cancel()
            await asyncio.gather(driver, return_exceptions=True)
        await self.runner.stop(run.job_ids)
        if run.state is RunState.RUNNING:
            for cell in run.cells.values():
                if cell.status in (CellStatus.PENDING, CellStatus.STARTING):
                    cell.status, cell.note = CellStatus.NOT_SENT, STOPPED_NOTE
            run.state, run.finished_at = RunState.STOPPED, self.clock()
            await self._save(run)
        return run

    async def resume_unfinished(self) -> list[str]:
        """At start-up, after the job runner resumed its jobs: take up every experiment that
        was running. Returns their ids."""
        runs = await asyncio.to_thread(lambda: list(self.store.unfinished()))
        for run in runs:
            await self._settle_starting(run)
            run.refuse_keyed_cells(self.runner.catalog, self.runner.backends.has_key)
            await self._save(run)
            self._launch(run, {})
        return [run.id for run in runs]

    async def close(self) -> None:
        """Stop the drivers without ending any experiment: a restart resumes them."""
        drivers = list(self._drivers.values())
        self._drivers.clear()
        for driver in drivers:
            driver.cancel()
        await asyncio.gather(*drivers, return_exceptions=True)
        await asyncio.gather(*self._writes, return_exceptions=True)  # the files are current

    # ---- reading --------------------------------------------------------------------------------

    async def get(self, experiment_id: str, owner: str | None) -> ExperimentRun | None:
        """The experiment (None when unknown or, with `owner`, someone else's)."""
        run = self._runs.get(experiment_id)
        if run is None:
            run = await asyncio.to_thread(self.store.load, experiment_id, owner)
        if run is None or (owner is not None and run.owner != owner):
            return None
        return run

    async def latest(self, owner: str | None) -> ExperimentRun | None:
        """The owner's newest experiment (everyone's, with None), running or not."""
        found = [r for r in self._runs.values() if owner is None or r.owner == owner]
        stored = await asyncio.to_thread(self.store.latest, owner)
        if stored is not None:
            found.append(self._runs.get(stored.id, stored))
        return max(found, key=lambda r: r.created_at) if found else None

    def has_newer(self, run: ExperimentRun) -> bool:
        """Whether the same owner started an experiment after `run` (one running now)."""
        return any(
            other.owner == run.owner and other.created_at > run.created_at
            for other in self._runs.values()
        )

    async def view(self, run: ExperimentRun) -> ExperimentView:
        """The experiment's grid now: each cell from its live jobs, or from the ledger."""
        tasks: dict[str, TaskView] = {}
        unread = []
        for job_id in run.job_ids:
            progress = self.runner.progress(job_id)
            if progress is not None:
                tasks[job_id] = TaskView.from_progress(progress)
                if not progress.is_active:
                    self._keep_ended(tasks[job_id])
            elif job_id in self._ended:
                tasks[job_id] = self._ended[job_id]
            else:
                unread.append(job_id)
        if unread:
            for row in await asyncio.to_thread(self._rows, unread):
                tasks[row.job_id] = TaskView.from_row(row)
                if row.is_terminal:
                    self._keep_ended(tasks[row.job_id])
        return view_of(run, tasks, self.runner.catalog, self.clock())

    def _keep_ended(self, task: TaskView) -> None:
        self._ended[task.job_id] = task
        self._ended.move_to_end(task.job_id)
        while len(self._ended) > KEEP_ENDED:
            self._ended.popitem(last=False)

    async def follow(self, run: ExperimentRun) -> AsyncIterator[ExperimentView]:
        """Views of the experiment on every change (and each second while it runs), until it
        has ended and every sent cell has settled."""
        while True:
            shown = await self.view(run)
            yield shown
            if run.state is not RunState.RUNNING and not shown.is_active:
                return
            await self.changes.wait(f"experiment:{run.id}", TICK)

    async def wait_for_change(self, owner: str | None, within: float) -> bool:
        """Until one of `owner`'s experiments changes or starts (everyone's, with None)."""
        return await self.changes.wait(None if owner is None else f"owner:{owner}", within)

    def _notify(self, run: ExperimentRun) -> None:
        self.changes.notify(f"experiment:{run.id}")
        self.changes.notify(f"owner:{run.owner}")

    # ---- the driver -----------------------------------------------------------------------------

    def _launch(self, run: ExperimentRun, keys: Mapping[str, str]) -> None:
        self._runs[run.id] = run
        task = asyncio.create_task(self._drive(run, keys), name=f"experiment-{run.id}")
        self._drivers[run.id] = task
        task.add_done_callback(lambda _t: self._forget(run.id, task))

    def _forget(self, experiment_id: str, task: asyncio.Task[None]) -> None:
        # Ended (or stopped): its file has the last word, and memory stays flat.
        if self._drivers.get(experiment_id) is task:
            del self._drivers[experiment_id]
        if experiment_id not in self._drivers:
            self._runs.pop(experiment_id, None)

    async def _drive(self, run: ExperimentRun, keys: Mapping[str, str]) -> None:
        in_flight: set[asyncio.Task[None]] = set()
        try:
            for cell in run.plan.cells:
                if run.cells[cell.key].status is CellStatus.STARTED:
                    in_flight.add(asyncio.create_task(self._settle(run, run.cells[cell.key])))
            for cell in run.plan.cells:
                state = run.cells[cell.key]
                while state.status is CellStatus.PENDING:
                    while len(in_flight) >= run.plan.cells_in_flight:
                        in_flight = await _one_ends(in_flight)
                    await self._start_cell(run, cell, state, keys, can_wait=bool(in_flight))
                    if state.status is CellStatus.STARTED:
                        in_flight.add(asyncio.create_task(self._settle(run, state)))
                    elif state.status is CellStatus.PENDING:  # the line is full: wait
                        in_flight = await _one_ends(in_flight)
            if in_flight:
                await asyncio.gather(*in_flight)
            run.state, run.finished_at = RunState.FINISHED, self.clock()
            await self._save(run)
        except asyncio.CancelledError:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
            raise
        except Exception:  # a bug: the experiment ends, its file says where it stopped
            log.exception("experiment %s crashed", run.id)
            run.state, run.finished_at = RunState.STOPPED, self.clock()
            await self._save(run)

    async def _start_cell(
        self,
        run: ExperimentRun,
        cell: Cell,
        state: CellRun,
        keys: Mapping[str, str],
        *,
        can_wait: bool,
    ) -> None:
        """Send the cell. Refused by a limit on the owner's keys while other cells of the
        experiment run (`can_wait`), it stays pending: its turn comes when one ends."""
        state.status = CellStatus.STARTING
        await self._save(run)  # a crash from here on: the ledger says whether it was recorded
        starting = asyncio.create_task(self._send(run, cell, keys))
        try:
            job_ids = await asyncio.shield(starting)
        except asyncio.CancelledError:
            # Stopped while the jobs were being recorded: let that finish, so Stop finds them.
            with contextlib.suppress(Exception):
                state.job_ids = await starting
                state.status = CellStatus.STARTED if state.job_ids else state.status
            raise
        except LimitReached as exc:
            if can_wait:
                state.status = CellStatus.PENDING
            else:
                state.status, state.note = CellStatus.NOT_SENT, f"Not sent: {exc.user_message()}"
        except ExperimentError as exc:
            state.status, state.note = CellStatus.NOT_SENT, f"Not sent: {exc}"
        else:
            state.status, state.job_ids = CellStatus.STARTED, job_ids
        await self._save(run)

    async def _send(self, run: ExperimentRun, cell: Cell, keys: Mapping[str, str]) -> list[str]:
        urls = await asyncio.to_thread(self._publish_references, run.plan.reference_hashes)
        spec = cell.spec(run.id, urls, run.plan.reference_hashes)
        try:
            return await self.runner.start(
                spec,
                variants=cell.variants,
                owner=run.owner,
                visitor_keys=keys,
                visitor=run.visitor,
            )
        except LimitReached:
            raise
        except ImageServiceError as exc:
            raise ExperimentError(exc.user_message()) from None

    def _publish_references(self, hashes: tuple[str, ...]) -> list[str]:
        """Where the services can fetch the shared references now (hosted links expire, so
        each cell gets fresh ones)."""
        urls = []
        for recorded in hashes:
            if recorded.startswith(URL_PREFIX):
                urls.append(recorded[len(URL_PREFIX) :])
                continue
            ref = self.reference_store.load(recorded)
            if ref is None:
                raise ExperimentError("a reference image of this experiment is no longer kept.")
            urls.append(self.reference_host.publish(ref).url)
        return urls

    async def _settle(self, run: ExperimentRun, state: CellRun) -> None:
        """Until every job of the cell has ended (a re-check may take one up again)."""
        while True:
            async for _ in self.runner.follow(state.job_ids):
                self._notify(run)
            if not set(self.runner.active_jobs(None)) & set(state.job_ids):
                break
        self._notify(run)

    # ---- after a restart ------------------------------------------------------------------------

    async def _settle_starting(self, run: ExperimentRun) -> None:
        """A cell that was being sent when the app stopped: sent if the ledger has its jobs."""
        for cell in run.plan.cells:
            state = run.cells[cell.key]
            if state.status is not CellStatus.STARTING:
                continue
            rows = await asyncio.to_thread(self._cell_rows, run, cell)
            if rows:
                state.status, state.job_ids = CellStatus.STARTED, [r.job_id for r in rows]
            else:  # nothing was recorded, so nothing was sent
                state.status = CellStatus.PENDING

    def _cell_rows(self, run: ExperimentRun, cell: Cell) -> list[JobRow]:
        # Read by the experiment's index: all its jobs, however many the visitor made since.
        rows = self.runner.ledger.history(run.owner, experiment=run.id, limit=MAX_TASKS)
        wanted = {ROW_PARAM: cell.row, COLUMN_PARAM: cell.column}
        found = [r for r in rows if all(r.params.get(k) == v for k, v in wanted.items())]
        return sorted(found, key=lambda r: int(r.params.get("variant") or 1))

    # ---- storage --------------------------------------------------------------------------------

    def _rows(self, job_ids: list[str]) -> list[JobRow]:
        rows = (self.runner.ledger.job(job_id) for job_id in job_ids)
        return [row for row in rows if row is not None]

    async def _save(self, run: ExperimentRun) -> None:
        # The snapshot is taken now; the write is shielded, so a Stop arriving mid-write
        # cannot leave the file behind the truth (the store keeps the newest snapshot).
        snapshot = self.store.snapshot(run)
        write = asyncio.ensure_future(asyncio.to_thread(self.store.write, *snapshot))
        self._writes.add(write)
        write.add_done_callback(self._writes.discard)
        await asyncio.shield(write)
        self._notify(run)


async def _one_ends(tasks: set[asyncio.Task[None]]) -> set[asyncio.Task[None]]:
    """Wait until one of `tasks` ends; the rest. A bug in following a cell surfaces here."""
    if not tasks:
        return tasks
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        task.result()
    return pending
