"""The `Ledger`: the writes of jobs, their events and their results, on `LedgerConnection`.

The state rules live in `studio.lifecycle`; this module only refuses what they refuse, stores
what they allow and applies their start-up recovery decisions. Writes use `BEGIN IMMEDIATE`, so
a second process (another app instance, a maintenance script) waits on `busy_timeout` instead
of failing half-way.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from studio.ledger.connection import Clock
from studio.ledger.curation import Curation
from studio.ledger.errors import InvalidTransitionError, LedgerError
from studio.ledger.rows import JobRow, NewJob, RunTime, stored_source
from studio.ledger.usage import UsageBook
from studio.lifecycle import (
    ACTIVE_STATES,
    INTERRUPTED,
    JobState,
    RecoveryAction,
    may_take_task_id,
    recovery_for,
    reveals_task_id,
    transition_refusal,
)

# A watched task whose success is seen moves from one of these to `saving`: its run time.
_WATCHED = frozenset({JobState.QUEUED, JobState.RUNNING})


class Ledger(Curation, UsageBook):
    """The job ledger in one SQLite file. Thread-safe; every method is short and synchronous."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Clock = time.time,
        full_text_search: bool | None = None,
        known_services: Collection[str] | None = None,
    ) -> None:
        super().__init__(
            path, clock=clock, full_text_search=full_text_search, known_services=known_services
        )
        self._run_time_listeners: list[Callable[[RunTime], None]] = []

    def on_run_time(self, listener: Callable[[RunTime], None]) -> None:
        """Call `listener` (in the writing thread, after the commit; it must be quick and must
        not raise) each time a watched task's success is recorded, with how long it ran."""
        self._run_time_listeners.append(listener)

    # -- plumbing --------------------------------------------------------------------------------

    @staticmethod
    def _append_event(
        conn: sqlite3.Connection,
        job_id: str,
        now: float,
        state: JobState,
        provider_state: str,
        detail: str | None,
    ) -> None:
        conn.execute(
            "INSERT INTO job_events(job_id, at, state, provider_state, detail) "
            "VALUES (?, ?, ?, ?, ?)",
            (job_id, now, str(state), provider_state, detail),
        )

    def _change_state(
        self,
        conn: sqlite3.Connection,
        row: sqlite3.Row,
        state: JobState,
        provider_state: str,
        *,
        detail: str | None,
        now: float,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Write `state` (checked against the rules) and append its event when anything moved."""
        current = JobState(row["state"])
        refusal = transition_refusal(current, state, has_task_id=row["task_id"] is not None)
        if refusal is not None:
            raise InvalidTransitionError(f"job {row['job_id']}: {refusal}")
        new_provider_state = provider_state or row["provider_state"]
        columns: dict[str, Any] = dict(extra or {})
        if state != current:
            columns["finished_at"] = now if state.is_terminal else None
            if not state.is_terminal:  # revived or progressing: an old error no longer applies
                columns.setdefault("error_kind", None)
                columns.setdefault("error_message", None)
        moved = state != current or new_provider_state != row["provider_state"]
        if not (moved or detail is not None or columns):
            return  # the same reading again (a poll that saw no change): nothing to write
        columns.update(state=str(state), provider_state=new_provider_state, updated_at=now)
        assignments = ", ".join(f"{name} = ?" for name in columns)
        conn.execute(
            f"UPDATE jobs SET {assignments} WHERE job_id = ?",
            (*columns.values(), row["job_id"]),
        )
        if moved or detail is not None:
            self._append_event(conn, row["job_id"], now, state, new_provider_state, detail)

    def _store_task_id(
        self,
        conn: sqlite3.Connection,
        row: sqlite3.Row,
        task_id: str,
        *,
        submitted_at: float,
        provider_state: str,
        detail: str,
    ) -> JobRow:
        """Write the task id and move to `queued` (the caller has checked the rules)."""
        job_id = row["job_id"]
        now = self._clock()
        try:
            conn.execute(
                "UPDATE jobs SET task_id = ?, submitted_at = ? WHERE job_id = ?",
                (task_id, submitted_at, job_id),
            )
        except sqlite3.IntegrityError as exc:
            raise LedgerError(
                f"task {task_id!r} of {row['service']} already belongs to another job"
            ) from exc
        row = self._job_row(conn, job_id)
        self._change_state(conn, row, JobState.QUEUED, provider_state, detail=detail, now=now)
        return self._load(conn, job_id)

    # -- writing ---------------------------------------------------------------------------------

    def record_job(self, job: NewJob) -> JobRow:
        """Write a new job in state `recorded`. Call before anything is sent."""
        service = str(job.service)
        if not service or (self.known_services is not None and service not in self.known_services):
            raise ValueError(f"unknown service {service!r}")  # before any write
        params = json.dumps(dict(job.params), sort_keys=True, ensure_ascii=False, allow_nan=False)
        hashes = json.dumps([str(h) for h in job.reference_hashes])
        if not job.job_id or not job.callback_token:
            raise ValueError("a job needs a job_id and a callback_token")
        with self._transaction(write=True) as conn:
            now = self._clock()
            try:
                conn.execute(
                    "INSERT INTO jobs(job_id, owner, service, model, prompt, params, "
                    "reference_hashes, callback_token, state, created_at, updated_at, parent, "
                    "seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                    # The next number in time order (read from the end of jobs_seq; the
                    # write lock is held, so no other writer can take it meanwhile).
                    "(SELECT coalesce(max(seq), 0) + 1 FROM jobs))",
                    (
                        job.job_id,
                        job.owner,
                        service,
                        job.model,
                        job.prompt,
                        params,
                        hashes,
                        job.callback_token,
                        str(JobState.RECORDED),
                        now,
                        now,
                        str(job.params["parent"]) if job.params.get("parent") else None,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise LedgerError(f"job {job.job_id!r} is already in the ledger") from exc
            self._append_event(conn, job.job_id, now, JobState.RECORDED, "", None)
            return self._load(conn, job.job_id)

    def mark_submitting(self, job_id: str) -> JobRow:
        """`recorded` → `submitting`. Call immediately before the submit POST is sent."""
        with self._transaction(write=True) as conn:
            row = self._job_row(conn, job_id)
            if row["state"] != JobState.RECORDED:
                raise InvalidTransitionError(
                    f"job {job_id}: only a recorded job can be submitted (it is {row['state']}); "
                    "a POST that may have reached the service is never sent again"
                )
            self._change_state(conn, row, JobState.SUBMITTING, "", detail=None, now=self._clock())
            return self._load(conn, job_id)

    def set_task_id(
        self, job_id: str, task_id: str, submitted_at: float, provider_state: str = ""
    ) -> JobRow:
        """Store the service's task id (state `queued`) as soon as it is known.

        Accepted from `submitting`, and from `outcome_unknown` (see `may_take_task_id`).
        Setting the same id again is a no-op, so a callback that beats the submit response and
        the response itself may both call this. `submitted_at` is wall-clock seconds.
        """
        if not task_id:
            raise ValueError("task_id must not be empty")
        with self._transaction(write=True) as conn:
            row = self._job_row(conn, job_id)
            if row["task_id"] == task_id:
                return self._load(conn, job_id)
            if row["task_id"] is not None:
                raise InvalidTransitionError(
                    f"job {job_id} already has task {row['task_id']!r}, not {task_id!r}"
                )
            if not may_take_task_id(row["state"]):
                raise InvalidTransitionError(
                    f"job {job_id}: a task id cannot arrive in state {row['state']} "
                    "(call mark_submitting before sending)"
                )
            return self._store_task_id(
                conn,
                row,
                task_id,
                submitted_at=submitted_at,
                provider_state=provider_state,
                detail=f"task {task_id}",
            )

    def reveal_task_id(self, job_id: str, task_id: str) -> JobRow:
        """A trusted callback revealed the task of an `outcome_unknown` job: store it (`queued`).

        `submitted_at` becomes the time the job's POST went out (its `submitting` event). Raises
        InvalidTransitionError unless the job is `outcome_unknown` without a task id, so of two
        racing callbacks only one takes the job up again.
        """
        if not task_id:
            raise ValueError("task_id must not be empty")
        with self._transaction(write=True) as conn:
            row = self._job_row(conn, job_id)
            if not reveals_task_id(row["state"], row["task_id"]):
                raise InvalidTransitionError(
                    f"job {job_id}: a callback reveals a task only to an outcome_unknown job "
                    f"without one (it is {row['state']}, task {row['task_id']!r})"
                )
            sent = conn.execute(
                "SELECT max(at) FROM job_events WHERE job_id = ? AND state = ?",
                (job_id, str(JobState.SUBMITTING)),
            ).fetchone()[0]
            return self._store_task_id(
                conn,
                row,
                task_id,
                submitted_at=sent if sent is not None else row["created_at"],
                provider_state="",
                detail=f"task {task_id}, revealed by a callback",
            )

    def record_state(
        self,
        job_id: str,
        state: JobState,
        provider_state: str = "",
        *,
        detail: str | None = None,
        credits: float | None = None,
    ) -> JobRow:
        """Record a state reading. An event is appended when the state or the provider's word
        changed, or a detail is given; a repeated identical reading writes nothing.
        `provider_state=""` keeps the last provider word."""
        state = JobState(state)
        with self._transaction(write=True) as conn:
            row = self._job_row(conn, job_id)
            extra = {} if credits is None else {"credits": float(credits)}
            now = self._clock()
            self._change_state(
                conn, row, state, provider_state, detail=detail, now=now, extra=extra
            )
            job = self._load(conn, job_id)
        if (
            state is JobState.SAVING
            and row["state"] in _WATCHED
            and job.submitted_at is not None
            and self._run_time_listeners
        ):
            ran = RunTime(job.model, job.params, now - job.submitted_at)
            for listener in self._run_time_listeners:
                listener(ran)
        return job

    def record_error(self, job_id: str, state: JobState, *, kind: str, message: str) -> JobRow:
        """Move to a terminal `state` (not `done`) and keep why: `kind` (e.g. an exception class
        name) and a plain `message` for the user."""
        state = JobState(state)
        if not state.is_terminal or state is JobState.DONE:
            raise ValueError(f"{state} is not an error state")
        with self._transaction(write=True) as conn:
            row = self._job_row(conn, job_id)
            self._change_state(
                conn,
                row,
                state,
                "",
                detail=f"{kind}: {message}",
                now=self._clock(),
                extra={"error_kind": kind, "error_message": message},
            )
            return self._load(conn, job_id)

    def record_result(
        self,
        job_id: str,
        idx: int,
        *,
        path: str | Path,
        sha256: str,
        source_url: str,
        expires_at: float | None = None,
    ) -> None:
        """Record output `idx` as kept on disk (replacing an earlier failure for it)."""
        with self._transaction(write=True) as conn:
            self._job_row(conn, job_id)
            conn.execute(
                "INSERT INTO results(job_id, idx, path, sha256, source_url, expires_at, error, "
                "recorded_at) VALUES (?, ?, ?, ?, ?, ?, NULL, ?) "
                "ON CONFLICT(job_id, idx) DO UPDATE SET path = excluded.path, "
                "sha256 = excluded.sha256, source_url = excluded.source_url, "
                "expires_at = excluded.expires_at, error = NULL, "
                "recorded_at = excluded.recorded_at",
                (
                    job_id,
                    idx,
                    str(path),
                    sha256,
                    stored_source(source_url),
                    expires_at,
                    self._clock(),
                ),
            )

    def record_download_failure(
        self,
        job_id: str,
        idx: int,
        *,
        source_url: str,
        expires_at: float | None,
        message: str,
    ) -> None:
        """Record that output `idx` could not be kept; its URL and expiry stay for a retry.
        Never overwrites a result already kept."""
        with self._transaction(write=True) as conn:
            self._job_row(conn, job_id)
            conn.execute(
                "INSERT INTO results(job_id, idx, path, sha256, source_url, expires_at, error, "
                "recorded_at) VALUES (?, ?, NULL, NULL, ?, ?, ?, ?) "
                "ON CONFLICT(job_id, idx) DO UPDATE SET source_url = excluded.source_url, "
                "expires_at = excluded.expires_at, error = excluded.error, "
                "recorded_at = excluded.recorded_at WHERE results.path IS NULL",
                (job_id, idx, source_url, expires_at, message, self._clock()),
            )

    def recover_after_restart(self) -> list[JobRow]:
        """Settle what an interrupted run left behind; return the jobs to watch again, oldest
        first. What happens to each job is `studio.lifecycle.recovery_for`'s decision.

        Settling is written directly, not through the transition rules: an active state without
        a task id (impossible through this API) must settle too. Jobs still `recorded` (waiting
        in line when the app stopped: nothing sent) give their quota units back first.
        """
        self.refund_unsent_usage()
        active = [str(s) for s in ACTIVE_STATES]
        marks = ",".join("?" * len(active))
        with self._transaction(write=True) as conn:
            now = self._clock()
            rows = conn.execute(
                f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY seq",
                active,
            ).fetchall()
            resume: list[str] = []
            for row in rows:
                step = recovery_for(row["state"], has_task_id=row["task_id"] is not None)
                if step.action is RecoveryAction.NOTHING:
                    continue
                if step.action is RecoveryAction.RESUME:
                    if step.state != row["state"]:
                        conn.execute(
                            "UPDATE jobs SET state = ?, updated_at = ? WHERE job_id = ?",
                            (str(step.state), now, row["job_id"]),
                        )
                    resume.append(row["job_id"])
                    continue
                conn.execute(
                    "UPDATE jobs SET state = ?, error_kind = ?, error_message = ?, "
                    "finished_at = ?, updated_at = ? WHERE job_id = ?",
                    (str(step.state), INTERRUPTED, step.message, now, now, row["job_id"]),
                )
                self._append_event(
                    conn, row["job_id"], now, step.state, row["provider_state"], step.message
                )
            return [self._load(conn, job_id) for job_id in resume]
