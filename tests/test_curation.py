"""Stars, edit chains and deletion in the ledger (schema v3), each scoped to the visitor."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from test_ledger_indexes import plan, write_version_1

from studio.ledger import Ledger, LedgerError, NewJob
from studio.ledger.schema import MIGRATIONS
from studio.ledger.search import history_query
from studio.lifecycle import JobState


def new_job(ledger: Ledger, owner: str, prompt: str, parent: str | None = None) -> str:
    params = {"parent": parent} if parent else {}
    row = ledger.record_job(
        NewJob(
            owner=owner,
            service="nano_banana_pro",
            model="nano-banana-pro",
            prompt=prompt,
            params=params,
            reference_hashes=("a" * 64, "url:https://example.com/x.png"),
        )
    )
    return row.job_id


def finish(ledger: Ledger, job_id: str) -> None:
    ledger.record_error(job_id, JobState.FAILED, kind="test", message="ended for the test")


@pytest.fixture
def ledger(tmp_path: Path):
    with Ledger(tmp_path / "jobs.sqlite3") as opened:
        yield opened


def test_a_star_is_the_owners_and_filters_the_history(ledger: Ledger) -> None:
    kept = new_job(ledger, "alice", "a fox worth keeping")
    new_job(ledger, "alice", "a fox not starred")
    other = new_job(ledger, "bob", "bob's fox")
    assert ledger.set_starred(kept, True, owner="alice").starred is True
    assert [j.job_id for j in ledger.history("alice", starred=True)] == [kept]
    assert len(ledger.history("alice")) == 2
    with pytest.raises(LedgerError):
        ledger.set_starred(other, True, owner="alice")
    assert ledger.job(other).starred is False  # type: ignore[union-attr]
    ledger.set_starred(kept, False, owner="alice")
    assert ledger.history("alice", starred=True) == []


def test_an_edit_chain_of_three_is_followed_both_ways(ledger: Ledger) -> None:
    first = new_job(ledger, "alice", "a kite")
    second = new_job(ledger, "alice", "the kite at night", parent=first)
    third = new_job(ledger, "alice", "the kite at night in rain", parent=second)
    assert ledger.job(third).parent == second  # type: ignore[union-attr]
    assert [j.job_id for j in ledger.ancestors(third, owner="alice")] == [second, first]
    assert [j.job_id for j in ledger.children(first, owner="alice")] == [second]
    assert [j.job_id for j in ledger.children(second, owner="alice")] == [third]
    assert ledger.children(first, owner="bob") == []


def test_delete_removes_the_job_and_keeps_its_childrens_images(ledger: Ledger) -> None:
    first = new_job(ledger, "alice", "a kite")
    second = new_job(ledger, "alice", "the kite at night", parent=first)
    with pytest.raises(LedgerError, match="still running"):
        ledger.delete_job(first, owner="alice")
    finish(ledger, first)
    with pytest.raises(LedgerError):
        ledger.delete_job(first, owner="bob")
    deleted = ledger.delete_job(first, owner="alice")
    assert deleted.job_id == first and ledger.job(first) is None
    assert ledger.events(first) == []
    assert ledger.job(second).parent is None  # type: ignore[union-attr]
    assert [j.job_id for j in ledger.history(None, search="kite")] == [second]
    assert ledger.references_in_use(["a" * 64, "b" * 64]) == {"a" * 64}


def test_the_starred_filter_and_the_children_read_indexes(tmp_path: Path) -> None:
    with Ledger(tmp_path / "jobs.sqlite3") as ledger:
        for n in range(30):
            new_job(ledger, "alice", f"fox {n}")
    raw = sqlite3.connect(tmp_path / "jobs.sqlite3")
    try:
        sql, args = history_query("alice", starred=True)
        steps = plan(raw, sql, args)
        assert any("jobs_starred_owner_seq" in step for step in steps), steps
        assert not any("TEMP B-TREE" in step for step in steps), steps
        steps = plan(raw, "SELECT * FROM jobs WHERE parent = ? ORDER BY seq", ["x"])
        assert any("jobs_parent" in step for step in steps), steps
    finally:
        raw.close()


def test_a_version_2_ledger_gains_stars_and_parents_from_its_params(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    write_version_1(path, [("a", 10.0, "a kite"), ("b", 20.0, "the kite at night")])
    raw = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[1]:
        raw.execute(statement)
    raw.execute("""UPDATE jobs SET params = '{"parent": "a"}' WHERE job_id = 'b'""")
    raw.execute("PRAGMA user_version = 2")
    raw.close()
    with Ledger(path) as ledger:
        assert ledger.job("b").parent == "a"  # type: ignore[union-attr]
        assert [j.job_id for j in ledger.children("a")] == ["b"]
        assert ledger.job("a").starred is False  # type: ignore[union-attr]
