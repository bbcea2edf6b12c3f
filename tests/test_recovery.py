"""Results are never lost: the app is SIGKILLed at each step of a job, then restarted.

A standalone simulator (`python -m simulator`, one per module) plays both services
over real HTTP, so its tasks outlive the app process. For each kill point `crash_child.py`
starts one generation with the real clients (keys set, base URL = the simulator) and kills
itself; this process then opens the same data folder as a restarted app would: the ledger must
be intact, `recover_after_restart()` settles what cannot be resumed, a fresh JobRunner resumes
the rest. The simulator's `/_simulator/stats` counts submit POSTs across both processes, so a
resent POST (a second billed task) cannot go unnoticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from crash_child import API_KEY, PacedBackends, build_runner, close_runner, service_env
from PIL import Image

from app import build_app
from providers.errors import InvalidRequestError
from providers.services import CATALOG
from studio.config import load_config
from studio.downloads import DownloadError, FetchedImage
from studio.jobs import JobRunner, owner_folder
from studio.ledger import JobRow
from studio.lifecycle import RECHECKABLE_STATES, JobState
from studio.metadata import read_parameters

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).resolve().parent / "crash_child.py"
PACE = 0.02  # simulator time scale: a 20-30 s task takes 0.4-0.6 s
OWNER = "crash-test-browser-0123456789abcdef"  # a browser id (32+ characters)
NBP = "nano-banana-pro"
GEMPIX2 = "google/gempix2"


@dataclass(frozen=True)
class StandaloneSimulator:
    url: str

    async def stats(self) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.get(f"{self.url}/_simulator/stats")
        response.raise_for_status()
        return dict(response.json())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneSimulator]:
    port = _free_port()
    log_path = tmp_path_factory.mktemp("simulator") / "simulator.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "simulator",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--time-scale",
                str(PACE),
                "--api-key",
                API_KEY,
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            if process.poll() is not None:
                pytest.fail(f"the simulator exited early:\n{log_path.read_text()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/_simulator/stats", timeout=1).status_code == 200:
                    break
            time.sleep(0.05)
        else:
            pytest.fail(f"the simulator did not start:\n{log_path.read_text()}")
        yield StandaloneSimulator(url)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class Child:
    returncode: int | None
    output: str


async def run_child(
    sim: StandaloneSimulator,
    data_dir: Path,
    point: str,
    *,
    model: str,
    prompt: str,
    keyed: bool = True,
) -> Child:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD),
        "--data-dir",
        str(data_dir),
        "--base-url",
        sim.url,
        "--point",
        point,
        "--model",
        model,
        "--prompt",
        prompt,
        "--owner",
        OWNER,
        "--pace",
        str(PACE),
        *([] if keyed else ["--visitor-key"]),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    except TimeoutError:
        process.kill()
        out, _ = await process.communicate()
    return Child(process.returncode, out.decode("utf-8", "replace"))


def hidden_files(outputs: Path) -> list[Path]:
    return sorted(p for p in outputs.rglob(".*") if p.is_file())


def image_files(outputs: Path) -> list[Path]:
    return sorted(p for p in outputs.rglob("*") if p.is_file() and not p.name.startswith("."))


@dataclass
class Recovered:
    """What a restart found and did after the child died at `point`."""

    point: str
    prompt: str
    outputs: Path
    runner: JobRunner
    child: Child
    before: dict[str, Any]  # simulator stats before the child ran
    at_death: dict[str, Any]  # ... once it had died
    after: dict[str, Any]  # ... once the restarted runner had finished every resumed job
    row_at_death: JobRow
    resumed: list[str]
    final: JobRow

    @property
    def posts_by_child(self) -> int:
        return int(self.at_death["submissions"] - self.before["submissions"])

    @property
    def new_tasks(self) -> set[str]:
        return set(self.at_death["tasks"]) - set(self.before["tasks"])


@contextlib.asynccontextmanager
async def crash_and_restart(
    sim: StandaloneSimulator,
    tmp_path: Path,
    point: str,
    *,
    model: str = NBP,
    keyed: bool = True,
    prepare: Callable[[JobRunner], None] | None = None,
) -> AsyncIterator[Recovered]:
    """Kill a child at `point`, then restart: `keyed` False means no key in the environment
    (the child used a visitor's key); `prepare` may adjust the fresh runner before resuming."""
    data_dir = tmp_path / "data"
    prompt = f"a lighthouse in a storm, killed {point.replace('_', ' ')}"
    before = await sim.stats()
    child = await run_child(sim, data_dir, point, model=model, prompt=prompt, keyed=keyed)
    assert child.returncode == -signal.SIGKILL, child.output
    assert f"killed at {point}" in child.output, child.output
    at_death = await sim.stats()

    # The restart: the same data folder, the same service configuration, a fresh process state.
    runner = build_runner(data_dir, sim.url, PACE, keyed=keyed)
    if prepare is not None:
        prepare(runner)
    try:
        ledger = runner.ledger
        assert ledger.integrity_ok()
        assert ledger.pragma("integrity_check") == "ok"
        [row_at_death] = ledger.history(None)
        resumed = await runner.resume_unfinished()
        if resumed:
            async with asyncio.timeout(20):
                async for _ in runner.follow(resumed):
                    pass
        after = await sim.stats()
        final = ledger.job(row_at_death.job_id)
        assert final is not None
        yield Recovered(
            point=point,
            prompt=prompt,
            outputs=runner.outputs_dir,
            runner=runner,
            child=child,
            before=before,
            at_death=at_death,
            after=after,
            row_at_death=row_at_death,
            resumed=resumed,
            final=final,
        )
    finally:
        await close_runner(runner)


def assert_in_history(got: Recovered) -> None:
    ledger = got.runner.ledger
    job_id = got.final.job_id
    assert job_id in [row.job_id for row in ledger.history(None)]
    assert job_id in [row.job_id for row in ledger.history(OWNER)]
    assert job_id in [row.job_id for row in ledger.history(None, search="lighthouse")]
    assert ledger.history("someone-else-entirely-0123456789abcdef") == []


def assert_nothing_sent_again(got: Recovered) -> None:
    assert got.after["submissions"] == got.at_death["submissions"], "a POST was sent again"
    assert set(got.after["tasks"]) == set(got.at_death["tasks"])


def assert_kept_image(got: Recovered, model: str) -> Path:
    final = got.final
    assert final.state is JobState.DONE, final.error_message
    assert final.task_id in got.new_tasks
    assert got.after["tasks"][final.task_id] == "success"
    [result] = final.results
    assert result.is_kept and result.error is None
    assert result.source_url.startswith(f"{got.runner.backends.configs[_service(model)].base_url}")
    path = Path(str(result.path))
    assert path.is_file()
    assert path.is_relative_to(got.outputs / owner_folder(OWNER))
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == result.sha256
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        assert image.format == "PNG" and image.width > 0
    params = read_parameters(data)
    assert params is not None
    assert params["prompt"] == got.prompt
    assert params["model"] == model
    assert params["task_id"] == final.task_id
    assert image_files(got.outputs) == [path], "one job, one image file"
    return path


def embedded_prompt(path: str | None) -> Any:
    assert path is not None and Path(path).is_file()
    return (read_parameters(Path(path).read_bytes()) or {}).get("prompt")


def _service(model: str) -> str:
    return CATALOG.model(model).service


# -- nothing was sent: the job fails plainly and may be tried again -----------------------------


async def test_killed_before_submit_fails_with_nothing_sent(
    simulator: StandaloneSimulator, tmp_path: Path
) -> None:
    async with crash_and_restart(simulator, tmp_path, "before_submit") as got:
        assert got.posts_by_child == 0 and not got.new_tasks
        assert got.row_at_death.state is JobState.RECORDED
        assert got.resumed == []
        assert got.final.state is JobState.FAILED
        assert "nothing was sent" in (got.final.error_message or "")
        assert got.final.task_id is None
        assert_nothing_sent_again(got)
        assert_in_history(got)
        assert image_files(got.outputs) == [] and hidden_files(got.outputs) == []


# -- the POST may have gone out without its answer kept: never resent -------------------------


@pytest.mark.parametrize(
    ("point", "posts"),
    [("in_submit", 0), ("after_submit_no_task_id", 1)],
    ids=["killed-as-the-post-went-out", "killed-after-the-answer-before-the-id-was-kept"],
)
async def test_killed_while_submitting_is_outcome_unknown_and_never_resent(
    simulator: StandaloneSimulator, tmp_path: Path, point: str, posts: int
) -> None:
    async with crash_and_restart(simulator, tmp_path, point) as got:
        # With 1 POST the service really started (and billed) a task the ledger cannot know.
        assert got.posts_by_child == posts and len(got.new_tasks) == posts
        assert got.row_at_death.state is JobState.SUBMITTING
        assert got.row_at_death.task_id is None
        assert got.resumed == []
        assert got.final.state is JobState.OUTCOME_UNKNOWN
        assert got.final.task_id is None
        assert "not sent again" in (got.final.error_message or "")
        # Nothing the user can press resubmits it either.
        with pytest.raises(InvalidRequestError):
            await got.runner.recheck(got.final.job_id)
        assert got.runner.active_jobs(None) == []
        await asyncio.sleep(0.2)
        assert (await simulator.stats())["submissions"] == got.at_death["submissions"]
        assert_nothing_sent_again(got)
        assert_in_history(got)
        assert image_files(got.outputs) == [] and hidden_files(got.outputs) == []


# -- the task id was kept: the restart watches the same task and keeps its image --------------


@pytest.mark.parametrize(
    ("point", "model", "state_at_death"),
    [
        ("after_submit_with_task_id", NBP, JobState.QUEUED),
        ("watching", GEMPIX2, JobState.QUEUED),
        ("watching", NBP, JobState.QUEUED),
        ("downloading", NBP, JobState.SAVING),
        ("saved_not_recorded", NBP, JobState.SAVING),
        ("kept_not_done", NBP, JobState.SAVING),
    ],
    ids=[
        "after-submit-with-task-id",
        "watching-gempix2",
        "watching-nano-banana-pro",
        "downloading",
        "saved-not-recorded",
        "kept-not-done",
    ],
)
async def test_killed_after_the_task_id_was_kept_resumes_to_done(
    simulator: StandaloneSimulator,
    tmp_path: Path,
    point: str,
    model: str,
    state_at_death: JobState,
) -> None:
    async with crash_and_restart(simulator, tmp_path, point, model=model) as got:
        assert got.posts_by_child == 1 and len(got.new_tasks) == 1
        assert got.row_at_death.state is state_at_death
        assert got.row_at_death.task_id in got.new_tasks
        assert got.resumed == [got.row_at_death.job_id]
        assert_nothing_sent_again(got)
        assert_kept_image(got, model)
        assert_in_history(got)
        if point != "downloading":  # the kill mid-save is the known exception: see below
            assert hidden_files(got.outputs) == []


async def test_a_kill_mid_save_leaves_no_temp_file_after_the_restart(
    simulator: StandaloneSimulator, tmp_path: Path
) -> None:
    async with crash_and_restart(simulator, tmp_path, "downloading") as got:
        assert got.final.state is JobState.DONE
        assert hidden_files(got.outputs) == []


async def test_a_result_kept_before_the_kill_is_not_downloaded_again(
    simulator: StandaloneSimulator, tmp_path: Path
) -> None:
    fetched: list[str] = []

    def links_have_expired(runner: JobRunner) -> None:
        async def fetch(location: str) -> FetchedImage:
            fetched.append(location)
            raise DownloadError("the server answered HTTP 404", url=location)

        runner.fetcher.fetch = fetch  # type: ignore[method-assign]

    async with crash_and_restart(
        simulator, tmp_path, "kept_not_done", prepare=links_have_expired
    ) as got:
        assert got.row_at_death.state is JobState.SAVING
        [kept] = got.row_at_death.results
        assert kept.is_kept and image_files(got.outputs) == [Path(str(kept.path))]
        assert_nothing_sent_again(got)
        assert got.final.state is JobState.DONE, got.final.error_message
        assert fetched == [], "a result already kept was downloaded again"


async def test_a_job_started_with_a_visitors_key_is_not_failed_by_a_restart(
    simulator: StandaloneSimulator, tmp_path: Path
) -> None:
    async with crash_and_restart(simulator, tmp_path, "watching", keyed=False) as got:
        assert got.posts_by_child == 1
        [task_id] = got.new_tasks
        assert got.row_at_death.task_id == task_id
        assert task_id in got.after["tasks"]  # the service made (and will bill) it
        assert_nothing_sent_again(got)
        assert got.final.state is not JobState.FAILED, got.final.error_message
        assert got.final.state in RECHECKABLE_STATES | {JobState.DONE}


# -- the real start-up path: App.lifespan resumes what the ledger says is unfinished ---------


async def test_app_start_up_resumes_a_job_killed_while_watching(
    simulator: StandaloneSimulator, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    prompt = "a harbour at night, resumed by the app"
    before = await simulator.stats()
    child = await run_child(simulator, data_dir, "watching", model=NBP, prompt=prompt)
    assert child.returncode == -signal.SIGKILL, child.output
    at_death = await simulator.stats()
    assert at_death["submissions"] == before["submissions"] + 1

    config = load_config({**service_env(data_dir, simulator.url), "MULTI_USER": "1"})
    app = build_app(config, backends=PacedBackends(config.services, pace=PACE))
    try:
        async with app.lifespan(None):  # type: ignore[arg-type]
            [job_id] = app.runner.active_jobs(OWNER)
            async with asyncio.timeout(20):
                async for _ in app.runner.follow([job_id]):
                    pass
            row = app.ledger.job(job_id, owner=OWNER)
            assert row is not None and row.state is JobState.DONE, row
            [result] = row.results
            assert embedded_prompt(result.path) == prompt
        # Every service is keyed here, so the app built no simulator of its own.
        assert app.backends.simulator is None
    finally:
        if app.backends.simulator is not None:
            await app.backends.simulator.aclose()
    assert (await simulator.stats())["submissions"] == at_death["submissions"]
    assert image_files(data_dir / "outputs" / owner_folder(OWNER))
