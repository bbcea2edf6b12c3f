"""A hostile service: answers that drip, answers too large to hold, ids and texts out of bounds.

Each fake is an httpx.MockTransport handler; the deadline is made short so a dripping answer
ends the test quickly, and nothing here measures time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from conftest import BASE_URLS, TEST_API_KEY

from providers.capabilities import ImageSettings
from providers.client import MAX_SERVICE_TEXT_CHARS, MAX_TASK_ID_CHARS
from providers.errors import (
    BadRequestError,
    ServiceError,
    ServiceUnreachableError,
    SubmissionOutcomeUnknown,
)
from providers.registry import ImageClient
from providers.retry import RetryPolicy
from providers.services import CATALOG
from providers.transport import ServiceTransport
from providers.types import GenerationRequest

GP, NBP = "gempix2", "nano_banana_pro"
REQUESTS = {
    GP: GenerationRequest(model="google/gempix2", prompt="a cat"),
    NBP: GenerationRequest(
        model="nano-banana-pro",
        prompt="a cat",
        settings=ImageSettings(aspect_ratio="1:1", resolution="1K", output_format="png"),
    ),
}
OK = {GP: {"code": 0, "message": "ok"}, NBP: {"code": 200, "message": "success"}}
TASK_FIELD = {GP: "task_id", NBP: "taskId"}
ONE_TRY = RetryPolicy(max_attempts=1)
MB = 1024 * 1024
# A guard, not a measurement: without the transport's deadline these tests would hang.
GUARD = 20.0


class Counter:
    """How many chunks a dripping or endless body got to send before the client stopped."""

    def __init__(self) -> None:
        self.sent = 0


def client_for(
    service: str,
    handler: Callable[[httpx.Request], httpx.Response],
    *,
    deadline: float = 0.3,
) -> tuple[ImageClient, httpx.AsyncClient]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    transport = ServiceTransport(
        http,
        base_url=BASE_URLS[service],
        api_key=TEST_API_KEY,
        provider=CATALOG.service(service).label,
        retry=ONE_TRY,
        deadline=deadline,
    )
    return CATALOG.service(service).client(transport), http


async def drip(counter: Counter) -> AsyncIterator[bytes]:
    """Headers at once, then one byte now and then: per-read timeouts never fire."""
    while True:
        counter.sent += 1
        yield b" "
        await asyncio.sleep(0.05)


async def endless(counter: Counter, chunk: int = MB, total: int = 60 * MB) -> AsyncIterator[bytes]:
    for _ in range(total // chunk):
        counter.sent += 1
        yield b" " * chunk


def answer(body: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=body)


@pytest.mark.parametrize("service", [GP, NBP])
async def test_a_dripping_submit_answer_is_outcome_unknown_at_the_deadline(service):
    counter = Counter()
    client, http = client_for(service, lambda request: httpx.Response(200, content=drip(counter)))
    async with http:
        with pytest.raises(SubmissionOutcomeUnknown, match=r"within 0\.3 seconds"):
            async with asyncio.timeout(GUARD):
                await client.submit(REQUESTS[service])
    assert counter.sent >= 1  # the answer had started: only the overall deadline ended it


@pytest.mark.parametrize("service", [GP, NBP])
async def test_a_dripping_status_answer_ends_at_the_deadline(service):
    counter = Counter()
    client, http = client_for(service, lambda request: httpx.Response(200, content=drip(counter)))
    async with http:
        with pytest.raises(ServiceUnreachableError, match=r"within 0\.3 seconds") as caught:
            async with asyncio.timeout(GUARD):
                await client.fetch_status("task-1")
    assert caught.value.task_id == "task-1"


async def test_a_service_that_never_answers_ends_at_the_deadline():
    async def silent(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    client, http = client_for(GP, silent)  # type: ignore[arg-type]
    async with http:
        with pytest.raises(SubmissionOutcomeUnknown):
            async with asyncio.timeout(GUARD):
                await client.submit(REQUESTS[GP])


@pytest.mark.parametrize("service", [GP, NBP])
async def test_a_60_mb_status_answer_is_not_read_whole(service):
    counter = Counter()
    client, http = client_for(
        service, lambda request: httpx.Response(200, content=endless(counter)), deadline=30.0
    )
    async with http:
        with pytest.raises(ServiceError, match="larger than 16777216 bytes"):
            await client.fetch_status("task-1")
    assert counter.sent <= 17  # stopped at the 16 MB cap, not after 60 MB


@pytest.mark.parametrize("service", [GP, NBP])
async def test_a_60_mb_submit_answer_is_outcome_unknown_after_64_kb(service):
    counter = Counter()
    client, http = client_for(
        service,
        lambda request: httpx.Response(200, content=endless(counter, chunk=16 * 1024)),
        deadline=30.0,
    )
    async with http:
        with pytest.raises(SubmissionOutcomeUnknown, match="larger than 65536 bytes"):
            await client.submit(REQUESTS[service])
    assert counter.sent <= 5


async def test_a_declared_length_over_the_cap_is_refused_before_reading():
    counter = Counter()

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"Content-Length": str(60 * MB)}, content=endless(counter)
        )

    client, http = client_for(NBP, handler, deadline=30.0)
    async with http:
        with pytest.raises(ServiceError, match="larger than"):
            await client.fetch_status("task-1")
    assert counter.sent == 0


@pytest.mark.parametrize("service", [GP, NBP])
@pytest.mark.parametrize(
    "task_id",
    ["t" * (MAX_TASK_ID_CHARS + 1), "task with spaces", "task\r\nX-Injected: 1", "täsk"],
    ids=["too-long", "spaces", "line-break", "non-ascii"],
)
async def test_a_submit_answer_with_an_unusable_task_id_is_outcome_unknown(service, task_id):
    body = {**OK[service], "data": {TASK_FIELD[service]: task_id}}
    client, http = client_for(service, lambda request: answer(body))
    async with http:
        with pytest.raises(SubmissionOutcomeUnknown):
            await client.submit(REQUESTS[service])


async def test_a_50_mb_task_id_never_reaches_the_parser():
    body = json.dumps({"code": 0, "message": "ok", "data": {"task_id": "t" * (50 * MB)}})
    client, http = client_for(GP, lambda request: httpx.Response(200, text=body), deadline=30.0)
    async with http:
        with pytest.raises(SubmissionOutcomeUnknown, match="larger than 65536 bytes"):
            await client.submit(REQUESTS[GP])


@pytest.mark.parametrize("service", [GP, NBP])
async def test_a_status_answer_naming_a_long_task_id_is_a_service_error(service):
    data = {TASK_FIELD[service]: "t" * (MAX_TASK_ID_CHARS + 1), "status": "pending"}
    data["state"] = "pending"
    client, http = client_for(service, lambda request: answer({**OK[service], "data": data}))
    async with http:
        with pytest.raises(ServiceError, match=f"at most {MAX_TASK_ID_CHARS} characters"):
            await client.fetch_status("task-1")


async def test_a_huge_error_text_is_cut_to_a_sentence_on_one_line():
    detail = "bad\r\nprompt\x00 " + "x" * 30_000
    client, http = client_for(
        GP, lambda request: answer({"code": 1, "message": "failed", "detail": detail}, 400)
    )
    async with http:
        with pytest.raises(BadRequestError) as caught:
            await client.submit(REQUESTS[GP])
    message = caught.value.message
    assert len(message) <= MAX_SERVICE_TEXT_CHARS
    assert message.startswith("bad prompt ")
    assert not any(ch in message for ch in "\r\n\x00")


async def test_a_huge_fail_message_is_cut_to_a_sentence():
    data = {
        "taskId": "task_1",
        "state": "failed",
        "failCode": "X" * 10_000,
        "failMsg": "no\n" * 50_000,
    }
    client, http = client_for(NBP, lambda request: answer({**OK[NBP], "data": data}))
    async with http:
        status = await client.fetch_status("task_1")
    assert status.fail_message is not None and len(status.fail_message) <= 500
    assert "\n" not in status.fail_message
    assert status.fail_code is not None and len(status.fail_code) <= 64


async def test_a_time_beyond_the_calendar_is_no_crash():
    data = {"taskId": "task_1", "state": "pending", "createTime": 10**30}
    client, http = client_for(NBP, lambda request: answer({**OK[NBP], "data": data}))
    async with http:
        status = await client.fetch_status("task_1")
    assert status.created_at is None


async def test_absurdly_nested_json_is_an_unreadable_answer():
    client, http = client_for(GP, lambda request: httpx.Response(200, text="[" * 60_000))
    async with http:
        with pytest.raises(SubmissionOutcomeUnknown):
            await client.submit(REQUESTS[GP])
