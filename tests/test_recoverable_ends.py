"""Recoverable ends stay recoverable: a refused key, empty credits or an unknown task id while an
accepted task is watched leave the job stopped with its task id, so 'Check again' works."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from providers.capabilities import ImageSettings
from providers.errors import (
    AuthenticationError,
    BadRequestError,
    ImageServiceError,
    InsufficientCreditsError,
    TaskNotFoundError,
)
from providers.services import CATALOG
from providers.settings import service_configs
from simulator import Simulator, SimulatorConfig
from studio.backends import Backends
from studio.jobs import JobRunner, JobSpec
from studio.ledger import Ledger
from studio.lifecycle import RECHECKABLE_STATES, Ending, JobState, ending_for

S = JobState

# --- the rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (
            AuthenticationError("Invalid API key", provider="GemPix2", task_id="ta-1"),
            "The GemPix2 service refused the API key while this task was watched; the task may "
            "still finish and be billed, so it is kept: press 'Check again' in history with a "
            "working key.",
        ),
        (
            InsufficientCreditsError(
                "Insufficient credits", provider="Nano Banana Pro", task_id="t"
            ),
            "The Nano Banana Pro service said the account is out of credits while this task was "
            "watched; the task may still finish and be billed, so it is kept: press 'Check "
            "again' in history after topping up.",
        ),
        (
            TaskNotFoundError("task not found", provider="GemPix2", task_id="ta-1"),
            "The GemPix2 service did not know this task when asked; the task may still finish "
            "and be billed, so it is kept: press 'Check again' in history later.",
        ),
    ],
    ids=["auth", "credits", "not-found"],
)
def test_a_refused_status_read_of_an_accepted_task_is_checkable_again(
    exc: ImageServiceError, message: str
) -> None:
    ending = ending_for(exc)
    assert ending == Ending(S.STOPPED, message, type(exc).__name__)
    assert ending.state in RECHECKABLE_STATES


@pytest.mark.parametrize(
    "exc",
    [
        AuthenticationError("Invalid API key", provider="GemPix2"),
        InsufficientCreditsError("Insufficient credits", provider="GemPix2"),
        BadRequestError("prompt is required", provider="GemPix2", task_id="ta-1"),
    ],
    ids=["auth-on-submit", "credits-on-submit", "bad-request"],
)
def test_a_refused_submit_still_fails(exc: ImageServiceError) -> None:
    assert ending_for(exc).state is S.FAILED


def test_an_offline_task_lost_to_a_restart_still_fails() -> None:
    exc = TaskNotFoundError("task not found", task_id="ta-1")
    assert ending_for(exc, resumed_offline=True).state is S.FAILED


# --- the runner, against the simulator's fault ladder -----------------------------------------


@dataclass
class Env:
    sim: Simulator
    runner: JobRunner
    ledger: Ledger


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    sim = Simulator(SimulatorConfig(time_scale=0.005, seed=3))
    backends = Backends(CATALOG, service_configs(CATALOG, {}), simulator=sim)
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    runner = JobRunner(backends=backends, ledger=ledger, outputs_dir=tmp_path / "out")
    yield Env(sim, runner, ledger)
    await runner.close()
    await backends.aclose()
    await sim.aclose()
    ledger.close()


async def run_to_end(runner: JobRunner, job_ids: list[str]) -> None:
    async with asyncio.timeout(30):
        async for _ in runner.follow(job_ids):
            pass


@pytest.mark.parametrize("fault", ["unauthorized", "not_found", "insufficient_credits"])
@pytest.mark.parametrize("model", ["nano-banana-pro", "google/gempix2"])
async def test_check_again_after_a_refused_status_read_keeps_the_result(
    env: Env, fault: str, model: str
) -> None:
    settings = ImageSettings(aspect_ratio="1:1", resolution="1K", output_format="png")
    spec = JobSpec(
        model=model,
        prompt="a lighthouse",
        settings=settings if model == "nano-banana-pro" else ImageSettings(),
    )
    env.sim.faults.push("status", fault)
    job_ids = await env.runner.start(spec)
    await run_to_end(env.runner, job_ids)
    row = env.ledger.job(job_ids[0])
    assert row is not None and row.state is S.STOPPED and row.task_id
    assert "Check again" in (row.error_message or "")

    await env.runner.recheck(job_ids[0])
    await run_to_end(env.runner, job_ids)
    row = env.ledger.job(job_ids[0])
    assert row is not None and row.state is S.DONE
    assert len(row.results) == 1
    assert len(env.sim.tasks) == 1  # watched again, never resubmitted
