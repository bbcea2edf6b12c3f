"""The limits on the owner's keys, in the runner: quotas, the daily budget, the running caps.

The owner's keys point at a simulator (tests/keyed_service.py), so every test can ask the
service what it received: a refused task must have sent nothing (`owner_submits`). No page and
no stream is involved: the limits hold in the runner, whoever started the task.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pytest
from keyed_service import OWNER_ENV, VISITOR_APIXO_KEY, keyed_backends, owner_submits, submits_with
from PIL import Image

from components import handlers
from providers.capabilities import ImageSettings
from simulator import Simulator, SimulatorConfig
from studio.admission import LimitReached
from studio.config import load_config
from studio.jobs import JobRunner, JobSpec
from studio.ledger import Ledger
from studio.lifecycle import JobState
from studio.reference_host import ReferenceHost
from studio.visitors import Visitor

NEVER = "[sim:never_finish] a lighthouse that never ends"
NBP = "nano-banana-pro"


def spec(prompt: str = "a lighthouse at dusk") -> JobSpec:
    settings = ImageSettings(aspect_ratio="1:1", resolution="1K", output_format="png")
    return JobSpec(model=NBP, prompt=prompt, settings=settings)


def visitor(n: int, address: str = "203.0.113.7") -> Visitor:
    return Visitor(browser=f"browser-{n:02d}-" + "x" * 32, address=address)


@dataclass
class Keyed:
    sim: Simulator
    ledger: Ledger
    runner: JobRunner
    path: Path


MakeKeyed = Callable[..., Awaitable[Keyed]]


@pytest.fixture
async def make_keyed(tmp_path: Path) -> AsyncIterator[MakeKeyed]:
    made: list[Keyed] = []
    sims: list[Simulator] = []

    async def make(env: Mapping[str, str] | None = None, *, name: str = "env") -> Keyed:
        environ = {**OWNER_ENV, "SIMULATOR_TIME_SCALE": "0.005", **(env or {})}
        config = load_config({**environ, "DATA_DIR": str(tmp_path / name)})
        sim = Simulator(SimulatorConfig(time_scale=0.005, seed=1))
        sims.append(sim)
        ledger = Ledger(config.ledger_path)
        runner = JobRunner(
            backends=keyed_backends(config, sim),
            ledger=ledger,
            outputs_dir=config.outputs_dir,
            rules=config.spending,
        )
        keyed = Keyed(sim, ledger, runner, config.ledger_path)
        made.append(keyed)
        return keyed

    yield make
    for keyed in made:
        await keyed.runner.close()
        await keyed.runner.backends.aclose()
        keyed.ledger.close()
    for sim in sims:
        await sim.aclose()


async def wait_until(predicate: Callable[[], bool], limit: float = 5.0) -> None:
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110 - the runner's state has no event to await
            await asyncio.sleep(0.005)


async def settle(keyed: Keyed, job_ids: list[str]) -> None:
    """Until every job has ended (each was sent, or said why not)."""
    await wait_until(lambda: not any(keyed.runner.live.running_of(job_ids)), limit=10.0)


# ---- the quota: per visitor, by browser id and by address -------------------------------------


async def test_the_quota_holds_across_new_browser_ids_from_one_address(
    make_keyed: MakeKeyed,
) -> None:
    keyed = await make_keyed({"VISITOR_QUOTA": "3/day"})
    started = []
    for n in range(3):  # a script minting a new browser id each time
        started += await keyed.runner.start(spec(), visitor=visitor(n))
    await settle(keyed, started)
    assert owner_submits(keyed.sim) == 3

    with pytest.raises(LimitReached) as refused:
        await keyed.runner.start(spec(), visitor=visitor(99))
    sentence = refused.value.user_message()
    assert "3 tasks today on the studio's key from your network address" in sentence
    assert "00:00 UTC (in " in sentence and "Your own key" in sentence
    await asyncio.sleep(0.05)
    assert owner_submits(keyed.sim) == 3  # the refusal sent nothing
    assert len(keyed.ledger.history(None)) == 3  # and recorded nothing

    # Another address is counted apart.
    other = await keyed.runner.start(spec(), visitor=visitor(100, address="198.51.100.4"))
    await settle(keyed, other)
    assert owner_submits(keyed.sim) == 4


async def test_one_browser_id_is_counted_across_addresses(make_keyed: MakeKeyed) -> None:
    keyed = await make_keyed({"VISITOR_QUOTA": "2/hour"})
    for address in ("203.0.113.1", "203.0.113.2"):
        await keyed.runner.start(spec(), visitor=visitor(1, address=address))
    with pytest.raises(LimitReached) as refused:
        await keyed.runner.start(spec(), visitor=visitor(1, address="203.0.113.3"))
    sentence = refused.value.user_message()
    assert "2 tasks this hour on the studio's key (VISITOR_QUOTA 2/hour)" in sentence
    assert ":00 UTC (in " in sentence


async def test_variants_each_count_and_a_generation_starts_whole_or_not_at_all(
    make_keyed: MakeKeyed,
) -> None:
    keyed = await make_keyed({"VISITOR_QUOTA": "3/day"})
    first = await keyed.runner.start(spec(), variants=2, visitor=visitor(1))
    with pytest.raises(LimitReached) as refused:
        await keyed.runner.start(spec(), variants=2, visitor=visitor(1))
    assert "You asked for 2 tasks but 1 of your 3 today" in refused.value.user_message()
    assert "ask for 1 or fewer variants" in refused.value.user_message()
    await settle(keyed, first)
    assert owner_submits(keyed.sim) == 2
    await keyed.runner.start(spec(), variants=1, visitor=visitor(1))


async def test_a_visitors_own_key_never_counts(make_keyed: MakeKeyed) -> None:
    keyed = await make_keyed({"VISITOR_QUOTA": "1/day", "DAILY_TASK_BUDGET": "1"})
    own = {"nano_banana_pro": VISITOR_APIXO_KEY}
    mine = await keyed.runner.start(spec(), variants=4, visitor=visitor(1), visitor_keys=own)
    mine += await keyed.runner.start(spec(), variants=4, visitor=visitor(1), visitor_keys=own)
    await settle(keyed, mine)
    assert submits_with(keyed.sim, VISITOR_APIXO_KEY) == 8
    assert owner_submits(keyed.sim) == 0
    # The visitor's quota and the day's budget are untouched: the owner's key still serves one.
    await settle(keyed, await keyed.runner.start(spec(), visitor=visitor(1)))
    assert owner_submits(keyed.sim) == 1


async def test_the_budget_stops_the_owners_key_and_not_visitor_keys(
    make_keyed: MakeKeyed,
) -> None:
    keyed = await make_keyed({"DAILY_TASK_BUDGET": "2"})
    await keyed.runner.start(spec(), visitor=visitor(1))
    await keyed.runner.start(spec(), visitor=visitor(2, address="198.51.100.9"))
    with pytest.raises(LimitReached) as refused:
        await keyed.runner.start(spec(), visitor=visitor(3, address="192.0.2.1"))
    sentence = refused.value.user_message()
    assert "started its 2 tasks for today, the daily budget for all visitors" in sentence
    assert "rests until 00:00 UTC (in " in sentence
    own = {"nano_banana_pro": VISITOR_APIXO_KEY}
    ids = await keyed.runner.start(spec(), visitor=visitor(3, "192.0.2.1"), visitor_keys=own)
    await settle(keyed, ids)
    assert submits_with(keyed.sim, VISITOR_APIXO_KEY) == 1
    assert owner_submits(keyed.sim) == 2


async def test_an_unidentified_caller_shares_one_count(make_keyed: MakeKeyed) -> None:
    keyed = await make_keyed({"VISITOR_QUOTA": "1/day"})
    await keyed.runner.start(spec())  # no visitor: a script calling the runner directly
    with pytest.raises(LimitReached):
        await keyed.runner.start(spec())


# ---- atomic, and kept in the ledger ------------------------------------------------------------


async def test_twenty_requests_at_once_for_the_last_three_units_start_exactly_three(
    make_keyed: MakeKeyed,
) -> None:
    keyed = await make_keyed({"DAILY_TASK_BUDGET": "5"})
    await keyed.runner.start(spec(), variants=2, visitor=visitor(0))
    outcomes = await asyncio.gather(
        *(keyed.runner.start(spec(), visitor=visitor(n, f"192.0.2.{n}")) for n in range(1, 21)),
        return_exceptions=True,
    )
    started = [o for o in outcomes if isinstance(o, list)]
    refused = [o for o in outcomes if isinstance(o, LimitReached)]
    assert (len(started), len(refused)) == (3, 17), outcomes
    await settle(keyed, [job_id for ids in started for job_id in ids])
    assert owner_submits(keyed.sim) == 5


async def test_the_counts_survive_a_restart(make_keyed: MakeKeyed) -> None:
    first = await make_keyed({"VISITOR_QUOTA": "2/day"})
    await settle(first, await first.runner.start(spec(), variants=2, visitor=visitor(1)))
    await first.runner.close()
    first.ledger.close()

    again = await make_keyed({"VISITOR_QUOTA": "2/day"})  # the same data folder: a restart
    assert again.path == first.path
    with pytest.raises(LimitReached):
        await again.runner.start(spec(), visitor=visitor(1))
    assert owner_submits(again.sim) == 0
    await again.runner.start(spec(), visitor=visitor(2, address="198.51.100.1"))


# ---- running at once: the line -----------------------------------------------------------------


async def test_max_running_holds_and_the_line_shows_each_place(make_keyed: MakeKeyed) -> None:
    keyed = await make_keyed({"MAX_RUNNING": "2"})
    jobs = [(await keyed.runner.start(spec(NEVER), visitor=visitor(n)))[0] for n in range(4)]
    progress = keyed.runner.progress
    await wait_until(lambda: owner_submits(keyed.sim) == 2)
    await wait_until(lambda: "2nd in line" in progress(jobs[3]).message)  # type: ignore[union-attr]
    await asyncio.sleep(0.1)
    assert owner_submits(keyed.sim) == 2
    waiting = [progress(job) for job in jobs[2:]]
    assert [p.state for p in waiting] == [JobState.RECORDED] * 2  # type: ignore[union-attr]
    assert waiting[0].message.startswith("Waiting for a free slot: 1st in line")  # type: ignore[union-attr]
    assert "the studio's key runs 2 at once" in waiting[0].message  # type: ignore[union-attr]

    await keyed.runner.stop([jobs[0]])  # a slot frees: the first in line goes, the next moves up
    await wait_until(lambda: owner_submits(keyed.sim) == 3)
    await wait_until(lambda: "1st in line" in progress(jobs[3]).message)  # type: ignore[union-attr]
    assert progress(jobs[2]).message == ""  # type: ignore[union-attr]
    await keyed.runner.stop(jobs)


async def test_max_running_per_visitor_lets_others_pass(make_keyed: MakeKeyed) -> None:
    keyed = await make_keyed({"MAX_RUNNING_PER_VISITOR": "1"})
    mine = await keyed.runner.start(spec(NEVER), variants=2, visitor=visitor(1))
    theirs = await keyed.runner.start(spec(NEVER), visitor=visitor(2, address="198.51.100.2"))
    await wait_until(lambda: owner_submits(keyed.sim) == 2)
    second = keyed.runner.progress(mine[1])
    assert second is not None and second.state is JobState.RECORDED
    assert "1st in line" in second.message
    await keyed.runner.stop(mine + theirs)


async def test_a_full_line_refuses_with_a_sentence_and_records_nothing(
    make_keyed: MakeKeyed,
) -> None:
    keyed = await make_keyed({"MAX_RUNNING": "1"})  # the line then holds 4
    await keyed.runner.start(spec(NEVER), visitor=visitor(0))
    await keyed.runner.start(spec(NEVER), variants=4, visitor=visitor(1))
    with pytest.raises(LimitReached) as refused:
        await keyed.runner.start(spec(NEVER), visitor=visitor(2))
    assert refused.value.user_message().startswith(
        "The studio's key is busy: 1 task is running and 4 are waiting, the most the line holds."
    )
    assert len(keyed.ledger.history(None)) == 5
    await wait_until(lambda: owner_submits(keyed.sim) == 1)
    await keyed.runner.stop(keyed.runner.active_jobs(None))


async def test_a_task_stopped_while_waiting_gives_its_unit_back(make_keyed: MakeKeyed) -> None:
    keyed = await make_keyed({"MAX_RUNNING": "1", "VISITOR_QUOTA": "2/day"})
    [running] = await keyed.runner.start(spec(NEVER), visitor=visitor(1))
    [waiting] = await keyed.runner.start(spec(NEVER), visitor=visitor(1))
    await keyed.runner.stop([waiting])
    row = keyed.ledger.job(waiting)
    assert row is not None and row.error_message == "stopped before sending; nothing was sent"
    [third] = await keyed.runner.start(spec(NEVER), visitor=visitor(1))  # the unit came back
    with pytest.raises(LimitReached):
        await keyed.runner.start(spec(NEVER), visitor=visitor(1))
    await wait_until(lambda: owner_submits(keyed.sim) == 1)
    await keyed.runner.stop([running, third])
    assert owner_submits(keyed.sim) == 1  # the ones that waited sent nothing


async def test_visitor_keys_only_never_uses_the_owners_key(make_keyed: MakeKeyed) -> None:
    keyed = await make_keyed({"VISITOR_KEYS_ONLY": "1"})
    [preview] = await keyed.runner.start(spec(), visitor=visitor(1))
    own = {"nano_banana_pro": VISITOR_APIXO_KEY}
    [mine] = await keyed.runner.start(spec(), visitor=visitor(1), visitor_keys=own)
    await settle(keyed, [preview, mine])
    rows = {job_id: keyed.ledger.job(job_id) for job_id in (preview, mine)}
    assert rows[preview].params["key_source"] == "offline"  # type: ignore[union-attr]
    assert rows[preview].state is JobState.DONE  # type: ignore[union-attr]
    assert rows[mine].params["key_source"] == "visitor"  # type: ignore[union-attr]
    assert owner_submits(keyed.sim) == 0
    assert submits_with(keyed.sim, VISITOR_APIXO_KEY) == 1


# ---- what the page shows ----------------------------------------------------------------------


async def test_what_is_left_reads_in_words(make_keyed: MakeKeyed) -> None:
    keyed = await make_keyed({"VISITOR_QUOTA": "3/day", "DAILY_TASK_BUDGET": "4"})
    words = keyed.runner.admission.left_words
    assert await words(visitor(1)) == "3 of 3 today on the studio's key"
    await keyed.runner.start(spec(), visitor=visitor(1))
    assert await words(visitor(1)) == "2 of 3 today on the studio's key"
    await keyed.runner.start(spec(), variants=2, visitor=visitor(2, "198.51.100.1"))
    assert await words(visitor(1)) == (
        "1 of 3 today on the studio's key (the day's budget for all visitors is nearly spent)"
    )
    await keyed.runner.start(spec(), visitor=visitor(3, "198.51.100.2"))
    assert (await words(visitor(1))).startswith("The studio's key rests until 00:00 UTC")


async def test_nothing_is_shown_without_limits(make_keyed: MakeKeyed) -> None:
    keyed = await make_keyed()
    assert await keyed.runner.admission.left_words(visitor(1)) == ""


async def test_a_spent_quota_is_refused_before_any_reference_is_prepared(
    make_keyed: MakeKeyed, tmp_path: Path
) -> None:
    keyed = await make_keyed({"VISITOR_QUOTA": "1/day"})
    hosted = tmp_path / "hosted"
    studio = handlers.Studio(runner=keyed.runner, reference_host=ReferenceHost(hosted, None))
    reference = tmp_path / "swatch.png"
    Image.new("RGB", (64, 64), (200, 80, 60)).save(reference)
    await handlers.start_generation(studio, NBP, "a kite", visitor=visitor(1))
    with pytest.raises(gr.Error, match="You have used your 1 task today"):
        await handlers.start_generation(studio, NBP, "a kite", [str(reference)], visitor=visitor(1))
    kept = keyed.runner.outputs_dir.parent / "kept-references"
    for folder in (hosted, kept):  # nothing was prepared, kept or published for the refusal
        assert not folder.exists() or not any(folder.rglob("*.*"))
