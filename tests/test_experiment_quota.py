"""Experiments on the owner's keys obey their limits: refused whole, before anything is sent,
when the quota cannot cover them; waiting for the line instead of losing cells.

The owner's keys point at a simulator (tests/keyed_service.py) that counts what it receives.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from keyed_service import OWNER_ENV, VISITOR_APIXO_KEY, keyed_backends, owner_submits

from providers.services import CATALOG
from simulator import Simulator, SimulatorConfig
from studio.config import load_config
from studio.experiment_prompts import read_prompts
from studio.experiment_quota import tasks_left
from studio.experiment_runner import ExperimentError, ExperimentRunner
from studio.experiment_store import CellStatus, ExperimentStore, RunState
from studio.experiments import Plan, plan
from studio.jobs import JobRunner
from studio.ledger import Ledger
from studio.lifecycle import JobState
from studio.reference_host import ReferenceHost
from studio.reference_store import ReferenceStore
from studio.visitors import Visitor

VISITOR = Visitor(browser="experiment-visitor-" + "x" * 32, address="203.0.113.9")
MODELS = ["google/gempix2", "google/gemini-2.5-flash-image", "nano-banana-pro"]


@dataclass
class Keyed:
    sim: Simulator
    ledger: Ledger
    runner: JobRunner
    experiments: ExperimentRunner
    data: Path


MakeKeyed = Callable[..., Awaitable[Keyed]]


@pytest.fixture
async def make_keyed(tmp_path: Path) -> AsyncIterator[MakeKeyed]:
    made: list[Keyed] = []

    async def make(env: Mapping[str, str]) -> Keyed:
        environ = {**OWNER_ENV, "SIMULATOR_TIME_SCALE": "0.005", **env}
        config = load_config({**environ, "DATA_DIR": str(tmp_path)})
        sim = Simulator(SimulatorConfig(time_scale=0.005, seed=1))
        ledger = Ledger(config.ledger_path)
        runner = JobRunner(
            backends=keyed_backends(config, sim),
            ledger=ledger,
            outputs_dir=config.outputs_dir,
            rules=config.spending,
        )
        experiments = ExperimentRunner(
            runner,
            ExperimentStore(tmp_path / "experiments"),
            ReferenceStore(tmp_path / "kept-references"),
            ReferenceHost(tmp_path / "references", None),
        )
        keyed = Keyed(sim, ledger, runner, experiments, tmp_path)
        made.append(keyed)
        return keyed

    yield make
    for keyed in made:
        await keyed.experiments.close()
        await keyed.runner.close()
        await keyed.runner.backends.aclose()
        await keyed.sim.aclose()
        keyed.ledger.close()


def three_by_three(variants: int = 1) -> Plan:
    rows, _ = read_prompts("a kite\na fox\nan owl")
    return plan(CATALOG, rows, MODELS, variants=variants)


async def finish(keyed: Keyed, experiment_id: str) -> None:
    async with asyncio.timeout(20):
        while True:
            run = await keyed.experiments.get(experiment_id, None)
            assert run is not None
            view = await keyed.experiments.view(run)
            if not view.is_active:
                return
            await asyncio.sleep(0.01)


async def test_an_experiment_beyond_the_quota_is_refused_before_anything_is_sent(
    make_keyed: MakeKeyed,
) -> None:
    keyed = await make_keyed({"VISITOR_QUOTA": "5/day"})
    with pytest.raises(ExperimentError) as refused:
        await keyed.experiments.start(three_by_three(), visitor=VISITOR)
    assert str(refused.value).startswith(
        "This experiment needs 9 tasks on the studio's key but 5 are left for you now: "
    )
    assert owner_submits(keyed.sim) == 0
    assert keyed.ledger.history(None, limit=10) == []
    assert not (keyed.data / "experiments").exists()  # not even planned to disk
    assert await asyncio.to_thread(tasks_left, keyed.runner.admission, VISITOR) == 5


async def test_cells_on_the_visitors_own_key_do_not_count(make_keyed: MakeKeyed) -> None:
    keyed = await make_keyed({"VISITOR_QUOTA": "6/day"})
    own = {"nano_banana_pro": VISITOR_APIXO_KEY}
    run = await keyed.experiments.start(three_by_three(), visitor_keys=own, visitor=VISITOR)
    await finish(keyed, run.id)
    assert owner_submits(keyed.sim) == 6
    assert keyed.sim.submission_count == 9
    assert await asyncio.to_thread(tasks_left, keyed.runner.admission, VISITOR) == 0


async def test_a_full_line_makes_cells_wait_their_turn_not_fail(make_keyed: MakeKeyed) -> None:
    # One running task per visitor and four in its line: four cells of two variants at a time
    # cannot all join it.
    keyed = await make_keyed({"MAX_RUNNING_PER_VISITOR": "1", "VISITOR_QUOTA": "20/day"})
    run = await keyed.experiments.start(three_by_three(variants=2), visitor=VISITOR)
    await finish(keyed, run.id)
    assert run.state is RunState.FINISHED
    assert [c.status for c in run.cells.values()] == [CellStatus.STARTED] * 9
    rows = keyed.ledger.history(None, limit=20)
    assert [r.state for r in rows] == [JobState.DONE] * 18
    assert owner_submits(keyed.sim) == 18


async def test_the_plan_says_what_the_quota_leaves_and_whether_it_can_run(
    make_keyed: MakeKeyed,
) -> None:
    from components.experiment_handlers import plan_words
    from components.handlers import Studio

    keyed = await make_keyed({"VISITOR_QUOTA": "10/day"})
    studio = Studio(runner=keyed.runner, reference_host=ReferenceHost(keyed.data / "refs", None))
    words, runnable = await plan_words(studio, three_by_three(), {}, VISITOR)
    assert runnable
    assert words.endswith("Left for you: 10 of 10 today on the studio's key.")
    words, runnable = await plan_words(studio, three_by_three(variants=2), {}, VISITOR)
    assert not runnable
    assert "**This experiment needs 18 tasks on the studio's key but 10 are left" in words
    # With the visitor's own keys nothing is counted, so nothing is said about the quota.
    own = {"gempix2": "dk-VISITOR-0123456789abcdef", "nano_banana_pro": VISITOR_APIXO_KEY}
    words, runnable = await plan_words(studio, three_by_three(variants=2), own, VISITOR)
    assert runnable and "Left for you" not in words
    assert owner_submits(keyed.sim) == 0
