"""What a visitor does to their own history: star a generation, follow an edit chain, delete.

Every call is scoped to an owner (None: everyone, single-user mode), so a visitor can only
touch their own jobs. A job still being watched cannot be deleted: its runner would write into
a row that is gone, and the task may still bill; stop it first.
"""

from __future__ import annotations

from studio.ledger.connection import LedgerConnection
from studio.ledger.errors import LedgerError, UnknownJobError
from studio.ledger.rows import JobRow, job_from_row
from studio.lifecycle import ACTIVE_STATES

MAX_CHAIN = 50  # links followed up an edit chain; a chain is short, a loop must not hang


class Curation(LedgerConnection):
    def _own(self, job_id: str, owner: str | None) -> JobRow:
        row = self.job(job_id, owner=owner)
        if row is None:
            raise UnknownJobError(f"no job {job_id!r} in this history")
        return row

    def set_starred(self, job_id: str, starred: bool, *, owner: str | None = None) -> JobRow:
        self._own(job_id, owner)
        with self._transaction(write=True) as conn:
            conn.execute(
                "UPDATE jobs SET starred = ? WHERE job_id = ?", (1 if starred else 0, job_id)
            )
            return self._load(conn, job_id)

    def children(self, job_id: str, *, owner: str | None = None) -> list[JobRow]:
        """The jobs made from this job's results, oldest first."""
        sql = "SELECT * FROM jobs WHERE parent = ?"
        args: list[object] = [job_id]
        if owner is not None:
            sql += " AND owner = ?"
            args.append(owner)
        with self._transaction(write=False) as conn:
            rows = conn.execute(sql + " ORDER BY seq", args).fetchall()
        return [job_from_row(row) for row in rows]

    def ancestors(self, job_id: str, *, owner: str | None = None) -> list[JobRow]:
        """The chain above this job: its parent, the parent's parent, ..., oldest last."""
        chain: list[JobRow] = []
        seen = {job_id}
        current = self.job(job_id, owner=owner)
        while current is not None and current.parent and len(chain) < MAX_CHAIN:
            if current.parent in seen:
                break
            seen.add(current.parent)
            current = self.job(current.parent, owner=owner)
            if current is not None:
                chain.append(current)
        return chain

    def delete_job(self, job_id: str, *, owner: str | None = None) -> JobRow:
        """Remove the job, its events and its result rows; returns it as it was (the caller
        deletes its files). Its children keep their images and lose only the link."""
        row = self._own(job_id, owner)
        if row.state in ACTIVE_STATES:
            raise LedgerError("this generation is still running: stop it before deleting it")
        with self._transaction(write=True) as conn:
            conn.execute("UPDATE jobs SET parent = NULL WHERE parent = ?", (job_id,))
            conn.execute("DELETE FROM results WHERE job_id = ?", (job_id,))
            conn.execute("DELETE FROM job_events WHERE job_id = ?", (job_id,))
            conn.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))
        return row

    def references_in_use(self, hashes: list[str]) -> set[str]:
        """Which of `hashes` some job still records as a reference (a scan: deletes are rare)."""
        used: set[str] = set()
        with self._transaction(write=False) as conn:
            for sha256 in hashes:
                hit = conn.execute(
                    "SELECT 1 FROM jobs WHERE instr(reference_hashes, ?) > 0 LIMIT 1",
                    (f'"{sha256}"',),
                ).fetchone()
                if hit is not None:
                    used.add(sha256)
        return used
