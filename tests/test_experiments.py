"""Prompt experiments on the in-process simulator: plan, run, the cap, Stop, restart, exports.

No key is configured, so every service runs on the simulator (time_scale 0.005: a 20-30 s task
takes 0.1-0.15 s). Each test gets its own simulator, ledger, data folder and runners.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from providers.services import CATALOG
from providers.settings import service_configs
from simulator import Simulator, SimulatorConfig
from studio.backends import Backends
from studio.experiment_export import BACKGROUND, contact_sheet, export, manifest, sheet_layout
from studio.experiment_prompts import PlanError, read_prompts
from studio.experiment_runner import STOPPED_NOTE, ExperimentRunner
from studio.experiment_store import CellStatus, ExperimentRun, ExperimentStore, RunState
from studio.experiment_views import ExperimentView
from studio.experiments import CREDITS_PER_TASK, Plan, plan
from studio.jobs import JobRunner
from studio.ledger import Ledger, NewJob
from studio.lifecycle import JobState
from studio.reference_host import ReferenceHost
from studio.reference_store import ReferenceStore
from studio.spending import PriceTable

GEMPIX2, GEMINI, NBP = "google/gempix2", "google/gemini-2.5-flash-image", "nano-banana-pro"
THREE_MODELS = [GEMPIX2, GEMINI, NBP]
PROMPTS = "a red kite over the dunes\na lighthouse at dusk\na bowl of ramen, top view"


@dataclass
class Env:
    sim: Simulator
    backends: Backends
    ledger: Ledger
    runner: JobRunner
    experiments: ExperimentRunner
    data: Path

    def new_runners(self) -> None:
        """A restarted app: new runners on the same ledger, files and simulator."""
        self.runner = JobRunner(
            backends=self.backends, ledger=self.ledger, outputs_dir=self.data / "outputs"
        )
        self.experiments = ExperimentRunner(
            self.runner,
            ExperimentStore(self.data / "experiments"),
            ReferenceStore(self.data / "kept-references"),
            ReferenceHost(self.data / "references", None),
        )

    async def close_runners(self) -> None:
        await self.experiments.close()
        await self.runner.close()


MakeEnv = Callable[..., Awaitable[Env]]


@pytest.fixture
async def make_env(tmp_path: Path) -> AsyncIterator[MakeEnv]:
    made: list[Env] = []

    async def make(*, time_scale: float = 0.005, name: str = "env") -> Env:
        sim = Simulator(SimulatorConfig(time_scale=time_scale, seed=3))
        backends = Backends(CATALOG, service_configs(CATALOG, {}), simulator=sim)
        data = tmp_path / name
        ledger = Ledger(data / "ledger.sqlite3")
        env = Env(sim, backends, ledger, None, None, data)  # type: ignore[arg-type]
        env.new_runners()
        made.append(env)
        return env

    yield make
    for env in made:
        await env.close_runners()
        await env.backends.aclose()
        await env.sim.aclose()
        env.ledger.close()


def three_by_three(**changes: object) -> Plan:
    rows, _ = read_prompts(PROMPTS)
    return plan(CATALOG, rows, THREE_MODELS, **changes)  # type: ignore[arg-type]


async def run_to_end(env: Env, run: ExperimentRun, limit: float = 20.0) -> ExperimentView:
    last = None
    async with asyncio.timeout(limit):
        async for view in env.experiments.follow(run):
            last = view
    assert last is not None
    return last


async def wait_until(predicate: Callable[[], bool], limit: float = 10.0) -> None:
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110 - the simulator's counters have no event
            await asyncio.sleep(0.005)


def cell_states(view: ExperimentView) -> list[list[JobState]]:
    return [[t.state for t in c.tasks] for c in view.cells]


# ---- the whole grid ----------------------------------------------------------------------------


async def test_three_prompts_by_three_models_run_to_a_full_grid(make_env: MakeEnv) -> None:
    env = await make_env()
    planned = three_by_three()
    assert (len(planned.rows), len(planned.columns), len(planned.cells)) == (3, 3, 9)
    run = await env.experiments.start(planned)
    view = await run_to_end(env, run)

    assert view.state is RunState.FINISHED
    assert view.settled == 9
    assert cell_states(view) == [[JobState.DONE]] * 9
    for cell_view in view.cells:
        [path] = cell_view.files
        assert path.is_file()
        # Each cell is an ordinary job that knows its experiment and its place in the grid.
        [task] = cell_view.tasks
        row = env.ledger.job(task.job_id)
        assert row is not None and row.model == cell_view.cell.model
        assert row.prompt == planned.rows[cell_view.cell.row].prompt
        assert row.params["experiment"] == planned.experiment_id
        assert (row.params["experiment_row"], row.params["experiment_column"]) == (
            cell_view.cell.row,
            cell_view.cell.column,
        )
    assert [c.model for c in planned.columns] == THREE_MODELS
    assert view.column_labels == (
        "GemPix2 (Nano Banana)",
        "Gemini 2.5 Flash Image",
        "Nano Banana Pro",
    )
    assert len(env.ledger.history(None, limit=100)) == 9
    saved = json.loads(next((env.data / "experiments").rglob("*.json")).read_text())
    assert saved["state"] == "finished"
    assert all(c["status"] == "started" and len(c["job_ids"]) == 1 for c in saved["cells"].values())


async def test_the_estimate_is_what_is_then_sent(make_env: MakeEnv) -> None:
    env = await make_env()
    planned = three_by_three(aspect_ratios=["16:9"], resolutions=["1K", "2K"], variants=2)
    # GemPix2 and Gemini take neither list: one column each; Nano Banana Pro 1 × 2.
    assert len(planned.columns) == 4
    assert planned.estimate.tasks == 3 * 4 * 2
    assert planned.estimate.unpriced_tasks == 3 * 2 * 2
    assert planned.estimate.credits == 3 * 2 * 2 * CREDITS_PER_TASK[GEMPIX2]
    low, high = planned.estimate.seconds
    assert 0 < low <= high
    assert env.sim.submission_count == 0  # planning sends nothing

    view = await run_to_end(env, await env.experiments.start(planned), limit=30)
    assert env.sim.submission_count == planned.estimate.tasks
    billed = [row.credits or 0.0 for row in env.ledger.history(None, limit=100)]
    assert sum(billed) == pytest.approx(planned.estimate.credits)
    sizes = {}
    for cell_view in view.cells:
        if cell_view.cell.model == NBP:
            with Image.open(cell_view.files[0]) as image:
                settings = cell_view.cell.settings
                sizes[(settings.aspect_ratio, settings.resolution)] = image.size
    assert sizes == {("16:9", "1K"): (1376, 768), ("16:9", "2K"): (2752, 1536)}


async def test_no_more_than_the_cap_of_cells_run_at_once(make_env: MakeEnv) -> None:
    env = await make_env(time_scale=0.02)
    planned = three_by_three(cells_in_flight=2)
    run = await env.experiments.start(planned)
    most = 0
    async with asyncio.timeout(30):
        while run.state is RunState.RUNNING:
            most = max(most, len(env.runner.active_jobs(None)))
            await asyncio.sleep(0.005)
    assert most == 2
    assert env.sim.submission_count == 9


# ---- Stop and restart --------------------------------------------------------------------------


async def test_stop_ends_the_whole_experiment(make_env: MakeEnv) -> None:
    env = await make_env()
    rows, _ = read_prompts("a kite [sim:never_finish]\na fox [sim:never_finish]")
    planned = plan(CATALOG, rows, THREE_MODELS, cells_in_flight=2)
    run = await env.experiments.start(planned)

    def watched() -> bool:  # both first cells sent and answered: their tasks are known
        progresses = [env.runner.progress(job_id) for job_id in run.job_ids]
        return len(progresses) == 2 and all(p is not None and p.task_id for p in progresses)

    await wait_until(watched)
    stopped = await env.experiments.stop(run.id, owner=None)
    assert stopped is run and run.state is RunState.STOPPED

    await asyncio.sleep(0.2)
    assert env.sim.submission_count == 2  # nothing more was sent
    view = await env.experiments.view(run)
    assert [c.status for c in view.cells] == [CellStatus.STARTED] * 2 + [CellStatus.NOT_SENT] * 4
    assert cell_states(view)[:2] == [[JobState.STOPPED], [JobState.STOPPED]]
    assert all(c.message == STOPPED_NOTE for c in view.cells[2:])
    assert env.runner.active_jobs(None) == []
    assert not view.is_active
    saved = ExperimentStore(env.data / "experiments").load(run.id, None)
    assert saved is not None and saved.state is RunState.STOPPED
    # Its exports list every cell, the ones never sent with their sentence.
    lines = manifest(view, CATALOG)
    assert [(line["row"], line["column"]) for line in lines] == [
        (row, column) for row in (1, 2) for column in (1, 2, 3)
    ]
    assert [line["state"] for line in lines] == ["stopped"] * 2 + ["not sent"] * 4
    assert all(line["message"] == STOPPED_NOTE for line in lines[2:])


async def test_a_restart_resumes_only_the_remaining_cells(make_env: MakeEnv) -> None:
    env = await make_env(time_scale=0.02)
    planned = three_by_three(cells_in_flight=2)
    run = await env.experiments.start(planned)
    store = ExperimentStore(env.data / "experiments")

    def recorded_as_started() -> int:
        found = store.load(run.id, None)
        cells = found.cells.values() if found is not None else ()
        return sum(c.status is CellStatus.STARTED for c in cells)

    # One cell done, two in flight, and the plan's file says so (it is written just after the
    # jobs are recorded, so it can trail the service by a moment on a busy machine).
    await wait_until(lambda: env.sim.submission_count == 3 and recorded_as_started() == 3)
    await env.close_runners()  # the app stops; the tasks go on at the service
    sent = env.sim.submission_count
    saved = store.load(run.id, None)
    assert saved is not None and saved.state is RunState.RUNNING
    sent_cells = [
        key
        for key, cell in saved.cells.items()
        if cell.status in (CellStatus.STARTED, CellStatus.STARTING)
    ]
    assert len(sent_cells) == sent
    # A cell caught between "starting" and its job ids: its jobs are in the ledger.
    caught = saved.cells[sent_cells[-1]]
    caught.status, caught.job_ids = CellStatus.STARTING, []
    store.save(saved)
    # The visitor made many more generations of that cell's model meanwhile: its jobs are
    # still found (through the experiment's own index, not among the latest few hundred).
    model = next(c.model for c in saved.plan.cells if c.key == sent_cells[-1])
    for _ in range(600):
        later = NewJob(
            owner=saved.owner, service=CATALOG.models[model].service, model=model, prompt="later"
        )
        env.ledger.record_error(
            env.ledger.record_job(later).job_id, JobState.FAILED, kind="test", message="later"
        )

    env.new_runners()
    resumed_jobs = await env.runner.resume_unfinished()
    assert await env.experiments.resume_unfinished() == [run.id]
    resumed = await env.experiments.get(run.id, None)
    assert resumed is not None
    most = 0
    async with asyncio.timeout(30):  # the cells taken up count toward the cap too
        while resumed.state is RunState.RUNNING:
            most = max(most, len(env.runner.active_jobs(None)))
            await asyncio.sleep(0.005)
    assert most <= 2
    view = await run_to_end(env, resumed, limit=30)

    assert env.sim.submission_count == 9  # the remaining cells only, none sent twice
    assert len(env.ledger.history(None, experiment=run.id, limit=300)) == 9
    assert cell_states(view) == [[JobState.DONE]] * 9
    assert view.state is RunState.FINISHED
    assert set(resumed_jobs) <= set(resumed.job_ids)


async def test_a_restart_does_not_send_cells_that_needed_the_visitors_key(
    make_env: MakeEnv,
) -> None:
    env = await make_env(time_scale=0.02)
    rows, _ = read_prompts("a kite\na fox\na cat")
    planned = plan(CATALOG, rows, [NBP], cells_in_flight=1)
    run = await env.experiments.start(planned)
    await env.close_runners()
    # As if a visitor's own Nano Banana Pro key had been used (the app has none).
    store = ExperimentStore(env.data / "experiments")
    saved = store.load(run.id, None)
    assert saved is not None
    saved.keyed_services = ("nano_banana_pro",)
    store.save(saved)
    sent = env.sim.submission_count

    env.new_runners()
    await env.runner.resume_unfinished()
    await env.experiments.resume_unfinished()
    resumed = await env.experiments.get(run.id, None)
    assert resumed is not None
    view = await run_to_end(env, resumed)
    assert env.sim.submission_count == sent
    not_sent = [c for c in view.cells if c.status is CellStatus.NOT_SENT]
    assert not_sent and all("own Nano Banana Pro key" in c.message for c in not_sent)


# ---- exports -----------------------------------------------------------------------------------


async def test_the_exports_hold_every_cell(make_env: MakeEnv, tmp_path: Path) -> None:
    env = await make_env()
    rows, _ = read_prompts(PROMPTS + "\na broken one [sim:fail]")
    planned = plan(CATALOG, rows, THREE_MODELS)
    view = await run_to_end(env, await env.experiments.start(planned))
    files = export(view, CATALOG, tmp_path / "exports")

    with zipfile.ZipFile(files.zip) as archive:
        names = set(archive.namelist())
        manifest = list(csv.DictReader(io.StringIO(archive.read(files.manifest_csv.name).decode())))
    images = {n for n in names if n.startswith("images/")}
    assert len(images) == 9  # the three prompts that work, on three models
    assert {files.contact_sheet.name, files.manifest_csv.name, files.manifest_json.name} <= names
    assert len(manifest) == 12  # one line per task, the failed ones too
    for line in manifest:
        assert line["task_id"] and line["job_id"]
        assert line["prompt"] in planned.rows[int(line["row"]) - 1].prompt
        if line["state"] == "done":
            assert line["file"] in images and float(line["seconds"]) >= 0
        else:
            assert line["row"] == "4" and line["file"] == "" and line["message"]
    credits = [float(x["credits"]) for x in manifest if x["model"] == GEMPIX2 and x["credits"]]
    assert credits == [0.5, 0.5, 0.5]
    as_json = json.loads(files.manifest_json.read_text())
    assert [t["task_id"] for t in as_json["tasks"]] == [x["task_id"] for x in manifest]
    assert as_json["rows"] == [r.prompt for r in planned.rows]


async def test_the_contact_sheet_has_the_rows_columns_and_labels(make_env: MakeEnv) -> None:
    env = await make_env()
    rows, _ = read_prompts("a red square\na broken one [sim:fail]")
    planned = plan(CATALOG, rows, [GEMPIX2, NBP], aspect_ratios=["1:1", "16:9"])
    view = await run_to_end(env, await env.experiments.start(planned))
    sheet = Image.open(io.BytesIO(contact_sheet(view)))
    layout = sheet_layout(view)

    assert sheet.size == layout.size
    assert json.loads(sheet.text["rows"]) == ["a red square", "a broken one [sim:fail]"]  # type: ignore[attr-defined]
    assert json.loads(sheet.text["columns"]) == [  # type: ignore[attr-defined]
        "GemPix2 (Nano Banana)",
        "Nano Banana Pro · 1:1",
        "Nano Banana Pro · 16:9",
    ]
    pixels = sheet.convert("RGB")

    def inked(box: tuple[int, int, int, int]) -> int:
        region = pixels.crop(box)
        plain = Image.new("RGB", region.size, BACKGROUND)
        differs = ImageChops.difference(region, plain).convert("L").point(lambda v: 255 * bool(v))
        return differs.histogram()[255]

    for column in range(3):
        left, _, right, _ = layout.cell_box(0, column)
        assert inked((left + 2, 0, right, 60)) > 50  # the column's label
        assert inked(layout.image_box(0, column, 0)) > 0.3 * layout.thumb**2  # its image
        # The failed row: no image, its sentence in the box instead.
        assert 100 < inked(layout.image_box(1, column, 0)) < 0.3 * layout.thumb**2
        assert view.cell(1, column) is not None and view.cell(1, column).message  # type: ignore[union-attr]
    for row in range(2):
        _, top, _, bottom = layout.cell_box(row, 0)
        assert inked((0, top + 2, 270, bottom)) > 50  # the row's prompt


# ---- planning and prompts ----------------------------------------------------------------------


def test_csv_prompts_handle_quoting_blank_lines_and_settings() -> None:
    text = (
        "prompt,aspect ratio,resolution,notes\n"
        '"a kite, red and blue",16:9,2K,first\n'
        "\n"
        '"she said ""hello""\nand waved",,,\n'
        "a plain one,,,\n"
    )
    rows, notes = read_prompts("typed first", text)
    assert [r.prompt for r in rows] == [
        "typed first",
        "a kite, red and blue",
        'she said "hello"\nand waved',
        "a plain one",
    ]
    assert [r.where for r in rows] == ["prompt 1", "CSV line 2", "CSV line 4", "CSV line 6"]
    assert rows[1].settings.aspect_ratio == "16:9" and rows[1].settings.resolution == "2K"
    assert notes == ["CSV columns ignored: notes."]
    planned = plan(CATALOG, rows, [GEMPIX2, NBP])
    nbp = planned.cell(1, 1)
    assert nbp is not None and nbp.settings.aspect_ratio == "16:9"
    assert nbp.settings.resolution == "2K"
    gempix2 = planned.cell(1, 0)
    assert gempix2 is not None and gempix2.settings.given() == {}  # it takes no settings
    semicolons, _ = read_prompts(None, "prompt;resolution\na fox;4K\n")
    assert semicolons[0].settings.resolution == "4K"


def test_bad_csv_rows_are_refused_with_a_sentence_naming_the_line() -> None:
    with pytest.raises(PlanError) as no_prompt:
        read_prompts(None, "prompt,resolution\na fox,1K\n,2K\nan owl,1K,extra\n")
    assert no_prompt.value.sentences == (
        "CSV line 3 has no prompt.",
        "CSV line 4 has 3 fields but the header has 2; put a prompt that contains the "
        "separator in double quotes.",
    )
    with pytest.raises(PlanError, match="needs a 'prompt' column in its first row; it has: "):
        read_prompts(None, "text,resolution\na fox,1K\n")
    rows, _ = read_prompts(None, "prompt,resolution\na fox,1K\nan owl,8K\n")
    with pytest.raises(PlanError) as bad_value:
        plan(CATALOG, rows, [NBP])
    assert bad_value.value.sentences == (
        "CSV line 3: Nano Banana Pro cannot take resolution '8K'; choices: 1K, 2K, 4K.",
    )


@pytest.mark.parametrize(
    ("models", "changes", "sentence"),
    [
        ([], {}, "Pick at least one model."),
        (["dall-e"], {}, "Unknown model 'dall-e'"),
        ([NBP], {"aspect_ratios": ["7:3"]}, "Nano Banana Pro cannot take aspect ratio '7:3'"),
        ([GEMPIX2], {"variants": 5}, "Variants must be 1 to 4."),
        (THREE_MODELS, {"variants": 4, "resolutions": ["1K", "2K", "4K"]}, None),
        (
            [GEMPIX2, NBP],
            {"reference_hashes": ["url:https://example.com/a.png"] * 5},
            "GemPix2 (Nano Banana) takes at most 4 reference images (5 given).",
        ),
    ],
)
def test_plans_that_cannot_run_are_refused_before_anything_is_sent(
    models: Sequence[str], changes: dict[str, object], sentence: str | None
) -> None:
    rows, _ = read_prompts(PROMPTS)
    if sentence is None:  # 3 prompts × 5 columns × 4 variants = 60 tasks: fine
        assert plan(CATALOG, rows, models, **changes).estimate.tasks == 60  # type: ignore[arg-type]
        many, _ = read_prompts("\n".join(f"prompt {i}" for i in range(17)))
        with pytest.raises(PlanError, match="would be 340 tasks; the limit is 200"):
            plan(CATALOG, many, models, **changes)  # type: ignore[arg-type]
        return
    with pytest.raises(PlanError) as refused:
        plan(CATALOG, rows, models, **changes)  # type: ignore[arg-type]
    assert sentence in str(refused.value)


def test_the_plan_survives_its_file() -> None:
    planned = three_by_three(aspect_ratios=["16:9"], variants=2, notes=["CSV columns ignored: x."])
    assert Plan.from_dict(json.loads(json.dumps(planned.as_dict()))) == planned
    words = planned.summary(CATALOG)
    assert words.startswith("9 cells (3 prompts × 3 columns, 2 variants each): 18 tasks; ")
    assert "about 6 credits (an estimate from typical prices)" in words
    assert "plus 6 Nano Banana Pro task(s) that report no credits" in words


def test_the_owners_prices_cover_the_models_that_report_no_credits() -> None:
    prices = PriceTable({"nano-banana-pro@2K": 0.24, "nano-banana-pro": 0.12})
    planned = three_by_three(resolutions=["1K", "2K"], price_of=prices.estimate)
    assert planned.estimate.credits == pytest.approx(3 * (0.5 + 0.5 + 0.12 + 0.24))
    assert planned.estimate.unpriced_tasks == 0
    assert "about 4.08 credits (an estimate from typical prices); " in planned.summary(CATALOG)
    assert Plan.from_dict(json.loads(json.dumps(planned.as_dict()))) == planned
