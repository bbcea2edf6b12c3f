"""The ledger's counts of the tasks on the owner's keys (schema v4, `usage`): one write
transaction checks every limit and counts, so connections racing for the last unit cannot
both take it; a task left waiting by a restart gives its unit back; a v3 file migrates.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from studio.ledger import Ledger, NewJob, UsageLimit
from studio.ledger.schema import MIGRATIONS
from studio.lifecycle import JobState

NBP = "nano-banana-pro"


def test_two_connections_at_once_cannot_both_take_the_last_unit(tmp_path: Path) -> None:
    """As two app processes on one ledger file would: each thread has its own connection."""
    path = tmp_path / "ledger.sqlite3"
    ledgers = [Ledger(path) for _ in range(4)]
    limits = [UsageLimit("budget", "all", 0.0, 3)]
    barrier = threading.Barrier(20)
    granted: list[int] = []

    def race(n: int) -> None:
        barrier.wait()
        refusal = ledgers[n % 4].reserve_usage(
            [f"job-{n}"], browser=f"b{n}", address=f"a{n}", limits=limits, now=100.0
        )
        if refusal is None:
            granted.append(n)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert len(granted) == 3
        assert ledgers[0].usage_count("all", "", 0.0) == 3
    finally:
        for ledger in ledgers:
            ledger.close()


def test_a_task_left_waiting_by_a_restart_gives_its_unit_back(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        row = ledger.record_job(
            NewJob(owner="", service="nano_banana_pro", model=NBP, prompt="waited in line")
        )
        limits = [UsageLimit("budget", "all", 0.0, 1)]
        reserve = ledger.reserve_usage
        assert reserve([row.job_id], browser="b", address="a", limits=limits, now=1) is None
        assert reserve(["next"], browser="b", address="a", limits=limits, now=2) is not None
        ledger.recover_after_restart()  # the job was only recorded: nothing of it was sent
        assert ledger.job(row.job_id).state is JobState.FAILED  # type: ignore[union-attr]
        assert ledger.usage_count("all", "", 0.0) == 0
        assert reserve(["next"], browser="b", address="a", limits=limits, now=3) is None


def test_a_version_3_ledger_gains_the_usage_table_and_keeps_its_jobs(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    raw = sqlite3.connect(path, isolation_level=None)
    for migration in MIGRATIONS[:3]:
        for statement in migration:
            raw.execute(statement)
    raw.execute(
        "INSERT INTO jobs(job_id, service, model, prompt, callback_token, state, created_at, "
        "updated_at, seq) VALUES ('old', 'nano_banana_pro', 'nano-banana-pro', 'a kite', 't', "
        "'done', 1, 1, 1)"
    )
    raw.execute("PRAGMA user_version = 3")
    raw.close()
    with Ledger(path) as ledger:
        assert ledger.pragma("user_version") == 5
        assert ledger.job("old").prompt == "a kite"  # type: ignore[union-attr]
        limits = [UsageLimit("quota", "browser", 0.0, 1)]
        assert ledger.reserve_usage(["j1"], browser="b", address="a", limits=limits, now=5) is None
        assert ledger.reserve_usage(["j2"], browser="b", address="c", limits=limits, now=6)
        assert ledger.usage_count("browser", "b", 0.0) == 1
        assert ledger.usage_count("address", "c", 0.0) == 0
