"""A third image service needs no product file: Seedream, defined only under tests/.

`seedream_service.py` (descriptor, wire format, client) and `seedream_twin.py` (its simulated
twin) are written the way the real services are. Here they are put into a catalog and a
simulator of the tests' own, and the unchanged product runs with them:

* the client reads the fixtures in `fixtures/seedream/` (submit, running, done, error);
* the client and the twin speak the same wire format (a round trip through the simulator);
* the whole app, with all three services keyed and pointed at one standalone simulator, takes a
  `seedream_key` on `/generate`, offers `seedream-4`, generates with it, and sends each key only
  to its own service; a visitor's `seedream_key` replaces the server's for Seedream alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import seedream_service
import seedream_twin
import uvicorn
from app_server import RunningApp, free_port, running_app
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

from providers.capabilities import ImageSettings
from providers.catalog import Catalog
from providers.errors import AuthenticationError
from providers.registry import build_client
from providers.services import SERVICES
from providers.types import GeneratedImage, GenerationRequest, SubmittedTask, TaskState
from simulator import Simulator, SimulatorConfig
from simulator.core import token_fingerprint
from simulator.services import TWINS

SEEDREAM_SERVICE = seedream_service.SERVICE
SEEDREAM_TWIN = seedream_twin.TWIN
FIXTURES = Path(__file__).parent / "fixtures" / "seedream"
BASE_URL = "https://api.seedream.example"
TASK_ID = "sd-0f3a9c2e7b1d4a6c8e90"
CATALOG = Catalog((*SERVICES, SEEDREAM_SERVICE), default_model="nano-banana-pro")

# One made-up key per service (distinct, so each request's fingerprint names its key).
KEYS = {
    "gempix2": "dk-THIRD-SERVICE-defapi-0001",
    "nano_banana_pro": "apixo-THIRD-SERVICE-0002",
    "seedream": "sd-THIRD-SERVICE-seedream-0003",
}
VISITOR_SEEDREAM_KEY = "sd-VISITOR-own-key-0004"
SIM_SCALE = 0.01  # Seedream's 10-20 s take 0.1-0.2 s


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


# ---- the client against the fixtures -------------------------------------------------------


class FixtureServer:
    """A MockTransport handler: submit answers `submit`, status queries answer `status`."""

    def __init__(self, submit: str = "submit_ok", status: str = "status_running", *, http=200):
        self.submit, self.status, self.http_status = submit, status, http
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if request.method == "POST" and path == "/seedream/v1/tasks":
            return httpx.Response(self.http_status, json=fixture(self.submit))
        if request.method == "GET" and path == "/seedream/v1/tasks/query":
            return httpx.Response(self.http_status, json=fixture(self.status))
        return httpx.Response(404, json={"code": 404, "msg": "not found", "data": None})


@contextlib.asynccontextmanager
async def fixture_client(server: FixtureServer, api_key: str = "sd-fixture-key"):
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
        yield build_client(SEEDREAM_SERVICE, http, base_url=BASE_URL, api_key=api_key)


async def test_submit_sends_the_seedream_body_and_reads_the_task_id() -> None:
    server = FixtureServer()
    request = GenerationRequest(
        model="seedream-4",
        prompt="a paper boat on a puddle",
        reference_urls=("https://example.com/a.png", "https://example.com/b.png"),
        settings=ImageSettings(aspect_ratio="16:9"),
    )
    async with fixture_client(server) as client:
        submitted = await client.submit(request)

    assert submitted == SubmittedTask("seedream", TASK_ID)
    [sent] = server.requests
    assert (sent.method, str(sent.url)) == ("POST", f"{BASE_URL}/seedream/v1/tasks")
    assert sent.headers["Authorization"] == "Bearer sd-fixture-key"
    assert json.loads(sent.content) == {
        "model": "seedream-4",
        "prompt": "a paper boat on a puddle",
        "images": ["https://example.com/a.png", "https://example.com/b.png"],
        "ratio": "16:9",
    }


@pytest.mark.parametrize(
    ("answer", "state", "images", "fail_message"),
    [
        ("status_running", TaskState.RUNNING, (), None),
        (
            "status_done",
            TaskState.SUCCEEDED,
            (
                GeneratedImage(f"https://cdn.seedream.example/results/{TASK_ID}/0.png"),
                GeneratedImage(f"https://cdn.seedream.example/results/{TASK_ID}/1.png"),
            ),
            None,
        ),
        ("status_error", TaskState.FAILED, (), "Content does not meet safety guidelines"),
    ],
)
async def test_status_answers_are_read(answer, state, images, fail_message) -> None:
    server = FixtureServer(status=answer)
    async with fixture_client(server) as client:
        status = await client.fetch_status(TASK_ID)

    [sent] = server.requests
    assert sent.method == "GET"
    assert sent.url.path == "/seedream/v1/tasks/query"
    assert dict(sent.url.params) == {"id": TASK_ID}
    assert (status.service, status.task_id) == ("seedream", TASK_ID)
    assert status.state is state
    assert status.provider_state == fixture(answer)["data"]["state"]
    assert status.images == images
    assert status.fail_message == fail_message


async def test_an_error_answer_gives_its_msg_text() -> None:
    server = FixtureServer(submit="submit_401", http=401)
    async with fixture_client(server) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.submit(GenerationRequest(model="seedream-4", prompt="p"))
    assert caught.value.message == "Invalid API key"
    assert caught.value.provider == "Seedream"


# ---- the client against the twin -----------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "state", "fail_message"),
    [
        ("a kite over dunes", TaskState.SUCCEEDED, None),
        ("[sim:content_violation] a kite", TaskState.FAILED, "Content does not meet safety"),
    ],
)
async def test_client_and_twin_speak_the_same_wire_format(prompt, state, fail_message) -> None:
    sim = Simulator(SimulatorConfig(time_scale=0.001, seed=1), twins=(*TWINS, SEEDREAM_TWIN))
    origin = "http://seedream.test"
    async with (
        sim,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url=origin) as http,
    ):
        client = build_client(SEEDREAM_SERVICE, http, base_url=origin, api_key="sd-twin")
        request = GenerationRequest(
            model="seedream-4", prompt=prompt, settings=ImageSettings(aspect_ratio="9:16")
        )
        submitted = await client.submit(request)
        words = []
        for _ in range(200):
            status = await client.fetch_status(submitted.task_id)
            words.append(status.provider_state)
            if status.is_terminal:
                break
            await asyncio.sleep(0.005)

        assert submitted.service == "seedream" and submitted.task_id.startswith("sd-")
        assert sim.submissions[-1]["ratio"] == "9:16"
        assert status.state is state, words
        assert set(words) <= {"queued", "running", "done", "error"}, words
        if state is TaskState.SUCCEEDED:
            [image] = status.images
            picture = await http.get(image.location)
            assert picture.status_code == 200
            with Image.open(io.BytesIO(picture.content)) as img:
                assert img.size == (768, 1376)  # 9:16 at 1K
        else:
            assert status.images == ()
            assert status.fail_message is not None
            assert status.fail_message.startswith(fail_message)


# ---- the whole app with three services -----------------------------------------------------


@contextlib.contextmanager
def serving(sim: Simulator) -> Iterator[str]:
    """Serve `sim.app` with uvicorn on a loopback port in a thread; yield its base URL.

    (`python -m simulator` cannot take an extra twin, and the test reads `sim.requests`.)"""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            sim.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws="none"
        )
    )

    async def serve() -> None:
        try:
            await server.serve()
        finally:
            await sim.aclose()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), name="seedream-sim")
    thread.start()
    try:
        for _ in range(400):
            if server.started or not thread.is_alive():
                break
            time.sleep(0.025)
        assert server.started, "the simulator did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="module")
def simulator() -> Simulator:
    return Simulator(SimulatorConfig(time_scale=SIM_SCALE, seed=4), twins=(*TWINS, SEEDREAM_TWIN))


@pytest.fixture(scope="module")
def server(simulator: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    with serving(simulator) as sim_url:
        env = {}
        for service in CATALOG.services:  # the env names come from the descriptors
            env[service.key_env] = KEYS[service.id]
            env[service.base_url_env] = sim_url
        with running_app(tmp_path_factory.mktemp("studio"), env, catalog=CATALOG) as app:
            yield app


@pytest.fixture(scope="module")
def client(server: RunningApp, tmp_path_factory: pytest.TempPathFactory) -> Client:
    downloads = tmp_path_factory.mktemp("downloads")
    return Client(server.url, analytics_enabled=False, verbose=False, download_files=downloads)


def seedream_requests(sim: Simulator, since: int = 0) -> list[tuple[str, str, str]]:
    return [r for r in list(sim.requests)[since:] if r[1] == "seedream"]


def other_requests(sim: Simulator, since: int = 0) -> list[tuple[str, str, str]]:
    return [r for r in list(sim.requests)[since:] if r[1] != "seedream"]


@pytest.mark.slow
def test_the_app_runs_all_three_services_keyed(server: RunningApp) -> None:
    config = server.app.config
    assert [s.id for s in config.catalog.services] == ["gempix2", "nano_banana_pro", "seedream"]
    assert {s: c.api_key for s, c in config.services.items()} == KEYS
    # Every service is keyed, so the app builds no in-process simulator: all traffic is ours.
    assert server.app.backends.simulator is None
    assert server.app.backends.offline_services() == []


@pytest.mark.slow
def test_generate_takes_a_seedream_key_and_offers_seedream_4(client: Client) -> None:
    info = client.view_api(return_format="dict", print_info=False)
    parameters = info["named_endpoints"]["/generate"]["parameters"]
    by_name = {p["parameter_name"]: p for p in parameters}
    names = list(by_name)
    # One key keyword per service, in the catalog's order, after the form's fields.
    keys_at = names.index("defapi_key")
    assert names[keys_at : keys_at + 3] == ["defapi_key", "apixo_key", "seedream_key"]
    assert by_name["seedream_key"]["parameter_has_default"]
    assert "seedream-4" in by_name["model"]["type"]["enum"]


@pytest.mark.slow
def test_a_setting_seedream_cannot_take_is_refused_in_its_words(
    client: Client, simulator: Simulator
) -> None:
    submitted = simulator.submission_count
    with pytest.raises(AppError, match=r"Seedream 4 cannot take aspect ratio '21:9'; choices: 1:1"):
        client.predict(
            model="seedream-4", prompt="a wide dune", aspect_ratio="21:9", api_name="/generate"
        )
    assert simulator.submission_count == submitted  # refused before anything was sent


@pytest.mark.slow
def test_seedream_generates_and_each_key_reaches_only_its_service(
    client: Client, server: RunningApp, simulator: Simulator
) -> None:
    start = len(simulator.requests)
    jobs = {
        model: client.submit(
            model=model, prompt=f"a harbour at noon on {model}", api_name="/generate"
        )
        for model in ("seedream-4", "google/gempix2", "nano-banana-pro")
    }
    results = {model: job.result(timeout=60) for model, job in jobs.items()}

    gallery, status = results["seedream-4"]
    assert "Offline preview" not in status  # a keyed service, not the built-in simulator
    assert status.count(": done") == 1, status
    [item] = gallery
    with Image.open(item["image"]) as img:
        assert img.format == "PNG" and img.size == (1024, 1024)
    for model in ("google/gempix2", "nano-banana-pro"):
        assert results[model][1].count(": done") == 1, results[model][1]

    fingerprints = {s: token_fingerprint(k) for s, k in KEYS.items()}
    seen = list(simulator.requests)[start:]
    assert {kind for kind, service, _ in seen if service == "seedream"} == {"submit", "status"}
    for service, fingerprint in fingerprints.items():
        used = {f for _, s, f in seen if s == service}
        assert used == {fingerprint}, (service, used)
    assert fingerprints["seedream"] not in {f for _, s, f in other_requests(simulator, start)}
    submits = [b for b in list(simulator.submissions) if b.get("model") == "seedream-4"]
    assert submits[-1] == {
        "model": "seedream-4",
        "prompt": "a harbour at noon on seedream-4",
        "ratio": "1:1",  # the form's default aspect ratio, which Seedream takes
    }


@pytest.mark.slow
def test_a_visitor_seedream_key_is_used_for_seedream_alone(
    client: Client, simulator: Simulator
) -> None:
    start = len(simulator.requests)
    common = {"prompt": "a lantern in fog", "seedream_key": VISITOR_SEEDREAM_KEY}
    jobs = [
        client.submit(model="seedream-4", aspect_ratio="16:9", **common, api_name="/generate"),
        client.submit(model="google/gempix2", **common, api_name="/generate"),
    ]
    (seedream_gallery, seedream_status), (_, gempix2_status) = (j.result(timeout=60) for j in jobs)
    assert seedream_status.count(": done") == 1, seedream_status
    assert gempix2_status.count(": done") == 1, gempix2_status
    with Image.open(seedream_gallery[0]["image"]) as img:
        assert img.size == (1376, 768)  # 16:9 reached the twin as "ratio"

    visitor = token_fingerprint(VISITOR_SEEDREAM_KEY)
    seedream = seedream_requests(simulator, start)
    assert seedream and {f for _, _, f in seedream} == {visitor}
    others = other_requests(simulator, start)
    assert others and {f for _, _, f in others} == {token_fingerprint(KEYS["gempix2"])}
