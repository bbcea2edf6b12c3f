"""The ledger file: its tables, their migrations, the search index, and how a connection opens.

`PRAGMA user_version` is the schema version; each migration runs in a transaction of its own
and re-reads the version under the write lock, so two processes opening one old file do not
both migrate it. The FTS5 trigram index is derived data, kept outside the schema version: it is
rebuilt whenever a connection with FTS5 finds its triggers missing (e.g. after the file was
written by a build without FTS5, or by a version with the older index layout), and its triggers
are dropped by a connection without FTS5 (they would make every insert fail there).

Time order is `jobs.seq`, the order jobs were recorded in (1, 2, 3, ...; version 2). Every
history query filters on equalities and reads newest first, so each filter combination has an
index that ends in `seq`: the first page is read from the index in order and stops after a
page, with no sort and no walk of the table, however many jobs the file holds. The search index
shares the order: its rowid is `seq`, and FTS5 hands matches out by rowid, newest first, so a
search stops after a page too instead of sorting every match. `seq` is a column of its own, not
the table's rowid, because VACUUM may renumber the rowids of a table without an INTEGER PRIMARY
KEY.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from studio.ledger.errors import LedgerError
from studio.ledger.search import EXPERIMENT_KEY, FOLD_FUNCTION, fold

log = logging.getLogger(__name__)

SCHEMA_VERSION = 5
BUSY_TIMEOUT_MS = 5000

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

# The history's filters (owner, model, state: each given or not) and its order (seq, newest
# first): one index per combination, each ending in seq, so every page is an index range read
# in order. Writes touch a job's row a handful of times in its life; reads happen on every
# visit to the history.
HISTORY_FILTERS: tuple[tuple[str, ...], ...] = (
    (),
    ("owner",),
    ("model",),
    ("state",),
    ("owner", "model"),
    ("owner", "state"),
    ("model", "state"),
    ("owner", "model", "state"),
)


def _history_index(columns: tuple[str, ...]) -> str:
    name = "_".join(("jobs", *columns, "seq"))
    unique = "UNIQUE " if not columns else ""
    return f"CREATE {unique}INDEX {name} ON jobs({', '.join((*columns, 'seq'))})"


_SCHEMA_V2 = (
    "ALTER TABLE jobs ADD COLUMN seq INTEGER NOT NULL DEFAULT 0",
    # Number the jobs already there in the order the history showed them.
    "CREATE TEMP TABLE _job_order(job_id TEXT PRIMARY KEY NOT NULL, n INTEGER NOT NULL)",
    "INSERT INTO _job_order(job_id, n) "
    "SELECT job_id, row_number() OVER (ORDER BY created_at, job_id) FROM jobs",
    "UPDATE jobs SET seq = (SELECT n FROM _job_order WHERE _job_order.job_id = jobs.job_id)",
    "DROP TABLE temp._job_order",
    "DROP INDEX jobs_owner_created",
    "DROP INDEX jobs_created",
    "DROP INDEX jobs_state",
    *(_history_index(columns) for columns in HISTORY_FILTERS),
)

# Version 3: what a visitor keeps (a star) and where an image came from (its parent: the job
# whose result it edits, until now only inside params), as columns with the indexes their
# reads need: the starred filter reads a partial index in time order, and an edit chain's
# children are one index lookup.
_SCHEMA_V3 = (
    "ALTER TABLE jobs ADD COLUMN starred INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE jobs ADD COLUMN parent TEXT",
    "UPDATE jobs SET parent = json_extract(params, '$.parent') "
    "WHERE json_extract(params, '$.parent') IS NOT NULL",
    "CREATE INDEX jobs_parent ON jobs(parent) WHERE parent IS NOT NULL",
    "CREATE INDEX jobs_starred_owner_seq ON jobs(owner, seq) WHERE starred = 1",
    "CREATE INDEX jobs_starred_seq ON jobs(seq) WHERE starred = 1",
)

# Version 4: the tasks started on the owner's keys, one row each, for the quotas and the daily
# budget (studio.ledger.usage). Each limit counts one visitor part (or all) since a time.
_SCHEMA_V4 = (
    """CREATE TABLE usage (
        job_id TEXT PRIMARY KEY NOT NULL,
        at REAL NOT NULL,
        browser TEXT NOT NULL DEFAULT '',
        address TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX usage_at ON usage(at)",
    "CREATE INDEX usage_browser_at ON usage(browser, at)",
    "CREATE INDEX usage_address_at ON usage(address, at)",
)

# Version 5: an experiment's jobs (their params carry its id) read in time order by one index,
# for History's experiment filter and for settling an experiment's cells after a restart.
_SCHEMA_V5 = (f"CREATE INDEX jobs_experiment_seq ON jobs({EXPERIMENT_KEY}, seq)",)

# Index N-1 migrates user_version N-1 to N. Each runs in its own transaction.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    _SCHEMA_V1,
    _SCHEMA_V2,
    _SCHEMA_V3,
    _SCHEMA_V4,
    _SCHEMA_V5,
)
assert len(MIGRATIONS) == SCHEMA_VERSION

# The search index: one row per job, rowid = jobs.seq. The first trigger's name marks the
# layout: a file whose index was built another way (version 1 keyed it by job_id) lacks it,
# so the next connection with FTS5 rebuilds the index.
_FTS_TRIGGER = "jobs_fts_insert"
_FTS_TRIGGERS = (_FTS_TRIGGER, "jobs_fts_delete", "jobs_fts_update")
_OLD_FTS_TRIGGERS = ("jobs_fts_ai", "jobs_fts_ad", "jobs_fts_au")
_FTS_SETUP = (
    *(f"DROP TRIGGER IF EXISTS {name}" for name in _OLD_FTS_TRIGGERS + _FTS_TRIGGERS),
    "DROP TABLE IF EXISTS jobs_fts",
    "CREATE VIRTUAL TABLE jobs_fts USING fts5(prompt, tokenize='trigram')",
    "INSERT INTO jobs_fts(rowid, prompt) SELECT seq, prompt FROM jobs",
    f"""CREATE TRIGGER {_FTS_TRIGGER} AFTER INSERT ON jobs BEGIN
        INSERT INTO jobs_fts(rowid, prompt) VALUES (new.seq, new.prompt);
    END""",
    """CREATE TRIGGER jobs_fts_delete AFTER DELETE ON jobs BEGIN
        DELETE FROM jobs_fts WHERE rowid = old.seq;
    END""",
    """CREATE TRIGGER jobs_fts_update AFTER UPDATE OF prompt, seq ON jobs BEGIN
        DELETE FROM jobs_fts WHERE rowid = old.seq;
        INSERT INTO jobs_fts(rowid, prompt) VALUES (new.seq, new.prompt);
    END""",
)


@contextmanager
def transaction(conn: sqlite3.Connection, *, write: bool) -> Iterator[sqlite3.Connection]:
    """BEGIN (IMMEDIATE for writes: take the write lock up front), COMMIT, or ROLLBACK."""
    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def fts5_trigram_available(conn: sqlite3.Connection) -> bool:
    """Whether this SQLite build has FTS5 with the trigram tokenizer (SQLite >= 3.34)."""
    try:
        conn.execute("CREATE VIRTUAL TABLE temp._fts_probe USING fts5(x, tokenize='trigram')")
    except sqlite3.OperationalError:
        return False
    conn.execute("DROP TABLE temp._fts_probe")
    return True


def open_connection(
    path: Path, *, full_text_search: bool | None
) -> tuple[sqlite3.Connection, str, bool]:
    """Connect to `path`, configure, migrate and sync the search index.

    Returns the connection, its journal mode and whether it searches with FTS5. Raises
    LedgerError (the connection closed) when the file cannot serve as a ledger.
    """
    conn = sqlite3.connect(
        path,
        timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,  # we issue BEGIN/COMMIT ourselves
        check_same_thread=False,  # shared by worker threads, serialised by the ledger's lock
    )
    try:
        conn.row_factory = sqlite3.Row
        conn.create_function(FOLD_FUNCTION, 1, fold, deterministic=True)
        journal_mode = configure(conn)
        migrate(conn)
        searchable = sync_search_index(conn, full_text_search)
    except sqlite3.Error as exc:
        conn.close()
        raise LedgerError(f"cannot open the job ledger at {path}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn, journal_mode, searchable


def configure(conn: sqlite3.Connection) -> str:
    """Set the connection's pragmas; returns the journal mode it got."""
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
    if mode != "wal":  # e.g. a file system without shared memory; still correct, just slower
        log.warning("job ledger: WAL unavailable, journal_mode is %s", mode)
    # FULL, not NORMAL: under WAL, NORMAL survives an app crash but a power cut can roll back
    # the last commits - and the last commit may be the task id of a task we were billed for.
    # A job writes a handful of rows in its life, so one fsync per commit costs nothing.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return mode


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the file to SCHEMA_VERSION; refuse a file written by a newer app."""
    while True:
        with transaction(conn, write=True):  # re-read the version under the write lock
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise LedgerError(
                    f"the job ledger has schema version {version}, newer than this app's "
                    f"{SCHEMA_VERSION}: update the app"
                )
            if version == SCHEMA_VERSION:
                return
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")


def sync_search_index(conn: sqlite3.Connection, wanted: bool | None) -> bool:
    """Set up (or tear down) the FTS5 index; returns whether searches may use it.

    `wanted`: None uses FTS5 when available; False forces the scan; True raises LedgerError
    when this SQLite build has no FTS5 trigram tokenizer.
    """
    available = wanted is not False and fts5_trigram_available(conn)
    if wanted and not available:
        raise LedgerError("this SQLite build has no FTS5 trigram tokenizer")
    with transaction(conn, write=True):
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
            for name in _FTS_TRIGGERS + _OLD_FTS_TRIGGERS:
                conn.execute(f"DROP TRIGGER IF EXISTS {name}")
    return available
