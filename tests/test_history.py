"""History and results: hostile result links, settings carried inside images, per-browser
history, re-attaching after a reload, and searching.

Generations run on the in-process simulator (no key configured) through the same handlers the
page calls; the hostile-link tests put a scripted apixo service behind httpx.MockTransport and
use the real client with a key, so the job takes the path a real result takes.
"""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import httpx
import pytest
from crash_child import PacedBackends
from PIL import Image

from components import feed_actions, handlers
from components import history_handlers as history
from components.handlers import Studio
from providers.capabilities import ImageSettings
from providers.retry import RetryPolicy
from providers.services import CATALOG
from providers.settings import ServiceConfig, service_configs
from simulator import Simulator, SimulatorConfig
from studio.backends import Backends
from studio.downloads import ResultFetcher
from studio.jobs import JobRunner, JobSpec, owner_folder
from studio.ledger import Ledger
from studio.lifecycle import JobState
from studio.metadata import read_parameters
from studio.reference_host import ReferenceHost

NBP = "nano-banana-pro"
GEMPIX2 = "google/gempix2"
APIXO = "https://api.apixo.ai"
TASK_ID = "task_hostile0123456789abcdef"


def browser_id() -> str:
    return secrets.token_urlsafe(32)  # 43 characters, like the page's id


# -- a studio on the in-process simulator ------------------------------------------------------


@dataclass
class Env:
    studio: Studio
    backends: Backends
    tmp: Path

    @property
    def runner(self) -> JobRunner:
        return self.studio.runner

    @property
    def outputs(self) -> Path:
        return self.tmp / "outputs"


MakeEnv = Callable[..., Awaitable[Env]]


@pytest.fixture
async def make_env(tmp_path: Path) -> AsyncIterator[MakeEnv]:
    made: list[tuple[Env, Simulator]] = []

    async def make(*, multi_user: bool, time_scale: float = 0.005, name: str = "env") -> Env:
        sim = Simulator(SimulatorConfig(time_scale=time_scale, seed=5))
        backends = Backends(CATALOG, service_configs(CATALOG, {}), simulator=sim)
        tmp = tmp_path / name
        runner = JobRunner(
            backends=backends,
            ledger=Ledger(tmp / "ledger.sqlite3"),
            outputs_dir=tmp / "outputs",
            deadline=30.0,
        )
        studio = Studio(runner, ReferenceHost(tmp / "refs", None), multi_user=multi_user)
        env = Env(studio, backends, tmp)
        made.append((env, sim))
        return env

    yield make
    for env, sim in made:
        await env.runner.close()
        await env.backends.aclose()
        await sim.aclose()
        env.runner.ledger.close()


async def generate(
    env: Env,
    client_id: str | None,
    model: str,
    prompt: str,
    *,
    aspect_ratio: str | None = None,
    resolution: str | None = None,
    output_format: str | None = None,
    routing: str | None = None,
) -> tuple[handlers.GalleryItems, str, list[str]]:
    """What the page's Generate does for `client_id`, followed to the end."""
    last = None
    async with asyncio.timeout(20):
        async for update in handlers.generate(
            env.studio,
            model,
            prompt,
            None,
            None,
            aspect_ratio,
            resolution,
            output_format,
            routing,
            1,
            owner=history.owner_for_new_job(env.studio, client_id),
        ):
            last = update
    assert last is not None
    return last


def only_file(gallery: handlers.GalleryItems) -> Path:
    [(path, _caption)] = gallery
    assert Path(path).is_file()
    return Path(path)


# -- (1) hostile result URLs: the job ends download_failed and says why -----------------------

PUBLIC_ADDRESSES = {"public.example": ["93.184.216.34"], "internal.example": ["10.1.2.3"]}
FORBIDDEN_HOSTS = {"127.0.0.1", "10.0.0.5", "169.254.169.254", "internal.example"}
FETCH_DEADLINE = 0.3
HUGE = 200 * 1024 * 1024
PNG_START = b"\x89PNG\r\n\x1a\n"


async def fake_resolver(host: str, port: int) -> list[str]:
    try:
        return PUBLIC_ADDRESSES[host]
    except KeyError:
        raise OSError(f"no such host {host}") from None


class HostileWorld:
    """apixo (submit + status, its wire format) and the public internet, as one handler."""

    def __init__(self, result_url: str) -> None:
        self.result_url = result_url
        self.seen: list[httpx.URL] = []
        self.submits = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        self.seen.append(url)
        site = request.headers["Host"]  # downloads connect to an address and name the site here
        if site == "api.apixo.ai":
            return self.apixo(request)
        if site == "public.example":
            return self.public(url.path)
        return httpx.Response(200, content=_png(), headers={"Content-Type": "image/png"})

    def apixo(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == "Bearer apixo-test-key"
        if request.method == "POST" and request.url.path == "/api/v1/generateTask/nano-banana-pro":
            self.submits += 1
            return httpx.Response(
                200, json={"code": 200, "message": "success", "data": {"taskId": TASK_ID}}
            )
        assert request.url.path == "/api/v1/statusTask/nano-banana-pro"
        assert request.url.params["taskId"] == TASK_ID
        now_ms = int(time.time() * 1000)
        data = {
            "taskId": TASK_ID,
            "state": "success",
            "resultJson": json.dumps({"resultUrls": [self.result_url]}),
            "createTime": now_ms - 25_000,
            "completeTime": now_ms,
            "costTime": 25_000,
        }
        return httpx.Response(200, json={"code": 200, "message": "success", "data": data})

    def public(self, path: str) -> httpx.Response:
        if path == "/redirect":
            return httpx.Response(302, headers={"Location": "http://127.0.0.1/"})
        if path == "/redirect-private":
            return httpx.Response(302, headers={"Location": "https://10.0.0.5/secret.png"})
        if path == "/huge.png":
            headers = {"Content-Type": "image/png", "Content-Length": str(HUGE)}
            return httpx.Response(200, headers=headers, content=_endless(0.0))
        if path == "/page.png":
            html = b"<!doctype html><html><body>Sign in to continue</body></html>"
            return httpx.Response(200, headers={"Content-Type": "text/html"}, content=html)
        if path == "/drip.png":
            return httpx.Response(
                200, headers={"Content-Type": "image/png"}, content=_endless(0.05)
            )
        return httpx.Response(404)


async def _endless(pause: float) -> AsyncIterator[bytes]:
    yield PNG_START
    for _ in range(10_000):
        await asyncio.sleep(pause)
        yield b"\x00" * 1024


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 200, 0)).save(buffer, "PNG")
    return buffer.getvalue()


HOSTILE = [
    pytest.param("http://127.0.0.1/x.png", "unsafe link", id="loopback-over-http"),
    pytest.param("https://10.0.0.5/x.png", "private", id="private-address"),
    pytest.param("https://169.254.169.254/latest/meta-data", "private", id="cloud-metadata"),
    pytest.param("https://internal.example/x.png", "private", id="name-resolving-private"),
    pytest.param("https://public.example/redirect", "unsafe link", id="redirect-to-loopback"),
    pytest.param("https://public.example/redirect-private", "private", id="redirect-to-private"),
    pytest.param("https://public.example/huge.png", "too large", id="oversize"),
    pytest.param("https://public.example/page.png", "not an image", id="html-page"),
    pytest.param("https://public.example/drip.png", "timed out", id="slow-drip"),
]


@pytest.mark.parametrize(("result_url", "reason"), HOSTILE)
async def test_hostile_result_url_ends_download_failed_and_says_why(
    tmp_path: Path, result_url: str, reason: str
) -> None:
    world = HostileWorld(result_url)
    http = httpx.AsyncClient(transport=httpx.MockTransport(world))
    configs = {
        "gempix2": ServiceConfig("gempix2", "https://api.defapi.org"),
        "nano_banana_pro": ServiceConfig("nano_banana_pro", APIXO, api_key="apixo-test-key"),
    }
    backends = PacedBackends(configs, pace=0.01, http=http)

    async def no_sleep(_seconds: float) -> None:
        await asyncio.sleep(0)

    fetcher = ResultFetcher(
        http,
        trusted=backends.trusted_origins(),
        resolver=fake_resolver,
        deadline=FETCH_DEADLINE,
        retry=RetryPolicy(max_attempts=2),
        sleep=no_sleep,
    )
    runner = JobRunner(
        backends=backends,
        ledger=Ledger(tmp_path / "ledger.sqlite3"),
        fetcher=fetcher,
        outputs_dir=tmp_path / "outputs",
        deadline=20.0,
    )
    studio = Studio(runner, ReferenceHost(tmp_path / "refs", None), multi_user=False)
    try:
        spec = JobSpec(
            model=NBP,
            prompt="a hostile result",
            settings=ImageSettings(
                aspect_ratio="1:1", resolution="1K", output_format="png", routing="auto"
            ),
        )
        started = time.monotonic()
        [job_id] = await runner.start(spec)
        async with asyncio.timeout(15):
            async for [update] in runner.follow([job_id]):
                progress = update
        assert time.monotonic() - started < 5 * FETCH_DEADLINE + 3
        # The page's status line says it and why.
        assert progress.state is JobState.DOWNLOAD_FAILED
        assert "could not be downloaded" in progress.message
        assert reason in progress.message
        assert reason in progress.status_line(time.time())
        assert progress.files == ()
        # So does the ledger, which keeps the provider's link (and its expiry) for a retry.
        row = runner.ledger.job(job_id)
        assert row is not None and row.state is JobState.DOWNLOAD_FAILED
        assert row.task_id == TASK_ID
        assert reason in (row.error_message or "")
        [result] = row.results
        assert result.source_url == result_url
        assert not result.is_kept and reason in (result.error or "")
        assert result.expires_at is not None and result.expires_at > time.time() + 14 * 86400
        details = await history.describe(studio, None, job_id)
        assert "Image 1 not downloaded" in details and reason in details
        # Nothing was written, nothing was fetched from a private address, one POST only.
        assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("*"))
        assert not FORBIDDEN_HOSTS & {url.host for url in world.seen}
        assert world.submits == 1
    finally:
        await runner.close()
        await backends.aclose()
        await backends.simulator.aclose()
        runner.ledger.close()


# -- (2) the settings travel inside the image and come back from it ---------------------------


async def test_restore_from_image_gives_back_the_settings_and_prompt(make_env: MakeEnv) -> None:
    env = await make_env(multi_user=False)
    prompt = "a café in Montréal at dusk — «panorama»"
    settings = {
        "aspect_ratio": "21:9",
        "resolution": "2K",
        "output_format": "jpeg",
        "routing": "value",
    }
    gallery, status, [job_id] = await generate(env, None, NBP, prompt, **settings)
    assert "done" in status
    path = only_file(gallery)
    assert path.suffix == ".jpg"
    with Image.open(path) as image:
        assert (image.format, image.size) == ("JPEG", (3168, 1344))

    for file in (str(path), {"path": str(path)}):  # as the page sends it, and as an API caller
        values = history.restore_from_image(env.studio, file)
        assert len(values) == history.FORM_VALUES
        model, restored_prompt, aspect, resolution, fmt, routing, refs, links, *rest = values
        assert model == NBP
        assert restored_prompt == prompt
        assert (aspect, resolution, fmt, routing) == ("21:9", "2K", "jpeg", "value")
        assert (refs, links) == ([], "")
        assert rest == [1, None, []]  # variants, parent, set-aside

    params = read_parameters(path.read_bytes())
    assert params is not None
    row = env.runner.ledger.job(job_id)
    assert row is not None and params["task_id"] == row.task_id
    # Recall from history gives the same settings as the image does.
    recalled = await history.recall(env.studio, None, job_id)
    assert list(recalled) == list(values)


async def test_restore_from_a_foreign_image_is_refused(make_env: MakeEnv, tmp_path: Path) -> None:
    studio_stub = (await make_env(multi_user=False)).studio
    foreign = tmp_path / "holiday.png"
    Image.new("RGB", (16, 16), (10, 20, 30)).save(foreign)
    with pytest.raises(gr.Error, match="carries no Image Studio settings"):
        history.restore_from_image(studio_stub, str(foreign))
    assert all(update == gr.skip() for update in history.restore_from_image(studio_stub, None))


# -- (3) two browsers on one app never see each other's history -------------------------------


async def test_two_browsers_never_see_each_others_history(make_env: MakeEnv) -> None:
    env = await make_env(multi_user=True)
    studio = env.studio
    a, b = browser_id(), browser_id()
    gallery_a, _, [job_a] = await generate(env, a, NBP, "alice's red fox")
    gallery_b, _, [job_b] = await generate(env, b, NBP, "bob's blue whale")
    file_a, file_b = only_file(gallery_a), only_file(gallery_b)

    thumbs, table, row_ids, thumb_ids = await history.load_history(studio, a, "", "all", "all")
    assert row_ids == [job_a] and thumb_ids == [job_a]
    assert [row[1] for row in table] == ["alice's red fox"]
    assert [Path(path) for path, _ in thumbs] == [file_a]
    _, _, row_ids_b, _ = await history.load_history(studio, b, "", "all", "all")
    assert row_ids_b == [job_b]

    # B's job id, even when known, is refused to A everywhere.
    with pytest.raises(gr.Error, match="not in your history"):
        await history.describe(studio, a, job_b)
    with pytest.raises(gr.Error, match="not in your history"):
        await history.recall(studio, a, job_b)
    with pytest.raises(gr.Error, match="no longer in your feed"):
        await feed_actions.use_as_reference(studio, a, [job_b], 0, NBP, None)
    with pytest.raises(gr.Error, match="no longer in your feed"):
        await feed_actions.rerun(studio, a, [job_b], {}, a)
    with pytest.raises(gr.Error, match="no longer in your feed"):
        await feed_actions.compare(studio, a, [job_b], 0)
    with pytest.raises(gr.Error, match="not in your history"):
        await history.check_again(studio, a, job_b)
    with pytest.raises(gr.Error, match="No saved images"):
        await history.zip_shown(studio, a, [job_b])
    archive = (await history.zip_shown(studio, a, [job_a, job_b]))["value"]
    with zipfile.ZipFile(archive) as opened:
        assert opened.namelist() == [file_a.name]
    assert "alice's red fox" in await history.describe(studio, a, job_a)

    # No id, or one too short to be a browser id, sees nothing at all.
    for nobody in (None, "", "short-id", "x" * 31, "a b" * 20):
        _, table, row_ids, thumb_ids = await history.load_history(studio, nobody, "", "", "")
        assert (table, row_ids, thumb_ids) == ([], [], [])
        with pytest.raises(gr.Error, match="not in your history"):
            await history.describe(studio, nobody, job_a)

    # Each browser's files live in its own folder, named by a hash of its id.
    assert owner_folder(a) != owner_folder(b)
    assert file_a.is_relative_to(env.outputs / owner_folder(a))
    assert file_b.is_relative_to(env.outputs / owner_folder(b))
    assert a not in str(file_a) and b not in str(file_b)


async def test_api_caller_without_an_id_is_kept_but_listed_to_no_one(make_env: MakeEnv) -> None:
    env = await make_env(multi_user=True)
    a = browser_id()
    gallery, _, [job_id] = await generate(env, None, NBP, "an anonymous lantern")
    assert only_file(gallery).is_file()
    for viewer in (None, a):
        _, _, row_ids, _ = await history.load_history(env.studio, viewer, "", "all", "all")
        assert job_id not in row_ids
    row = env.runner.ledger.job(job_id)
    assert row is not None and row.state is JobState.DONE and row.owner


async def test_single_user_mode_shows_everything(make_env: MakeEnv) -> None:
    env = await make_env(multi_user=False)
    a, b = browser_id(), browser_id()
    gallery_a, _, [job_a] = await generate(env, a, NBP, "a lone tree")
    gallery_b, _, [job_b] = await generate(env, b, GEMPIX2, "a stone bridge")
    for viewer in (a, b, None, "short"):
        thumbs, _, row_ids, _ = await history.load_history(env.studio, viewer, None, None, None)
        assert row_ids == [job_b, job_a]  # newest first
        assert len(thumbs) == 2
        assert "a lone tree" in await history.describe(env.studio, viewer, job_a)
    for gallery in (gallery_a, gallery_b):
        assert only_file(gallery).is_relative_to(env.outputs / "local")


# -- (4) a reload mid-task re-attaches to the running job --------------------------------------


async def test_a_reload_mid_task_reattaches_and_ends_with_the_image(make_env: MakeEnv) -> None:
    env = await make_env(multi_user=True, time_scale=0.02)  # a task takes about 0.5 s
    studio = env.studio
    a, b = browser_id(), browser_id()
    page = handlers.generate(
        studio, NBP, "a paper boat on a pond", owner=history.owner_for_new_job(studio, a)
    )
    _gallery, _status, [job_id] = await anext(page)
    await page.aclose()  # the tab is reloaded: the old page stops listening

    assert studio.runner.active_jobs(history.owner_for(studio, a)) == [job_id]
    assert [u async for u in handlers.reattach(studio, history.owner_for(studio, b))] == []
    assert [u async for u in handlers.reattach(studio, history.owner_for(studio, None))] == []

    updates = []
    async with asyncio.timeout(20):
        async for update in handlers.reattach(studio, history.owner_for(studio, a)):
            updates.append(update)
    assert all(job_ids == [job_id] for _, _, job_ids in updates)
    first_gallery, first_status, _ = updates[0]
    assert first_gallery == [] and "done" not in first_status  # joined while still running
    final_gallery, final_status, _ = updates[-1]
    assert "done" in final_status and "1 image saved" in final_status
    path = only_file(final_gallery)
    assert path.is_relative_to(env.outputs / owner_folder(a))
    row = studio.runner.ledger.job(job_id, owner=a)
    assert row is not None and row.state is JobState.DONE
    assert [r.path for r in row.results] == [str(path)]
    # Nothing is left to re-attach to.
    assert [u async for u in handlers.reattach(studio, history.owner_for(studio, a))] == []


# -- (5) searching and filtering the history ---------------------------------------------------


async def test_history_search_and_filters(make_env: MakeEnv) -> None:
    env = await make_env(multi_user=True)
    studio = env.studio
    a, b = browser_id(), browser_id()
    _, _, [fox] = await generate(env, a, NBP, "a red fox in snow")
    _, _, [barn] = await generate(env, a, GEMPIX2, "a red barn at dawn")
    _, fail_status, [whale] = await generate(env, a, NBP, "[sim:fail] a blue whale")
    await generate(env, b, NBP, "a red fox at night")  # someone else's
    assert "done" not in fail_status

    async def shown(search: Any = "", model: Any = "all", state: Any = "all") -> list[str]:
        _, table, row_ids, _ = await history.load_history(studio, a, search, model, state)
        assert len(table) == len(row_ids)
        return row_ids

    assert await shown() == [whale, barn, fox]
    assert await shown("red") == [barn, fox]
    assert await shown("  RED  ") == [barn, fox]  # trimmed, case-insensitive
    assert await shown("fox") == [fox]  # b's red fox stays b's
    assert await shown("red dawn") == [barn]  # every word must occur
    assert await shown("ed fo") == [fox]  # substrings, short ones too
    assert await shown("giraffe") == []
    assert await shown(model=GEMPIX2) == [barn]
    assert await shown(model=NBP) == [whale, fox]
    assert await shown(state="failed") == [whale]
    assert await shown(state="done") == [barn, fox]
    assert await shown("red", NBP, "done") == [fox]
    assert await shown("whale", state="done") == []

    thumbs, table, row_ids, thumb_ids = await history.load_history(studio, a, "", "", "failed")
    assert row_ids == [whale] and thumbs == [] and thumb_ids == []
    [row] = table
    assert row[1] == "[sim:fail] a blue whale" and row[2] == "Nano Banana Pro"
    assert row[4] == "failed" and row[5] == 0
    _, table, _, thumb_ids = await history.load_history(studio, a, "barn", GEMPIX2, "done")
    assert thumb_ids == [barn] and table[0][4] == "done" and table[0][5] == 1
