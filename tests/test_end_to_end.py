"""End to end: the real clients and the watch loop against the in-process API simulator.

Everything goes through `providers.registry.build_client` over an httpx client whose transport
is the simulator's ASGI app, so the requests, bodies, error shapes and timings are the ones the
studio meets. The simulator runs at SCALE (a "25 s" task takes 125 ms); the transport's retry
waits go to a recording fake sleep, so retries cost no time and their waits can be asserted.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from conftest import TEST_API_KEY
from PIL import Image

from providers import errors, registry
from providers.capabilities import SETTING_NAMES, ImageSettings
from providers.errors import (
    AuthenticationError,
    BadRequestError,
    ContentViolationError,
    InsufficientCreditsError,
    InvalidImageUrlError,
    RateLimitedError,
    SubmissionOutcomeUnknown,
    TaskFailed,
    TaskNotFoundError,
    WatchTimeoutError,
)
from providers.registry import ImageClient, build_client
from providers.services import CATALOG
from providers.types import GenerationRequest, SubmittedTask, TaskState, TaskStatus
from providers.watch import PollSchedule, watch_task
from simulator import Simulator, SimulatorConfig

BASE = "http://simulator.test"
SCALE = 0.005
API_KEY = TEST_API_KEY
PROVIDER_NAME = {"gempix2": "GemPix2", "nano_banana_pro": "Nano Banana Pro"}
SERVICES = pytest.mark.parametrize(
    "service", ["gempix2", "nano_banana_pro"], ids=["gempix2", "nano_banana_pro"]
)
OK_REFERENCE = "https://refs.test/ok.png"
MISSING_REFERENCE = "https://refs.test/missing.png"


def png_bytes(color: tuple[int, int, int], size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def png_data_uri(color: tuple[int, int, int], size: tuple[int, int]) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(color, size)).decode("ascii")


def request_for(service: str, prompt: str, **fields: Any) -> GenerationRequest:
    """A small request for `service`: GemPix2 has no size settings, apixo gets 1:1 1K png."""
    if service == "gempix2":
        return GenerationRequest(model="google/gempix2", prompt=prompt, **fields)
    settings: dict[str, Any] = {"aspect_ratio": "1:1", "resolution": "1K", "output_format": "png"}
    settings.update({k: fields.pop(k) for k in SETTING_NAMES if k in fields})
    return GenerationRequest(
        model="nano-banana-pro", prompt=prompt, settings=ImageSettings(**settings), **fields
    )


def schedule_for(request: GenerationRequest, time_scale: float) -> PollSchedule:
    return registry.schedule_for(CATALOG.model(request.model), request, time_scale)


# -- harness -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeenRequest:
    """One HTTP request as the simulator's ASGI app received it."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]


class RecordingApp:
    """Wraps the simulator's ASGI app and records every request it sees."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[SeenRequest] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.seen.append(
                SeenRequest(
                    method=scope["method"],
                    path=scope["path"],
                    query=scope["query_string"].decode("latin-1"),
                    headers=tuple(
                        (key.decode("latin-1").lower(), value.decode("latin-1"))
                        for key, value in scope["headers"]
                    ),
                )
            )
        await self.app(scope, receive, send)


class TimedASGITransport(httpx.ASGITransport):
    """httpx.ASGITransport ignores timeouts; apply the read timeout the way a socket would.

    Without this a `hang` fault would just block the client for `hang_seconds`.
    """

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        read_timeout = request.extensions.get("timeout", {}).get("read")
        answer = super().handle_async_request(request)
        if read_timeout is None:
            return await answer
        try:
            return await asyncio.wait_for(answer, read_timeout)
        except TimeoutError as exc:
            raise httpx.ReadTimeout("no answer within the read timeout", request=request) from exc


@dataclass
class Studio:
    sim: Simulator
    http: httpx.AsyncClient
    app: RecordingApp
    fetched: list[str]
    hooks: list[httpx.Request]
    hook_arrived: asyncio.Event
    waits: list[float] = field(default_factory=list)

    async def fake_sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)

    def client(self, service: str) -> ImageClient:
        return build_client(
            CATALOG.service(service),
            self.http,
            base_url=BASE,
            api_key=API_KEY,
            sleep=self.fake_sleep,
        )

    async def wait_for_hooks(self, count: int) -> None:
        while len(self.hooks) < count:
            self.hook_arrived.clear()
            await self.hook_arrived.wait()

    def hook_bodies(self) -> list[dict[str, Any]]:
        return [json.loads(request.content) for request in self.hooks]

    def api_requests(self, method: str | None = None) -> list[SeenRequest]:
        return [
            seen
            for seen in self.app.seen
            if seen.path.startswith("/api/") and (method is None or seen.method == method)
        ]


def reference_handler(fetched: list[str]) -> Callable[[httpx.Request], httpx.Response]:
    """The internet as the simulator sees it: one reachable PNG, everything else 404."""
    image = png_bytes((0, 128, 255), (40, 30))

    def handle(request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        fetched.append(url)
        if url == OK_REFERENCE:
            return httpx.Response(200, content=image, headers={"content-type": "image/png"})
        return httpx.Response(404, text="not found")

    return handle


MakeStudio = Callable[..., Awaitable[Studio]]


@pytest.fixture
async def make_studio() -> AsyncIterator[MakeStudio]:
    opened: list[httpx.AsyncClient] = []
    sims: list[Simulator] = []

    async def make(*, read_timeout: float = 5.0) -> Studio:
        fetched: list[str] = []
        hooks: list[httpx.Request] = []
        hook_arrived = asyncio.Event()

        def receive_hook(request: httpx.Request) -> httpx.Response:
            hooks.append(request)
            hook_arrived.set()
            return httpx.Response(200, json={"ok": True})

        fetch_client = httpx.AsyncClient(transport=httpx.MockTransport(reference_handler(fetched)))
        callback_client = httpx.AsyncClient(transport=httpx.MockTransport(receive_hook))
        sim = Simulator(
            SimulatorConfig(time_scale=SCALE, seed=7),
            fetch_client=fetch_client,
            callback_client=callback_client,
        )
        app = RecordingApp(sim.app)
        http = httpx.AsyncClient(
            transport=TimedASGITransport(app=app), base_url=BASE, timeout=read_timeout
        )
        opened.extend([http, fetch_client, callback_client])
        sims.append(sim)
        return Studio(sim, http, app, fetched, hooks, hook_arrived)

    yield make
    for sim in sims:
        await sim.aclose()
    for client in opened:
        await client.aclose()


@pytest.fixture
async def studio(make_studio: MakeStudio) -> Studio:
    return await make_studio()


async def generate(
    studio: Studio,
    client: ImageClient,
    request: GenerationRequest,
    *,
    deadline: float = 10.0,
    schedule: PollSchedule | None = None,
    wake: asyncio.Event | None = None,
) -> tuple[SubmittedTask, list[TaskStatus]]:
    """Submit and watch to the end; every status the watch yielded, in order."""
    submitted = await client.submit(request)
    statuses = [
        status
        async for status in watch_task(
            client,
            submitted.task_id,
            schedule=schedule or schedule_for(request, SCALE),
            deadline=deadline,
            wake=wake,
        )
    ]
    return submitted, statuses


def failure_of(client: ImageClient, status: TaskStatus) -> TaskFailed:
    return errors.task_failure(
        status.fail_message, status.fail_code, provider=client.provider, task_id=status.task_id
    )


async def open_result(studio: Studio, location: str) -> tuple[Image.Image, str]:
    """The result image (decoded data URI, or downloaded through the studio's client)."""
    if location.startswith("data:"):
        header, _, payload = location.partition(",")
        assert header.endswith(";base64")
        content_type, data = header[len("data:") : -len(";base64")], base64.b64decode(payload)
    else:
        assert location.startswith(f"{BASE}/files/")
        response = await studio.http.get(location)
        assert response.status_code == 200
        content_type, data = response.headers["content-type"], response.content
    image = Image.open(io.BytesIO(data))
    image.load()
    return image, content_type


# -- success for each model ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "settings", "pillow_format", "content_type", "size"),
    [
        ("google/gempix2", {}, "PNG", "image/png", (1024, 1024)),
        ("google/gemini-2.5-flash-image", {}, "PNG", "image/png", (1024, 1024)),
        (
            "nano-banana-pro",
            {"aspect_ratio": "16:9", "resolution": "2K", "output_format": "jpeg"},
            "JPEG",
            "image/jpeg",
            (2752, 1536),
        ),
    ],
)
async def test_each_model_generates_an_image_of_the_expected_size(
    studio: Studio,
    model: str,
    settings: dict[str, str],
    pillow_format: str,
    content_type: str,
    size: tuple[int, int],
) -> None:
    spec = CATALOG.model(model)
    client = studio.client(spec.service)
    request = GenerationRequest(
        model=model, prompt="a lighthouse at dusk", settings=ImageSettings(**settings)
    )

    submitted, statuses = await generate(studio, client, request)

    final = statuses[-1]
    assert [s.is_terminal for s in statuses] == [False] * (len(statuses) - 1) + [True]
    assert {s.task_id for s in statuses} == {submitted.task_id}
    assert final.state is TaskState.SUCCEEDED
    assert final.provider_state == "success"
    assert len(final.images) == 1
    assert spec.pixel_size(settings.get("aspect_ratio"), settings.get("resolution")) == size
    image, served_type = await open_result(studio, final.images[0].location)
    assert (image.format, image.size, served_type) == (pillow_format, size, content_type)

    record = studio.sim.tasks[submitted.task_id]
    assert record.model == model
    assert record.prompt == "a lighthouse at dusk"
    if spec.service == "gempix2":
        assert final.credits == 0.5
        assert list(studio.sim.submissions) == [{"model": model, "prompt": "a lighthouse at dusk"}]
    else:
        assert record.params["aspect_ratio"] == "16:9"
        assert record.params["resolution"] == "2K"
        assert record.params["output_format"] == "jpeg"
        assert final.cost_seconds is not None and final.cost_seconds >= 0
        assert final.created_at is not None and final.completed_at is not None


async def test_gempix2_data_uri_result_decodes(studio: Studio) -> None:
    client = studio.client("gempix2")
    request = request_for("gempix2", "[sim:data_uri] a koi pond")

    _, statuses = await generate(studio, client, request)

    final = statuses[-1]
    assert final.state is TaskState.SUCCEEDED
    assert final.images[0].is_data_uri
    assert final.images[0].location.startswith("data:image/png;base64,")
    image, content_type = await open_result(studio, final.images[0].location)
    assert (image.format, image.size, content_type) == ("PNG", (1024, 1024), "image/png")
    assert not [seen for seen in studio.app.seen if seen.path.startswith("/files/")]


# -- references ----------------------------------------------------------------------------


@SERVICES
async def test_data_uri_references_reach_the_task(studio: Studio, service: str) -> None:
    client = studio.client(service)
    references = (png_data_uri((255, 0, 0), (32, 32)), png_data_uri((0, 0, 255), (40, 24)))
    request = request_for(service, "blend these two", reference_urls=references)

    submitted, statuses = await generate(studio, client, request)

    assert statuses[-1].state is TaskState.SUCCEEDED
    record = studio.sim.tasks[submitted.task_id]
    assert record.references == list(references)
    assert [image.size for image in record.reference_images] == [(32, 32), (40, 24)]
    assert studio.fetched == []  # data URIs are decoded, never fetched
    if service == "nano_banana_pro":
        assert record.params["mode"] == "image-to-image"
        assert studio.sim.submissions[0]["input"]["image_urls"] == list(references)
    else:
        assert studio.sim.submissions[0]["images"] == list(references)
    image, _ = await open_result(studio, statuses[-1].images[0].location)
    assert image.size == (1024, 1024)


@SERVICES
async def test_unreachable_reference_fails_with_invalid_image_url(
    studio: Studio, service: str
) -> None:
    client = studio.client(service)
    request = request_for(
        service, "use this photo", reference_urls=(OK_REFERENCE, MISSING_REFERENCE)
    )

    submitted, statuses = await generate(studio, client, request)

    final = statuses[-1]
    assert final.state is TaskState.FAILED
    assert final.images == ()
    assert final.fail_message == f"Cannot access provided image URL: {MISSING_REFERENCE}"
    if service == "nano_banana_pro":
        assert final.fail_code == "INVALID_IMAGE_URL"
    assert sorted(studio.fetched) == [MISSING_REFERENCE, OK_REFERENCE]
    error = failure_of(client, final)
    assert type(error) is InvalidImageUrlError
    assert error.user_message() == (
        f"The service could not fetch a reference image (task {submitted.task_id}): "
        "make sure each reference is a public JPG, PNG or WebP under 10 MB."
    )


async def test_unreachable_reference_named_safety_is_still_an_invalid_url(
    studio: Studio,
) -> None:
    client = studio.client("gempix2")
    url = "https://refs.test/safety-vest.png"  # answers 404
    request = request_for("gempix2", "a worker", reference_urls=(url,))

    _, statuses = await generate(studio, client, request)

    final = statuses[-1]
    assert final.state is TaskState.FAILED
    assert final.fail_message == f"Cannot access provided image URL: {url}"
    assert type(failure_of(client, final)) is InvalidImageUrlError


# -- injected faults on submit -------------------------------------------------------------


@SERVICES
async def test_submit_unauthorized(studio: Studio, service: str) -> None:
    studio.sim.faults.push("submit", "unauthorized", service=service)
    client = studio.client(service)

    with pytest.raises(AuthenticationError) as caught:
        await client.submit(request_for(service, "a red fox"))

    assert caught.value.status_code == 401
    assert caught.value.provider == PROVIDER_NAME[service]
    assert caught.value.user_message() == (
        f"The {PROVIDER_NAME[service]} service did not accept the API key: "
        "check your API key (it may be missing, mistyped or expired)."
    )
    assert len(studio.api_requests("POST")) == 1
    assert studio.sim.tasks == {}


@SERVICES
async def test_submit_bad_request(studio: Studio, service: str) -> None:
    studio.sim.faults.push("submit", "bad_request", service=service)
    client = studio.client(service)

    with pytest.raises(BadRequestError) as caught:
        await client.submit(request_for(service, "a red fox"))

    detail = "invalid request parameters" if service == "gempix2" else "Invalid parameters"
    assert caught.value.status_code == 400
    assert caught.value.user_message() == f"The service rejected the request: {detail}"
    assert len(studio.api_requests("POST")) == 1
    assert studio.sim.tasks == {}


@SERVICES
async def test_submit_insufficient_credits(studio: Studio, service: str) -> None:
    studio.sim.faults.push("submit", "insufficient_credits", service=service)
    client = studio.client(service)

    with pytest.raises(InsufficientCreditsError) as caught:
        await client.submit(request_for(service, "a red fox"))

    assert caught.value.message == "Insufficient credits"
    assert caught.value.status_code == 400  # apixo: HTTP 200 with body code 400
    assert caught.value.user_message() == (
        f"Your {PROVIDER_NAME[service]} account does not have enough credits for this image: "
        "top up and try again."
    )
    assert studio.sim.tasks == {}


@SERVICES
async def test_submit_rate_limited_is_not_resent(studio: Studio, service: str) -> None:
    studio.sim.faults.push("submit", "rate_limited", retry_after=7, service=service)
    client = studio.client(service)

    with pytest.raises(RateLimitedError) as caught:
        await client.submit(request_for(service, "a red fox"))

    assert caught.value.retry_after == 7.0
    assert caught.value.status_code == 429
    assert caught.value.user_message() == (
        "The service is rate-limiting requests: wait 7 s and try again."
    )
    assert len(studio.sim.submissions) == 1
    assert len(studio.api_requests("POST")) == 1
    assert studio.waits == []
    assert studio.sim.tasks == {}


@SERVICES
async def test_submit_server_error_is_an_unknown_outcome(studio: Studio, service: str) -> None:
    studio.sim.faults.push("submit", "server_error", service=service)
    client = studio.client(service)

    with pytest.raises(SubmissionOutcomeUnknown) as caught:
        await client.submit(request_for(service, "a red fox"))

    assert caught.value.status_code == 500
    assert caught.value.task_id is None
    assert caught.value.user_message() == (
        "The request was sent but no clear answer came back, so it may or may not have started "
        "a task. No task id came back. It was not resent, to avoid paying twice."
    )
    assert len(studio.sim.submissions) == 1
    assert len(studio.api_requests("POST")) == 1
    assert studio.waits == []


@SERVICES
async def test_submit_hang_is_an_unknown_outcome_that_did_start_a_task(
    make_studio: MakeStudio, service: str
) -> None:
    studio = await make_studio(read_timeout=0.2)
    studio.sim.faults.push("submit", "hang", hang_seconds=5.0, service=service)
    client = studio.client(service)

    started = time.monotonic()
    with pytest.raises(SubmissionOutcomeUnknown) as caught:
        await client.submit(request_for(service, "a hanging fox"))
    elapsed = time.monotonic() - started

    assert 0.15 < elapsed < 2.0
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
    assert caught.value.task_id is None
    assert len(studio.sim.submissions) == 1
    assert len(studio.api_requests("POST")) == 1
    # The outcome really was unknown: the service did create (and would bill) the task.
    assert [task.prompt for task in studio.sim.tasks.values()] == ["a hanging fox"]
    assert [task.service for task in studio.sim.tasks.values()] == [service]


# -- injected faults on status -------------------------------------------------------------


@SERVICES
async def test_status_rate_limited_waits_retry_after_then_succeeds(
    studio: Studio, service: str
) -> None:
    studio.sim.faults.push("status", "rate_limited", retry_after=2, service=service)
    client = studio.client(service)

    submitted, statuses = await generate(studio, client, request_for(service, "a red fox"))

    assert statuses[-1].state is TaskState.SUCCEEDED
    assert studio.waits == [2.0]  # the Retry-After, exactly
    assert studio.sim.faults.pending("status") == []
    queries = studio.sim.status_queries
    assert len(queries) == len(statuses) + 1  # the 429 read plus one read per status
    assert set(queries) == {submitted.task_id}


@SERVICES
async def test_status_server_error_is_retried_then_succeeds(studio: Studio, service: str) -> None:
    studio.sim.faults.push("status", "server_error", service=service)
    client = studio.client(service)

    submitted, statuses = await generate(studio, client, request_for(service, "a red fox"))

    assert statuses[-1].state is TaskState.SUCCEEDED
    assert len(studio.waits) == 1
    assert 0.25 <= studio.waits[0] <= 0.5  # first backoff of the default RetryPolicy
    assert len(studio.sim.status_queries) == len(statuses) + 1
    assert set(studio.sim.status_queries) == {submitted.task_id}


@SERVICES
async def test_status_not_found(studio: Studio, service: str) -> None:
    client = studio.client(service)
    submitted = await client.submit(request_for(service, "a red fox"))
    studio.sim.faults.push("status", "not_found", service=service)

    with pytest.raises(TaskNotFoundError) as caught:
        async for _ in watch_task(
            client,
            submitted.task_id,
            schedule=schedule_for(request_for(service, "x"), SCALE),
            deadline=5.0,
        ):
            pass

    assert caught.value.status_code == 404
    assert caught.value.task_id == submitted.task_id
    assert caught.value.user_message() == (
        f"The service does not know this task (task {submitted.task_id})."
    )
    assert list(studio.sim.status_queries) == [submitted.task_id]  # not retried
    assert studio.waits == []


# -- task outcomes -------------------------------------------------------------------------


@SERVICES
async def test_content_violation_is_found_by_the_first_check(studio: Studio, service: str) -> None:
    client = studio.client(service)
    request = request_for(service, "[sim:content_violation] something forbidden")

    submitted, statuses = await generate(studio, client, request)

    assert len(studio.sim.status_queries) <= 2
    assert len(statuses) == 1  # the schedule's early check already sees the failure
    final = statuses[0]
    assert final.state is TaskState.FAILED
    assert final.fail_message == "Content does not meet safety guidelines"
    if service == "nano_banana_pro":
        assert final.fail_code == "CONTENT_VIOLATION"
    error = failure_of(client, final)
    assert type(error) is ContentViolationError
    assert error.user_message() == (
        "The service declined the prompt or a reference image under its content policy "
        f"(task {submitted.task_id}): rephrase and try again."
    )


@SERVICES
async def test_failed_task_is_task_failed(studio: Studio, service: str) -> None:
    client = studio.client(service)

    submitted, statuses = await generate(studio, client, request_for(service, "[sim:fail] x"))

    final = statuses[-1]
    assert final.state is TaskState.FAILED
    assert final.images == ()
    assert final.fail_message == "Internal error during image generation"
    if service == "nano_banana_pro":
        assert final.fail_code == "INTERNAL_ERROR"
    else:
        assert final.credits == 0.0
    error = failure_of(client, final)
    assert type(error) is TaskFailed
    assert error.user_message() == (
        f"The task failed (task {submitted.task_id}): Internal error during image generation"
    )


@SERVICES
async def test_never_finishing_task_hits_the_watch_deadline(studio: Studio, service: str) -> None:
    client = studio.client(service)
    request = request_for(service, "[sim:never_finish] forever")
    submitted = await client.submit(request)
    seen: list[TaskStatus] = []

    started = time.monotonic()
    with pytest.raises(WatchTimeoutError) as caught:
        async for status in watch_task(
            client, submitted.task_id, schedule=schedule_for(request, SCALE), deadline=0.3
        ):
            seen.append(status)
    elapsed = time.monotonic() - started

    assert 0.25 < elapsed < 2.0
    assert len(seen) >= 2
    assert not any(status.is_terminal for status in seen)
    assert caught.value.task_id == submitted.task_id
    assert caught.value.user_message() == (
        f"The task did not finish in time (task {submitted.task_id}); it may still finish "
        "on the service."
    )


@SERVICES
async def test_latency_still_succeeds(studio: Studio, service: str) -> None:
    studio.sim.faults.latency = 0.05
    client = studio.client(service)
    request = request_for(service, "a slow fox")

    started = time.monotonic()
    submitted = await client.submit(request)
    submit_took = time.monotonic() - started
    statuses = [
        s
        async for s in watch_task(
            client, submitted.task_id, schedule=schedule_for(request, SCALE), deadline=10.0
        )
    ]

    assert submit_took >= 0.05
    assert statuses[-1].state is TaskState.SUCCEEDED
    image, _ = await open_result(studio, statuses[-1].images[0].location)
    assert image.size == (1024, 1024)


# -- callbacks -----------------------------------------------------------------------------


@SERVICES
async def test_callback_payload_matches_the_polled_status(studio: Studio, service: str) -> None:
    client = studio.client(service)
    hook_url = f"https://studio.test/hooks/{service}"
    request = request_for(service, "a callback fox", callback_url=hook_url)

    submitted = await client.submit(request)
    await asyncio.wait_for(studio.hook_arrived.wait(), 5.0)

    body = studio.sim.submissions[0]
    if service == "nano_banana_pro":
        assert (body["request_type"], body["callback_url"]) == ("callback", hook_url)
    else:
        assert body["callback_url"] == hook_url
    assert [(r.method, str(r.url)) for r in studio.hooks] == [("POST", hook_url)]
    from_callback = client.parse_callback(studio.hook_bodies()[0])
    polled = await client.fetch_status(submitted.task_id)
    assert from_callback.task_id == submitted.task_id
    assert from_callback.state is TaskState.SUCCEEDED
    assert len(from_callback.images) == 1
    assert (from_callback.state, from_callback.images) == (polled.state, polled.images)
    assert from_callback == polled


@SERVICES
async def test_callback_wakes_a_long_watch(studio: Studio, service: str) -> None:
    client = studio.client(service)
    request = request_for(service, "a woken fox", callback_url="https://studio.test/hooks/wake")
    # Without a wake-up this schedule would not read the status for 1000 s.
    far = PollSchedule(window=(1000.0, 2000.0), first_check=1000.0, quiet_interval=1000.0)

    started = time.monotonic()
    submitted, statuses = await asyncio.wait_for(
        generate(studio, client, request, schedule=far, deadline=5000.0, wake=studio.hook_arrived),
        timeout=5.0,
    )
    elapsed = time.monotonic() - started

    assert elapsed < 2.0
    assert len(studio.hooks) == 1
    assert [s.state for s in statuses] == [TaskState.SUCCEEDED]
    assert list(studio.sim.status_queries) == [submitted.task_id]


# -- the key -------------------------------------------------------------------------------


async def test_api_key_appears_only_in_the_authorization_header(studio: Studio) -> None:
    raised: list[Exception] = []
    for service in ("gempix2", "nano_banana_pro"):
        client = studio.client(service)
        hook = f"https://studio.test/hooks/{service}"
        _, statuses = await generate(
            studio, client, request_for(service, "a secret fox", callback_url=hook)
        )
        await open_result(studio, statuses[-1].images[0].location)
        for endpoint, kind in (("submit", "unauthorized"), ("status", "not_found")):
            studio.sim.faults.push(endpoint, kind, service=service)
        with pytest.raises(AuthenticationError) as auth_error:
            await client.submit(request_for(service, "a refused fox"))
        with pytest.raises(TaskNotFoundError) as not_found:
            await client.fetch_status(statuses[-1].task_id)
        raised.extend([auth_error.value, not_found.value])
    await asyncio.wait_for(studio.wait_for_hooks(2), 5.0)

    api = studio.api_requests()
    assert len(api) >= 8  # two submits and at least two status reads per service
    for seen in api:
        assert seen.header("authorization") == [f"Bearer {API_KEY}"]
    for seen in studio.app.seen:
        assert API_KEY not in seen.path
        assert API_KEY not in seen.query
        assert all(API_KEY not in value for key, value in seen.headers if key != "authorization")
    files = [seen for seen in studio.app.seen if seen.path.startswith("/files/")]
    assert len(files) == 2
    assert all(API_KEY not in task_id for task_id in studio.sim.status_queries)
    assert API_KEY not in json.dumps(list(studio.sim.submissions))
    assert API_KEY not in json.dumps(studio.hook_bodies())
    assert all(API_KEY not in str(r.url) for r in studio.hooks)
    for error in raised:
        assert API_KEY not in str(error)
        assert API_KEY not in error.user_message()
    for service in ("gempix2", "nano_banana_pro"):
        assert API_KEY not in repr(studio.client(service))
