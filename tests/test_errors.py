"""The exception tree, reached from real answers through MockTransport and the real clients."""

from __future__ import annotations

import logging

import httpx
import pytest
from conftest import BASE_URLS, read_seed

from providers import errors
from providers.capabilities import ImageSettings
from providers.errors import (
    AuthenticationError,
    BadRequestError,
    ContentViolationError,
    ImageServiceError,
    InsufficientCreditsError,
    InvalidImageUrlError,
    InvalidRequestError,
    RateLimitedError,
    RequestRejected,
    ServiceError,
    ServiceUnreachableError,
    SubmissionOutcomeUnknown,
    TaskFailed,
    TaskNotFoundError,
    WatchTimeoutError,
)
from providers.retry import RetryPolicy
from providers.services.nano_banana_pro import parse_task as parse_apixo_task
from providers.types import GenerationRequest

GP, NBP = "gempix2", "nano_banana_pro"
REQUESTS = {
    GP: GenerationRequest(model="google/gempix2", prompt="a red bicycle"),
    NBP: GenerationRequest(
        model="nano-banana-pro", prompt="a red bicycle", settings=ImageSettings(resolution="2K")
    ),
}
PROVIDERS = {GP: "GemPix2", NBP: "Nano Banana Pro"}
TWO_TRIES = RetryPolicy(max_attempts=2)


def answer(status: int, body: object = None, **kwargs) -> httpx.Response:
    return httpx.Response(status, json=body, **kwargs)


@pytest.mark.parametrize(
    ("child", "parent"),
    [
        (RequestRejected, ImageServiceError),
        (AuthenticationError, RequestRejected),
        (BadRequestError, RequestRejected),
        (InsufficientCreditsError, RequestRejected),
        (RateLimitedError, RequestRejected),
        (TaskNotFoundError, RequestRejected),
        (ServiceError, ImageServiceError),
        (ServiceUnreachableError, ImageServiceError),
        (WatchTimeoutError, ImageServiceError),
        (SubmissionOutcomeUnknown, ImageServiceError),
        (InvalidRequestError, ImageServiceError),
        (TaskFailed, ImageServiceError),
        (ContentViolationError, TaskFailed),
        (InvalidImageUrlError, TaskFailed),
    ],
)
def test_tree_shape(child, parent):
    assert issubclass(child, parent)
    # Transient errors (retried) and rejections (never retried) must stay apart.
    assert not (issubclass(child, RequestRejected) and issubclass(child, ServiceError))


# ---------------------------------------------------------------------------- 401 and the key


def assert_key_hidden(key: str, error: Exception, client: object, caplog) -> None:
    assert key not in str(error)
    assert key not in repr(error)
    assert key not in error.user_message()
    assert key not in repr(client)
    assert key not in repr(client._transport)
    assert caplog.records, "expected the exchange to be logged"
    for record in caplog.records:
        assert key not in record.getMessage()
    assert key not in caplog.text


@pytest.mark.parametrize(
    ("service", "call", "body"),
    [
        (GP, "submit", read_seed("gempix2_submit_401")),
        (GP, "fetch_status", read_seed("gempix2_query_401")),
        (NBP, "submit", {"code": 401, "message": "Invalid or missing API Key", "data": None}),
        (NBP, "fetch_status", {"code": 401, "message": "Invalid or missing API Key"}),
    ],
)
async def test_401_is_authentication_error_and_hides_the_key(
    service, call, body, fake_service, caplog
):
    caplog.set_level(logging.DEBUG)
    fake = fake_service(service, answer(401, body))
    with pytest.raises(AuthenticationError) as caught:
        if call == "submit":
            await fake.client.submit(REQUESTS[service])
        else:
            await fake.client.fetch_status("task-1")
    error = caught.value
    assert error.status_code == 401
    assert error.provider == PROVIDERS[service]
    assert error.message == body["message"]
    assert error.user_message() == (
        f"The {PROVIDERS[service]} service did not accept the API key: "
        "check your API key (it may be missing, mistyped or expired)."
    )
    assert len(fake.requests) == 1  # never retried
    assert_key_hidden(fake.api_key, error, fake.client, caplog)


@pytest.mark.parametrize("service", [GP, NBP])
async def test_key_is_sent_only_in_the_authorization_header(service, fake_service, caplog):
    caplog.set_level(logging.DEBUG)
    ok = {GP: read_seed("gempix2_submit_ok"), NBP: read_seed("apixo_submit_ok")}[service]
    status = {
        GP: {"code": 0, "message": "ok", "data": read_seed("gempix2_callback_success")},
        NBP: read_seed("apixo_status_success"),
    }[service]
    fake = fake_service(service, answer(200, ok), answer(200, status))
    submitted = await fake.client.submit(REQUESTS[service])
    await fake.client.fetch_status(submitted.task_id)
    assert [r.method for r in fake.requests] == ["POST", "GET"]
    for request in fake.requests:
        assert request.headers["Authorization"] == f"Bearer {fake.api_key}"
        assert str(request.url).startswith(BASE_URLS[service] + "/api/")
        assert fake.api_key not in str(request.url)
        assert fake.api_key not in request.content.decode()
        others = [v for k, v in request.headers.items() if k.lower() != "authorization"]
        assert all(fake.api_key not in value for value in others)
    for record in caplog.records:
        assert fake.api_key not in record.getMessage()


# ---------------------------------------------------------------------------- 400 and credits


async def test_gempix2_400_carries_the_services_detail(fake_service):
    fake = fake_service(GP, answer(400, read_seed("gempix2_submit_400")))
    with pytest.raises(BadRequestError) as caught:
        await fake.client.submit(REQUESTS[GP])
    assert caught.value.message == "prompt is required"
    assert caught.value.status_code == 400
    assert caught.value.user_message() == "The service rejected the request: prompt is required"
    assert len(fake.requests) == 1


async def test_apixo_400_carries_the_services_message(fake_service):
    body = {"code": 400, "message": "input.resolution must be one of 1K, 2K, 4K", "data": None}
    fake = fake_service(NBP, answer(400, body))
    with pytest.raises(BadRequestError) as caught:
        await fake.client.submit(REQUESTS[NBP])
    assert type(caught.value) is BadRequestError
    assert caught.value.user_message() == (
        "The service rejected the request: input.resolution must be one of 1K, 2K, 4K"
    )


async def test_apixo_insufficient_credits_in_a_200_answer(fake_service):
    fake = fake_service(NBP, answer(200, read_seed("apixo_submit_insufficient_credits")))
    with pytest.raises(InsufficientCreditsError) as caught:
        await fake.client.submit(REQUESTS[NBP])
    assert caught.value.status_code == 400
    assert caught.value.message == "Insufficient credits"
    assert caught.value.user_message() == (
        "Your Nano Banana Pro account does not have enough credits for this image: "
        "top up and try again."
    )
    assert len(fake.requests) == 1


# ---------------------------------------------------------------------------- 429 and 404


@pytest.mark.parametrize("service", [GP, NBP])
async def test_429_on_submit_shows_the_wait(service, fake_service, fake_clock):
    fake = fake_service(
        service,
        answer(429, {"code": 429, "message": "Rate limit exceeded"}, headers={"Retry-After": "7"}),
    )
    with pytest.raises(RateLimitedError) as caught:
        await fake.client.submit(REQUESTS[service])
    assert caught.value.retry_after == 7.0
    assert caught.value.user_message() == (
        "The service is rate-limiting requests: wait 7 s and try again."
    )
    assert len(fake.requests) == 1
    assert fake_clock.sleeps == []


async def test_429_on_status_read_keeps_wait_and_task(fake_service):
    fake = fake_service(
        NBP,
        answer(429, {"code": 429, "message": "Rate limit exceeded"}, headers={"Retry-After": "12"}),
        retry=TWO_TRIES,
    )
    with pytest.raises(RateLimitedError) as caught:
        await fake.client.fetch_status("task_9")
    assert caught.value.retry_after == 12.0
    assert caught.value.task_id == "task_9"
    assert caught.value.user_message() == (
        "The service is rate-limiting requests: wait 12 s and try again (task task_9)."
    )


def test_429_without_retry_after_says_a_moment():
    error = RateLimitedError("slow down", provider="GemPix2")
    assert error.retry_after is None
    assert error.user_message() == (
        "The service is rate-limiting requests: wait a moment and try again."
    )


@pytest.mark.parametrize(
    ("service", "body"),
    [(GP, read_seed("gempix2_query_404")), (NBP, {"code": 404, "message": "task not found"})],
)
async def test_404_is_task_not_found(service, body, fake_service):
    fake = fake_service(service, answer(404, body))
    with pytest.raises(TaskNotFoundError) as caught:
        await fake.client.fetch_status("ta-missing")
    assert caught.value.task_id == "ta-missing"
    assert caught.value.status_code == 404
    assert caught.value.user_message() == "The service does not know this task (task ta-missing)."
    assert len(fake.requests) == 1


# ---------------------------------------------------------------------------- 5xx and bodies


@pytest.mark.parametrize("service", [GP, NBP])
@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_on_status_read_is_service_error(service, status, fake_service):
    fake = fake_service(
        service, answer(status, {"code": status, "message": "boom"}), retry=TWO_TRIES
    )
    with pytest.raises(ServiceError) as caught:
        await fake.client.fetch_status("t-5")
    assert type(caught.value) is ServiceError
    assert caught.value.status_code == status
    assert caught.value.user_message() == (
        f"The {PROVIDERS[service]} service had an internal error (HTTP {status}) (task t-5): "
        "try again in a moment."
    )
    assert len(fake.requests) == 2


@pytest.mark.parametrize("service", [GP, NBP])
@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(502, text="<html><body>Bad Gateway</body></html>"),
        httpx.Response(500, text=""),
        httpx.Response(503, json=["not", "an", "object"]),
    ],
    ids=["html", "empty", "json-list"],
)
async def test_unreadable_error_body_is_service_error(service, response, fake_service):
    fake = fake_service(service, response, retry=TWO_TRIES)
    with pytest.raises(ServiceError) as caught:
        await fake.client.fetch_status("t-6")
    assert caught.value.message == f"unreadable answer (HTTP {response.status_code})"
    assert caught.value.status_code == response.status_code


@pytest.mark.parametrize(
    ("service", "body"),
    [
        (GP, {"code": 0, "message": "ok", "data": None}),
        (GP, {"code": 0, "message": "ok"}),
        (NBP, {"code": 200, "message": "success", "data": None}),
        (NBP, {"code": 200, "message": "success", "data": "task_1"}),
    ],
)
async def test_ok_answer_without_data_is_service_error_and_retried(service, body, fake_service):
    fake = fake_service(service, answer(200, body), retry=TWO_TRIES)
    with pytest.raises(ServiceError, match="answer without data") as caught:
        await fake.client.fetch_status("t-7")
    assert caught.value.task_id == "t-7"
    assert len(fake.requests) == 2


@pytest.mark.parametrize("service", [GP, NBP])
async def test_unreadable_200_on_status_read_is_service_error(service, fake_service):
    fake = fake_service(
        service, httpx.Response(200, text="<html>maintenance</html>"), retry=TWO_TRIES
    )
    with pytest.raises(ServiceError):
        await fake.client.fetch_status("t-8")
    assert len(fake.requests) == 2


# ---------------------------------------------------------------------------- submission unknown


LOST_ANSWERS = [
    pytest.param(answer(500, {"code": 500, "message": "internal error"}), id="500"),
    pytest.param(answer(503, {"code": 503, "message": "unavailable"}), id="503"),
    pytest.param(httpx.Response(502, text="Bad Gateway"), id="502-text"),
    pytest.param(httpx.ReadTimeout, id="read-timeout"),
    pytest.param(httpx.RemoteProtocolError, id="protocol-error"),
    pytest.param(httpx.WriteError, id="write-error"),
]


@pytest.mark.parametrize(
    ("service", "step"),
    [(GP, p.values[0]) for p in LOST_ANSWERS]
    + [(NBP, p.values[0]) for p in LOST_ANSWERS]
    + [
        (GP, answer(200, {"code": 0, "message": "ok", "data": None})),
        (NBP, answer(200, {"code": 200, "message": "success", "data": None})),
    ],
    ids=[f"gp-{p.id}" for p in LOST_ANSWERS]
    + [f"nbp-{p.id}" for p in LOST_ANSWERS]
    + ["gp-ok-without-data", "nbp-ok-without-data"],
)
async def test_submit_outcome_unknown(service, step, fake_service, fake_clock):
    fake = fake_service(service, step)
    with pytest.raises(SubmissionOutcomeUnknown) as caught:
        await fake.client.submit(REQUESTS[service])
    error = caught.value
    assert error.provider == PROVIDERS[service]
    assert error.task_id is None
    assert error.user_message() == (
        "The request was sent but no clear answer came back, so it may or may not have "
        "started a task. No task id came back. It was not resent, to avoid paying twice."
    )
    assert len(fake.requests) == 1
    assert fake_clock.sleeps == []


def test_submission_outcome_unknown_names_a_known_task_id():
    error = SubmissionOutcomeUnknown("lost", provider="GemPix2", task_id="ta-1")
    assert "The service gave task id ta-1." in error.user_message()


@pytest.mark.parametrize(
    ("service", "body"),
    [
        (GP, {"code": 0, "message": "ok", "data": {}}),
        (NBP, {"code": 200, "message": "success", "data": {"taskId": ""}}),
    ],
)
async def test_submit_ok_without_task_id_is_outcome_unknown(service, body, fake_service):
    fake = fake_service(service, answer(200, body))
    with pytest.raises(SubmissionOutcomeUnknown):
        await fake.client.submit(REQUESTS[service])


@pytest.mark.parametrize("service", [GP, NBP])
async def test_unreadable_200_on_submit_is_outcome_unknown(service, fake_service):
    fake = fake_service(service, httpx.Response(200, text="<html>ok</html>"))
    with pytest.raises(SubmissionOutcomeUnknown):
        await fake.client.submit(REQUESTS[service])


@pytest.mark.parametrize("service", [GP, NBP])
async def test_unreachable_service(service, fake_service):
    fake = fake_service(service, httpx.ConnectError, retry=TWO_TRIES)
    with pytest.raises(ServiceUnreachableError) as caught:
        await fake.client.fetch_status("t-9")
    assert caught.value.message == "connection failed (ConnectError)"
    assert caught.value.user_message() == (
        f"Could not reach the {PROVIDERS[service]} service: connection failed (ConnectError)"
    )
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert len(fake.requests) == 2


# ---------------------------------------------------------------------------- task failures


@pytest.mark.parametrize(
    ("fail_code", "fail_message", "error_type", "user_message"),
    [
        (
            "CONTENT_VIOLATION",
            "Content does not meet safety guidelines",
            ContentViolationError,
            "The service declined the prompt or a reference image under its content policy "
            "(task task_12345678): rephrase and try again.",
        ),
        (
            "INVALID_IMAGE_URL",
            "Cannot access provided image URL",
            InvalidImageUrlError,
            "The service could not fetch a reference image (task task_12345678): make sure "
            "each reference is a public JPG, PNG or WebP under 10 MB.",
        ),
        (
            "INTERNAL_ERROR",
            "Upstream model crashed",
            TaskFailed,
            "The task failed (task task_12345678): Upstream model crashed",
        ),
        (
            "SOMETHING_NEW",
            None,
            TaskFailed,
            "The task failed (task task_12345678): SOMETHING_NEW",
        ),
    ],
)
def test_apixo_failed_status_maps_to_task_failure(
    fail_code, fail_message, error_type, user_message, load_seed
):
    data = load_seed("apixo_status_failed")["data"] | {
        "failCode": fail_code,
        "failMsg": fail_message,
    }
    status = parse_apixo_task(data)
    error = errors.task_failure(
        status.fail_message, status.fail_code, provider="Nano Banana Pro", task_id=status.task_id
    )
    assert type(error) is error_type
    assert error.fail_code == fail_code
    assert error.task_id == "task_12345678"
    assert error.message == (fail_message or fail_code)
    assert error.user_message() == user_message


@pytest.mark.parametrize(
    ("message", "error_type"),
    [
        ("The prompt violates our usage policy", ContentViolationError),
        ("Blocked by safety filter", ContentViolationError),
        ("Could not download image url https://x/y.png", InvalidImageUrlError),
        ("model overloaded", TaskFailed),
        (None, TaskFailed),
    ],
)
def test_gempix2_failure_message_maps_to_task_failure(message, error_type):
    error = errors.task_failure(message, None, provider="GemPix2", task_id="ta1")
    assert type(error) is error_type
    assert error.fail_code is None
    assert error.message == (message or "no reason given")


def test_explicit_fail_code_beats_words_in_the_message():
    error = errors.task_failure(
        "Cannot access provided image URL: AccessDenied by bucket policy",
        "INVALID_IMAGE_URL",
        provider="Nano Banana Pro",
        task_id="task_1",
    )
    assert type(error) is InvalidImageUrlError


def test_invalid_request_and_watch_timeout_messages():
    assert InvalidRequestError("Write a prompt first.").user_message() == "Write a prompt first."
    assert WatchTimeoutError("late", task_id="t1").user_message() == (
        "The task did not finish in time (task t1); it may still finish on the service."
    )
    assert ImageServiceError("odd").user_message() == "The image service had a problem: odd"
