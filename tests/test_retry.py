"""The retry policy as a value, and what the transport may send again (GET) or never (POST)."""

from __future__ import annotations

import contextlib
import itertools
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from conftest import BASE_URLS, TEST_API_KEY, read_seed

from providers.errors import (
    AuthenticationError,
    BadRequestError,
    RateLimitedError,
    ServiceError,
    ServiceUnreachableError,
    SubmissionOutcomeUnknown,
    TaskNotFoundError,
)
from providers.retry import RetryPolicy, parse_retry_after
from providers.services.gempix2 import GemPix2Client
from providers.transport import ServiceTransport
from providers.types import GenerationRequest, SubmittedTask, TaskState

GP, NBP = "gempix2", "nano_banana_pro"
RNG_VALUES = [0.0, 1e-9, 0.1, 0.25, 0.5, 0.75, 0.9, 0.999999]
STATUS_OK = {
    GP: {"code": 0, "message": "ok", "data": read_seed("gempix2_callback_success")},
    NBP: read_seed("apixo_status_success"),
}
SUBMIT_OK = {GP: read_seed("gempix2_submit_ok"), NBP: read_seed("apixo_submit_ok")}
REQUESTS = {
    GP: GenerationRequest(model="google/gempix2", prompt="a lighthouse"),
    NBP: GenerationRequest(model="nano-banana-pro", prompt="a lighthouse"),
}


def answer(status: int, body: object = None, **kwargs) -> httpx.Response:
    return httpx.Response(status, json=body, **kwargs)


def failure(status: int, **kwargs) -> httpx.Response:
    return answer(status, {"code": status, "message": f"HTTP {status} from the fake"}, **kwargs)


# ---------------------------------------------------------------------------- the policy value


@pytest.mark.parametrize("retry", range(1, 11))
@pytest.mark.parametrize("rng_value", RNG_VALUES)
def test_delay_lies_in_half_ceiling_to_ceiling(retry, rng_value):
    policy = RetryPolicy()
    ceiling = min(8.0, 0.5 * 2 ** (retry - 1))
    delay = policy.delay(retry, rng=lambda: rng_value)
    assert ceiling / 2 <= delay <= ceiling
    assert delay == pytest.approx(ceiling / 2 + rng_value * ceiling / 2)


def test_delay_ends_of_the_range_and_the_cap():
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
    assert policy.delay(1, rng=lambda: 0.0) == 0.25
    assert policy.delay(1, rng=lambda: 1.0) == 0.5
    assert policy.delay(3, rng=lambda: 0.0) == 1.0
    assert policy.delay(5, rng=lambda: 1.0) == 8.0
    assert policy.delay(50, rng=lambda: 1.0) == 8.0
    assert policy.delay(50, rng=lambda: 0.0) == 4.0


@pytest.mark.parametrize("rng_value", RNG_VALUES)
def test_delay_grows_until_the_cap(rng_value):
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
    delays = [policy.delay(n, rng=lambda: rng_value) for n in range(1, 10)]
    assert delays[:5] == sorted(delays[:5])
    assert all(later > earlier for earlier, later in itertools.pairwise(delays[:5]))
    assert delays[4:] == [delays[4]] * 5  # capped by max_delay from the 5th retry on
    assert max(delays) <= 8.0


def test_delay_with_the_real_rng_stays_in_bounds():
    policy = RetryPolicy(base_delay=1.0, max_delay=6.0)
    rng = random.Random(1234).random
    for retry in range(1, 8):
        ceiling = min(6.0, 2.0 ** (retry - 1))
        samples = [policy.delay(retry, rng=rng) for _ in range(200)]
        assert min(samples) >= ceiling / 2
        assert max(samples) <= ceiling
        assert max(samples) - min(samples) > ceiling / 4  # really jittered


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [(7.0, 7.0), (0.0, 0.0), (-3.0, 0.0), (30.0, 30.0), (300.0, 300.0)],
)
def test_retry_after_replaces_the_computed_delay(retry_after, expected):
    policy = RetryPolicy(max_total_wait=30.0)
    assert policy.delay(1, retry_after, rng=lambda: 0.5) == expected
    assert policy.delay(9, retry_after, rng=lambda: 0.5) == expected


@pytest.mark.parametrize(
    ("attempts_made", "waited", "next_delay", "allowed"),
    [
        (1, 0.0, 0.5, True),
        (4, 0.0, 0.5, True),
        (5, 0.0, 0.5, False),  # max_attempts reached
        (9, 0.0, 0.0, False),
        (1, 29.0, 1.0, True),  # exactly at max_total_wait
        (1, 29.0, 1.5, False),
        (2, 0.0, 31.0, False),
    ],
)
def test_allows_caps_attempts_and_total_wait(attempts_made, waited, next_delay, allowed):
    policy = RetryPolicy(max_attempts=5, max_total_wait=30.0)
    assert policy.allows(attempts_made, waited, next_delay) is allowed


NOW = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("-3", 0.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:30:00 GMT", 120.0),
        ("Wed, 21 Oct 2015 07:28:30 -0000", 30.0),  # naive: read as UTC
        ("Wed, 21 Oct 2015 09:28:30 +0200", 30.0),
        ("Wed, 21 Oct 2015 07:00:00 GMT", 0.0),  # in the past
        (None, None),
        ("", None),
        ("soon", None),
        ("Wed, 99 Foo 2015", None),
    ],
)
def test_parse_retry_after(header, expected):
    assert parse_retry_after(header, now=NOW) == expected


def test_parse_retry_after_date_defaults_to_now():
    header = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    assert 57.0 <= parse_retry_after(header) <= 60.0


# ---------------------------------------------------------------------------- GET is retried


@pytest.mark.parametrize("service", [GP, NBP])
@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
async def test_status_read_retried_then_succeeds(service, status, fake_service, fake_clock):
    fake = fake_service(service, failure(status), failure(status), answer(200, STATUS_OK[service]))
    result = await fake.client.fetch_status("task-1")
    assert result.state is TaskState.SUCCEEDED
    assert len(fake.requests) == 3
    assert all(r.method == "GET" for r in fake.requests)
    assert len(fake_clock.sleeps) == 2
    assert 0.25 <= fake_clock.sleeps[0] <= 0.5
    assert 0.5 <= fake_clock.sleeps[1] <= 1.0


@pytest.mark.parametrize("service", [GP, NBP])
@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout])
async def test_status_read_retried_after_connection_errors(
    service, error, fake_service, fake_clock
):
    fake = fake_service(service, error, error, answer(200, STATUS_OK[service]))
    result = await fake.client.fetch_status("task-1")
    assert result.state is TaskState.SUCCEEDED
    assert len(fake.requests) == 3
    assert len(fake_clock.sleeps) == 2


async def test_status_read_honours_retry_after(fake_service, fake_clock):
    fake = fake_service(
        NBP,
        failure(429, headers={"Retry-After": "4"}),
        failure(429, headers={"Retry-After": "2"}),
        failure(429, headers={"Retry-After": "0"}),
        answer(200, STATUS_OK[NBP]),
    )
    result = await fake.client.fetch_status("task_12345678")
    assert result.task_id == "task_12345678"
    assert fake_clock.sleeps == [4.0, 2.0, 0.0]
    assert len(fake.requests) == 4


async def test_status_read_honours_retry_after_on_503(fake_service, fake_clock):
    fake = fake_service(GP, failure(503, headers={"Retry-After": "5"}), answer(200, STATUS_OK[GP]))
    await fake.client.fetch_status("ta1")
    assert fake_clock.sleeps == [5.0]


async def test_status_read_honours_an_http_date_retry_after(fake_service, fake_clock):
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)
    fake = fake_service(GP, failure(429, headers={"Retry-After": when}), answer(200, STATUS_OK[GP]))
    await fake.client.fetch_status("ta1")
    assert len(fake_clock.sleeps) == 1
    assert 7.0 <= fake_clock.sleeps[0] <= 10.0


async def test_status_read_gives_up_after_max_attempts_with_the_last_error(
    fake_service, fake_clock
):
    fake = fake_service(
        GP,
        failure(500),
        failure(502),
        failure(503),
        answer(200, STATUS_OK[GP]),
        retry=RetryPolicy(max_attempts=3),
    )
    with pytest.raises(ServiceError) as caught:
        await fake.client.fetch_status("ta1")
    assert caught.value.status_code == 503
    assert caught.value.task_id == "ta1"
    assert len(fake.requests) == 3
    assert len(fake_clock.sleeps) == 2


async def test_status_read_gives_up_at_max_total_wait(fake_service, fake_clock):
    fake = fake_service(
        NBP,
        failure(429, headers={"Retry-After": "2"}),
        retry=RetryPolicy(max_attempts=10, max_total_wait=5.0),
    )
    with pytest.raises(RateLimitedError) as caught:
        await fake.client.fetch_status("task_1")
    assert caught.value.retry_after == 2.0
    assert fake_clock.sleeps == [2.0, 2.0]  # a third wait would pass 5 s
    assert len(fake.requests) == 3


async def test_computed_waits_stop_at_max_total_wait(fake_clock):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return failure(500)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        transport = ServiceTransport(
            http,
            base_url=BASE_URLS[GP],
            api_key=TEST_API_KEY,
            provider="GemPix2",
            retry=RetryPolicy(max_attempts=10, base_delay=0.5, max_total_wait=1.0),
            sleep=fake_clock.sleep,
            rng=lambda: 1.0,  # waits 0.5, 1.0, ...: the second would reach 1.5 s
        )
        with pytest.raises(ServiceError):
            await GemPix2Client(transport).fetch_status("ta1")
    assert fake_clock.sleeps == [0.5]
    assert len(calls) == 2


async def test_persistent_connect_errors_on_get_become_unreachable(fake_service, fake_clock):
    fake = fake_service(GP, httpx.ConnectError)
    with pytest.raises(ServiceUnreachableError) as caught:
        await fake.client.fetch_status("ta1")
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert caught.value.task_id == "ta1"
    assert len(fake.requests) == RetryPolicy().max_attempts
    assert len(fake_clock.sleeps) == RetryPolicy().max_attempts - 1


@pytest.mark.parametrize("service", [GP, NBP])
@pytest.mark.parametrize(
    ("status", "error_type"),
    [(400, BadRequestError), (401, AuthenticationError), (404, TaskNotFoundError)],
)
async def test_status_read_not_retried_on_rejections(
    service, status, error_type, fake_service, fake_clock
):
    fake = fake_service(service, failure(status), answer(200, STATUS_OK[service]))
    with pytest.raises(error_type):
        await fake.client.fetch_status("task-1")
    assert len(fake.requests) == 1
    assert fake_clock.sleeps == []


async def test_retry_after_beyond_the_budget_is_not_cut_short(fake_service, fake_clock):
    fake = fake_service(
        NBP, failure(429, headers={"Retry-After": "120"}), answer(200, STATUS_OK[NBP])
    )
    with contextlib.suppress(RateLimitedError):
        await fake.client.fetch_status("task_1")
    # Either give up at once (the wait does not fit the budget) or wait the full 120 s:
    # never ask again before the service said we may.
    assert len(fake.requests) == 1 or fake_clock.sleeps[0] >= 120.0, fake_clock.sleeps


# ---------------------------------------------------------------------------- POST is sent once


@pytest.mark.parametrize("service", [GP, NBP])
@pytest.mark.parametrize("status", [500, 502, 503])
async def test_submit_not_resent_on_5xx(service, status, fake_service, fake_clock):
    fake = fake_service(service, failure(status), answer(200, SUBMIT_OK[service]))
    with pytest.raises(SubmissionOutcomeUnknown) as caught:
        await fake.client.submit(REQUESTS[service])
    assert caught.value.status_code == status
    assert isinstance(caught.value.__cause__, ServiceError)
    assert len(fake.requests) == 1
    assert fake.requests[0].method == "POST"
    assert fake_clock.sleeps == []


@pytest.mark.parametrize("service", [GP, NBP])
async def test_submit_not_resent_after_read_timeout(service, fake_service, fake_clock):
    fake = fake_service(service, httpx.ReadTimeout, answer(200, SUBMIT_OK[service]))
    with pytest.raises(SubmissionOutcomeUnknown) as caught:
        await fake.client.submit(REQUESTS[service])
    assert caught.value.message == "the connection broke after sending (ReadTimeout)"
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
    assert len(fake.requests) == 1
    assert fake_clock.sleeps == []


@pytest.mark.parametrize("service", [GP, NBP])
async def test_submit_not_resent_on_429(service, fake_service, fake_clock):
    fake = fake_service(
        service, failure(429, headers={"Retry-After": "3"}), answer(200, SUBMIT_OK[service])
    )
    with pytest.raises(RateLimitedError) as caught:
        await fake.client.submit(REQUESTS[service])
    assert caught.value.retry_after == 3.0
    assert len(fake.requests) == 1
    assert fake_clock.sleeps == []


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        (GP, SubmittedTask(GP, "ta12345678-1234-1234-1234-123456789abc")),
        (NBP, SubmittedTask(NBP, "task_12345678")),
    ],
)
@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ConnectTimeout])
async def test_submit_resent_only_after_a_failed_connect(
    service, expected, error, fake_service, fake_clock
):
    fake = fake_service(service, error, answer(200, SUBMIT_OK[service]))
    assert await fake.client.submit(REQUESTS[service]) == expected
    assert len(fake.requests) == 2
    assert fake.requests[0].content == fake.requests[1].content  # the same body, resent
    assert len(fake_clock.sleeps) == 1
    assert 0.25 <= fake_clock.sleeps[0] <= 0.5


async def test_submit_gives_up_when_it_never_connects(fake_service, fake_clock):
    fake = fake_service(NBP, httpx.ConnectError, retry=RetryPolicy(max_attempts=3))
    with pytest.raises(ServiceUnreachableError) as caught:
        await fake.client.submit(REQUESTS[NBP])
    assert caught.value.message == "could not connect (ConnectError)"
    assert len(fake.requests) == 3
    assert len(fake_clock.sleeps) == 2
