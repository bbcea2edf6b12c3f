"""Immutable progress values for one job, and the plain status line each one reads as."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from studio.lifecycle import ACTIVE_STATES, JobState


@dataclass(frozen=True)
class Progress:
    """Where one job stands. Times are wall-clock seconds (time.time())."""

    job_id: str
    variant: int
    model_label: str
    state: JobState
    provider_state: str = ""
    task_id: str | None = None
    offline: bool = False
    created_at: float = 0.0
    submitted_at: float | None = None
    running_since: float | None = None
    finished_at: float | None = None
    expected_seconds: tuple[float, float] = (10.0, 30.0)
    credits: float | None = None
    message: str = ""
    files: tuple[Path, ...] = ()

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    def evolve(self, **changes: object) -> Progress:
        return replace(self, **changes)  # type: ignore[arg-type]

    def status_line(self, now: float) -> str:
        """One line for the status box: state, time queued and running, time left, credits."""
        head = f"#{self.variant} {self.model_label}"
        task = f" · task {self.task_id}" if self.task_id else ""
        if self.state is JobState.DONE:
            took = seconds_words((self.finished_at or now) - (self.submitted_at or self.created_at))
            count = len(self.files)
            return (
                f"{head}: done in {took}, {count} image{'s' if count != 1 else ''} saved"
                f"{self._credits()}{task}"
            )
        if not self.is_active:
            return f"{head}: {self.message or self.state.value}{task}"
        parts = [f"{head}: {self.provider_state or self.state.value}"]
        if self.submitted_at is not None:
            queued_until = self.running_since or now
            parts.append(f"queued {seconds_words(queued_until - self.submitted_at)}")
        if self.running_since is not None:
            parts.append(f"running {seconds_words(now - self.running_since)}")
        left = self.time_left(now)
        if left:
            parts.append(left)
        line = ", ".join(parts) + self._credits() + task
        return f"{line} — {self.message}" if self.message else line

    def time_left(self, now: float) -> str:
        """How long the task should still take, against the model's expected window; empty
        when it is not being watched."""
        if self.state not in (JobState.QUEUED, JobState.RUNNING) or self.submitted_at is None:
            return ""
        elapsed = now - self.submitted_at
        low, high = self.expected_seconds
        if elapsed < low:
            return f"about {seconds_words(low - elapsed)}–{seconds_words(high - elapsed)} left"
        if elapsed < high:
            return f"up to {seconds_words(high - elapsed)} left"
        return "taking longer than usual"

    def _credits(self) -> str:
        return f", {self.credits:g} credits" if self.credits is not None else ""


def seconds_words(value: float) -> str:
    """A duration as people say it: "8 s", "2 min 05 s"."""
    value = max(value, 0.0)
    if value < 60:
        return f"{value:.0f} s"
    return f"{int(value // 60)} min {int(value % 60):02d} s"
