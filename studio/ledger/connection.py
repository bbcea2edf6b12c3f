"""One connection to the ledger file, guarded by a lock, and everything that only reads it.

`LedgerConnection` opens the file (`schema.open_connection`), serialises its use across threads
and answers reads; `studio.ledger.store.Ledger` adds the writes. Every method is synchronous and
short (a few statements), so async code calls them with `asyncio.to_thread`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Self

from studio.ledger import schema
from studio.ledger.errors import LedgerError, UnknownJobError
from studio.ledger.rows import (
    JobEvent,
    JobRow,
    ResultRow,
    RunTime,
    event_from_row,
    job_from_row,
    result_from_row,
)
from studio.ledger.search import history_query, recent_run_times_query

Clock = Callable[[], float]


class LedgerConnection:
    """The ledger's connection and its reads. Thread-safe."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Clock = time.time,
        full_text_search: bool | None = None,
        known_services: Collection[str] | None = None,
    ) -> None:
        """Open (creating or migrating) the ledger at `path`.

        `full_text_search`: None uses FTS5 when available; False forces the scan fallback;
        True raises LedgerError when this SQLite build has no FTS5 trigram tokenizer.
        `known_services`: when given, `record_job` refuses any other service id. The ledger
        stores service ids as plain strings and knows no catalog of its own.
        """
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self.known_services = frozenset(known_services) if known_services is not None else None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn, self.journal_mode, self.full_text_search = schema.open_connection(
            self.path, full_text_search=full_text_search
        )
        self._conn: sqlite3.Connection | None = conn

    # -- plumbing --------------------------------------------------------------------------------

    def _require_open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LedgerError("the job ledger is closed")
        return self._conn

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        with self._lock, schema.transaction(self._require_open(), write=write) as conn:
            yield conn

    @staticmethod
    def _job_row(conn: sqlite3.Connection, job_id: str) -> sqlite3.Row:
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM jobs WHERE job_id = ?", (job_id,)
        ).fetchone()
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
                found.setdefault(r["job_id"], []).append(result_from_row(r))
        return {job_id: tuple(rows) for job_id, rows in found.items()}

    def _load(self, conn: sqlite3.Connection, job_id: str) -> JobRow:
        row = self._job_row(conn, job_id)
        return job_from_row(row, self._results_for(conn, [job_id]).get(job_id, ()))

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
        return [event_from_row(r) for r in rows]

    def history(
        self,
        owner: str | None,
        *,
        search: str = "",
        model: str | None = None,
        state: str | None = None,
        starred: bool = False,
        experiment: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[JobRow]:
        """Jobs newest first, each with its results.

        `owner=None` means everyone (single-user mode). `search`: every whitespace-separated
        word must occur in the prompt (substring, case-insensitive). Empty `model`/`state` mean
        any; `experiment`: only that experiment's cells.
        """
        sql, args = history_query(
            owner,
            search=search,
            model=model,
            state=state,
            starred=starred,
            experiment=experiment,
            limit=limit,
            offset=offset,
            full_text_search=self.full_text_search,
        )
        with self._transaction(write=False) as conn:
            rows = conn.execute(sql, args).fetchall()
            results = self._results_for(conn, [r["job_id"] for r in rows])
        return [job_from_row(r, results.get(r["job_id"], ())) for r in rows]

    def recent_run_times(self, limit: int = 2000) -> list[RunTime]:
        """How long the latest `limit` finished jobs ran (submit to success seen), newest first.

        A bounded read (the `state` index, backwards): start-up calls it, never a page."""
        sql, args = recent_run_times_query(limit)
        with self._transaction(write=False) as conn:
            rows = conn.execute(sql, args).fetchall()
        return [
            RunTime(r["model"], json.loads(r["params"]), r["seen_at"] - r["submitted_at"])
            for r in rows
            if r["seen_at"] is not None
        ]

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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
