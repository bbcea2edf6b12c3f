"""The job ledger: one SQLite file that makes sure no generation's result is ever lost.

A job is one remote task. The ledger is written at each step of its life, *before* the step can
be lost:

    record_job()        row written (state `recorded`), before anything is sent
    mark_submitting()   written right before the submit POST goes out (state `submitting`)
    set_task_id()       the service's task id, as soon as it is known (state `queued`)
    record_state()      every later state change, appended to `job_events` with its time
    record_result() / record_download_failure()   each result kept (or why not, with its URL)
    recover_after_restart()   at start-up: settle what cannot be resumed, return what can

States and the rules between them
---------------------------------
    recorded ──► submitting ──► queued ◄─► running ◄─► saving ──► done
        │             │            └──────────┴───────────┴──► failed / download_failed
        ▼             ▼                                         stopped / timed_out
      failed     failed / outcome_unknown

* `recorded` means provably nothing was sent: the app writes `submitting` immediately before the
  POST, so a `recorded` row found at start-up becomes `failed` ("interrupted before sending;
  nothing was sent") and the user may simply try again.
* `submitting` without a task id found at start-up becomes `outcome_unknown`: the POST may have
  started (and billed) a task whose id we never learned. Neither API has an idempotency key, so
  the app never resends it on its own. A callback carrying the job's token may still reveal the
  id later: `set_task_id()` is accepted from `outcome_unknown` and the job is watched again.
* `queued`, `running`, `saving` with a task id are RESUMED at start-up (the app was watching them
  when it stopped). `saving` jobs come back with the results already kept, so only the missing
  ones need fetching.
* `stopped` (the user stopped watching) and `timed_out` (our watch deadline passed) keep their
  task id; they are not resumed at start-up (someone decided to stop), but a user's "check
  again" may move them back to `queued`/`running`/`saving`. `download_failed` keeps each
  result's source URL and expiry, so a user's retry may move it back to `saving`.
* `done` and `failed` are FINAL: no other state may follow (recording the same state again is a
  harmless no-op, so a late callback racing the watcher is not an error).
* States that need a service task (`queued` and everything after it, except `failed`) are
  refused for a job without a task id.

`TERMINAL_STATES` = nothing more happens without a user: done, failed, download_failed,
outcome_unknown, stopped, timed_out. `finished_at` is set on entering one and cleared when a job
is revived.

Concurrency: one connection owned by the ledger, guarded by a `threading.Lock`; every public
method is synchronous and short (a few statements), so async code calls them with
`asyncio.to_thread`. Writes use `BEGIN IMMEDIATE` so a second process (another app instance, a
maintenance script) waits on `busy_timeout` instead of failing half-way. `recover_after_restart`
assumes one app process per ledger file: call it once at start-up, before taking new jobs.

Prompt search uses an FTS5 trigram index (substring, case-insensitive) when this SQLite build
has it, and a scan with Python's `str.casefold` otherwise (fine for thousands of rows). The
index is derived data, kept outside the schema version: it is rebuilt whenever a connection with
FTS5 finds its triggers missing (e.g. after the file was written by a build without FTS5).
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from providers.capabilities import Service

log = logging.getLogger(__name__)

Clock = Callable[[], float]

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 5000
NOTHING_SENT = "interrupted before sending; nothing was sent"
OUTCOME_UNKNOWN_MESSAGE = (
    "interrupted while sending: the service may have started (and billed) a task, "
    "but its id never arrived; it was not sent again"
)
INTERRUPTED = "interrupted"  # error_kind written by recover_after_restart


class JobState(StrEnum):
    RECORDED = "recorded"  # row written, submit not yet sent
    SUBMITTING = "submitting"  # the POST is (or was) in flight
    QUEUED = "queued"
    RUNNING = "running"
    SAVING = "saving"  # task succeeded, results being downloaded
    DONE = "done"
    FAILED = "failed"  # task failed, or the request was refused / never sent
    DOWNLOAD_FAILED = "download_failed"  # task succeeded, results not kept (URL + expiry kept)
    OUTCOME_UNKNOWN = "outcome_unknown"  # POST may have reached the service, no task id known
    STOPPED = "stopped"  # the user stopped watching; task id kept
    TIMED_OUT = "timed_out"  # our watch deadline passed; task id kept

    @property
    def is_terminal(self) -> bool:
        """Nothing more happens to the job without a user acting on it."""
        return self in TERMINAL_STATES

    @property
    def is_final(self) -> bool:
        """Nothing more can ever happen to the job."""
        return self in FINAL_STATES


FINAL_STATES = frozenset({JobState.DONE, JobState.FAILED})
TERMINAL_STATES = FINAL_STATES | {
    JobState.DOWNLOAD_FAILED,
    JobState.OUTCOME_UNKNOWN,
    JobState.STOPPED,
    JobState.TIMED_OUT,
}
ACTIVE_STATES = frozenset(JobState) - TERMINAL_STATES
# Watched again automatically at start-up (they need a task id).
RESUME_STATES = frozenset({JobState.QUEUED, JobState.RUNNING, JobState.SAVING})
# A user may revive these (they keep a task id): check again / retry the download.
RECHECKABLE_STATES = frozenset({JobState.STOPPED, JobState.TIMED_OUT, JobState.DOWNLOAD_FAILED})
# States that only make sense once the service has given a task id.
NEEDS_TASK_ID = frozenset(JobState) - {
    JobState.RECORDED,
    JobState.SUBMITTING,
    JobState.FAILED,
    JobState.OUTCOME_UNKNOWN,
}

_AFTER_TASK = frozenset(
    {
        JobState.QUEUED,
        JobState.RUNNING,
        JobState.SAVING,
        JobState.DONE,
        JobState.FAILED,
        JobState.DOWNLOAD_FAILED,
        JobState.STOPPED,
        JobState.TIMED_OUT,
    }
)
# Which states may follow each state (besides the same state again). `queued` after
# `submitting`/`outcome_unknown` needs a task id, so in practice only set_task_id() makes it.
_NEXT: dict[JobState, frozenset[JobState]] = {
    JobState.RECORDED: frozenset({JobState.SUBMITTING, JobState.FAILED}),
    JobState.SUBMITTING: frozenset({JobState.QUEUED, JobState.FAILED, JobState.OUTCOME_UNKNOWN}),
    JobState.OUTCOME_UNKNOWN: frozenset({JobState.QUEUED, JobState.FAILED}),
    JobState.DONE: frozenset(),
    JobState.FAILED: frozenset(),
    **{state: _AFTER_TASK for state in _AFTER_TASK - FINAL_STATES},
}


class LedgerError(Exception):
    """The ledger could not do what was asked; the message says why."""


class UnknownJobError(LedgerError):
    """No job has this id."""


class InvalidTransitionError(LedgerError):
    """The requested change breaks the state rules in this module's docstring."""


@dataclass(frozen=True)
class NewJob:
    """A job as recorded before anything is sent."""

    owner: str  # browser id; "" in single-user mode
    service: Service | str
    model: str
    prompt: str
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)
    reference_hashes: Sequence[str] = ()
    callback_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass(frozen=True)
class ResultRow:
    """One output image: kept (`path` + `sha256`) or not (`error`, with URL and expiry)."""

    idx: int
    path: str | None
    sha256: str | None
    source_url: str
    expires_at: float | None
    error: str | None

    @property
    def is_kept(self) -> bool:
        return self.path is not None


@dataclass(frozen=True)
class JobRow:
    job_id: str
    owner: str
    service: str
    model: str
    prompt: str
    params: dict[str, Any] = field(hash=False)
    reference_hashes: tuple[str, ...]
    callback_token: str
    task_id: str | None
    state: JobState
    provider_state: str
    credits: float | None
    error_kind: str | None
    error_message: str | None
    created_at: float
    updated_at: float
    submitted_at: float | None
    finished_at: float | None
    results: tuple[ResultRow, ...] = ()

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal


@dataclass(frozen=True)
class JobEvent:
    id: int
    job_id: str
    at: float
    state: JobState
    provider_state: str
    detail: str | None


# --- schema -------------------------------------------------------------------------------------

_SCHEMA_V1 = (
    """CREATE TABLE jobs (
        job_id TEXT PRIMARY KEY NOT NULL,
        owner TEXT NOT NULL DEFAULT '',
        service TEXT NOT NULL,
        model TEXT NOT NULL,
        prompt TEXT NOT NULL,
        params TEXT NOT NULL DEFAULT '{}',
        reference_hashes TEXT NOT NULL DEFAULT '[]',
        callback_token TEXT NOT NULL,
        task_id TEXT,
        state TEXT NOT NULL,
        provider_state TEXT NOT NULL DEFAULT '',
        credits REAL,
        error_kind TEXT,
        error_message TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        submitted_at REAL,
        finished_at REAL
    )""",
    "CREATE INDEX jobs_owner_created ON jobs(owner, created_at DESC)",
    "CREATE INDEX jobs_created ON jobs(created_at DESC)",
    "CREATE INDEX jobs_state ON jobs(state)",
    # One task belongs to one job; also the lookup for callbacks that carry a task id.
    "CREATE UNIQUE INDEX jobs_task ON jobs(service, task_id) WHERE task_id IS NOT NULL",
    """CREATE TABLE job_events (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL REFERENCES jobs(job_id) ON DELETE CASCADE,
        at REAL NOT NULL,
        state TEXT NOT NULL,
        provider_state TEXT NOT NULL DEFAULT '',
        detail TEXT
    )""",
    "CREATE INDEX job_events_job ON job_events(job_id, id)",
    # A row per output image. A failed download keeps its source URL and expiry (path NULL,
    # error set) so the user can retry before the provider deletes it.
    """CREATE TABLE results (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL REFERENCES jobs(job_id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        path TEXT,
        sha256 TEXT,
        source_url TEXT NOT NULL,
        expires_at REAL,
        error TEXT,
        recorded_at REAL NOT NULL,
        UNIQUE (job_id, idx),
        CHECK ((path IS NULL) = (sha256 IS NULL)),
        CHECK (path IS NOT NULL OR error IS NOT NULL)
    )""",
)

# Index N-1 migrates user_version N-1 to N. Each runs in its own transaction.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (_SCHEMA_V1,)
assert len(_MIGRATIONS) == SCHEMA_VERSION

_FTS_TRIGGER = "jobs_fts_ai"
_FTS_SETUP = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS jobs_fts "
    "USING fts5(job_id UNINDEXED, prompt, tokenize='trigram')",
    "DELETE FROM jobs_fts",
    "INSERT INTO jobs_fts(job_id, prompt) SELECT job_id, prompt FROM jobs",
    f"""CREATE TRIGGER {_FTS_TRIGGER} AFTER INSERT ON jobs BEGIN
        INSERT INTO jobs_fts(job_id, prompt) VALUES (new.job_id, new.prompt);
    END""",
    """CREATE TRIGGER jobs_fts_ad AFTER DELETE ON jobs BEGIN
        DELETE FROM jobs_fts WHERE job_id = old.job_id;
    END""",
    """CREATE TRIGGER jobs_fts_au AFTER UPDATE OF prompt ON jobs BEGIN
        UPDATE jobs_fts SET prompt = new.prompt WHERE job_id = old.job_id;
    END""",
)
_FTS_TRIGGERS = (_FTS_TRIGGER, "jobs_fts_ad", "jobs_fts_au")
_TRIGRAM_MIN = 3  # the trigram tokenizer cannot match shorter substrings


def fts5_trigram_available(conn: sqlite3.Connection) -> bool:
    """Whether this SQLite build has FTS5 with the trigram tokenizer (SQLite >= 3.34)."""
    try:
        conn.execute("CREATE VIRTUAL TABLE temp._fts_probe USING fts5(x, tokenize='trigram')")
    except sqlite3.OperationalError:
        return False
    conn.execute("DROP TABLE temp._fts_probe")
    return True


def _fold(text: str | None) -> str:
    return (text or "").casefold()


def _fts_phrase(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def _stored_source(source_url: str) -> str:
    # Once a data: URI result is saved, its bytes live in `path` (checked by sha256); keeping
    # megabytes of base64 in every history read would only slow the gallery down.
    if source_url.startswith("data:") and len(source_url) > 256:
        head, _, _ = source_url.partition(",")
        return head + ",…"
    return source_url


# --- the ledger ---------------------------------------------------------------------------------


@contextmanager
def _transaction(conn: sqlite3.Connection, *, write: bool) -> Iterator[sqlite3.Connection]:
    """BEGIN (IMMEDIATE for writes: take the write lock up front), COMMIT, or ROLLBACK."""
    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class Ledger:
    """The job ledger in one SQLite file. Thread-safe; every method is short and synchronous."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Clock = time.time,
        full_text_search: bool | None = None,
    ) -> None:
        """Open (creating or migrating) the ledger at `path`.

        `full_text_search`: None uses FTS5 when available; False forces the scan fallback;
        True raises LedgerError when this SQLite build has no FTS5 trigram tokenizer.
        """
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,  # shared by worker threads, serialised by self._lock
        )
        try:
            conn.row_factory = sqlite3.Row
            conn.create_function("ledger_fold", 1, _fold, deterministic=True)
            self.journal_mode = self._configure(conn)
            self._migrate(conn)
            self.full_text_search = self._sync_search_index(conn, full_text_search)
        except sqlite3.Error as exc:
            conn.close()
            raise LedgerError(f"cannot open the job ledger at {self.path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn

    # -- opening ---------------------------------------------------------------------------------

    @staticmethod
    def _configure(conn: sqlite3.Connection) -> str:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":  # e.g. a file system without shared memory; still correct, just slower
            log.warning("job ledger: WAL unavailable, journal_mode is %s", mode)
        # FULL, not NORMAL: under WAL, NORMAL survives an app crash but a power cut can roll back
        # the last commits - and the last commit may be the task id of a task we were billed for.
        # A job writes a handful of rows in its life, so one fsync per commit costs nothing.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        return mode

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        while True:
            with _transaction(conn, write=True):  # re-read the version under the write lock
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise LedgerError(
                        f"the job ledger has schema version {version}, newer than this app's "
                        f"{SCHEMA_VERSION}: update the app"
                    )
                if version == SCHEMA_VERSION:
                    return
                for statement in _MIGRATIONS[version]:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version + 1}")

    @staticmethod
    def _sync_search_index(conn: sqlite3.Connection, wanted: bool | None) -> bool:
        available = wanted is not False and fts5_trigram_available(conn)
        if wanted and not available:
            raise LedgerError("this SQLite build has no FTS5 trigram tokenizer")
        with _transaction(conn, write=True):
            has_triggers = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = ?",
                (_FTS_TRIGGER,),
            ).fetchone()
            if available and not has_triggers:
                for statement in _FTS_SETUP:
                    conn.execute(statement)
            elif not available:
                # Without the module the triggers would make every insert fail. The stale index
                # is rebuilt by the next connection that has FTS5.
                for name in _FTS_TRIGGERS:
                    conn.execute(f"DROP TRIGGER IF EXISTS {name}")
        return available

    # -- plumbing --------------------------------------------------------------------------------

    def _require_open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LedgerError("the job ledger is closed")
        return self._conn

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        with self._lock, _transaction(self._require_open(), write=write) as conn:
            yield conn

    @staticmethod
    def _job_row(conn: sqlite3.Connection, job_id: str) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise UnknownJobError(f"no job {job_id!r} in the ledger")
        return row

    @staticmethod
    def _results_for(
        conn: sqlite3.Connection, job_ids: Sequence[str]
    ) -> dict[str, tuple[ResultRow, ...]]:
        found: dict[str, list[ResultRow]] = {}
        for start in range(0, len(job_ids), 500):  # stay far below SQLite's variable limit
            chunk = job_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for r in conn.execute(
                "SELECT job_id, idx, path, sha256, source_url, expires_at, error FROM results "
                f"WHERE job_id IN ({marks}) ORDER BY job_id, idx",
                chunk,
            ):
                found.setdefault(r["job_id"], []).append(
                    ResultRow(
                        idx=r["idx"],
                        path=r["path"],
                        sha256=r["sha256"],
                        source_url=r["source_url"],
                        expires_at=r["expires_at"],
                        error=r["error"],
                    )
                )
        return {job_id: tuple(rows) for job_id, rows in found.items()}

    @staticmethod
    def _to_job(row: sqlite3.Row, results: tuple[ResultRow, ...] = ()) -> JobRow:
        return JobRow(
            job_id=row["job_id"],
            owner=row["owner"],
            service=row["service"],
            model=row["model"],
            prompt=row["prompt"],
            params=json.loads(row["params"]),
            reference_hashes=tuple(json.loads(row["reference_hashes"])),
            callback_token=row["callback_token"],
            task_id=row["task_id"],
            state=JobState(row["state"]),
            provider_state=row["provider_state"],
            credits=row["credits"],
            error_kind=row["error_kind"],
            error_message=row["error_message"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            submitted_at=row["submitted_at"],
            finished_at=row["finished_at"],
            results=results,
        )

    def _load(self, conn: sqlite3.Connection, job_id: str) -> JobRow:
        row = self._job_row(conn, job_id)
        return self._to_job(row, self._results_for(conn, [job_id]).get(job_id, ()))

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
        if state != current and state not in _NEXT[current]:
            raise InvalidTransitionError(
                f"job {row['job_id']}: {current} cannot become {state}"
                + (" (final state)" if current.is_final else "")
            )
        if state in NEEDS_TASK_ID and row["task_id"] is None:
            raise InvalidTransitionError(f"job {row['job_id']}: {state} needs a task id")
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
            conn.execute(
                "INSERT INTO job_events(job_id, at, state, provider_state, detail) "
                "VALUES (?, ?, ?, ?, ?)",
                (row["job_id"], now, str(state), new_provider_state, detail),
            )

    # -- writing ---------------------------------------------------------------------------------

    def record_job(self, job: NewJob) -> JobRow:
        """Write a new job in state `recorded`. Call before anything is sent."""
        service = Service(job.service)  # ValueError for an unknown service, before any write
        params = json.dumps(dict(job.params), sort_keys=True, ensure_ascii=False, allow_nan=False)
        hashes = json.dumps([str(h) for h in job.reference_hashes])
        if not job.job_id or not job.callback_token:
            raise ValueError("a job needs a job_id and a callback_token")
        with self._transaction(write=True) as conn:
            now = self._clock()
            try:
                conn.execute(
                    "INSERT INTO jobs(job_id, owner, service, model, prompt, params, "
                    "reference_hashes, callback_token, state, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        job.job_id,
                        job.owner,
                        str(service),
                        job.model,
                        job.prompt,
                        params,
                        hashes,
                        job.callback_token,
                        str(JobState.RECORDED),
                        now,
                        now,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise LedgerError(f"job {job.job_id!r} is already in the ledger") from exc
            conn.execute(
                "INSERT INTO job_events(job_id, at, state, provider_state) VALUES (?, ?, ?, '')",
                (job.job_id, now, str(JobState.RECORDED)),
            )
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

        Accepted from `submitting`, and from `outcome_unknown` (a callback revealed the id).
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
            if row["state"] not in (JobState.SUBMITTING, JobState.OUTCOME_UNKNOWN):
                raise InvalidTransitionError(
                    f"job {job_id}: a task id cannot arrive in state {row['state']} "
                    "(call mark_submitting before sending)"
                )
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
            self._change_state(
                conn,
                row,
                JobState.QUEUED,
                provider_state,
                detail=f"task {task_id}",
                now=now,
            )
            return self._load(conn, job_id)

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
            self._change_state(
                conn, row, state, provider_state, detail=detail, now=self._clock(), extra=extra
            )
            return self._load(conn, job_id)

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
                    _stored_source(source_url),
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
        """Settle what an interrupted run left behind; return the jobs to watch again.

        `recorded` → `failed` (nothing was sent); `submitting` (or any active state) without a
        task id → `outcome_unknown`; `queued`/`running`/`saving` with a task id are returned,
        oldest first. Everything else is left untouched.
        """
        active = [str(s) for s in ACTIVE_STATES]
        marks = ",".join("?" * len(active))
        with self._transaction(write=True) as conn:
            now = self._clock()
            rows = conn.execute(
                f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY created_at, job_id",
                active,
            ).fetchall()
            resume: list[str] = []
            for row in rows:
                if row["state"] == JobState.RECORDED:
                    state, message = JobState.FAILED, NOTHING_SENT
                elif row["task_id"] is None:
                    state, message = JobState.OUTCOME_UNKNOWN, OUTCOME_UNKNOWN_MESSAGE
                else:
                    # A task id is only ever written together with `queued`, so `submitting`
                    # with an id cannot happen; if it did, the task is real: watch it.
                    if row["state"] == JobState.SUBMITTING:
                        conn.execute(
                            "UPDATE jobs SET state = ?, updated_at = ? WHERE job_id = ?",
                            (str(JobState.QUEUED), now, row["job_id"]),
                        )
                    resume.append(row["job_id"])
                    continue
                # Written directly: `submitting` → `outcome_unknown` is a legal move, but an
                # active state without a task id (impossible through this API) must settle too.
                conn.execute(
                    "UPDATE jobs SET state = ?, error_kind = ?, error_message = ?, "
                    "finished_at = ?, updated_at = ? WHERE job_id = ?",
                    (str(state), INTERRUPTED, message, now, now, row["job_id"]),
                )
                conn.execute(
                    "INSERT INTO job_events(job_id, at, state, provider_state, detail) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (row["job_id"], now, str(state), row["provider_state"], message),
                )
            return [self._load(conn, job_id) for job_id in resume]

    # -- reading ---------------------------------------------------------------------------------

    def job(self, job_id: str, *, owner: str | None = None) -> JobRow | None:
        """The job with its results; None when missing or (with `owner`) someone else's."""
        with self._transaction(write=False) as conn:
            try:
                found = self._load(conn, job_id)
            except UnknownJobError:
                return None
        if owner is not None and found.owner != owner:
            return None
        return found

    def events(self, job_id: str, *, owner: str | None = None) -> list[JobEvent]:
        """The job's state changes, oldest first (empty when missing or someone else's)."""
        sql = "SELECT e.* FROM job_events e JOIN jobs j ON j.job_id = e.job_id WHERE e.job_id = ?"
        args: list[Any] = [job_id]
        if owner is not None:
            sql += " AND j.owner = ?"
            args.append(owner)
        with self._transaction(write=False) as conn:
            rows = conn.execute(sql + " ORDER BY e.id", args).fetchall()
        return [
            JobEvent(
                id=r["id"],
                job_id=r["job_id"],
                at=r["at"],
                state=JobState(r["state"]),
                provider_state=r["provider_state"],
                detail=r["detail"],
            )
            for r in rows
        ]

    def history(
        self,
        owner: str | None,
        *,
        search: str = "",
        model: str | None = None,
        state: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[JobRow]:
        """Jobs newest first, each with its results.

        `owner=None` means everyone (single-user mode). `search`: every whitespace-separated
        word must occur in the prompt (substring, case-insensitive). Empty `model`/`state` mean
        any.
        """
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")
        where: list[str] = []
        args: list[Any] = []
        if owner is not None:
            where.append("j.owner = ?")
            args.append(owner)
        if model:
            where.append("j.model = ?")
            args.append(model)
        if state:
            where.append("j.state = ?")
            args.append(str(JobState(state)))
        words = search.split()
        indexed = [w for w in words if len(w) >= _TRIGRAM_MIN] if self.full_text_search else []
        if indexed:
            where.append("j.job_id IN (SELECT job_id FROM jobs_fts WHERE jobs_fts MATCH ?)")
            args.append(" AND ".join(_fts_phrase(w) for w in indexed))
        for word in words:
            if word not in indexed:
                where.append("instr(ledger_fold(j.prompt), ?) > 0")
                args.append(word.casefold())
        sql = "SELECT j.* FROM jobs j"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY j.created_at DESC, j.job_id DESC LIMIT ? OFFSET ?"
        args += [limit, offset]
        with self._transaction(write=False) as conn:
            rows = conn.execute(sql, args).fetchall()
            results = self._results_for(conn, [r["job_id"] for r in rows])
        return [self._to_job(r, results.get(r["job_id"], ())) for r in rows]

    # -- maintenance -----------------------------------------------------------------------------

    def pragma(self, name: str) -> Any:
        """One PRAGMA's current value (for diagnostics and tests)."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"not a pragma name: {name!r}")
        with self._lock:
            return self._require_open().execute(f"PRAGMA {name}").fetchone()[0]

    def integrity_ok(self) -> bool:
        """PRAGMA integrity_check says "ok" and no foreign key points nowhere."""
        with self._lock:
            conn = self._require_open()
            try:
                report = [r[0] for r in conn.execute("PRAGMA integrity_check")]
                dangling = conn.execute("PRAGMA foreign_key_check").fetchall()
            except sqlite3.DatabaseError:  # damaged badly enough that the check itself fails
                return False
        return report == ["ok"] and not dangling

    def close(self) -> None:
        """Close the connection (idempotent); later calls raise LedgerError."""
        with self._lock:
            if self._conn is not None:
                with suppress(sqlite3.Error):
                    self._conn.execute("PRAGMA optimize")
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
