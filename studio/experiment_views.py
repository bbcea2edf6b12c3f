"""What an experiment looks like now: each cell's tasks, files, time, credits or sentence.

Immutable values built from live progress or ledger rows (`TaskView`), grouped by cell
(`CellView`) into the grid (`ExperimentView`) that the page draws and the exports write.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from providers.catalog import Catalog
from studio.experiment_store import CellStatus, ExperimentRun, RunState
from studio.experiments import Cell, Plan
from studio.ledger import JobRow
from studio.lifecycle import JobState
from studio.progress import Progress, seconds_words

_STATE_WORDS = {
    JobState.RECORDED: "waiting to send",
    JobState.SUBMITTING: "sending",
    JobState.QUEUED: "queued",
    JobState.RUNNING: "running",
    JobState.SAVING: "saving",
    JobState.DONE: "done",
    JobState.FAILED: "failed",
    JobState.DOWNLOAD_FAILED: "not downloaded",
    JobState.OUTCOME_UNKNOWN: "outcome unknown",
    JobState.STOPPED: "stopped",
    JobState.TIMED_OUT: "timed out",
}


@dataclass(frozen=True)
class TaskView:
    """One task of a cell (one variant)."""

    job_id: str
    variant: int
    state: JobState
    task_id: str | None
    files: tuple[Path, ...]
    credits: float | None
    message: str
    started_at: float  # submitted (or recorded, before that)
    finished_at: float | None

    @classmethod
    def from_progress(cls, progress: Progress) -> TaskView:
        return cls(
            job_id=progress.job_id,
            variant=progress.variant,
            state=progress.state,
            task_id=progress.task_id,
            files=tuple(progress.files),
            credits=progress.credits,
            message=progress.message,
            started_at=progress.submitted_at or progress.created_at,
            finished_at=progress.finished_at,
        )

    @classmethod
    def from_row(cls, row: JobRow) -> TaskView:
        return cls(
            job_id=row.job_id,
            variant=int(row.params.get("variant") or 1),
            state=row.state,
            task_id=row.task_id,
            files=tuple(Path(r.path) for r in row.results if r.path),
            credits=row.credits,
            message=row.error_message or "",
            started_at=row.submitted_at or row.created_at,
            finished_at=row.finished_at,
        )

    def seconds(self, now: float) -> float:
        return max((self.finished_at or now) - self.started_at, 0.0)


@dataclass(frozen=True)
class CellView:
    cell: Cell
    status: CellStatus
    tasks: tuple[TaskView, ...]  # in variant order
    note: str  # why it was not sent
    now: float

    @property
    def is_active(self) -> bool:
        """Still being sent or worked on."""
        if self.status in (CellStatus.PENDING, CellStatus.STARTING):
            return False  # waiting for its turn: the experiment says whether it comes
        return any(not t.state.is_terminal for t in self.tasks)

    @property
    def is_settled(self) -> bool:
        """Done with: its tasks ended, or it will never be sent."""
        if self.status is CellStatus.NOT_SENT:
            return True
        return self.status is CellStatus.STARTED and not self.is_active

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(path for task in self.tasks for path in task.files)

    @property
    def credits(self) -> float | None:
        known = [t.credits for t in self.tasks if t.credits is not None]
        return round(sum(known), 6) if known else None

    @property
    def seconds(self) -> float | None:
        return max((t.seconds(self.now) for t in self.tasks), default=None)

    @property
    def message(self) -> str:
        """The plain sentence of a cell that did not give its images."""
        if self.status is CellStatus.NOT_SENT:
            return self.note
        return next((t.message for t in self.tasks if t.message), "")

    def words(self) -> str:
        """The cell's state in a few words: "done in 12 s · 0.5 credits", "running 8 s"."""
        if self.status is CellStatus.PENDING:
            return "waiting for its turn"
        if self.status is CellStatus.STARTING:
            return "sending"
        if self.status is CellStatus.NOT_SENT:
            return "not sent"
        if not self.tasks:
            return "no longer in history"
        states = [t.state for t in self.tasks]
        took = seconds_words(self.seconds or 0.0)
        if any(not s.is_terminal for s in states):
            word = _STATE_WORDS[min((s for s in states if not s.is_terminal), key=_order)]
            return f"{word} {took}"
        done = sum(1 for s in states if s is JobState.DONE)
        word = "done" if done == len(states) else f"{done} of {len(states)} done"
        if not done:
            word = _STATE_WORDS[states[0]]
        credits = f" · {credit_words(self.credits)}" if self.credits is not None else ""
        return f"{word} in {took}{credits}"


def credit_words(amount: float) -> str:
    return f"{amount:g} credit{'' if amount == 1 else 's'}"


def _order(state: JobState) -> int:
    return list(_STATE_WORDS).index(state)


@dataclass(frozen=True)
class ExperimentView:
    experiment_id: str
    owner: str
    state: RunState
    plan: Plan
    row_labels: tuple[str, ...]
    column_labels: tuple[str, ...]
    cells: tuple[CellView, ...]  # in plan order (row by row)
    created_at: float

    def cell(self, row: int, column: int) -> CellView | None:
        return next((c for c in self.cells if (c.cell.row, c.cell.column) == (row, column)), None)

    @property
    def is_active(self) -> bool:
        return self.state is RunState.RUNNING or any(c.is_active for c in self.cells)

    @property
    def settled(self) -> int:
        """Cells that are done with: their tasks ended, or never to be sent."""
        return sum(1 for c in self.cells if c.is_settled)

    def words(self) -> str:
        total = len(self.cells)
        running = sum(1 for c in self.cells if c.is_active or c.status is CellStatus.STARTING)
        images = sum(len(c.files) for c in self.cells)
        head = {
            RunState.RUNNING: "Running",
            RunState.STOPPED: "Stopped",
            RunState.FINISHED: "Finished",
        }[self.state]
        parts = [f"{head}: {self.settled} of {total} cells settled"]
        if running:
            parts.append(f"{running} running")
        parts.append(f"{images} image{'s' if images != 1 else ''} saved")
        credits = [c.credits for c in self.cells if c.credits is not None]
        if credits:
            parts.append(f"{credit_words(sum(credits))} reported")
        return ", ".join(parts) + "."


def view_of(
    run: ExperimentRun, tasks: dict[str, TaskView], catalog: Catalog, now: float
) -> ExperimentView:
    cells = []
    for cell in run.plan.cells:
        state = run.cells[cell.key]
        found = sorted((tasks[j] for j in state.job_ids if j in tasks), key=lambda t: t.variant)
        cells.append(CellView(cell, state.status, tuple(found), state.note, now))
    return ExperimentView(
        experiment_id=run.id,
        owner=run.owner,
        state=run.state,
        plan=run.plan,
        row_labels=tuple(row.prompt for row in run.plan.rows),
        column_labels=tuple(column.label(catalog) for column in run.plan.columns),
        cells=tuple(cells),
        created_at=run.created_at,
    )
