"""Counts of the tasks started on the owner's keys (schema v4, table `usage`), for the limits.

One row per task admitted on the owner's keys: its job id, when, the visitor's browser id and
network address. `reserve_usage` checks every limit and writes the rows in one write
transaction (BEGIN IMMEDIATE: the write lock is taken before the counts are read), so two
requests at once can never both take the last unit, whichever thread or process they come
from. The rows are not tied to the jobs table: deleting a generation from history gives no
quota back, and a reservation exists before its job is recorded. A task that was never sent
(stopped while it waited in line, or left waiting by a restart) is given back.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from studio.ledger.connection import LedgerConnection

KEEP_SECONDS = 8 * 86400  # rows older than the longest window (a day), and then some, go
_SCOPES = {"browser": "browser = ?", "address": "address = ?", "all": "1 = 1"}


@dataclass(frozen=True)
class UsageLimit:
    """At most `allowed` tasks since `since` (epoch seconds) in `scope`: the visitor's
    "browser", their "address", or "all" tasks. `name` is the caller's, returned on refusal."""

    name: str
    scope: str
    since: float
    allowed: int

    def __post_init__(self) -> None:
        if self.scope not in _SCOPES:
            raise ValueError(f"unknown usage scope {self.scope!r}")


@dataclass(frozen=True)
class UsageRefusal:
    limit: UsageLimit
    used: int  # tasks already counted under the limit


class UsageBook(LedgerConnection):
    """The `usage` table's reads and writes. Thread-safe, like the rest of the ledger."""

    def reserve_usage(
        self,
        job_ids: Sequence[str],
        *,
        browser: str,
        address: str,
        limits: Sequence[UsageLimit],
        now: float,
    ) -> UsageRefusal | None:
        """Count `job_ids` for the visitor if every limit has room for all of them; else write
        nothing and return the first limit that has not (with what it has counted)."""
        with self._transaction(write=True) as conn:
            refusal = self._refusal(conn, len(job_ids), browser, address, limits)
            if refusal is not None:
                return refusal
            conn.executemany(
                "INSERT INTO usage(job_id, at, browser, address) VALUES (?, ?, ?, ?)",
                [(job_id, now, browser, address) for job_id in job_ids],
            )
            conn.execute("DELETE FROM usage WHERE at < ?", (now - KEEP_SECONDS,))
        return None

    def check_usage(
        self, count: int, *, browser: str, address: str, limits: Sequence[UsageLimit]
    ) -> UsageRefusal | None:
        """What `reserve_usage` would refuse for `count` tasks now, counting nothing: a cheap
        early answer (the reservation itself decides)."""
        with self._transaction(write=False) as conn:
            return self._refusal(conn, count, browser, address, limits)

    @staticmethod
    def _refusal(
        conn: sqlite3.Connection,
        count: int,
        browser: str,
        address: str,
        limits: Sequence[UsageLimit],
    ) -> UsageRefusal | None:
        keys = {"browser": browser, "address": address}
        for limit in limits:
            key = keys.get(limit.scope)
            if limit.scope != "all" and not key:
                continue  # an unknown part of the visitor counts nothing
            args: tuple[object, ...] = (limit.since,) if key is None else (key, limit.since)
            used = conn.execute(
                f"SELECT count(*) FROM usage WHERE {_SCOPES[limit.scope]} AND at >= ?", args
            ).fetchone()[0]
            if used + count > limit.allowed:
                return UsageRefusal(limit, used)
        return None

    def usage_count(self, scope: str, key: str, since: float) -> int:
        """Tasks counted since `since` in `scope` ("browser", "address" with `key`; "all")."""
        if scope not in _SCOPES:
            raise ValueError(f"unknown usage scope {scope!r}")
        args: tuple[object, ...] = (since,) if scope == "all" else (key, since)
        with self._transaction(write=False) as conn:
            row = conn.execute(
                f"SELECT count(*) FROM usage WHERE {_SCOPES[scope]} AND at >= ?", args
            ).fetchone()
        return int(row[0])

    def refund_usage(self, job_ids: Sequence[str]) -> int:
        """Give back the units of tasks that were never sent; returns how many."""
        if not job_ids:
            return 0
        marks = ",".join("?" * len(job_ids))
        with self._transaction(write=True) as conn:
            cursor = conn.execute(f"DELETE FROM usage WHERE job_id IN ({marks})", list(job_ids))
            return cursor.rowcount

    def refund_unsent_usage(self) -> int:
        """At start-up, before recovery: give back the units of jobs still `recorded` (they
        waited in line when the app stopped; nothing of theirs was sent)."""
        with self._transaction(write=True) as conn:
            cursor = conn.execute(
                "DELETE FROM usage WHERE job_id IN "
                "(SELECT job_id FROM jobs WHERE state = 'recorded')"
            )
            return cursor.rowcount
