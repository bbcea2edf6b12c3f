"""The ledger's history queries read indexes in order, and an old ledger file migrates to them.

The query plans are SQLite's own (EXPLAIN QUERY PLAN): a page of history must never scan the
jobs table or sort in a temporary B-tree, with or without filters and search, before and after
ANALYZE has given the planner statistics. Speed itself is measured by bench/history_bench.py.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from studio.ledger import SCHEMA_VERSION, Ledger, NewJob
from studio.ledger.schema import MIGRATIONS
from studio.ledger.search import FOLD_FUNCTION, fold, history_query
from studio.lifecycle import JobState

HAS_TRIGRAM = sqlite3.sqlite_version_info >= (3, 34, 0)
MODELS = ("nano-banana-pro", "google/gempix2", "google/gemini-2.5-flash-image")
OWNERS = ("", "alice", "bob")


def fill(ledger: Ledger, n: int) -> None:
    for i in range(n):
        job = ledger.record_job(
            NewJob(
                owner=OWNERS[i % 3],
                service="nano_banana_pro",
                model=MODELS[i % 3],
                prompt=f"lighthouse {i} at dusk" if i % 4 else f"red fox {i}",
            )
        )
        if i % 5 == 0:
            ledger.mark_submitting(job.job_id)


def plan(conn: sqlite3.Connection, sql: str, args: list[object]) -> list[str]:
    return [str(row[3]) for row in conn.execute("EXPLAIN QUERY PLAN " + sql, args)]


QUERIES = [
    pytest.param(
        owner, filters, search, id=f"{owner or 'all'}-{'+'.join(filters) or 'any'}-{search}"
    )
    for owner in (None, "alice")
    for filters in ((), ("model",), ("state",), ("model", "state"))
    for search in ("", "lighthouse", "lighthouse 7", "zebra", "ox")
]


@pytest.fixture(scope="module")
def ledger_files(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Path]:
    """One filled ledger as written (False) and a copy after ANALYZE (True)."""
    if not HAS_TRIGRAM:
        pytest.skip("no FTS5 trigram tokenizer")
    folder = tmp_path_factory.mktemp("plans")
    with Ledger(folder / "fresh.sqlite3") as ledger:
        fill(ledger, 300)
        assert ledger.full_text_search
    analyzed = folder / "analyzed.sqlite3"
    analyzed.write_bytes((folder / "fresh.sqlite3").read_bytes())
    with sqlite3.connect(analyzed) as raw:
        raw.execute("ANALYZE")
    raw.close()
    return {False: folder / "fresh.sqlite3", True: analyzed}


@pytest.mark.parametrize("analyzed", [False, True], ids=["fresh", "analyzed"])
@pytest.mark.parametrize(("owner", "filters", "search"), QUERIES)
def test_every_history_page_reads_an_index_in_order(
    ledger_files: dict[bool, Path],
    owner: str | None,
    filters: tuple[str, ...],
    search: str,
    analyzed: bool,
) -> None:
    sql, args = history_query(
        owner,
        search=search,
        model=MODELS[1] if "model" in filters else None,
        state=str(JobState.RECORDED) if "state" in filters else None,
        full_text_search=True,
    )
    with sqlite3.connect(ledger_files[analyzed]) as raw:
        raw.create_function(FOLD_FUNCTION, 1, fold, deterministic=True)
        steps = plan(raw, sql, args)
    raw.close()
    text = " | ".join(steps)
    assert "TEMP B-TREE" not in text, text
    for step in steps:
        if step.startswith("SCAN j"):
            # Only the unfiltered page may walk the table, and then only the time index,
            # backwards from the newest job (it stops after a page).
            assert not filters and owner is None and step == "SCAN j USING INDEX jobs_seq", text
    if any(len(word) >= 3 for word in search.split()):
        assert steps[0].startswith("SCAN f VIRTUAL TABLE"), text  # matches come newest first
        assert steps[1].startswith("SEARCH j USING INDEX jobs_"), text
        assert "seq=?" in steps[1], text
    else:
        wanted = "_".join(("jobs", *(["owner"] if owner else []), *filters, "seq"))
        assert f"USING INDEX {wanted}" in steps[0], text


def test_start_up_recovery_reads_only_unfinished_jobs(tmp_path: Path) -> None:
    with Ledger(tmp_path / "jobs.sqlite3") as ledger:
        fill(ledger, 50)
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as raw:
        steps = plan(raw, "SELECT * FROM jobs WHERE state IN (?, ?) ORDER BY seq", ["a", "b"])
    raw.close()
    assert steps[0].startswith("SEARCH jobs USING INDEX jobs_state_seq (state=?)"), steps


# A ledger written by version 1 of this app, as it wrote it (the FTS5 index keyed by job id).
_V1_SEARCH_INDEX = (
    "CREATE VIRTUAL TABLE jobs_fts USING fts5(job_id UNINDEXED, prompt, tokenize='trigram')",
    """CREATE TRIGGER jobs_fts_ai AFTER INSERT ON jobs BEGIN
        INSERT INTO jobs_fts(job_id, prompt) VALUES (new.job_id, new.prompt);
    END""",
    """CREATE TRIGGER jobs_fts_ad AFTER DELETE ON jobs BEGIN
        DELETE FROM jobs_fts WHERE job_id = old.job_id;
    END""",
    """CREATE TRIGGER jobs_fts_au AFTER UPDATE OF prompt ON jobs BEGIN
        UPDATE jobs_fts SET prompt = new.prompt WHERE job_id = old.job_id;
    END""",
)


def write_version_1(path: Path, jobs: list[tuple[str, float, str]]) -> None:
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("BEGIN")
    for statement in MIGRATIONS[0]:
        raw.execute(statement)
    if HAS_TRIGRAM:
        for statement in _V1_SEARCH_INDEX:
            raw.execute(statement)
    for job_id, created_at, prompt in jobs:
        raw.execute(
            "INSERT INTO jobs(job_id, owner, service, model, prompt, callback_token, state, "
            "created_at, updated_at) VALUES (?, '', 'nano_banana_pro', 'nano-banana-pro', ?, "
            "'token', 'done', ?, ?)",
            (job_id, prompt, created_at, created_at),
        )
        raw.execute(
            "INSERT INTO results(job_id, idx, path, sha256, source_url, recorded_at) "
            "VALUES (?, 0, ?, 'hash', 'https://cdn/x.png', ?)",
            (job_id, f"/out/{job_id}.png", created_at),
        )
    raw.execute("PRAGMA user_version = 1")
    raw.execute("COMMIT")
    raw.close()


def test_a_version_1_ledger_migrates(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    # Recorded out of time order, with a tie on created_at (broken by job id, as v1 showed it).
    write_version_1(
        path,
        [
            ("c", 30.0, "third lighthouse"),
            ("a", 10.0, "first lighthouse"),
            ("b2", 20.0, "second fox"),
            ("b1", 20.0, "second lighthouse"),
        ],
    )
    with Ledger(path) as ledger:
        assert ledger.pragma("user_version") == SCHEMA_VERSION == 5
        assert [j.job_id for j in ledger.history(None)] == ["c", "b2", "b1", "a"]
        assert ledger.job("a").results[0].path == "/out/a.png"  # nothing lost on the way
        new = ledger.record_job(
            NewJob(
                owner="", service="nano_banana_pro", model="nano-banana-pro", prompt="lighthouse"
            )
        )
        assert [j.job_id for j in ledger.history(None, limit=2)] == [new.job_id, "c"]
        if HAS_TRIGRAM:
            assert ledger.full_text_search
        found = [j.job_id for j in ledger.history(None, search="lighthouse")]
        assert found == [new.job_id, "c", "b1", "a"]
        # Version 5: an experiment's cells, by their own index (old jobs belong to none).
        cell = ledger.record_job(
            NewJob(
                owner="",
                service="nano_banana_pro",
                model="nano-banana-pro",
                prompt="a cell",
                params={"experiment": "e" * 32},
            )
        )
        assert [j.job_id for j in ledger.history(None, experiment="e" * 32)] == [cell.job_id]
        assert ledger.history(None, experiment="f" * 32) == []
        assert ledger.integrity_ok()
    raw = sqlite3.connect(path)
    seqs = dict(raw.execute("SELECT job_id, seq FROM jobs").fetchall())
    names = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    triggers = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    raw.close()
    assert [seqs[j] for j in ("a", "b1", "b2", "c", new.job_id)] == [1, 2, 3, 4, 5]
    assert {"jobs_owner_created", "jobs_created", "jobs_state"}.isdisjoint(names)
    assert {"jobs_seq", "jobs_owner_model_state_seq"} <= names
    assert {"jobs_fts_ai", "jobs_fts_ad", "jobs_fts_au"}.isdisjoint(triggers)
