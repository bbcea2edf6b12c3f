"""Handlers and controls without a server: reshaping, the three reference-cap layers, generate
and stop on the simulator, and the event wiring of the whole page."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from PIL import Image

from components import handlers
from components.controls import reshape
from components.handlers import Studio
from components.page import build_page
from providers.capabilities import ImageSettings
from providers.services import CATALOG
from providers.settings import service_configs
from simulator import Simulator, SimulatorConfig
from studio.backends import Backends
from studio.jobs import JobRunner
from studio.ledger import Ledger
from studio.lifecycle import JobState
from studio.reference_host import ReferenceHost

GEMPIX2 = "google/gempix2"
NBP = "nano-banana-pro"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(SimulatorConfig(time_scale=0.005, seed=1))
    yield simulator
    await simulator.aclose()


@pytest.fixture
async def studio(tmp_path: Path, sim: Simulator) -> AsyncIterator[Studio]:
    backends = Backends(CATALOG, service_configs(CATALOG, {}), simulator=sim)
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    runner = JobRunner(
        backends=backends,
        ledger=ledger,
        outputs_dir=tmp_path / "outputs",
        deadline=30.0,
    )
    yield Studio(runner=runner, reference_host=ReferenceHost(tmp_path / "refs", None))
    await runner.close()
    await backends.aclose()
    ledger.close()


def make_pngs(folder: Path, count: int) -> list[str]:
    """`count` small distinct PNGs named a.png, b.png, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{chr(ord('a') + i)}.png"
        Image.new("RGB", (64, 48), (40 * i % 256, 200 - 20 * i, 90)).save(path)
        paths.append(str(path))
    return paths


async def run_generate(studio: Studio, *args: Any, **kwargs: Any) -> list[Any]:
    updates = []
    async with asyncio.timeout(15):
        async for update in handlers.generate(studio, *args, **kwargs):
            updates.append(update)
    return updates


# ---- controls ----------------------------------------------------------------------------------


def test_reshape_for_gempix2_hides_what_it_cannot_take_and_leaves_it_alone() -> None:
    info, refs, aspect, resolution, fmt, routing = reshape(
        CATALOG.model(GEMPIX2), ImageSettings("16:9", "4K", "jpeg", "value")
    )
    assert "up to 4 references" in info["value"]
    assert refs["label"] == "Reference images (up to 4)"
    for update in (aspect, resolution, fmt, routing):
        # Hidden only: emptying the choices made a recalled "1:1" an error on every later event.
        assert update == {"__type__": "update", "visible": False}


def test_reshape_back_to_nano_banana_pro_keeps_valid_choices() -> None:
    _, refs, aspect, resolution, fmt, routing = reshape(
        CATALOG.model(NBP), ImageSettings("16:9", "8K", "webp", "value")
    )
    assert refs["label"] == "Reference images (up to 10)"
    assert (aspect["value"], aspect["visible"]) == ("16:9", True)
    assert "21:9" in aspect["choices"]
    assert (resolution["value"], resolution["choices"]) == ("1K", ["1K", "2K", "4K"])
    assert (fmt["value"], fmt["choices"]) == ("png", ["png", "jpeg"])
    assert routing["value"] == "value"
    assert all(u["visible"] is True for u in (aspect, resolution, fmt, routing))
    # Coming back from GemPix2, whose controls were cleared: each takes the model's default.
    values = [
        u["value"] for u in reshape(CATALOG.model(NBP), ImageSettings(None, None, None, None))[2:]
    ]
    assert values == ["1:1", "1K", "png", "auto"]


# ---- the reference cap, layer 1: trimming with a warning ---------------------------------------


async def test_trim_references_keeps_four_for_gempix2_and_warns(tmp_path: Path) -> None:
    files = make_pngs(tmp_path, 6)
    # Outside a request gr.Warning goes through the warnings module.
    with pytest.warns(UserWarning) as caught:
        kept = await handlers.trim_references(CATALOG, GEMPIX2, files)
    assert kept == files[:4]
    assert [str(w.message) for w in caught] == [
        "GemPix2 (Nano Banana) takes at most 4 references; removed e.png, f.png."
    ]


async def test_trim_references_within_the_cap_is_silent(tmp_path: Path) -> None:
    files = make_pngs(tmp_path, 6)
    # Any warning would fail this test (warnings are errors).
    assert await handlers.trim_references(CATALOG, NBP, files) == files
    assert await handlers.trim_references(CATALOG, GEMPIX2, files[:4]) == files[:4]
    assert await handlers.trim_references(CATALOG, GEMPIX2, [{"path": files[0]}]) == [files[0]]


async def test_an_upload_that_is_not_an_image_is_refused_by_name_at_once(tmp_path: Path) -> None:
    good = make_pngs(tmp_path, 1)
    fake = tmp_path / "holiday.png"
    fake.write_bytes(b"%PDF-1.7 not a picture")
    with pytest.warns(UserWarning) as caught:
        kept = await handlers.trim_references(CATALOG, NBP, [*good, str(fake)])
    assert kept == good
    [warning] = caught
    assert str(warning.message).startswith("holiday.png is not an image")


def test_model_change_sets_references_aside_and_gives_them_back(tmp_path: Path) -> None:
    files = make_pngs(tmp_path, 6)
    updates = handlers.on_model_change(CATALOG, GEMPIX2, "16:9", "2K", "png", "auto", files, [])
    assert len(updates) == 12
    assert updates[2]["visible"] is False
    kept, preview, box, aside, note, size = updates[6:]
    assert kept == preview["value"] == files[:4]
    assert box["visible"] is False  # no settings left: the whole box hides
    assert aside == files[4:]
    assert note.startswith("2 references set aside: GemPix2 (Nano Banana) takes 4.")
    assert size == ""  # GemPix2 takes no size setting
    # Back on Nano Banana Pro, the set-aside references return, in their order.
    back = handlers.on_model_change(CATALOG, NBP, "16:9", "2K", "png", "auto", kept, aside)
    assert back[6] == files and back[9] == [] and back[10] == ""
    assert back[11] == "Output: 2752 × 1536 px"


# ---- layer 2: the validator --------------------------------------------------------------------


def _validate(
    model: str = GEMPIX2,
    prompt: str = "a fox",
    files: list[str] | None = None,
    urls: str = "",
    variants: float = 1,
) -> list[dict[str, Any]]:
    return handlers.validate_generate(
        CATALOG, model, prompt, files, urls, None, None, None, None, variants
    )


def _failures(results: list[dict[str, Any]]) -> dict[int, str]:
    assert all(r["__type__"] == "validate" for r in results)
    return {i: r["message"] for i, r in enumerate(results) if not r["is_valid"]}


def test_validator_passes_a_good_request(tmp_path: Path) -> None:
    results = _validate(files=make_pngs(tmp_path, 4))
    assert len(results) == 9  # one per form input (the page adds keys and the browser id)
    assert _failures(results) == {}


def test_validator_refuses_five_references_for_gempix2(tmp_path: Path) -> None:
    files = make_pngs(tmp_path, 5)
    assert _failures(_validate(files=files)) == {
        2: "This model takes at most 4 reference images (5 given)."
    }
    # URLs count too.
    mixed = _validate(files=files[:3], urls="https://example.com/1.png\nhttps://example.com/2.png")
    assert _failures(mixed) == {2: "This model takes at most 4 reference images (5 given)."}
    assert _failures(_validate(model=NBP, files=files)) == {}


def test_validator_refuses_a_prompt_over_the_limit_before_queueing() -> None:
    assert _failures(_validate(prompt="x" * 4001)) == {
        1: "The prompt is 4,001 characters long; the limit is 4,000 characters."
    }
    assert _failures(_validate(prompt="x" * 4000)) == {}


def test_validator_refuses_an_empty_prompt_and_bad_variants() -> None:
    assert _failures(_validate(prompt="   ")) == {1: "Write a prompt first."}
    assert _failures(_validate(variants=5)) == {8: "Variants must be 1 to 4."}
    assert _failures(_validate(model="dall-e")) == {0: "Unknown model 'dall-e'."}


# ---- layer 3: generate itself ------------------------------------------------------------------


async def test_generate_refuses_five_reference_files_for_gempix2(
    studio: Studio, sim: Simulator, tmp_path: Path
) -> None:
    files = make_pngs(tmp_path, 5)
    with pytest.raises(gr.Error) as caught:
        await run_generate(studio, GEMPIX2, "a fox", files)
    assert caught.value.message == (
        "GemPix2 (Nano Banana) takes at most 4 reference images (5 given)."
    )
    with pytest.raises(gr.Error, match="at most 4"):
        await run_generate(studio, GEMPIX2, "a fox", files[:4], "https://example.com/x.png")
    assert list(sim.submissions) == []
    assert studio.runner.ledger.history(None) == []


async def test_generate_names_a_renamed_pdf(studio: Studio, sim: Simulator, tmp_path: Path) -> None:
    fake = tmp_path / "holiday scan.png"
    fake.write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n")
    good = make_pngs(tmp_path / "ok", 1)
    with pytest.raises(gr.Error) as caught:
        await run_generate(studio, GEMPIX2, "a fox", [*good, str(fake)])
    assert caught.value.message.startswith("holiday scan.png is not an image")
    assert list(sim.submissions) == []


async def test_generate_end_to_end_streams_local_files(
    studio: Studio, sim: Simulator, tmp_path: Path
) -> None:
    refs = make_pngs(tmp_path / "refs-in", 1)
    updates = await run_generate(studio, GEMPIX2, "a fox [sim:data_uri]", refs, "")

    assert len(updates) >= 3
    gallery, status, job_ids = updates[-1]
    assert len(job_ids) == 1
    assert all(ids == job_ids for _, _, ids in updates)
    assert status.startswith("Offline preview: images are placeholders")
    assert "sent inline (data URIs)" in status
    assert "#1 GemPix2 (Nano Banana): done in" in status
    assert "1 image saved" in status
    [(path, caption)] = gallery
    assert caption == "#1 GemPix2 (Nano Banana)"
    assert not path.startswith(("http:", "https:", "data:"))
    assert await asyncio.to_thread(Path(path).is_file)
    with Image.open(path) as img:
        assert img.format == "PNG"
    # Earlier updates show no image yet: the gallery only holds saved files.
    assert updates[0][0] == []
    # The reference went to the service inline.
    [body] = sim.submissions
    assert body["images"][0].startswith("data:image/")


async def test_generate_two_nano_banana_pro_variants(studio: Studio, sim: Simulator) -> None:
    updates = await run_generate(
        studio, NBP, "a harbour", None, "", "16:9", "1K", "jpeg", "value", 2
    )
    gallery, status, job_ids = updates[-1]
    assert len(job_ids) == 2 and len(gallery) == 2
    assert [caption for _, caption in gallery] == ["#1 Nano Banana Pro", "#2 Nano Banana Pro"]
    for path, _ in gallery:
        with Image.open(path) as img:
            assert (img.format, img.size) == ("JPEG", (1376, 768))
    assert status.count(": done in") == 2
    assert [b["provider"] for b in sim.submissions] == ["value", "value"]
    assert [b["input"]["aspect_ratio"] for b in sim.submissions] == ["16:9", "16:9"]


async def test_stop_names_the_task(studio: Studio) -> None:
    assert await handlers.stop(studio, None) == "Nothing to stop."
    stopped = None
    updates = 0
    async with asyncio.timeout(10):
        async for _, status, ids in handlers.generate(studio, GEMPIX2, "a fox [sim:never_finish]"):
            updates += 1
            if stopped is None and "· task " in status:
                stopped = await handlers.stop(studio, ids)
                job_id = ids[0]
    assert stopped is not None
    progress = studio.runner.progress(job_id)
    assert progress is not None and progress.state is JobState.STOPPED
    assert f"task {progress.task_id}" in stopped
    assert "the task may still finish and be billed" in stopped
    assert stopped.startswith("Offline preview")


# ---- the page's wiring -------------------------------------------------------------------------


async def test_page_wires_generate_start_feed_and_the_public_endpoint(studio: Studio) -> None:
    page = build_page(studio, offline_services=["GemPix2"], browser_secret="s" * 32)
    demo = page.demo
    c = page.controls
    fns = {fn.api_name: fn for fn in demo.fns.values()}
    deps = {dep["api_name"]: dep for dep in demo.config["dependencies"]}

    # The page's Generate only starts jobs: checked first, never limited, pressable again.
    start = fns["start"]
    assert start.concurrency_limit is None
    assert deps["start"]["targets"] == [(c.generate._id, "click")]
    assert deps["start"]["trigger_mode"] == "multiple"
    assert start.outputs == [c.message]
    values: dict[int, Any] = {c.model._id: GEMPIX2, c.prompt._id: "  ", c.variants._id: 1}
    results = start.validator(*[values.get(block._id) for block in start.inputs])
    assert len(results) == len(start.inputs)
    flagged = {start.inputs[i]._id for i, r in enumerate(results) if not r["is_valid"]}
    assert flagged == {c.prompt._id}

    # The public /generate streams on its own hidden inputs, text boxes that take any value.
    api = page.api
    generate = fns["generate"]
    assert deps["generate"]["types"]["generator"] is True
    assert deps["generate"]["targets"] == [(api.trigger._id, "click")]
    assert generate.outputs[:2] == [api.gallery, api.status]
    assert [b._id for b in generate.inputs[:9]] == [f._id for f in api.fields]

    # One feed per page: a never-ending stream after the browser id is known.
    feed = fns["feed"]
    assert deps["feed"]["types"]["generator"] is True
    assert feed.concurrency_limit is None
    assert feed.outputs == page.feed.outputs
    assert deps["stop"]["targets"] == [(c.stop._id, "click")]
    assert fns["stop"].concurrency_limit is None
