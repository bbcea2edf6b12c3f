"""Wire-level tests of the API simulator: raw HTTP in, exact bodies out."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from PIL import Image, ImageStat

import simulator.core as simulator_core
from simulator import Simulator, SimulatorConfig

BASE = "http://simulator.test"
GP_SUBMIT = "/api/image/gen"
GP_STATUS = "/api/task/query"
NB_SUBMIT = "/api/v1/generateTask/nano-banana-pro"
NB_STATUS = "/api/v1/statusTask/nano-banana-pro"
AUTH = {"Authorization": "Bearer dk-test-key"}
SCALE = 0.002  # a "25 s" task takes 50 ms
WALL_START = 1_700_000_000.0


def _png(color: tuple[int, int, int], size: tuple[int, int] = (48, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


RED_PNG = _png((255, 0, 0))
RED_DATA_URI = "data:image/png;base64," + base64.b64encode(RED_PNG).decode()


class FakeClock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Hooks:
    """Records webhook POSTs; answers `failures` with errors first."""

    failures: list[int | None] = field(default_factory=list)  # status code, None = drop
    requests: list[httpx.Request] = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.failures:
            status = self.failures.pop(0)
            if status is None:
                raise httpx.ConnectError("receiver down", request=request)
            return httpx.Response(status)
        return httpx.Response(200, json={"ok": True})

    def bodies(self) -> list[Any]:
        return [json.loads(request.content) for request in self.requests]


@dataclass
class Env:
    sim: Simulator
    client: httpx.AsyncClient
    hooks: Hooks
    fetched: list[str]


def _fetch_handler(fetched: list[str]) -> Callable[[httpx.Request], httpx.Response]:
    def handle(request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        fetched.append(url)
        if url == "https://refs.test/red.png":
            return httpx.Response(200, content=RED_PNG, headers={"content-type": "image/png"})
        if url == "https://refs.test/text":
            return httpx.Response(200, text="hello", headers={"content-type": "text/plain"})
        return httpx.Response(404, text="missing")

    return handle


MakeEnv = Callable[..., Awaitable[Env]]


@pytest.fixture
async def make_env() -> AsyncIterator[MakeEnv]:
    made: list[tuple[Env, httpx.AsyncClient, httpx.AsyncClient]] = []

    async def make(
        config: SimulatorConfig | None = None,
        clock: Callable[[], float] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Env:
        hooks = Hooks()
        fetched: list[str] = []
        fetch_client = httpx.AsyncClient(transport=httpx.MockTransport(_fetch_handler(fetched)))
        callback_client = httpx.AsyncClient(transport=httpx.MockTransport(hooks.handler))
        sim = Simulator(
            config or SimulatorConfig(time_scale=SCALE, seed=1),
            fetch_client=fetch_client,
            callback_client=callback_client,
            clock=clock,
            wall_clock=lambda: WALL_START,
        )
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=sim.app),
            base_url=BASE,
            headers=AUTH if headers is None else headers,
        )
        env = Env(sim, client, hooks, fetched)
        made.append((env, fetch_client, callback_client))
        return env

    yield make
    for env, fetch_client, callback_client in made:
        await env.client.aclose()
        await env.sim.aclose()
        await fetch_client.aclose()
        await callback_client.aclose()


@pytest.fixture
async def env(make_env: MakeEnv) -> Env:
    return await make_env()


def nb_body(prompt: str = "a lighthouse at dusk", **input_fields: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "mode": "text-to-image",
        "prompt": prompt,
        "aspect_ratio": "1:1",
        "resolution": "1K",
        "output_format": "png",
    }
    fields.update(input_fields)
    return {"request_type": "async", "provider": "auto", "input": fields}


async def gp_submit(client: httpx.AsyncClient, prompt: str = "a red fox", **extra: Any) -> str:
    response = await client.post(
        GP_SUBMIT, json={"model": "google/gempix2", "prompt": prompt, **extra}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["task_id"])


async def nb_submit(client: httpx.AsyncClient, body: dict[str, Any] | None = None) -> str:
    response = await client.post(NB_SUBMIT, json=body or nb_body())
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["taskId"])


async def gp_query(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    response = await client.get(GP_STATUS, params={"task_id": task_id})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def nb_query(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    response = await client.get(NB_STATUS, params={"taskId": task_id})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def gp_wait(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        body = await gp_query(client, task_id)
        if body["data"]["status"] in ("success", "failed"):
            return body
        await asyncio.sleep(0.005)
    raise AssertionError(f"GemPix2 task {task_id} did not finish")


async def nb_wait(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        body = await nb_query(client, task_id)
        if body["data"]["state"] in ("success", "failed"):
            return body
        await asyncio.sleep(0.005)
    raise AssertionError(f"apixo task {task_id} did not finish")


async def download(client: httpx.AsyncClient, url: str, content_type: str) -> Image.Image:
    response = await client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return image


def assert_not_blank(image: Image.Image) -> None:
    rgb = image.convert("RGB")
    colors = rgb.getcolors(maxcolors=1_000_000)
    assert colors is None or len(colors) > 100
    assert ImageStat.Stat(rgb.convert("L")).mean[0] > 60


def red_pixels(image: Image.Image) -> int:
    data = image.convert("RGB").tobytes()
    channels = zip(data[0::3], data[1::3], data[2::3], strict=True)
    return sum(1 for r, g, b in channels if r > 200 and g < 60 and b < 60)


async def wait_for_hooks(hooks: Hooks, count: int) -> None:
    deadline = time.monotonic() + 5
    while len(hooks.requests) < count:
        assert time.monotonic() < deadline, f"expected {count} callbacks, got {len(hooks.requests)}"
        await asyncio.sleep(0.01)


# -- happy paths -----------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["google/gempix2", "google/gemini-2.5-flash-image"])
async def test_gempix2_submit_poll_download(env: Env, model: str) -> None:
    body = {"model": model, "prompt": "a red fox in the snow"}
    response = await env.client.post(GP_SUBMIT, json=body)
    assert response.status_code == 200
    submitted = response.json()
    task_id = submitted["data"]["task_id"]
    assert submitted == {"code": 0, "message": "ok", "data": {"task_id": task_id}}
    assert re.fullmatch(r"ta[0-9a-f]{6}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", task_id)

    final = await gp_wait(env.client, task_id)
    url = final["data"]["result"][0]["image"]
    assert final == {
        "code": 0,
        "message": "ok",
        "data": {
            "task_id": task_id,
            "status": "success",
            "result": [{"image": url}],
            "consumed": "0.500000",
            "status_reason": {"message": None},
        },
    }
    assert re.fullmatch(r"http://simulator\.test/files/[A-Za-z0-9_-]{20,}\.png", url)
    image = await download(env.client, url, "image/png")
    assert (image.format, image.size) == ("PNG", (1024, 1024))
    assert_not_blank(image)
    assert red_pixels(image) == 0  # no references, so no reference thumbnails

    record = env.sim.tasks[task_id]
    assert (record.model, record.prompt, record.references) == (model, body["prompt"], [])
    assert list(env.sim.submissions) == [body]
    assert env.sim.status_queries and set(env.sim.status_queries) == {task_id}


async def test_nano_banana_pro_submit_poll_download(env: Env) -> None:
    body = nb_body("a cozy cyberpunk cafe", aspect_ratio="16:9")
    response = await env.client.post(NB_SUBMIT, json=body)
    submitted = response.json()
    task_id = submitted["data"]["taskId"]
    assert response.status_code == 200
    assert submitted == {"code": 200, "message": "success", "data": {"taskId": task_id}}
    assert re.fullmatch(r"task_[0-9a-f]{24}", task_id)

    final = await nb_wait(env.client, task_id)
    data = final["data"]
    assert set(data) == {"taskId", "state", "resultJson", "createTime", "completeTime", "costTime"}
    assert (final["code"], final["message"], data["taskId"], data["state"]) == (
        200,
        "success",
        task_id,
        "success",
    )
    assert isinstance(data["resultJson"], str)
    urls = json.loads(data["resultJson"])["resultUrls"]
    assert len(urls) == 1 and urls[0].startswith(f"{BASE}/files/")
    record = env.sim.tasks[task_id]
    assert data["createTime"] == 1_700_000_000_000
    assert data["costTime"] == data["completeTime"] - data["createTime"]
    assert abs(data["costTime"] - record.duration * 1000) <= 1
    assert 40 <= data["costTime"] <= 60  # 1K takes 20-30 s, scaled by 0.002

    image = await download(env.client, urls[0], "image/png")
    assert (image.format, image.size) == ("PNG", (1376, 768))
    assert_not_blank(image)
    assert record.params["aspect_ratio"] == "16:9" and record.params["provider"] == "auto"


async def test_nano_banana_pro_jpeg_output(env: Env) -> None:
    task_id = await nb_submit(env.client, nb_body(aspect_ratio="9:16", output_format="jpeg"))
    final = await nb_wait(env.client, task_id)
    (url,) = json.loads(final["data"]["resultJson"])["resultUrls"]
    assert url.endswith(".jpg")
    image = await download(env.client, url, "image/jpeg")
    assert (image.format, image.size) == ("JPEG", (768, 1376))
    assert_not_blank(image)


async def test_gempix2_states_follow_the_clock(make_env: MakeEnv) -> None:
    clock = FakeClock()
    env = await make_env(SimulatorConfig(time_scale=1.0, seed=3), clock=clock)
    task_id = await gp_submit(env.client)
    duration = env.sim.tasks[task_id].duration
    assert 8.0 <= duration <= 20.0

    seen = []
    for fraction in (0.0, 0.15, 0.5, 0.99):
        clock.now = env.sim.tasks[task_id].created + fraction * duration
        data = (await gp_query(env.client, task_id))["data"]
        assert (data["result"], data["consumed"]) == (None, "0.000000")
        seen.append(data["status"])
    clock.now = env.sim.tasks[task_id].created + duration
    data = (await gp_query(env.client, task_id))["data"]
    seen.append(data["status"])
    assert seen == ["pending", "submitted", "in_progress", "in_progress", "success"]
    assert data["consumed"] == "0.500000"


async def test_nano_banana_pro_states_follow_the_clock(make_env: MakeEnv) -> None:
    clock = FakeClock()
    env = await make_env(SimulatorConfig(time_scale=1.0, seed=3), clock=clock)
    task_id = await nb_submit(env.client, nb_body(resolution="2K"))
    record = env.sim.tasks[task_id]
    assert 30.0 <= record.duration <= 45.0

    clock.advance(0.1 * record.duration)
    pending = (await nb_query(env.client, task_id))["data"]
    assert pending == {"taskId": task_id, "state": "pending", "createTime": 1_700_000_000_000}
    clock.advance(0.4 * record.duration)
    assert (await nb_query(env.client, task_id))["data"]["state"] == "processing"
    clock.now = record.created + record.duration
    done = (await nb_query(env.client, task_id))["data"]
    assert done["state"] == "success"
    assert done["costTime"] == round(record.duration * 1000)


async def test_seed_repeats_durations(make_env: MakeEnv) -> None:
    durations = []
    for _ in range(2):
        env = await make_env(SimulatorConfig(time_scale=1.0, seed=42), clock=FakeClock())
        ids = [await gp_submit(env.client), await nb_submit(env.client)]
        durations.append([env.sim.tasks[task_id].duration for task_id in ids])
    assert durations[0] == durations[1]
    assert durations[0][0] != durations[0][1]


async def test_public_url_is_the_base_of_result_urls(make_env: MakeEnv) -> None:
    config = SimulatorConfig(time_scale=SCALE, public_url="https://cdn.example/sim/")
    env = await make_env(config)
    final = await nb_wait(env.client, await nb_submit(env.client))
    (url,) = json.loads(final["data"]["resultJson"])["resultUrls"]
    assert url.startswith("https://cdn.example/sim/files/")


async def test_result_is_rendered_once(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = simulator_core.render_image

    def counting(request: Any) -> bytes:
        calls.append(request.text)
        return real(request)

    monkeypatch.setattr(simulator_core, "render_image", counting)
    final = await nb_wait(env.client, await nb_submit(env.client))
    (url,) = json.loads(final["data"]["resultJson"])["resultUrls"]
    first, second = await asyncio.gather(env.client.get(url), env.client.get(url))
    third = await env.client.get(url)
    assert first.content == second.content == third.content
    assert calls == ["a lighthouse at dusk"]


# -- references ------------------------------------------------------------------------------


async def test_data_uri_references_appear_in_the_image(env: Env) -> None:
    body = nb_body(mode="image-to-image", image_urls=[RED_DATA_URI, RED_DATA_URI])
    task_id = await nb_submit(env.client, body)
    final = await nb_wait(env.client, task_id)
    assert final["data"]["state"] == "success"
    (url,) = json.loads(final["data"]["resultJson"])["resultUrls"]
    image = await download(env.client, url, "image/png")
    assert image.size == (1024, 1024)
    bottom = image.crop((0, 800, 1024, 1024))
    assert red_pixels(bottom) > 5000
    assert env.sim.tasks[task_id].references == [RED_DATA_URI, RED_DATA_URI]
    assert env.fetched == []


async def test_http_references_are_fetched(env: Env) -> None:
    task_id = await gp_submit(env.client, images=["https://refs.test/red.png"])
    final = await gp_wait(env.client, task_id)
    assert final["data"]["status"] == "success"
    assert env.fetched == ["https://refs.test/red.png"]


async def test_unreachable_reference_fails_with_invalid_image_url(env: Env) -> None:
    urls = ["https://refs.test/red.png", "https://refs.test/missing.png"]
    task_id = await nb_submit(env.client, nb_body(mode="image-to-image", image_urls=urls))
    final = await nb_wait(env.client, task_id)
    data = final["data"]
    assert final["code"] == 200
    assert set(data) == {
        "taskId",
        "state",
        "failCode",
        "failMsg",
        "createTime",
        "completeTime",
        "costTime",
    }
    assert (data["state"], data["failCode"]) == ("failed", "INVALID_IMAGE_URL")
    assert data["failMsg"] == "Cannot access provided image URL: https://refs.test/missing.png"
    assert data["costTime"] >= 3  # early failures come 1.5 s (scaled) after submission
    assert sorted(env.fetched) == sorted(urls)


@pytest.mark.parametrize(
    "reference", ["https://refs.test/text", "data:image/png;base64,AAAAAAAA", "ftp://x.test/a.png"]
)
async def test_undecodable_reference_fails_gempix2(env: Env, reference: str) -> None:
    task_id = await gp_submit(env.client, images=[reference])
    final = await gp_wait(env.client, task_id)
    assert final["data"] == {
        "task_id": task_id,
        "status": "failed",
        "result": None,
        "consumed": "0.000000",
        "status_reason": {"message": f"Cannot access provided image URL: {reference}"},
    }


# -- faults ----------------------------------------------------------------------------------

GP, NB = "gempix2", "nano_banana_pro"
FAULT_CASES: list[tuple[str, str, str, int, dict[str, Any]]] = [
    (GP, "submit", "unauthorized", 401, {"code": 1, "message": "Invalid API key"}),
    (GP, "status", "unauthorized", 401, {"code": 401, "message": "Invalid API key"}),
    (
        GP,
        "submit",
        "bad_request",
        400,
        {"code": 1, "message": "failed", "detail": "invalid request parameters"},
    ),
    (GP, "submit", "not_found", 404, {"code": 1, "message": "not found"}),
    (GP, "status", "not_found", 404, {"code": 1, "message": "task not found"}),
    (GP, "submit", "rate_limited", 429, {"code": 429, "message": "Rate limit exceeded"}),
    (GP, "status", "server_error", 500, {"code": 500, "message": "Internal server error"}),
    (GP, "submit", "server_error", 500, {"code": 500, "message": "Internal server error"}),
    (
        GP,
        "submit",
        "insufficient_credits",
        400,
        {"code": 1, "message": "failed", "detail": "Insufficient credits"},
    ),
    (NB, "submit", "unauthorized", 401, {"code": 401, "message": "Invalid API key", "data": None}),
    (NB, "status", "unauthorized", 401, {"code": 401, "message": "Invalid API key", "data": None}),
    (
        NB,
        "submit",
        "bad_request",
        400,
        {"code": 400, "message": "Invalid parameters", "data": None},
    ),
    (NB, "status", "not_found", 404, {"code": 404, "message": "task not found", "data": None}),
    (
        NB,
        "submit",
        "rate_limited",
        429,
        {"code": 429, "message": "Rate limit exceeded", "data": None},
    ),
    (
        NB,
        "status",
        "rate_limited",
        429,
        {"code": 429, "message": "Rate limit exceeded", "data": None},
    ),
    (
        NB,
        "submit",
        "server_error",
        500,
        {"code": 500, "message": "Internal server error", "data": None},
    ),
    (
        NB,
        "submit",
        "insufficient_credits",
        200,
        {"code": 400, "message": "Insufficient credits", "data": None},
    ),
]


@pytest.mark.parametrize(
    ("service", "endpoint", "kind", "status", "body"),
    FAULT_CASES,
    ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in FAULT_CASES],
)
async def test_http_fault_is_served_once(
    env: Env, service: str, endpoint: str, kind: str, status: int, body: dict[str, Any]
) -> None:
    async def call() -> httpx.Response:
        if service == GP:
            if endpoint == "submit":
                return await env.client.post(
                    GP_SUBMIT, json={"model": "google/gempix2", "prompt": "x"}
                )
            return await env.client.get(GP_STATUS, params={"task_id": task_id})
        if endpoint == "submit":
            return await env.client.post(NB_SUBMIT, json=nb_body())
        return await env.client.get(NB_STATUS, params={"taskId": task_id})

    task_id = ""
    if endpoint == "status":
        task_id = await (gp_submit(env.client) if service == GP else nb_submit(env.client))
    tasks_before = len(env.sim.tasks)
    env.sim.faults.push(endpoint, kind)  # type: ignore[arg-type]

    faulted = await call()
    assert (faulted.status_code, faulted.json()) == (status, body)
    assert "retry-after" not in faulted.headers
    assert len(env.sim.tasks) == tasks_before
    assert env.sim.faults.pending(endpoint) == []  # type: ignore[arg-type]

    healthy = await call()
    assert healthy.status_code == 200
    assert healthy.json()["code"] == (0 if service == GP else 200)


async def test_rate_limit_retry_after_header(env: Env) -> None:
    env.sim.faults.push("submit", "rate_limited", retry_after=2)
    env.sim.faults.push("status", "rate_limited", retry_after=0.4, service="gempix2")
    response = await env.client.post(NB_SUBMIT, json=nb_body())
    assert (response.status_code, response.headers["retry-after"]) == (429, "2")
    response = await env.client.get(GP_STATUS, params={"task_id": "ta-x"})
    assert (response.status_code, response.headers["retry-after"]) == (429, "1")


async def test_fault_can_target_one_service(env: Env) -> None:
    env.sim.faults.push("submit", "server_error", service="nano_banana_pro")
    await gp_submit(env.client)  # untouched by the apixo-only fault
    assert (await env.client.post(NB_SUBMIT, json=nb_body())).status_code == 500
    assert (await env.client.post(NB_SUBMIT, json=nb_body())).status_code == 200


async def test_faults_are_consumed_in_order(env: Env) -> None:
    env.sim.faults.push("submit", "server_error", times=2)
    env.sim.faults.push("submit", "rate_limited")
    codes = [(await env.client.post(NB_SUBMIT, json=nb_body())).status_code for _ in range(4)]
    assert codes == [500, 500, 429, 200]


async def test_hang_creates_the_task_but_withholds_the_answer(env: Env) -> None:
    env.sim.faults.push("submit", "hang", hang_seconds=30)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(env.client.post(NB_SUBMIT, json=nb_body()), 0.2)
    assert time.monotonic() - started < 2
    assert len(env.sim.submissions) == 1
    (task_id,) = env.sim.tasks
    final = await nb_wait(env.client, task_id)
    assert final["data"]["state"] == "success"


def test_fault_arguments_are_checked() -> None:
    sim = Simulator(SimulatorConfig())
    with pytest.raises(ValueError, match="submit endpoint only"):
        sim.faults.push("status", "hang")
    with pytest.raises(ValueError, match="fault kind"):
        sim.faults.push("submit", "teapot")
    with pytest.raises(ValueError, match="outcome"):
        sim.faults.push_outcome("explode")


async def test_latency_is_added_to_api_responses(env: Env) -> None:
    env.sim.faults.latency = 0.15
    started = time.monotonic()
    response = await env.client.get(NB_STATUS, params={"taskId": "task_nope"})
    assert response.status_code == 404
    assert time.monotonic() - started >= 0.15


async def test_unexpected_error_gives_500(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(**_: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(env.sim, "create_task", broken)
    response = await env.client.post(NB_SUBMIT, json=nb_body())
    assert (response.status_code, response.json()) == (
        500,
        {"code": 500, "message": "Internal server error", "data": None},
    )
    response = await env.client.post(GP_SUBMIT, json={"model": "google/gempix2", "prompt": "x"})
    assert (response.status_code, response.json()) == (
        500,
        {"code": 500, "message": "Internal server error"},
    )


# -- auth ------------------------------------------------------------------------------------

UNAUTHORIZED = [
    ("POST", GP_SUBMIT, {"code": 1, "message": "Invalid API key"}),
    ("GET", GP_STATUS, {"code": 401, "message": "Invalid API key"}),
    ("POST", NB_SUBMIT, {"code": 401, "message": "Invalid API key", "data": None}),
    ("GET", NB_STATUS, {"code": 401, "message": "Invalid API key", "data": None}),
]


@pytest.mark.parametrize(
    "header", [None, "", "Bearer ", "Bearer   ", "Basic ZGs6eA==", "dk-test-key", "Bearer a b"]
)
@pytest.mark.parametrize(("method", "path", "body"), UNAUTHORIZED)
async def test_bad_authorization_is_401(
    make_env: MakeEnv, header: str | None, method: str, path: str, body: dict[str, Any]
) -> None:
    env = await make_env(headers={} if header is None else {"Authorization": header})
    payload = {"model": "google/gempix2", "prompt": "x"} if path == GP_SUBMIT else nb_body()
    if method == "POST":
        response = await env.client.post(path, json=payload)
    else:
        response = await env.client.get(path, params={"task_id": "ta1", "taskId": "task_1"})
    assert (response.status_code, response.json()) == (401, body)
    assert env.sim.tasks == {}


async def test_configured_api_keys_restrict_tokens(make_env: MakeEnv) -> None:
    env = await make_env(SimulatorConfig(time_scale=SCALE, api_keys=frozenset({"dk-good"})))
    wrong = await env.client.post(NB_SUBMIT, json=nb_body())
    assert wrong.status_code == 401
    right = await env.client.post(
        NB_SUBMIT, json=nb_body(), headers={"Authorization": "Bearer dk-good"}
    )
    assert right.status_code == 200


# -- validation ------------------------------------------------------------------------------

GP_INVALID: list[tuple[Any, str]] = [
    ({"model": "google/gempix2"}, "prompt is required"),
    ({"model": "google/gempix2", "prompt": "   "}, "prompt is required"),
    ({"prompt": "x"}, "model is required"),
    (
        {"model": "nano-banana-pro", "prompt": "x"},
        "model must be one of: google/gempix2, google/gemini-2.5-flash-image",
    ),
    (
        {"model": "google/gempix2", "prompt": "x", "images": ["https://a.test/1.png"] * 5},
        "images supports at most 4 items",
    ),
    (
        {"model": "google/gempix2", "prompt": "x", "images": "https://a.test/1.png"},
        "images must be an array of image URL strings",
    ),
    (
        {"model": "google/gempix2", "prompt": "x", "callback_url": "ftp://hooks.test"},
        "callback_url must be an http(s) URL",
    ),
    (["google/gempix2"], "request body must be a JSON object"),
    ("{not json", "malformed JSON body"),
]


@pytest.mark.parametrize(("body", "detail"), GP_INVALID)
async def test_gempix2_rejects_invalid_requests(env: Env, body: Any, detail: str) -> None:
    if isinstance(body, str):
        response = await env.client.post(GP_SUBMIT, content=body)
    else:
        response = await env.client.post(GP_SUBMIT, json=body)
    assert (response.status_code, response.json()) == (
        400,
        {"code": 1, "message": "failed", "detail": detail},
    )
    assert env.sim.tasks == {}
    assert len(env.sim.submissions) == 1


def _nb(**changes: Any) -> dict[str, Any]:
    body = nb_body()
    for key, value in changes.items():
        if key in ("request_type", "callback_url", "provider"):
            body[key] = value
        elif value is None:
            body["input"].pop(key)
        else:
            body["input"][key] = value
    return body


NB_INVALID: list[tuple[Any, str]] = [
    (_nb(prompt=""), "input.prompt is required"),
    (_nb(prompt=None), "input.prompt is required"),
    (
        _nb(image_urls=["https://a.test/1.png"]),
        "input.image_urls must be empty when input.mode is text-to-image; "
        "use image-to-image for reference images",
    ),
    (
        _nb(mode="image-to-image"),
        "input.image_urls is required when input.mode is image-to-image",
    ),
    (
        _nb(mode="image-to-image", image_urls=["https://a.test/1.png"] * 11),
        "input.image_urls supports at most 10 images",
    ),
    (_nb(mode="sketch"), "input.mode must be one of: text-to-image, image-to-image"),
    (
        _nb(aspect_ratio="7:3"),
        "input.aspect_ratio must be one of: "
        + ", ".join(("1:1", "16:9", "9:16", "21:9", "3:2", "2:3", "4:3", "3:4", "5:4", "4:5")),
    ),
    (_nb(resolution="8K"), "input.resolution must be one of: 1K, 2K, 4K"),
    (_nb(output_format="webp"), "input.output_format must be one of: png, jpeg"),
    (_nb(request_type="sync"), "request_type must be one of: async, callback"),
    (_nb(request_type="callback"), "callback_url is required when request_type is callback"),
    (_nb(provider="cheap"), "provider must be one of: auto, value, official"),
    ({"request_type": "async"}, "input is required and must be an object"),
    ("{not json", "malformed JSON body"),
]


@pytest.mark.parametrize(("body", "message"), NB_INVALID)
async def test_nano_banana_pro_rejects_invalid_requests(env: Env, body: Any, message: str) -> None:
    if isinstance(body, str):
        response = await env.client.post(NB_SUBMIT, content=body)
    else:
        response = await env.client.post(NB_SUBMIT, json=body)
    assert (response.status_code, response.json()) == (
        400,
        {"code": 400, "message": message, "data": None},
    )
    assert env.sim.tasks == {}


async def test_defaults_fill_optional_nano_banana_pro_fields(env: Env) -> None:
    task_id = await nb_submit(env.client, {"input": {"mode": "text-to-image", "prompt": "x"}})
    params = env.sim.tasks[task_id].params
    assert (params["request_type"], params["provider"]) == ("async", "auto")
    assert (params["aspect_ratio"], params["resolution"], params["output_format"]) == (
        "1:1",
        "1K",
        "png",
    )


async def test_unknown_ids_and_files(env: Env) -> None:
    gp_id, nb_id = await gp_submit(env.client), await nb_submit(env.client)
    response = await env.client.get(GP_STATUS, params={"task_id": nb_id})
    assert (response.status_code, response.json()) == (
        404,
        {"code": 1, "message": "task not found"},
    )
    response = await env.client.get(NB_STATUS, params={"taskId": gp_id})
    assert (response.status_code, response.json()) == (
        404,
        {"code": 404, "message": "task not found", "data": None},
    )
    response = await env.client.get(NB_STATUS)
    assert (response.status_code, response.json()["message"]) == (400, "taskId is required")
    response = await env.client.get(GP_STATUS)
    assert (response.status_code, response.json()["detail"]) == (400, "task_id is required")
    assert (await env.client.get("/files/nothing-here.png")).status_code == 404


async def test_result_file_exists_only_after_success(make_env: MakeEnv) -> None:
    clock = FakeClock()
    env = await make_env(SimulatorConfig(time_scale=1.0), clock=clock)
    record = env.sim.tasks[await nb_submit(env.client)]
    early = await env.client.get(f"/files/{record.file_name}")
    assert (early.status_code, early.json()) == (404, {"code": 404, "message": "file not found"})
    clock.advance(record.duration)
    late = await env.client.get(f"/files/{record.file_name}")
    assert (late.status_code, late.headers["content-type"]) == (200, "image/png")


# -- callbacks -------------------------------------------------------------------------------


async def test_gempix2_callback_carries_the_payload(env: Env) -> None:
    task_id = await gp_submit(env.client, callback_url="https://hooks.test/gp")
    await wait_for_hooks(env.hooks, 1)
    request = env.hooks.requests[0]
    assert (request.method, str(request.url)) == ("POST", "https://hooks.test/gp")
    assert request.headers["content-type"] == "application/json"
    (payload,) = env.hooks.bodies()
    url = payload["result"][0]["image"]
    assert payload == {
        "result": [{"image": url}],
        "status": "success",
        "task_id": task_id,
        "consumed": "0.500000",
        "status_reason": {"message": None},
    }
    assert (await gp_query(env.client, task_id))["data"] == payload
    image = await download(env.client, url, "image/png")
    assert image.size == (1024, 1024)
    assert env.sim.tasks[task_id].callback_delivered is True


async def test_gempix2_callback_on_failure(env: Env) -> None:
    task_id = await gp_submit(
        env.client, prompt="[sim:content_violation] x", callback_url="https://hooks.test/gp"
    )
    await wait_for_hooks(env.hooks, 1)
    assert env.hooks.bodies() == [
        {
            "result": None,
            "status": "failed",
            "task_id": task_id,
            "consumed": "0.000000",
            "status_reason": {"message": "Content does not meet safety guidelines"},
        }
    ]


async def test_nano_banana_pro_callback_repeats_the_status_body(env: Env) -> None:
    body = nb_body()
    body.update(request_type="callback", callback_url="https://hooks.test/nb")
    task_id = await nb_submit(env.client, body)
    await wait_for_hooks(env.hooks, 1)
    (payload,) = env.hooks.bodies()
    assert payload["code"] == 200 and payload["data"]["state"] == "success"
    assert payload == await nb_query(env.client, task_id)


async def test_nano_banana_pro_async_mode_does_not_call_back(env: Env) -> None:
    body = nb_body()
    body["callback_url"] = "https://hooks.test/nb"
    task_id = await nb_submit(env.client, body)
    assert (await nb_wait(env.client, task_id))["data"]["state"] == "success"
    await asyncio.sleep(0.05)
    assert env.hooks.requests == []


async def test_callback_is_retried_after_errors(env: Env) -> None:
    env.hooks.failures = [500, None]
    task_id = await gp_submit(env.client, callback_url="https://hooks.test/gp")
    await wait_for_hooks(env.hooks, 3)
    bodies = env.hooks.bodies()
    assert bodies[0] == bodies[1] == bodies[2]
    assert bodies[0]["task_id"] == task_id
    record = env.sim.tasks[task_id]
    assert (record.callback_attempts, record.callback_delivered) == (3, True)


async def test_callback_gives_up_quietly(env: Env) -> None:
    env.hooks.failures = [503, 503, 503, 503]
    body = nb_body()
    body.update(request_type="callback", callback_url="https://hooks.test/nb")
    task_id = await nb_submit(env.client, body)
    await wait_for_hooks(env.hooks, 3)
    deadline = time.monotonic() + 2
    while True:
        if env.sim.tasks[task_id].callback_delivered is not None or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.01)
    assert env.sim.tasks[task_id].callback_delivered is False
    assert len(env.hooks.requests) == 3
    assert (await nb_query(env.client, task_id))["data"]["state"] == "success"


# -- task outcomes ---------------------------------------------------------------------------


async def test_never_finish_stays_running(make_env: MakeEnv) -> None:
    clock = FakeClock()
    env = await make_env(SimulatorConfig(time_scale=1.0), clock=clock)
    gp_id = await gp_submit(env.client, "[sim:never_finish] x", callback_url="https://hooks.test/")
    body = nb_body("x [sim:never_finish]")
    body.update(request_type="callback", callback_url="https://hooks.test/")
    nb_id = await nb_submit(env.client, body)
    clock.advance(1e6)
    assert (await gp_query(env.client, gp_id))["data"]["status"] == "in_progress"
    assert (await nb_query(env.client, nb_id))["data"] == {
        "taskId": nb_id,
        "state": "processing",
        "createTime": 1_700_000_000_000,
    }
    await asyncio.sleep(0.05)
    assert env.hooks.requests == []


async def test_content_violation_fails_early(make_env: MakeEnv) -> None:
    clock = FakeClock()
    env = await make_env(SimulatorConfig(time_scale=1.0), clock=clock)
    task_id = await nb_submit(env.client, nb_body("[sim:content_violation] a calm lake"))
    assert env.sim.tasks[task_id].text == "a calm lake"
    clock.advance(1.4)
    assert (await nb_query(env.client, task_id))["data"]["state"] == "pending"
    clock.advance(0.1)
    data = (await nb_query(env.client, task_id))["data"]
    assert (data["state"], data["failCode"], data["failMsg"], data["costTime"]) == (
        "failed",
        "CONTENT_VIOLATION",
        "Content does not meet safety guidelines",
        1500,
    )


async def test_fail_tag_fails_at_the_end(make_env: MakeEnv) -> None:
    clock = FakeClock()
    env = await make_env(SimulatorConfig(time_scale=1.0), clock=clock)
    task_id = await nb_submit(env.client, nb_body("a calm lake [sim:fail]"))
    duration = env.sim.tasks[task_id].duration
    created = env.sim.tasks[task_id].created
    clock.now = created + duration - 0.01
    assert (await nb_query(env.client, task_id))["data"]["state"] == "processing"
    clock.now = created + duration
    data = (await nb_query(env.client, task_id))["data"]
    assert (data["state"], data["failCode"]) == ("failed", "INTERNAL_ERROR")
    assert "resultJson" not in data


async def test_invalid_image_url_tag(env: Env) -> None:
    task_id = await gp_submit(env.client, "[sim:invalid_image_url] x", images=[RED_DATA_URI])
    data = (await gp_wait(env.client, task_id))["data"]
    assert data["status"] == "failed"
    assert data["status_reason"]["message"].startswith("Cannot access provided image URL: data:")


async def test_queued_outcome_applies_to_the_next_task_only(make_env: MakeEnv) -> None:
    clock = FakeClock()
    env = await make_env(SimulatorConfig(time_scale=1.0), clock=clock)
    env.sim.faults.next_task_outcome.append("content_violation")
    first, second = await nb_submit(env.client), await nb_submit(env.client)
    clock.advance(100)
    assert (await nb_query(env.client, first))["data"]["failCode"] == "CONTENT_VIOLATION"
    assert (await nb_query(env.client, second))["data"]["state"] == "success"


@pytest.mark.parametrize("by_config", [False, True])
async def test_gempix2_data_uri_results(make_env: MakeEnv, by_config: bool) -> None:
    env = await make_env(SimulatorConfig(time_scale=SCALE, gempix2_data_uri=by_config))
    prompt = "a kite" if by_config else "a kite [sim:data_uri]"
    final = await gp_wait(env.client, await gp_submit(env.client, prompt))
    image_field = final["data"]["result"][0]["image"]
    prefix = "data:image/png;base64,"
    assert image_field.startswith(prefix)
    image = Image.open(io.BytesIO(base64.b64decode(image_field[len(prefix) :])))
    assert (image.format, image.size) == ("PNG", (1024, 1024))


# -- introspection ---------------------------------------------------------------------------


async def test_stats_counts_submit_posts_and_reports_task_states(make_env: MakeEnv) -> None:
    clock = FakeClock()
    env = await make_env(SimulatorConfig(time_scale=1.0), clock=clock)
    anonymous = httpx.AsyncClient(transport=httpx.ASGITransport(app=env.sim.app), base_url=BASE)
    try:
        empty = await anonymous.get("/_simulator/stats")  # no Authorization header needed
        assert empty.status_code == 200
        assert empty.json() == {"submissions": 0, "tasks": {}}
        nb_task = await nb_submit(env.client)
        gp_task = await gp_submit(env.client)
        refused = await env.client.post(NB_SUBMIT, content=b"not json")  # received, no task
        assert refused.status_code == 400
        await gp_query(env.client, gp_task)  # status reads are not submissions
        stats = (await anonymous.get("/_simulator/stats")).json()
        assert stats == {
            "submissions": 3,
            "tasks": {nb_task: "pending", gp_task: "pending"},
        }
        clock.advance(1000)
        stats = (await anonymous.get("/_simulator/stats")).json()
        assert stats["tasks"] == {nb_task: "success", gp_task: "success"}
        assert stats["submissions"] == 3
    finally:
        await anonymous.aclose()
