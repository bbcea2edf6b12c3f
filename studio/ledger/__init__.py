"""The job ledger: one SQLite file that makes sure no generation's result is ever lost.

A job is one remote task. The ledger is written at each step of its life, *before* the step can
be lost:

    record_job()        row written (state `recorded`), before anything is sent
    mark_submitting()   written right before the submit POST goes out (state `submitting`)
    set_task_id()       the service's task id, as soon as it is known (state `queued`)
    record_state()      every later state change, appended to `job_events` with its time
    record_result() / record_download_failure()   each result kept (or why not, with its URL)
    recover_after_restart()   at start-up: settle what cannot be resumed, return what can
    reveal_task_id()    a trusted callback revealed the task of an `outcome_unknown` job
    on_run_time()       be told how long each watched task ran, when its success is recorded
    reserve_usage()     check the limits on the owner's keys and count tasks, in one transaction
                        (`usage`: counts per visitor and per day, see studio.ledger.usage)

Which state may follow which, what a restart does with each, and what the states mean are the
rules of `studio.lifecycle`; the ledger refuses (InvalidTransitionError) what they refuse.
`finished_at` is set on entering a terminal state and cleared when a job is revived.

The package: `schema` (tables, migrations, the FTS5 index, opening a connection), `rows` (the
values taken and given back), `search` (the history query), `connection` (the lock-guarded
connection and the reads), `store` (the `Ledger` and its writes), `curation` (stars, chains,
deletion) and `usage` (the counts the quotas and the budget read).

Concurrency: one connection owned by the ledger, guarded by a `threading.Lock`; every public
method is synchronous and short (a few statements), so async code calls them with
`asyncio.to_thread`. Writes use `BEGIN IMMEDIATE` so a second process (another app instance, a
maintenance script) waits on `busy_timeout` instead of failing half-way. `recover_after_restart`
assumes one app process per ledger file: call it once at start-up, before taking new jobs.

Prompt search uses an FTS5 trigram index (substring, case-insensitive) when this SQLite build
has it, and a scan with Python's `str.casefold` otherwise (fine for thousands of rows).
"""

from studio.ledger.errors import InvalidTransitionError, LedgerError, UnknownJobError
from studio.ledger.rows import JobEvent, JobRow, NewJob, ResultRow, RunTime
from studio.ledger.schema import BUSY_TIMEOUT_MS, SCHEMA_VERSION, fts5_trigram_available
from studio.ledger.store import Ledger
from studio.ledger.usage import UsageLimit, UsageRefusal

__all__ = [
    "BUSY_TIMEOUT_MS",
    "SCHEMA_VERSION",
    "InvalidTransitionError",
    "JobEvent",
    "JobRow",
    "Ledger",
    "LedgerError",
    "NewJob",
    "ResultRow",
    "RunTime",
    "UnknownJobError",
    "UsageLimit",
    "UsageRefusal",
    "fts5_trigram_available",
]
