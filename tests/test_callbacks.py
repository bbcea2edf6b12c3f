"""Service callbacks: checked by token, parsed, and used only to wake the watcher early."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import studio.run_times
from providers.capabilities import ImageSettings
from providers.services import CATALOG
from providers.services.gempix2 import parse_task as parse_gempix2
from providers.settings import service_configs
from providers.watch import PollSchedule
from simulator import Simulator, SimulatorConfig
from studio.backends import Backends
from studio.callbacks import CALLBACK_PATH, accepts_callback, callback_url
from studio.jobs import JobRunner, JobSpec
from studio.ledger import Ledger, NewJob
from studio.lifecycle import JobState

PUBLIC = "http://studio.test"


def test_callback_url_carries_the_job_and_its_token():
    assert callback_url(PUBLIC + "/", "job1", "tok") == "http://studio.test/callbacks/job1/tok"


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    yield ledger
    ledger.close()


def _row_with_task(ledger: Ledger, task_id: str = "ta-1"):
    row = ledger.record_job(NewJob(owner="", service="gempix2", model="google/gempix2", prompt="p"))
    ledger.mark_submitting(row.job_id)
    return ledger.set_task_id(row.job_id, task_id, submitted_at=1.0)


PAYLOAD = {
    "result": [{"image": "https://cdn.example/a.png"}],
    "status": "success",
    "task_id": "ta-1",
    "consumed": "0.500000",
    "status_reason": {"message": None},
}


def test_only_the_right_token_and_task_are_accepted(ledger: Ledger):
    row = _row_with_task(ledger)
    assert accepts_callback(row, row.callback_token, PAYLOAD, parse_gempix2) is True
    assert accepts_callback(row, row.callback_token + "x", PAYLOAD, parse_gempix2) is False
    assert accepts_callback(row, "", PAYLOAD, parse_gempix2) is False
    assert accepts_callback(None, row.callback_token, PAYLOAD, parse_gempix2) is False
    other_task = {**PAYLOAD, "task_id": "ta-2"}
    assert accepts_callback(row, row.callback_token, other_task, parse_gempix2) is False
    assert accepts_callback(row, row.callback_token, {"status": "??"}, parse_gempix2) is False
    assert accepts_callback(row, row.callback_token, ["not", "a", "dict"], parse_gempix2) is False


async def test_a_callback_wakes_the_watcher_long_before_its_next_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # A schedule that would not read the status for 1,000 s: only the callback can end the job.
    monkeypatch.setattr(
        studio.run_times,
        "schedule_for",
        lambda spec, request, scale, ended=(): PollSchedule(
            window=(1000.0, 2000.0), first_check=1000.0, quiet_interval=1000.0
        ),
    )
    runner: JobRunner | None = None

    async def deliver(request: Request) -> JSONResponse:
        assert runner is not None
        woken = await runner.receive_callback(
            request.path_params["job_id"], request.path_params["token"], await request.json()
        )
        return JSONResponse({"woken": woken})

    receiver = Starlette(routes=[Route(CALLBACK_PATH, deliver, methods=["POST"])])
    callbacks = httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver), base_url=PUBLIC)
    sim = Simulator(SimulatorConfig(time_scale=0.005, seed=3), callback_client=callbacks)
    backends = Backends(CATALOG, service_configs(CATALOG, {}), simulator=sim)
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    runner = JobRunner(
        backends=backends,
        ledger=ledger,
        outputs_dir=tmp_path / "outputs",
        public_url=PUBLIC,
    )
    try:
        spec = JobSpec(
            model="nano-banana-pro", prompt="a kite", settings=ImageSettings(resolution="1K")
        )
        [job_id] = await runner.start(spec)
        async with asyncio.timeout(10):
            async for progresses in runner.follow([job_id]):
                final = progresses[0]
        assert final.state is JobState.DONE
        assert len(sim.status_queries) == 1  # the one read the callback asked for
        [body] = sim.submissions
        row = ledger.job(job_id)
        assert row is not None
        assert body["request_type"] == "callback"
        assert body["callback_url"] == callback_url(PUBLIC, job_id, row.callback_token)
    finally:
        await runner.close()
        await backends.aclose()
        await sim.aclose()
        await callbacks.aclose()
        ledger.close()


async def test_a_forged_callback_wakes_nothing(tmp_path: Path):
    sim = Simulator(SimulatorConfig(time_scale=0.005, seed=3))
    backends = Backends(CATALOG, service_configs(CATALOG, {}), simulator=sim)
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    runner = JobRunner(
        backends=backends,
        ledger=ledger,
        outputs_dir=tmp_path / "outputs",
    )
    try:
        [job_id] = await runner.start(
            JobSpec(model="google/gempix2", prompt="a kite [sim:never_finish]")
        )
        assert await runner.receive_callback(job_id, "guessed-token", PAYLOAD) is False
        assert await runner.receive_callback("no-such-job", "x", PAYLOAD) is False
    finally:
        await runner.close()
        await backends.aclose()
        await sim.aclose()
        ledger.close()


async def test_a_callback_reveals_the_task_of_a_job_stopped_while_sending(tmp_path: Path):
    # The submit's answer never arrives (the user presses Stop while it hangs), but the service
    # did start the task: its callback carries the job's token and the task id, and the job is
    # watched again and keeps its image instead of staying "outcome unknown" for good.
    runner: JobRunner | None = None
    answers: list[bool] = []

    async def deliver(request: Request) -> JSONResponse:
        assert runner is not None
        woken = await runner.receive_callback(
            request.path_params["job_id"], request.path_params["token"], await request.json()
        )
        answers.append(woken)
        return JSONResponse({"woken": woken})

    receiver = Starlette(routes=[Route(CALLBACK_PATH, deliver, methods=["POST"])])
    callbacks = httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver), base_url=PUBLIC)
    sim = Simulator(SimulatorConfig(time_scale=0.005, seed=3), callback_client=callbacks)
    sim.faults.push("submit", "hang", hang_seconds=30.0)
    backends = Backends(CATALOG, service_configs(CATALOG, {}), simulator=sim)
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    runner = JobRunner(
        backends=backends, ledger=ledger, outputs_dir=tmp_path / "outputs", public_url=PUBLIC
    )
    try:
        spec = JobSpec(
            model="nano-banana-pro", prompt="a kite", settings=ImageSettings(resolution="1K")
        )
        [job_id] = await runner.start(spec)
        async with asyncio.timeout(5):
            while not sim.tasks:  # noqa: ASYNC110 - the simulator's task store has no event
                await asyncio.sleep(0.002)
        [task_id] = sim.tasks
        await runner.stop([job_id])
        stopped = ledger.job(job_id)
        assert stopped is not None
        assert (stopped.state, stopped.task_id) == (JobState.OUTCOME_UNKNOWN, None)

        async with asyncio.timeout(10):
            while (row := ledger.job(job_id)) is None or row.state is not JobState.DONE:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert row.task_id == task_id
        [result] = row.results
        assert result.is_kept and await asyncio.to_thread(Path(str(result.path)).is_file)
        assert answers[0] is True
        assert len(sim.submissions) == 1  # watched, never sent again
        details = [event.detail for event in ledger.events(job_id)]
        assert f"task {task_id}, revealed by a callback" in details
    finally:
        await runner.close()
        await backends.aclose()
        await sim.aclose()
        await callbacks.aclose()
        ledger.close()


async def test_a_forged_callback_reveals_no_task(tmp_path: Path):
    sim = Simulator(SimulatorConfig(time_scale=0.005, seed=3))
    backends = Backends(CATALOG, service_configs(CATALOG, {}), simulator=sim)
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    runner = JobRunner(backends=backends, ledger=ledger, outputs_dir=tmp_path / "outputs")
    try:
        row = ledger.record_job(
            NewJob(owner="", service="gempix2", model="google/gempix2", prompt="p")
        )
        ledger.mark_submitting(row.job_id)
        ledger.record_error(row.job_id, JobState.OUTCOME_UNKNOWN, kind="x", message="y")
        assert await runner.receive_callback(row.job_id, "guessed-token", PAYLOAD) is False
        token = row.callback_token
        assert await runner.receive_callback(row.job_id, token, {"status": "??"}) is False
        assert await runner.receive_callback(row.job_id, token, ["not a dict"]) is False
        after = ledger.job(row.job_id)
        assert after is not None
        assert (after.state, after.task_id) == (JobState.OUTCOME_UNKNOWN, None)
        assert runner.active_jobs(None) == []
    finally:
        await runner.close()
        await backends.aclose()
        await sim.aclose()
        ledger.close()
