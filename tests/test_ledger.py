"""The job ledger: round trips, state rules, restart recovery, history, durability."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from studio.ledger import (
    SCHEMA_VERSION,
    InvalidTransitionError,
    Ledger,
    LedgerError,
    NewJob,
    ResultRow,
)
from studio.lifecycle import NOTHING_SENT, JobState

ROOT = Path(__file__).resolve().parents[1]
HAS_TRIGRAM = sqlite3.sqlite_version_info >= (3, 34, 0)


class ManualClock:
    """Wall-clock stand-in: returns `now` until a test moves it."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger" / "jobs.sqlite3"


@pytest.fixture
def ledger(db_path: Path, clock: ManualClock):
    with Ledger(db_path, clock=clock) as opened:
        yield opened


def new_job(job_id: str, *, owner: str = "", prompt: str = "a red fox", **overrides) -> NewJob:
    fields = {
        "owner": owner,
        "service": "nano_banana_pro",
        "model": "nano-banana-pro",
        "prompt": prompt,
        "params": {"aspect_ratio": "16:9", "resolution": "2K", "variant": 0},
        "reference_hashes": ("ab" * 32,),
        "job_id": job_id,
        **overrides,
    }
    return NewJob(**fields)


def start(ledger: Ledger, job_id: str, task_id: str | None = None, **job_fields) -> None:
    """Record a job, mark it submitting and (optionally) give it a task id."""
    ledger.record_job(new_job(job_id, **job_fields))
    ledger.mark_submitting(job_id)
    if task_id is not None:
        ledger.set_task_id(job_id, task_id, submitted_at=5.0)


# --- round trips and events ---------------------------------------------------------------------


def test_record_job_round_trips_every_field(ledger: Ledger, clock: ManualClock) -> None:
    job = NewJob(
        owner="browser-1",
        service="gempix2",
        model="google/gempix2",
        prompt="Ein Fuchs im Schnee ❄",
        params={"routing": None, "variant": 2, "nested": {"a": [1, 2]}},
        reference_hashes=["11" * 32, "22" * 32],
    )
    written = ledger.record_job(job)
    read = ledger.job(job.job_id)

    assert read == written
    assert read.job_id == job.job_id and len(job.job_id) == 32
    assert read.owner == "browser-1"
    assert read.service == "gempix2"
    assert read.model == "google/gempix2"
    assert read.prompt == "Ein Fuchs im Schnee ❄"
    assert read.params == {"routing": None, "variant": 2, "nested": {"a": [1, 2]}}
    assert read.reference_hashes == ("11" * 32, "22" * 32)
    assert read.callback_token == job.callback_token and len(job.callback_token) >= 24
    assert read.state is JobState.RECORDED
    assert read.task_id is None and read.submitted_at is None and read.finished_at is None
    assert read.created_at == read.updated_at == clock.now
    assert read.results == ()


def test_new_jobs_get_distinct_ids_and_tokens() -> None:
    a, b = new_job("x"), new_job("y")
    assert NewJob("", "gempix2", "m", "p").job_id != NewJob("", "gempix2", "m", "p").job_id
    assert a.callback_token != b.callback_token


def test_record_job_refuses_duplicates_and_unknown_services(
    db_path: Path, clock: ManualClock
) -> None:
    with Ledger(db_path, clock=clock, known_services={"gempix2", "nano_banana_pro"}) as ledger:
        ledger.record_job(new_job("j1"))
        with pytest.raises(LedgerError, match="already"):
            ledger.record_job(new_job("j1"))
        with pytest.raises(ValueError):
            ledger.record_job(new_job("j2", service="midjourney"))
        assert ledger.job("j2") is None


def test_service_ids_are_plain_strings_and_never_empty(ledger: Ledger) -> None:
    # Without a list of known services the ledger stores any id the caller checked...
    assert ledger.record_job(new_job("j1", service="some_new_service")).service == (
        "some_new_service"
    )
    # ...but never none at all.
    with pytest.raises(ValueError):
        ledger.record_job(new_job("j2", service=""))
    assert ledger.job("j2") is None


def test_state_changes_are_appended_in_order_with_clock_times(
    ledger: Ledger, clock: ManualClock
) -> None:
    clock.now = 100.0
    ledger.record_job(new_job("j1"))
    clock.now = 101.0
    ledger.mark_submitting("j1")
    clock.now = 102.0
    ledger.set_task_id("j1", "task_abc", submitted_at=101.5, provider_state="pending")
    clock.now = 103.0
    ledger.record_state("j1", JobState.RUNNING, "processing")
    clock.now = 103.5
    ledger.record_state("j1", JobState.RUNNING, "processing")  # the same reading: no event
    clock.now = 104.0
    ledger.record_state("j1", JobState.SAVING, "success", credits=0.5)
    clock.now = 105.0
    done = ledger.record_state("j1", JobState.DONE, detail="1 image kept")

    assert [(e.at, e.state, e.provider_state, e.detail) for e in ledger.events("j1")] == [
        (100.0, JobState.RECORDED, "", None),
        (101.0, JobState.SUBMITTING, "", None),
        (102.0, JobState.QUEUED, "pending", "task task_abc"),
        (103.0, JobState.RUNNING, "processing", None),
        (104.0, JobState.SAVING, "success", None),
        (105.0, JobState.DONE, "success", "1 image kept"),
    ]
    assert done.state is JobState.DONE
    assert done.task_id == "task_abc"
    assert done.submitted_at == 101.5
    assert done.credits == 0.5
    assert done.provider_state == "success"  # "" keeps the last provider word
    assert (done.created_at, done.updated_at, done.finished_at) == (100.0, 105.0, 105.0)
    assert ledger.job("j1") == done


def test_provider_word_change_alone_is_an_event(ledger: Ledger) -> None:
    start(ledger, "j1", "ta1")
    ledger.record_state("j1", JobState.QUEUED, "pending")
    ledger.record_state("j1", JobState.QUEUED, "submitted")
    assert [e.provider_state for e in ledger.events("j1")][-2:] == ["pending", "submitted"]


def test_record_error_keeps_kind_and_message_and_revival_clears_them(
    ledger: Ledger, clock: ManualClock
) -> None:
    start(ledger, "j1", "ta1")
    clock.now = 2_000.0
    timed_out = ledger.record_error(
        "j1", JobState.TIMED_OUT, kind="WatchTimeoutError", message="no final state after 600 s"
    )
    assert timed_out.state is JobState.TIMED_OUT
    assert (timed_out.error_kind, timed_out.error_message) == (
        "WatchTimeoutError",
        "no final state after 600 s",
    )
    assert timed_out.finished_at == 2_000.0
    assert ledger.events("j1")[-1].detail == "WatchTimeoutError: no final state after 600 s"

    revived = ledger.record_state("j1", JobState.RUNNING, "processing")  # "check again"
    assert revived.error_kind is None and revived.error_message is None
    assert revived.finished_at is None

    with pytest.raises(ValueError):
        ledger.record_error("j1", JobState.DONE, kind="x", message="y")
    with pytest.raises(ValueError):
        ledger.record_error("j1", JobState.RUNNING, kind="x", message="y")


# --- state rules --------------------------------------------------------------------------------


def test_final_states_accept_nothing_else_but_tolerate_repeats(ledger: Ledger) -> None:
    start(ledger, "j1", "ta1")
    ledger.record_state("j1", JobState.SAVING, "success")
    ledger.record_state("j1", JobState.DONE)
    events_before = ledger.events("j1")

    ledger.record_state("j1", JobState.DONE, "success")  # a late callback: harmless
    assert ledger.events("j1") == events_before
    for later in (JobState.RUNNING, JobState.FAILED, JobState.TIMED_OUT):
        with pytest.raises(InvalidTransitionError, match="final"):
            ledger.record_state("j1", later)
    assert ledger.job("j1").state is JobState.DONE


def test_a_post_is_never_marked_as_sent_twice(ledger: Ledger) -> None:
    ledger.record_job(new_job("j1"))
    ledger.mark_submitting("j1")
    with pytest.raises(InvalidTransitionError, match="never sent again"):
        ledger.mark_submitting("j1")


def test_task_states_need_a_task_id(ledger: Ledger) -> None:
    start(ledger, "j1")
    for state in (JobState.QUEUED, JobState.RUNNING, JobState.SAVING, JobState.DONE):
        with pytest.raises(InvalidTransitionError):
            ledger.record_state("j1", state)
    assert ledger.job("j1").state is JobState.SUBMITTING


def test_task_id_only_after_mark_submitting(ledger: Ledger) -> None:
    ledger.record_job(new_job("j1"))
    with pytest.raises(InvalidTransitionError, match="mark_submitting"):
        ledger.set_task_id("j1", "ta1", submitted_at=1.0)
    assert ledger.job("j1").task_id is None


def test_set_task_id_is_idempotent_and_never_replaces_an_id(ledger: Ledger) -> None:
    start(ledger, "j1", "ta1")
    ledger.record_state("j1", JobState.RUNNING, "in_progress")
    again = ledger.set_task_id("j1", "ta1", submitted_at=99.0)  # callback beat the response
    assert (again.state, again.submitted_at) == (JobState.RUNNING, 5.0)
    with pytest.raises(InvalidTransitionError, match="already has task"):
        ledger.set_task_id("j1", "ta2", submitted_at=1.0)
    start(ledger, "j2")
    with pytest.raises(LedgerError, match="another job"):
        ledger.set_task_id("j2", "ta1", submitted_at=1.0)
    assert ledger.job("j2").task_id is None


def test_outcome_unknown_job_comes_back_when_a_callback_reveals_its_task(ledger: Ledger) -> None:
    start(ledger, "j1")
    ledger.record_error("j1", JobState.OUTCOME_UNKNOWN, kind="ReadTimeout", message="no answer")
    revealed = ledger.set_task_id("j1", "ta9", submitted_at=7.0)
    assert (revealed.state, revealed.task_id, revealed.error_kind) == (
        JobState.QUEUED,
        "ta9",
        None,
    )


def test_a_callback_reveals_the_task_of_an_outcome_unknown_job(
    ledger: Ledger, clock: ManualClock
) -> None:
    clock.now = 100.0
    ledger.record_job(new_job("j1"))
    clock.now = 101.0
    ledger.mark_submitting("j1")  # the POST went out here
    clock.now = 130.0
    ledger.record_error("j1", JobState.OUTCOME_UNKNOWN, kind="ReadTimeout", message="no answer")
    clock.now = 500.0
    revealed = ledger.reveal_task_id("j1", "ta9")

    assert (revealed.state, revealed.task_id, revealed.error_kind, revealed.error_message) == (
        JobState.QUEUED,
        "ta9",
        None,
        None,
    )
    assert revealed.submitted_at == 101.0  # when the POST went out, not when the id arrived
    assert revealed.finished_at is None
    last = ledger.events("j1")[-1]
    assert (last.at, last.state, last.detail) == (
        500.0,
        JobState.QUEUED,
        "task ta9, revealed by a callback",
    )
    # A second callback (a retry, or a race) does not take the job up twice.
    with pytest.raises(InvalidTransitionError, match="outcome_unknown"):
        ledger.reveal_task_id("j1", "ta9")
    assert ledger.events("j1")[-1] == last


def test_only_an_outcome_unknown_job_without_a_task_takes_one_from_a_callback(
    ledger: Ledger,
) -> None:
    ledger.record_job(new_job("recorded"))
    start(ledger, "submitting")
    start(ledger, "queued", "ta1")
    start(ledger, "stopped", "ta2")
    ledger.record_state("stopped", JobState.STOPPED)
    start(ledger, "failed")
    ledger.record_error("failed", JobState.FAILED, kind="BadRequestError", message="refused")
    for job_id in ("recorded", "submitting", "queued", "stopped", "failed"):
        before = ledger.job(job_id), ledger.events(job_id)
        with pytest.raises(InvalidTransitionError):
            ledger.reveal_task_id(job_id, "ta-from-callback")
        assert (ledger.job(job_id), ledger.events(job_id)) == before
    start(ledger, "unknown")
    ledger.record_error("unknown", JobState.OUTCOME_UNKNOWN, kind="x", message="y")
    with pytest.raises(LedgerError, match="another job"):  # the task is the queued job's
        ledger.reveal_task_id("unknown", "ta1")
    with pytest.raises(ValueError):
        ledger.reveal_task_id("unknown", "")
    assert ledger.job("unknown").state is JobState.OUTCOME_UNKNOWN
    assert ledger.job("unknown").task_id is None


def test_unknown_jobs_raise(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="no job"):
        ledger.record_state("nope", JobState.RUNNING)
    with pytest.raises(LedgerError, match="no job"):
        ledger.record_result("nope", 0, path="p", sha256="s", source_url="u")
    assert ledger.job("nope") is None
    assert ledger.events("nope") == []


# --- recovery after a restart -------------------------------------------------------------------


def test_recover_after_restart_settles_and_returns_what_to_resume(
    db_path: Path, clock: ManualClock
) -> None:
    with Ledger(db_path, clock=clock) as first:
        first.record_job(new_job("recorded"))
        start(first, "submitting")
        start(first, "queued", "ta_q")
        start(first, "running", "ta_r")
        first.record_state("running", JobState.RUNNING, "processing")
        start(first, "saving", "ta_s")
        first.record_state("saving", JobState.SAVING, "success")
        first.record_result("saving", 0, path="/img/0.png", sha256="00", source_url="https://u/0")
        start(first, "done", "ta_d")
        first.record_state("done", JobState.SAVING)
        first.record_state("done", JobState.DONE)
        start(first, "stopped", "ta_x")
        first.record_state("stopped", JobState.STOPPED)

    clock.now = 5_000.0
    with Ledger(db_path, clock=clock) as second:
        done_before = second.job("done"), second.events("done")
        resumed = second.recover_after_restart()

        assert [job.job_id for job in resumed] == ["queued", "running", "saving"]
        assert [job.task_id for job in resumed] == ["ta_q", "ta_r", "ta_s"]
        assert resumed[2].results[0].path == "/img/0.png"  # only the missing ones to fetch

        failed = second.job("recorded")
        assert failed.state is JobState.FAILED
        assert (
            failed.error_message == NOTHING_SENT == "interrupted before sending; nothing was sent"
        )
        assert failed.finished_at == 5_000.0
        assert second.events("recorded")[-1].state is JobState.FAILED

        unknown = second.job("submitting")
        assert unknown.state is JobState.OUTCOME_UNKNOWN
        assert "not sent again" in unknown.error_message
        assert second.events("submitting")[-1].at == 5_000.0

        assert (second.job("done"), second.events("done")) == done_before
        assert second.job("stopped").state is JobState.STOPPED

        # A second start-up changes nothing more and resumes the same jobs.
        events = {j: second.events(j) for j in ("recorded", "submitting")}
        again = second.recover_after_restart()
        assert [job.job_id for job in again] == ["queued", "running", "saving"]
        assert {j: second.events(j) for j in ("recorded", "submitting")} == events


# --- results ------------------------------------------------------------------------------------


def test_results_failures_and_retries(ledger: Ledger) -> None:
    start(ledger, "j1", "ta1")
    ledger.record_state("j1", JobState.SAVING, "success")
    ledger.record_result(
        "j1", 1, path="/out/1.png", sha256="bb", source_url="https://u/1", expires_at=9.0
    )
    ledger.record_download_failure(
        "j1", 0, source_url="https://u/0", expires_at=8.0, message="HTTP 503"
    )
    ledger.record_state("j1", JobState.DOWNLOAD_FAILED)

    job = ledger.job("j1")
    assert job.results == (
        ResultRow(0, None, None, "https://u/0", 8.0, "HTTP 503"),
        ResultRow(1, "/out/1.png", "bb", "https://u/1", 9.0, None),
    )
    assert [r.is_kept for r in job.results] == [False, True]

    # A failure never overwrites a kept result; a retry replaces a failure.
    ledger.record_download_failure("j1", 1, source_url="https://u/1", expires_at=9.0, message="x")
    ledger.record_state("j1", JobState.SAVING)
    ledger.record_result("j1", 0, path="/out/0.png", sha256="aa", source_url="https://u/0")
    ledger.record_state("j1", JobState.DONE)
    assert ledger.job("j1").results == (
        ResultRow(0, "/out/0.png", "aa", "https://u/0", None, None),
        ResultRow(1, "/out/1.png", "bb", "https://u/1", 9.0, None),
    )


def test_saved_data_uri_results_do_not_keep_the_payload(ledger: Ledger) -> None:
    start(ledger, "j1", "ta1")
    payload = "data:image/png;base64," + "A" * 10_000
    ledger.record_result("j1", 0, path="/out/0.png", sha256="aa", source_url=payload)
    ledger.record_download_failure("j1", 1, source_url=payload, expires_at=None, message="bad")
    ledger.record_result("j1", 2, path="/out/2.png", sha256="cc", source_url="data:")
    first, second, third = ledger.job("j1").results
    assert first.source_url == "data:image/png;base64,…"
    assert second.source_url == payload  # not kept anywhere else: keep all of it
    assert third.source_url == "data:"  # short markers stay as given


# --- history ------------------------------------------------------------------------------------


def test_owner_isolation(ledger: Ledger) -> None:
    ledger.record_job(new_job("alice-1", owner="alice", prompt="alice's secret cat"))
    ledger.record_job(new_job("bob-1", owner="bob", prompt="bob's secret cat"))

    assert [j.job_id for j in ledger.history("alice")] == ["alice-1"]
    assert [j.job_id for j in ledger.history("bob", search="secret")] == ["bob-1"]
    assert [j.job_id for j in ledger.history("bob", search="alice")] == []
    assert [j.job_id for j in ledger.history("")] == []
    assert {j.job_id for j in ledger.history(None)} == {"alice-1", "bob-1"}

    assert ledger.job("alice-1", owner="bob") is None
    assert ledger.job("alice-1", owner="alice").owner == "alice"
    assert ledger.events("alice-1", owner="bob") == []
    assert len(ledger.events("alice-1", owner="alice")) == 1


SEARCH_MODES = [
    pytest.param(
        None,
        id="fts5",
        marks=pytest.mark.skipif(not HAS_TRIGRAM, reason="no FTS5 trigram tokenizer"),
    ),
    pytest.param(False, id="scan"),
]


@pytest.mark.parametrize("fts", SEARCH_MODES)
def test_search_is_a_case_insensitive_substring_match(
    db_path: Path, clock: ManualClock, fts: bool | None
) -> None:
    with Ledger(db_path, clock=clock, full_text_search=fts) as ledger:
        assert ledger.full_text_search is (fts is None)
        prompts = {
            "fox": "A Red FOX jumping over a fence",
            "cat": "portrait of a cat, ultra detailed",
            "kot": "КОТ на крыше",
            "quote": 'a sign saying "hello"',
        }
        for n, (job_id, prompt) in enumerate(prompts.items()):
            clock.now = 1_000.0 + n
            ledger.record_job(new_job(job_id, prompt=prompt))

        def found(search: str) -> list[str]:
            return [j.job_id for j in ledger.history(None, search=search)]

        assert found("fox") == ["fox"]
        assert found("JUMP") == ["fox"]  # part of a word
        assert found("ox") == ["fox"]  # shorter than a trigram
        assert found("red fence") == ["fox"]  # every word must occur
        assert found("red cat") == []
        assert found("кот") == ["kot"]
        assert found('"hello"') == ["quote"]
        assert found("a") == ["quote", "cat", "fox"]  # newest first; Cyrillic "а" is not "a"
        assert found("") == ["quote", "kot", "cat", "fox"]
        assert found("zebra") == []


def test_search_index_is_rebuilt_after_writes_without_it(db_path: Path, clock: ManualClock) -> None:
    if not HAS_TRIGRAM:
        pytest.skip("no FTS5 trigram tokenizer")
    with Ledger(db_path, clock=clock) as ledger:
        ledger.record_job(new_job("before", prompt="lighthouse at dawn"))
    with Ledger(db_path, clock=clock, full_text_search=False) as ledger:
        ledger.record_job(new_job("during", prompt="lighthouse at dusk"))
    # Without FTS5 the index triggers must be gone (they would break every insert on a build
    # without the module), so the index missed the new job...
    raw = sqlite3.connect(db_path)
    assert raw.execute("SELECT prompt FROM jobs_fts").fetchall() == [("lighthouse at dawn",)]
    raw.close()
    # ...and the next connection with FTS5 rebuilds it.
    with Ledger(db_path, clock=clock) as ledger:
        assert ledger.full_text_search
        assert {j.job_id for j in ledger.history(None, search="lighthouse")} == {
            "before",
            "during",
        }
        assert [j.job_id for j in ledger.history(None, search="dusk")] == ["during"]


def test_filters_order_and_paging(ledger: Ledger, clock: ManualClock) -> None:
    models = ["nano-banana-pro", "google/gempix2"]
    for n in range(12):
        clock.now = 1_000.0 + n
        job_id = f"j{n:02}"
        start(ledger, job_id, f"ta{n}", model=models[n % 2], owner="me")
        if n % 3 == 0:
            ledger.record_state(job_id, JobState.SAVING)
            ledger.record_result(job_id, 0, path=f"/o/{n}.png", sha256="h", source_url="u")
            ledger.record_state(job_id, JobState.DONE)
    clock.now = 2_000.0
    ledger.record_job(new_job("other", owner="someone-else"))

    newest_first = [j.job_id for j in ledger.history("me", limit=100)]
    assert newest_first == [f"j{n:02}" for n in reversed(range(12))]

    pages = [ledger.history("me", limit=5, offset=o) for o in (0, 5, 10, 15)]
    assert [[j.job_id for j in page] for page in pages] == [
        newest_first[0:5],
        newest_first[5:10],
        newest_first[10:12],
        [],
    ]

    gempix_done = ledger.history("me", model="google/gempix2", state="done")
    assert [j.job_id for j in gempix_done] == ["j09", "j03"]
    assert all(j.results[0].path == f"/o/{int(j.job_id[1:])}.png" for j in gempix_done)
    assert [j.job_id for j in ledger.history("me", state=JobState.QUEUED, model="")][:2] == [
        "j11",
        "j10",
    ]
    assert ledger.history("me", model="no-such-model") == []
    with pytest.raises(ValueError):
        ledger.history("me", state="finished")
    with pytest.raises(ValueError):
        ledger.history("me", limit=-1)


# --- the file -----------------------------------------------------------------------------------


def test_pragmas_are_set(ledger: Ledger) -> None:
    assert ledger.pragma("journal_mode") == "wal"
    assert ledger.pragma("busy_timeout") == 5000
    assert ledger.pragma("foreign_keys") == 1
    assert ledger.pragma("synchronous") == 2  # FULL
    assert ledger.pragma("user_version") == SCHEMA_VERSION == 5
    with pytest.raises(ValueError):
        ledger.pragma("user_version = 0")


def test_data_survives_reopening(db_path: Path, clock: ManualClock) -> None:
    with Ledger(db_path, clock=clock) as ledger:
        start(ledger, "j1", "ta1")
    with Ledger(db_path, clock=clock) as ledger:
        assert ledger.job("j1").task_id == "ta1"
        assert ledger.pragma("user_version") == SCHEMA_VERSION


def test_a_newer_schema_is_refused(db_path: Path) -> None:
    Ledger(db_path).close()
    with sqlite3.connect(db_path) as raw:
        raw.execute("PRAGMA user_version = 99")
    raw.close()
    with pytest.raises(LedgerError, match="newer"):
        Ledger(db_path)


def test_a_file_that_is_not_a_database_is_refused(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(LedgerError, match="cannot open"):
        Ledger(db_path)


def test_a_closed_ledger_refuses_work(ledger: Ledger) -> None:
    ledger.close()
    ledger.close()
    with pytest.raises(LedgerError, match="closed"):
        ledger.job("j1")


def test_integrity_ok_on_a_healthy_file(ledger: Ledger) -> None:
    start(ledger, "j1", "ta1")
    assert ledger.integrity_ok()


def test_integrity_ok_sees_a_dangling_reference(db_path: Path) -> None:
    Ledger(db_path).close()
    raw = sqlite3.connect(db_path)  # foreign keys are off by default on a raw connection
    raw.execute("INSERT INTO job_events(job_id, at, state) VALUES ('ghost', 1, 'queued')")
    raw.commit()
    raw.close()
    with Ledger(db_path) as ledger:
        assert not ledger.integrity_ok()


def test_integrity_ok_sees_a_corrupt_page(db_path: Path) -> None:
    with Ledger(db_path) as ledger:
        for n in range(50):
            ledger.record_job(new_job(f"job-{n:03}", prompt=f"prompt {n}"))
    raw = sqlite3.connect(db_path)
    page_size = raw.execute("PRAGMA page_size").fetchone()[0]
    root = raw.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'jobs_state_seq'"
    ).fetchone()[0]
    raw.close()
    with db_path.open("r+b") as f:  # scribble over the index's cell content (end of its page)
        f.seek(root * page_size - 200)
        f.write(b"\x07" * 150)
    with Ledger(db_path) as ledger:
        assert not ledger.integrity_ok()


# --- concurrency and crashes --------------------------------------------------------------------


def test_concurrent_writers_never_see_database_is_locked(db_path: Path) -> None:
    # Two ledgers on one file (two connections, as with two processes) and four threads each.
    ledgers = [Ledger(db_path), Ledger(db_path)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(worker: int) -> None:
        ledger = ledgers[worker % 2]
        try:
            barrier.wait()
            for n in range(15):
                job_id = f"w{worker}-{n}"
                start(ledger, job_id, f"task-{job_id}")
                ledger.record_state(job_id, JobState.RUNNING, "processing")
                ledger.history(None, search="fox", limit=10)
                ledger.record_state(job_id, JobState.SAVING, "success")
                ledger.record_result(job_id, 0, path=f"/o/{job_id}", sha256="h", source_url="u")
                ledger.record_state(job_id, JobState.DONE)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert len(ledgers[0].history(None, state="done", limit=1_000)) == 8 * 15
        assert ledgers[1].integrity_ok()
    finally:
        for ledger in ledgers:
            ledger.close()


async def test_async_callers_use_to_thread(ledger: Ledger) -> None:
    await asyncio.gather(
        *(asyncio.to_thread(ledger.record_job, new_job(f"a{n}")) for n in range(20))
    )
    rows = await asyncio.to_thread(ledger.history, None, limit=100)
    assert len(rows) == 20


CRASHING_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from studio.ledger import Ledger, NewJob

    ledger = Ledger(Path(sys.argv[1]))
    for job_id in ("sent", "in-flight"):
        ledger.record_job(NewJob(owner="o", service="gempix2", model="google/gempix2",
                                 prompt="crash test", job_id=job_id))
        ledger.mark_submitting(job_id)
    ledger.set_task_id("sent", "ta_crash", 123.0)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_killed_process_loses_nothing_it_recorded(db_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.run(
        [sys.executable, "-c", CRASHING_CHILD, str(db_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    assert db_path.with_name(db_path.name + "-wal").exists()  # it never closed cleanly

    with Ledger(db_path) as ledger:
        assert ledger.integrity_ok()
        sent = ledger.job("sent")
        assert (sent.state, sent.task_id, sent.submitted_at) == (
            JobState.QUEUED,
            "ta_crash",
            123.0,
        )
        assert [job.job_id for job in ledger.recover_after_restart()] == ["sent"]
        assert ledger.job("in-flight").state is JobState.OUTCOME_UNKNOWN
