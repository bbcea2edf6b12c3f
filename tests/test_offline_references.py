"""The offline preview cannot be turned against the host: the built-in simulator reads reference
links only through the app's guarded fetcher, and its memory stays bounded."""

from __future__ import annotations

import asyncio
import base64
import http.server
import io
import random
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from providers.capabilities import ImageSettings
from providers.services import CATALOG
from providers.settings import service_configs
from simulator import Simulator, SimulatorConfig
from simulator.references import ReferenceFetchError, thumbnail_from_bytes
from simulator.retention import Retention
from studio.backends import Backends
from studio.downloads import ResultFetcher
from studio.jobs import JobRunner, JobSpec
from studio.ledger import Ledger
from studio.lifecycle import JobState

SETTINGS = ImageSettings(aspect_ratio="1:1", resolution="1K", output_format="png")


def png_bytes(
    size: tuple[int, int] = (40, 30), colour: tuple[int, int, int] = (200, 0, 0)
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


class LoopbackImageServer:
    """A server on 127.0.0.1 holding a "private" picture; counts every request it gets."""

    def __init__(self) -> None:
        self.hits = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits += 1
                body = png_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def loopback() -> Iterator[LoopbackImageServer]:
    server = LoopbackImageServer()
    yield server
    server.close()


async def run_offline(tmp_path: Path, backends: Backends, reference: str) -> tuple[JobState, str]:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    runner = JobRunner(backends=backends, ledger=ledger, outputs_dir=tmp_path / "out")
    try:
        spec = JobSpec(
            model="nano-banana-pro",
            prompt="blend this",
            reference_urls=(reference,),
            settings=SETTINGS,
        )
        job_ids = await runner.start(spec)
        async with asyncio.timeout(30):
            async for _ in runner.follow(job_ids):
                pass
        row = ledger.job(job_ids[0])
        assert row is not None
        return row.state, row.error_message or ""
    finally:
        await runner.close()
        await backends.aclose()
        ledger.close()


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:{port}/secret.png", "https://localhost:{port}/secret.png"],
    ids=["http-loopback", "https-localhost"],
)
async def test_the_preview_never_fetches_from_this_machine(tmp_path, loopback, url):
    backends = Backends(CATALOG, service_configs(CATALOG, {}), simulator_time_scale=0.005)
    state, message = await run_offline(tmp_path, backends, url.format(port=loopback.port))
    assert state is JobState.FAILED
    assert "could not fetch a reference image" in message
    assert loopback.hits == 0


class PublicWeb:
    """A MockTransport web behind a fake resolver: every name is a public address."""

    def __init__(self, pages: dict[str, httpx.Response]) -> None:
        self.pages = pages
        self.requests: list[str] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        url = f"https://{request.headers['Host']}{request.url.raw_path.decode()}"
        self.requests.append(url)
        return self.pages.get(url, httpx.Response(404))

    async def resolve(self, host: str, port: int) -> list[str]:
        return ["93.184.216.34"]


@pytest.fixture
async def public_web() -> AsyncIterator[tuple[PublicWeb, httpx.AsyncClient]]:
    web = PublicWeb({})
    http = httpx.AsyncClient(transport=httpx.MockTransport(web.handler))
    yield web, http
    await http.aclose()


async def test_a_redirect_to_the_metadata_address_is_not_followed(tmp_path, public_web):
    web, http = public_web
    web.pages["https://cdn.example/cat.png"] = httpx.Response(
        302, headers={"Location": "http://169.254.169.254/latest/meta-data/"}
    )
    fetcher = ResultFetcher(http, resolver=web.resolve)
    backends = Backends(
        CATALOG,
        service_configs(CATALOG, {}),
        simulator_time_scale=0.005,
        reference_fetcher=fetcher,
    )
    state, message = await run_offline(tmp_path, backends, "https://cdn.example/cat.png")
    assert state is JobState.FAILED
    assert "could not fetch a reference image" in message
    assert web.requests == ["https://cdn.example/cat.png"]  # the redirect was never followed


async def test_a_public_https_reference_is_still_drawn(tmp_path, public_web):
    web, http = public_web
    web.pages["https://cdn.example/cat.png"] = httpx.Response(
        200, headers={"Content-Type": "image/png"}, content=png_bytes()
    )
    fetcher = ResultFetcher(http, resolver=web.resolve)
    backends = Backends(
        CATALOG,
        service_configs(CATALOG, {}),
        simulator_time_scale=0.005,
        reference_fetcher=fetcher,
    )
    assert backends.simulator is not None
    simulator = backends.simulator
    state, message = await run_offline(tmp_path, backends, "https://cdn.example/cat.png")
    assert (state, message) == (JobState.DONE, "")
    assert web.requests == ["https://cdn.example/cat.png"]
    [task] = simulator.tasks.values()
    assert [image.size for image in task.reference_images] == [(40, 30)]


# ---------------------------------------------------------------------------- memory


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


async def submit(client: httpx.AsyncClient, references: list[str]) -> str:
    body = {
        "input": {
            "mode": "image-to-image" if references else "text-to-image",
            "prompt": "a cat",
            "image_urls": references,
        }
    }
    response = await client.post(
        "/api/v1/generateTask/nano-banana-pro",
        json=body,
        headers={"Authorization": "Bearer k"},
    )
    return str(response.json()["data"]["taskId"])


@pytest.fixture
async def small_simulator() -> AsyncIterator[tuple[Simulator, httpx.AsyncClient]]:
    sim = Simulator(SimulatorConfig(time_scale=0.001), max_tasks=5)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url="http://sim")
    yield sim, client
    await client.aclose()
    await sim.aclose()


async def test_the_simulator_forgets_its_oldest_tasks_beyond_the_cap(small_simulator):
    sim, client = small_simulator
    ids = [await submit(client, []) for _ in range(8)]
    assert list(sim.tasks) == ids[-5:]
    response = await client.get(
        "/api/v1/statusTask/nano-banana-pro",
        params={"taskId": ids[0]},
        headers={"Authorization": "Bearer k"},
    )
    assert response.status_code == 404


async def test_a_large_data_uri_is_not_kept_once_read(small_simulator):
    sim, client = small_simulator
    noise = Image.frombytes("RGB", (600, 600), random.Random(1).randbytes(600 * 600 * 3))
    buffer = io.BytesIO()
    noise.save(buffer, "PNG")
    big = data_uri(buffer.getvalue())
    assert len(big) > 100_000
    task_id = await submit(client, [big])
    task = sim.tasks[task_id]
    async with asyncio.timeout(10):
        await task.refs_done.wait()
    assert [image.size for image in task.reference_images] == [(256, 256)]
    assert all(len(url) <= 80 for url in task.references)
    kept = sim.submissions[-1]["input"]["image_urls"]
    assert all(len(url) <= 80 for url in kept)


def test_thumbnails_stay_with_the_latest_tasks_only():
    sim = Simulator(SimulatorConfig())
    retention = Retention(sim.tasks, {}, max_thumbnail_tasks=2)
    tasks = []
    for _ in range(3):
        task = type("Task", (), {})()
        task.references, task.refs_error_url = ["data:x"], None
        task.reference_images = [Image.new("RGB", (8, 8))]
        retention.references_read(task)  # type: ignore[arg-type]
        tasks.append(task)
    assert [len(task.reference_images) for task in tasks] == [0, 1, 1]


def test_a_reference_over_25_megapixels_is_refused_before_decoding():
    buffer = io.BytesIO()
    Image.new("L", (6000, 5000)).save(buffer, "PNG")  # 30 MP, a small file
    with pytest.raises(ReferenceFetchError, match="larger than 25 megapixels"):
        thumbnail_from_bytes("https://x.example/huge.png", buffer.getvalue())
