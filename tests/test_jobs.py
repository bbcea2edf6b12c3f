"""JobRunner against the in-process simulator: the life of a job, its endings, Stop and resume.

No key is configured, so every service runs on the simulator (time_scale 0.005: a 20-30 s task
takes 0.1-0.15 s). Each test gets its own simulator, ledger and output folder.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from components.handlers import gallery_items
from providers.capabilities import SETTING_NAMES, ImageSettings
from providers.errors import InvalidRequestError
from providers.services import CATALOG
from providers.settings import service_configs
from simulator import Simulator, SimulatorConfig
from studio.backends import Backends
from studio.jobs import JobRunner, JobSpec
from studio.ledger import Ledger
from studio.lifecycle import JobState
from studio.progress import Progress

GEMPIX2 = "google/gempix2"
NBP = "nano-banana-pro"
LIFECYCLE = [
    JobState.RECORDED,
    JobState.SUBMITTING,
    JobState.QUEUED,
    JobState.RUNNING,
    JobState.SAVING,
    JobState.DONE,
]


def nbp_spec(prompt: str = "a lighthouse at dusk", **changes: Any) -> JobSpec:
    settings: dict[str, Any] = {
        "aspect_ratio": "1:1",
        "resolution": "1K",
        "output_format": "png",
        "routing": "auto",
        **changes,
    }
    return spec_with(NBP, prompt, settings)


def gempix2_spec(prompt: str = "a red fox in snow", **changes: Any) -> JobSpec:
    return spec_with(GEMPIX2, prompt, changes)


def spec_with(model: str, prompt: str, values: dict[str, Any]) -> JobSpec:
    """A JobSpec from flat keyword values: settings go into its ImageSettings."""
    settings = {k: values.pop(k) for k in SETTING_NAMES if k in values}
    return JobSpec(model=model, prompt=prompt, settings=ImageSettings(**settings), **values)


@dataclass
class Env:
    sim: Simulator
    backends: Backends
    ledger: Ledger
    runner: JobRunner
    tmp: Path

    @property
    def outputs_dir(self) -> Path:
        return self.tmp / "outputs"

    @property
    def ledger_path(self) -> Path:
        return self.tmp / "ledger.sqlite3"

    def new_runner(self, ledger: Ledger | None = None, deadline: float = 30.0) -> JobRunner:
        return JobRunner(
            backends=self.backends,
            ledger=ledger or self.ledger,
            outputs_dir=self.outputs_dir,
            deadline=deadline,
        )


MakeEnv = Callable[..., Awaitable[Env]]


@pytest.fixture
async def make_env(tmp_path: Path) -> AsyncIterator[MakeEnv]:
    made: list[Env] = []

    async def make(
        *, time_scale: float = 0.005, seed: int = 1, deadline: float = 30.0, name: str = "env"
    ) -> Env:
        sim = Simulator(SimulatorConfig(time_scale=time_scale, seed=seed))
        backends = Backends(CATALOG, service_configs(CATALOG, {}), simulator=sim)
        tmp = tmp_path / name
        ledger = Ledger(tmp / "ledger.sqlite3")
        env = Env(sim, backends, ledger, None, tmp)  # type: ignore[arg-type]
        env.runner = env.new_runner(deadline=deadline)
        made.append(env)
        return env

    yield make
    for env in made:
        await env.runner.close()
        await env.backends.aclose()
        await env.sim.aclose()
        env.ledger.close()


@pytest.fixture
async def env(make_env: MakeEnv) -> Env:
    return await make_env()


async def follow_all(
    runner: JobRunner, job_ids: Sequence[str], limit: float = 10.0
) -> list[list[Progress]]:
    """Every update follow() yields, until it ends by itself (within `limit` seconds)."""
    updates = []
    async with asyncio.timeout(limit):
        async for progresses in runner.follow(job_ids):
            updates.append(list(progresses))
    return updates


async def wait_until(predicate: Callable[[], bool], limit: float = 5.0) -> None:
    """Poll `predicate` (state owned by the runner or the simulator) for up to `limit` s."""
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110 - the watched state has no event to await
            await asyncio.sleep(0.002)


def dedupe(states: Sequence[JobState]) -> list[JobState]:
    out: list[JobState] = []
    for state in states:
        if not out or out[-1] is not state:
            out.append(state)
    return out


def is_ordered_subsequence(states: Sequence[JobState], order: Sequence[JobState]) -> bool:
    positions = [order.index(s) for s in states]
    return positions == sorted(positions) and len(set(positions)) == len(positions)


# ---- a job's whole life ------------------------------------------------------------------------


async def test_job_runs_through_every_state_and_keeps_its_image(make_env: MakeEnv) -> None:
    # seed 2 draws a task length near the top of the window, so a status read surely lands
    # while the task is "processing" (the first brisk read comes 1 s x scale before the window).
    env = await make_env(seed=2)
    [job_id] = await env.runner.start(nbp_spec())
    updates = await follow_all(env.runner, [job_id])

    final = updates[-1][0]
    assert final.state is JobState.DONE
    events = env.ledger.events(job_id)
    assert dedupe([e.state for e in events]) == LIFECYCLE
    assert events[-1].provider_state == "success"

    [path] = final.files
    assert path.is_file()
    assert path.resolve().is_relative_to(env.outputs_dir.resolve())
    data = path.read_bytes()
    with Image.open(path) as img:
        img.load()
        assert img.format == "PNG"
        assert img.size == (1024, 1024)  # 1:1 at 1K

    row = env.ledger.job(job_id)
    assert row is not None
    assert row.state is JobState.DONE
    assert row.task_id == final.task_id
    assert row.task_id is not None and row.task_id.startswith("task_")
    [result] = row.results
    assert result.path == str(path)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.source_url.startswith("http://simulator.invalid/files/")
    assert len(env.sim.submissions) == 1


async def test_three_variants_are_submitted_in_parallel(env: Env) -> None:
    # Each submit answer is held back 0.4 s: one after another they would need 1.2 s.
    env.sim.faults.push("submit", "hang", hang_seconds=0.4, times=3)
    started = time.monotonic()
    job_ids = await env.runner.start(gempix2_spec(), variants=3)
    assert len(job_ids) == 3

    def all_submitted() -> bool:
        return all(env.runner.progress(i).task_id for i in job_ids)  # type: ignore[union-attr]

    await wait_until(all_submitted)
    submitted_after = time.monotonic() - started
    updates = await follow_all(env.runner, job_ids)

    assert len(env.sim.submissions) == 3
    created = [task.created for task in env.sim.tasks.values()]
    assert len(created) == 3
    assert max(created) - min(created) < 0.25  # all three POSTs were in flight together
    assert submitted_after < 0.8, f"submits took {submitted_after:.2f} s: not in parallel"
    final = updates[-1]
    assert [p.state for p in final] == [JobState.DONE] * 3
    assert [p.variant for p in final] == [1, 2, 3]
    assert len({p.task_id for p in final}) == 3
    assert len({p.files[0] for p in final}) == 3
    for job_id, progress in zip(job_ids, final, strict=True):
        row = env.ledger.job(job_id)
        assert row is not None and row.params["variant"] == progress.variant


async def test_follow_yields_each_change_and_ends_when_all_end(env: Env) -> None:
    [job_id] = await env.runner.start(gempix2_spec())
    started = time.monotonic()
    updates = await follow_all(env.runner, [job_id])
    took = time.monotonic() - started

    assert all(len(update) == 1 for update in updates)
    states = dedupe([update[0].state for update in updates])
    assert states[0] is JobState.RECORDED
    assert states[-1] is JobState.DONE
    assert is_ordered_subsequence(states, LIFECYCLE), states
    assert len(states) >= 4, states  # updates come as the job changes, not only at the end
    assert took < 3.0
    # follow() on jobs that all ended yields their final state once, then stops.
    again = await follow_all(env.runner, [job_id], limit=2.0)
    assert [[p.state for p in update] for update in again] == [[JobState.DONE]]
    # Unknown ids: nothing to follow.
    assert await follow_all(env.runner, ["no-such-job"], limit=1.0) == []


async def test_follow_yields_the_final_state_even_if_the_reader_was_busy(env: Env) -> None:
    [job_id] = await env.runner.start(gempix2_spec())
    updates = []
    async with asyncio.timeout(10):
        async for progresses in env.runner.follow([job_id]):
            updates.append(list(progresses))
            if len(updates) == 1:
                # The reader is slow with this update (e.g. Gradio still sending it to a
                # browser) while the job finishes.
                await wait_until(lambda: not env.runner.progress(job_id).is_active)  # type: ignore[union-attr]
    assert env.runner.progress(job_id).state is JobState.DONE  # type: ignore[union-attr]
    assert updates[-1][0].state is JobState.DONE
    assert len(updates[-1][0].files) == 1


async def test_gallery_fills_as_each_job_finishes(env: Env) -> None:
    [quick] = await env.runner.start(gempix2_spec("a quick sketch"))
    [slow] = await env.runner.start(gempix2_spec("a slow one [sim:never_finish]"))
    early_gallery = None
    stopping: asyncio.Task[None] | None = None
    updates = []
    async with asyncio.timeout(10):
        async for progresses in env.runner.follow([quick, slow]):
            updates.append(list(progresses))
            first, second = progresses
            if early_gallery is None and first.state is JobState.DONE and second.is_active:
                early_gallery = gallery_items(progresses)
                # Stopped from elsewhere (as the Stop button does), not inside this loop body.
                stopping = asyncio.create_task(env.runner.stop([slow]))
    assert stopping is not None
    await stopping

    assert early_gallery is not None, "the finished job never showed while the other ran"
    done = updates[-1][0]
    [path] = done.files
    assert early_gallery == [(str(path), "#1 GemPix2 (Nano Banana)")]
    assert path.is_file()
    assert updates[-1][1].state is JobState.STOPPED
    assert updates[-1][1].files == ()
    assert gallery_items(updates[-1]) == early_gallery


# ---- how each ending reads ---------------------------------------------------------------------


@dataclass(frozen=True)
class Ending:
    id: str
    model: str
    prompt: str
    fault: dict[str, Any] | None
    state: JobState
    sentence: str
    has_task: bool


ENDINGS = [
    Ending(
        "auth",
        GEMPIX2,
        "a cat",
        {"endpoint": "submit", "kind": "unauthorized"},
        JobState.FAILED,
        "check your API key",
        False,
    ),
    Ending(
        "credits-apixo",
        NBP,
        "a cat",
        {"endpoint": "submit", "kind": "insufficient_credits"},
        JobState.FAILED,
        "does not have enough credits for this image: top up and try again",
        False,
    ),
    Ending(
        "credits-defapi",
        GEMPIX2,
        "a cat",
        {"endpoint": "submit", "kind": "insufficient_credits"},
        JobState.FAILED,
        "does not have enough credits for this image: top up and try again",
        False,
    ),
    Ending(
        "rate-limit",
        GEMPIX2,
        "a cat",
        {"endpoint": "submit", "kind": "rate_limited", "retry_after": 2},
        JobState.FAILED,
        "rate-limiting requests: wait 2 s and try again",
        False,
    ),
    Ending(
        "content-policy",
        GEMPIX2,
        "a cat [sim:content_violation]",
        None,
        JobState.FAILED,
        "declined the prompt or a reference image under its content policy",
        True,
    ),
    Ending(
        "content-policy-apixo",
        NBP,
        "a cat [sim:content_violation]",
        None,
        JobState.FAILED,
        "declined the prompt or a reference image under its content policy",
        True,
    ),
    Ending(
        "invalid-image-url",
        NBP,
        "a cat [sim:invalid_image_url]",
        None,
        JobState.FAILED,
        "could not fetch a reference image",
        True,
    ),
    Ending(
        "service-error",
        GEMPIX2,
        "a cat",
        {"endpoint": "submit", "kind": "server_error"},
        JobState.OUTCOME_UNKNOWN,
        "may or may not have started a task. No task id came back. It was not resent",
        False,
    ),
    Ending(
        "generic-failure",
        GEMPIX2,
        "a cat [sim:fail]",
        None,
        JobState.FAILED,
        "The task failed",
        True,
    ),
]


@pytest.mark.parametrize("ending", ENDINGS, ids=[e.id for e in ENDINGS])
async def test_each_ending_has_a_plain_status_line(env: Env, ending: Ending) -> None:
    if ending.fault:
        fault = dict(ending.fault)
        env.sim.faults.push(fault.pop("endpoint"), fault.pop("kind"), **fault)
    spec = gempix2_spec(ending.prompt) if ending.model == GEMPIX2 else nbp_spec(ending.prompt)
    [job_id] = await env.runner.start(spec)
    final = (await follow_all(env.runner, [job_id]))[-1][0]

    assert final.state is ending.state
    line = final.status_line(time.time())
    assert ending.sentence in line
    assert len(env.sim.submissions) == 1  # nothing is ever sent twice
    row = env.ledger.job(job_id)
    assert row is not None
    assert row.state is ending.state
    assert row.error_message == final.message
    if ending.has_task:
        assert final.task_id is not None
        assert final.task_id in env.sim.tasks
        assert "(task " not in final.message  # the line names the task once, at its end
        assert line.endswith(f" · task {final.task_id}")
        assert row.task_id == final.task_id
    else:
        assert final.task_id is None
        assert "· task" not in line
        assert "(task " not in line
        assert row.task_id is None


async def test_watch_deadline_times_out_with_the_task_id(make_env: MakeEnv) -> None:
    # The runner never watches for less than 1 s, whatever its deadline.
    env = await make_env(deadline=0.2)
    [job_id] = await env.runner.start(gempix2_spec("a cat [sim:never_finish]"))
    started = time.monotonic()
    final = (await follow_all(env.runner, [job_id]))[-1][0]
    took = time.monotonic() - started

    assert final.state is JobState.TIMED_OUT
    assert final.task_id is not None
    line = final.status_line(time.time())
    assert "The task did not finish in time; it may still finish" in line
    assert line.endswith(f" · task {final.task_id}")
    assert 0.9 < took < 3.0
    row = env.ledger.job(job_id)
    assert row is not None and row.state is JobState.TIMED_OUT and row.task_id == final.task_id


# ---- Stop --------------------------------------------------------------------------------------


async def test_stop_while_watching_keeps_the_task_id(env: Env) -> None:
    [job_id] = await env.runner.start(gempix2_spec("a cat [sim:never_finish]"))

    def watching() -> bool:
        progress = env.runner.progress(job_id)
        return progress is not None and progress.state in (JobState.QUEUED, JobState.RUNNING)

    await wait_until(watching)
    await env.runner.stop([job_id])
    progress = env.runner.progress(job_id)
    assert progress is not None
    assert progress.state is JobState.STOPPED
    assert progress.task_id is not None
    assert "the task may still finish and be billed" in progress.message
    assert progress.status_line(time.time()).endswith(f" · task {progress.task_id}")

    row = env.ledger.job(job_id)
    assert row is not None
    assert row.state is JobState.STOPPED
    assert row.task_id == progress.task_id
    assert row.error_message is not None and "may still finish" in row.error_message

    reads = len(env.sim.status_queries)
    await asyncio.sleep(0.1)
    assert len(env.sim.status_queries) == reads  # the watching really ended
    assert env.runner.wake(job_id) is False


async def test_stop_while_submitting_is_an_unknown_outcome(env: Env) -> None:
    env.sim.faults.push("submit", "hang", hang_seconds=5.0)
    [job_id] = await env.runner.start(gempix2_spec())
    await wait_until(lambda: len(env.sim.submissions) == 1)
    assert env.runner.progress(job_id).state is JobState.SUBMITTING  # type: ignore[union-attr]

    started = time.monotonic()
    await env.runner.stop([job_id])
    assert time.monotonic() - started < 1.0  # did not wait for the hung answer

    progress = env.runner.progress(job_id)
    assert progress is not None
    assert progress.state is JobState.OUTCOME_UNKNOWN
    assert progress.task_id is None
    assert "may have started (and billed) a task" in progress.message
    assert "not sent again" in progress.message
    row = env.ledger.job(job_id)
    assert row is not None and row.state is JobState.OUTCOME_UNKNOWN and row.task_id is None
    # The service did create the task whose id never arrived, and nothing was resent.
    assert len(env.sim.tasks) == 1
    assert len(env.sim.submissions) == 1


async def test_stop_right_after_start_ends_the_job(env: Env) -> None:
    [job_id] = await env.runner.start(gempix2_spec())
    await env.runner.stop([job_id])  # no await in between: the job task has not run yet

    progress = env.runner.progress(job_id)
    assert progress is not None
    assert progress.state is JobState.FAILED
    assert "nothing was sent" in progress.message
    row = env.ledger.job(job_id)
    assert row is not None and row.state is JobState.FAILED
    assert list(env.sim.submissions) == []


# ---- requests refused before anything is recorded ----------------------------------------------


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (
            gempix2_spec(reference_urls=tuple(f"https://example.com/{i}.png" for i in range(5))),
            "GemPix2 (Nano Banana) takes at most 4 reference images (5 given).",
        ),
        (
            nbp_spec(reference_urls=tuple(f"https://example.com/{i}.png" for i in range(11))),
            "Nano Banana Pro takes at most 10 reference images (11 given).",
        ),
        (nbp_spec(aspect_ratio="7:3"), "Nano Banana Pro cannot take aspect ratio '7:3'"),
        (gempix2_spec(aspect_ratio="16:9"), "cannot take aspect ratio '16:9'"),
    ],
    ids=["gempix2-5-refs", "nbp-11-refs", "nbp-unknown-aspect", "gempix2-any-aspect"],
)
async def test_start_refuses_requests_the_model_cannot_take(
    env: Env, spec: JobSpec, words: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await env.runner.start(spec, variants=2)
    assert words in caught.value.user_message()
    assert env.ledger.history(None) == []
    assert list(env.sim.submissions) == []


# ---- resume after a restart, and wake-ups ------------------------------------------------------


async def _queued_job(runner: JobRunner) -> tuple[str, str]:
    [job_id] = await runner.start(nbp_spec("a lighthouse, resumed"))
    await wait_until(lambda: runner.progress(job_id).task_id is not None)  # type: ignore[union-attr]
    task_id = runner.progress(job_id).task_id  # type: ignore[union-attr]
    assert task_id is not None
    return job_id, task_id


async def _resume_and_finish(env: Env, ledger: Ledger, job_id: str, task_id: str) -> None:
    rows = ledger.recover_after_restart()
    assert [(r.job_id, r.task_id) for r in rows] == [(job_id, task_id)]
    runner = env.new_runner(ledger)
    try:
        assert [await runner.resume(row) for row in rows] == [job_id]
        final = (await follow_all(runner, [job_id]))[-1][0]
    finally:
        await runner.close()
    assert final.state is JobState.DONE
    assert final.task_id == task_id
    [path] = final.files
    assert path.is_file()
    row = ledger.job(job_id)
    assert row is not None and row.state is JobState.DONE
    assert [r.path for r in row.results] == [str(path)]
    assert len(env.sim.submissions) == 1  # watched again, never resubmitted
    assert task_id in env.sim.status_queries


async def test_resume_after_a_crash_finishes_without_resubmitting(env: Env) -> None:
    # The "crashed" process has its own connection to the ledger file; closing it first means
    # the first runner cannot record anything while it dies, as in a real crash.
    crashed_ledger = Ledger(env.ledger_path)
    crashed = env.new_runner(crashed_ledger)
    job_id, task_id = await _queued_job(crashed)
    crashed_ledger.close()
    await crashed.close()

    restarted = Ledger(env.ledger_path)
    try:
        await _resume_and_finish(env, restarted, job_id, task_id)
    finally:
        restarted.close()


async def test_resume_after_a_clean_close_finishes_without_resubmitting(env: Env) -> None:
    job_id, task_id = await _queued_job(env.runner)
    await env.runner.close()
    await _resume_and_finish(env, env.ledger, job_id, task_id)


async def test_wake_reads_the_status_at_once(make_env: MakeEnv) -> None:
    # At full time scale the first scheduled read of a Nano Banana Pro task is 2 s away.
    env = await make_env(time_scale=1.0)
    [job_id] = await env.runner.start(nbp_spec())
    await wait_until(lambda: env.runner.progress(job_id).task_id is not None)  # type: ignore[union-attr]
    task_id = env.runner.progress(job_id).task_id  # type: ignore[union-attr]
    await asyncio.sleep(0.05)
    assert list(env.sim.status_queries) == []

    assert env.runner.wake(job_id) is True
    await wait_until(lambda: len(env.sim.status_queries) == 1, limit=1.0)
    await asyncio.sleep(0.1)
    assert list(env.sim.status_queries) == [task_id]  # one read, then back to the schedule
    progress = env.runner.progress(job_id)
    assert progress is not None and progress.provider_state == "pending"

    assert env.runner.wake("no-such-job") is False
    await env.runner.stop([job_id])
    assert env.runner.wake(job_id) is False


async def test_ended_jobs_leave_the_runners_memory_and_stay_in_the_ledger(env: Env) -> None:
    runner = JobRunner(
        backends=env.backends, ledger=env.ledger, outputs_dir=env.outputs_dir, keep_ended=2
    )
    try:
        job_ids = []
        for n in range(5):
            [job_id] = await runner.start(gempix2_spec(f"a fox, take {n}"))
            await follow_all(runner, [job_id])
            job_ids.append(job_id)

        assert runner.held_jobs == 2  # only the just-ended window, nothing running
        assert runner.progress(job_ids[0]) is None
        assert runner.progress(job_ids[-1]).state is JobState.DONE  # type: ignore[union-attr]
        row = env.ledger.job(job_ids[0])
        assert row is not None and row.state == JobState.DONE
    finally:
        await runner.close()


async def test_a_job_that_ended_before_the_page_followed_still_shows_its_ending(
    env: Env,
) -> None:
    [job_id] = await env.runner.start(gempix2_spec())
    await wait_until(lambda: not env.runner.progress(job_id).is_active)  # type: ignore[union-attr]

    updates = await follow_all(env.runner, [job_id])

    assert [p.state for p in updates[-1]] == [JobState.DONE] and updates[-1][0].files
