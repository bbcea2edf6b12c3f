"""What the poll schedule learns from: run times recorded by the ledger, kept per kind of task.

The ledger tells listeners how long each watched task ran when its success is recorded, and
reads back the latest ones at start-up; `RunTimes` keeps a bounded window per (model,
resolution, offline) and the runner's schedules follow it. Fake clocks throughout.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from providers.capabilities import ImageSettings
from providers.services import CATALOG
from providers.settings import service_configs
from providers.types import GenerationRequest
from simulator import Simulator, SimulatorConfig
from studio.backends import Backends
from studio.jobs import JobRunner, JobSpec
from studio.ledger import Ledger, NewJob, RunTime
from studio.ledger.search import recent_run_times_query
from studio.lifecycle import JobState
from studio.run_times import RunTimes, kind_of_params

NBP = "nano-banana-pro"


class ManualClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def params(resolution: str | None = "1K", offline: bool = True) -> dict[str, object]:
    return {"resolution": resolution, "offline": offline, "variant": 1}


def run_job(
    ledger: Ledger,
    clock: ManualClock,
    seconds: float,
    *,
    model: str = NBP,
    job_params: dict[str, object] | None = None,
    running_first: bool = True,
    finish: JobState = JobState.DONE,
) -> str:
    """Record, submit and finish one job that ran `seconds` (success seen at submit + seconds)."""
    job = ledger.record_job(
        NewJob(
            owner="",
            service="nano_banana_pro",
            model=model,
            prompt="a kite",
            params=job_params if job_params is not None else params(),
        )
    )
    ledger.mark_submitting(job.job_id)
    submitted = clock.now
    ledger.set_task_id(job.job_id, f"task-{job.job_id}", submitted_at=submitted)
    if running_first:
        clock.now = submitted + seconds / 2
        ledger.record_state(job.job_id, JobState.RUNNING, "processing")
    clock.now = submitted + seconds
    ledger.record_state(job.job_id, JobState.SAVING, "success")
    clock.now += 0.5  # the download
    if finish is JobState.DONE:
        ledger.record_state(job.job_id, JobState.DONE)
    else:
        ledger.record_error(job.job_id, finish, kind="DownloadError", message="HTTP 503")
    clock.now += 10.0
    return job.job_id


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def ledger(tmp_path: Path, clock: ManualClock):
    with Ledger(tmp_path / "jobs.sqlite3", clock=clock) as opened:
        yield opened


# ---------------------------------------------------------------------------- the ledger


def test_the_ledger_reports_each_success_it_records(ledger: Ledger, clock: ManualClock) -> None:
    heard: list[RunTime] = []
    ledger.on_run_time(heard.append)
    run_job(ledger, clock, 24.0)
    run_job(ledger, clock, 7.5, running_first=False, job_params=params("4K", offline=False))
    assert [(r.model, r.seconds) for r in heard] == [(NBP, 24.0), (NBP, 7.5)]
    assert heard[1].params["resolution"] == "4K"
    assert heard[1].params["offline"] is False


def test_a_revived_download_is_not_a_run_time(ledger: Ledger, clock: ManualClock) -> None:
    job_id = run_job(ledger, clock, 20.0, finish=JobState.DOWNLOAD_FAILED)
    heard: list[RunTime] = []
    ledger.on_run_time(heard.append)
    ledger.record_state(job_id, JobState.SAVING)  # a retried download: the task ran long ago
    assert heard == []


def test_the_latest_run_times_are_read_back_newest_first(
    ledger: Ledger, clock: ManualClock
) -> None:
    for seconds in (21.0, 22.0, 23.0):
        run_job(ledger, clock, seconds)
    run_job(ledger, clock, 99.0, finish=JobState.DOWNLOAD_FAILED)  # not done: not read
    unfinished = ledger.record_job(
        NewJob(owner="", service="nano_banana_pro", model=NBP, prompt="still running")
    )
    assert unfinished.state is JobState.RECORDED
    assert [r.seconds for r in ledger.recent_run_times(10)] == [23.0, 22.0, 21.0]
    assert [r.seconds for r in ledger.recent_run_times(2)] == [23.0, 22.0]
    assert ledger.recent_run_times(10)[0].params["resolution"] == "1K"


def test_reading_the_run_times_never_walks_the_whole_ledger(
    ledger: Ledger, clock: ManualClock, tmp_path: Path
) -> None:
    for seconds in range(20, 30):
        run_job(ledger, clock, float(seconds))
    ledger.close()
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as raw:
        sql, args = recent_run_times_query(2000)
        steps = [str(r[3]) for r in raw.execute("EXPLAIN QUERY PLAN " + sql, args)]
    raw.close()
    assert steps[0] == "SEARCH j USING INDEX jobs_state_seq (state=?)", steps
    assert not any("TEMP B-TREE" in step or step.startswith("SCAN") for step in steps), steps


# ---------------------------------------------------------------------------- RunTimes


def ran(seconds: float, resolution: str | None = "1K", offline: bool = True) -> RunTime:
    return RunTime(NBP, params(resolution, offline), seconds)


def test_each_kind_keeps_only_its_latest_run_times() -> None:
    run_times = RunTimes(per_kind=3)
    run_times.add_all(ran(float(s)) for s in range(10, 20))
    run_times.add(ran(40.0, "4K"))
    run_times.add(ran(30.0, "1K", offline=False))
    assert run_times.recent(NBP, "1K", True) == (17.0, 18.0, 19.0)
    assert run_times.recent(NBP, "4K", True) == (40.0,)
    assert run_times.recent(NBP, "1K", False) == (30.0,)
    assert run_times.recent(NBP, "2K", True) == ()
    assert len(run_times) == 5


def test_run_times_out_of_range_are_dropped() -> None:
    run_times = RunTimes(longest=900.0)
    run_times.add_all([ran(0.0), ran(-1.0), ran(901.0), ran(900.0)])
    assert run_times.recent(NBP, "1K", True) == (900.0,)


def test_a_model_without_resolutions_is_one_kind() -> None:
    assert kind_of_params("google/gempix2", {"resolution": None, "offline": False}) == (
        "google/gempix2",
        "",
        False,
    )


def test_following_a_ledger_seeds_then_listens(ledger: Ledger, clock: ManualClock) -> None:
    for seconds in (10.0, 11.0, 12.0, 13.0):
        run_job(ledger, clock, seconds)
    run_times = RunTimes.following(ledger, per_kind=3)
    assert run_times.recent(NBP, "1K", True) == (11.0, 12.0, 13.0)  # the newest kept
    run_job(ledger, clock, 14.0)
    assert run_times.recent(NBP, "1K", True) == (12.0, 13.0, 14.0)


def test_the_schedule_learns_a_service_twice_as_fast(ledger: Ledger, clock: ManualClock) -> None:
    backends = Backends(
        CATALOG, service_configs(CATALOG, {}), simulator=Simulator(SimulatorConfig(seed=1))
    )
    request = GenerationRequest(NBP, "a kite", settings=ImageSettings(resolution="1K"))
    backend = backends.for_service("nano_banana_pro")
    assert backend.time_scale == 1.0
    run_times = RunTimes.following(ledger)
    spec = CATALOG.model(NBP)
    assert run_times.schedule_for(spec, request, backend).window == (20.0, 30.0)  # the prior
    for n in range(25):
        # Each task ends between 10 and 15 s and is seen by the next read of the schedule in
        # force (50 ms later: the request), as the runner would see it.
        ends = 10.0 + (n * 7 % 25) / 5
        reads = run_times.schedule_for(spec, request, backend).read_times(60.0)
        run_job(ledger, clock, next(r for r in reads if r >= ends) + 0.05)
    learned = run_times.schedule_for(spec, request, backend)
    assert learned.brisk is not None
    assert 8.5 < learned.window[0] < 11.0 and 14.0 < learned.window[1] < 16.0
    assert 10.0 < learned.brisk[0] < 12.5 and 14.5 < learned.brisk[1] < 17.0
    four_k = GenerationRequest(NBP, "a kite", settings=ImageSettings(resolution="4K"))
    assert run_times.schedule_for(spec, four_k, backend).window == (45.0, 60.0)


def test_a_schedule_is_placed_again_only_after_a_new_run_time(
    ledger: Ledger, clock: ManualClock
) -> None:
    backends = Backends(CATALOG, service_configs(CATALOG, {}), simulator=Simulator())
    request = GenerationRequest(NBP, "a kite", settings=ImageSettings(resolution="1K"))
    backend = backends.for_service("nano_banana_pro")
    run_times = RunTimes.following(ledger)
    spec = CATALOG.model(NBP)
    first = run_times.schedule_for(spec, request, backend)
    assert run_times.schedule_for(spec, request, backend) is first
    run_job(ledger, clock, 12.3)
    assert run_times.schedule_for(spec, request, backend) is not first


async def test_the_runner_expects_what_it_learned(tmp_path: Path, clock: ManualClock) -> None:
    ledger = Ledger(tmp_path / "jobs.sqlite3", clock=clock)
    for n in range(25):
        run_job(ledger, clock, 5.0 + n * 0.1)  # offline, on the simulator's clock
    sim = Simulator(SimulatorConfig(time_scale=1.0, seed=3))
    backends = Backends(CATALOG, service_configs(CATALOG, {}), simulator=sim)
    runner = JobRunner(backends=backends, ledger=ledger, outputs_dir=tmp_path / "outputs")
    try:
        spec = JobSpec(model=NBP, prompt="a kite", settings=ImageSettings(resolution="1K"))
        [job_id] = await runner.start(spec)
        progress = runner.progress(job_id)
        assert progress is not None
        lo, hi = progress.expected_seconds  # learned: the documented window is 20-30 s
        assert 4.5 < lo < 5.5 and 7.0 < hi < 7.6
        gempix2 = JobSpec(model="google/gempix2", prompt="a fox")
        [other] = await runner.start(gempix2)
        assert runner.progress(other).expected_seconds == (8.0, 20.0)  # type: ignore[union-attr]
    finally:
        await runner.stop(runner.active_jobs(None))
        await runner.close()
        await backends.aclose()
        ledger.close()
