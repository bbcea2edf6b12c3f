"""Keys at the boundary: a service that echoes keys gets them scrubbed from everything it says,
and keys that no header can carry are refused with a sentence where they enter."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import urllib.parse
from pathlib import Path

import httpx
import pytest
from conftest import BASE_URLS

from providers.errors import BadRequestError, InvalidRequestError, TaskFailed
from providers.keys import KEYRING, MASK, KeyRing, key_problem
from providers.registry import build_client
from providers.services import CATALOG
from providers.settings import ServiceConfig, service_configs
from simulator import Simulator, SimulatorConfig
from studio.backends import Backends
from studio.jobs import JobRunner, JobSpec
from studio.ledger import Ledger
from studio.lifecycle import JobState

OWNER_KEY = "dk-OWNER-0123456789abcdef"
VISITOR_KEY = "ak-VISITOR+fedcba/9876543210"
OTHER_VISITOR_KEY = "ak-OTHER-visitor-5555555555"
NBP = "nano_banana_pro"
GP = "gempix2"


def bearer(request: httpx.Request) -> str:
    return request.headers["Authorization"].removeprefix("Bearer ")


def echoing_handler(echo: str | None = None):
    """A hostile apixo: accepts the task, then says it failed, quoting a key in every text it
    sends (the request's own key, or `echo`), raw and URL-encoded."""

    def handler(request: httpx.Request) -> httpx.Response:
        key = echo or bearer(request)
        if request.method == "POST":
            return httpx.Response(
                200, json={"code": 200, "message": "ok", "data": {"taskId": "t1"}}
            )
        data = {
            "taskId": "t1",
            "state": "failed",
            "failCode": f"BAD_KEY_{key}",
            "failMsg": f"key {key} refused; url-encoded {urllib.parse.quote(key, safe='')}",
        }
        return httpx.Response(200, json={"code": 200, "message": "success", "data": data})

    return handler


# ---------------------------------------------------------------------------- the ring


def test_the_ring_scrubs_what_it_holds_until_released():
    ring = KeyRing()
    ring.hold("dk-secret-abcdef")
    assert ring.scrub("a dk-secret-abcdef b") == f"a {MASK} b"
    assert ring.scrub_data({"x": ["dk-secret-abcdef"], "dk-secret-abcdef": 1}) == {
        "x": [MASK],
        MASK: 1,
    }
    ring.release("dk-secret-abcdef")
    assert ring.scrub("a dk-secret-abcdef b") == "a dk-secret-abcdef b"


def test_the_ring_forgets_a_visitor_key_when_its_client_is_gone():
    ring = KeyRing()

    class Owner:
        pass

    owner = Owner()
    ring.hold_while(owner, VISITOR_KEY)
    assert len(ring) == 1
    del owner
    gc.collect()
    assert len(ring) == 0  # memory stays flat however many visitors came


def test_scrubbing_deeply_nested_data_is_no_crash():
    ring = KeyRing()
    ring.hold("dk-secret-abcdef")
    data: list = ["dk-secret-abcdef"]
    for _ in range(5000):
        data = [data]
    ring.scrub_data(data)
    for _ in range(5000):
        data = data[0]
    assert data == [MASK]


# ---------------------------------------------------------------------------- a hostile service


async def test_a_key_echoed_in_an_error_is_scrubbed_from_message_and_sentence():
    def handler(request: httpx.Request) -> httpx.Response:
        detail = f"prompt refused for Bearer {bearer(request)}"
        return httpx.Response(400, json={"code": 1, "message": "failed", "detail": detail})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = build_client(CATALOG.service(GP), http, base_url=BASE_URLS[GP], api_key=OWNER_KEY)
        with pytest.raises(BadRequestError) as caught:
            await client.submit(JobSpec(model="google/gempix2", prompt="a cat").request())
    error = caught.value
    for text in (error.message, str(error), error.user_message()):
        assert OWNER_KEY not in text
        assert MASK in text


async def test_a_key_echoed_in_a_fail_message_is_scrubbed_in_every_form():
    async with httpx.AsyncClient(transport=httpx.MockTransport(echoing_handler())) as http:
        client = build_client(
            CATALOG.service(NBP), http, base_url=BASE_URLS[NBP], api_key=VISITOR_KEY
        )
        status = await client.fetch_status("t1")
    assert VISITOR_KEY not in json.dumps([status.fail_message, status.fail_code])
    assert urllib.parse.quote(VISITOR_KEY, safe="") not in str(status.fail_message)


async def test_another_visitors_key_is_scrubbed_too():
    # The service received OTHER_VISITOR_KEY from someone else and echoes it to this visitor.
    async with httpx.AsyncClient(transport=httpx.MockTransport(echoing_handler())) as other_http:
        other = build_client(
            CATALOG.service(NBP), other_http, base_url=BASE_URLS[NBP], api_key=OTHER_VISITOR_KEY
        )
        handler = echoing_handler(echo=OTHER_VISITOR_KEY)
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            mine = build_client(
                CATALOG.service(NBP), http, base_url=BASE_URLS[NBP], api_key=VISITOR_KEY
            )
            status = await mine.fetch_status("t1")
        assert other is not None  # the other visitor's client is alive: its key is held
    assert OTHER_VISITOR_KEY not in str(status.fail_message)


def test_a_callback_echoing_a_key_is_scrubbed():
    http = httpx.AsyncClient()
    client = build_client(CATALOG.service(NBP), http, base_url=BASE_URLS[NBP], api_key=VISITOR_KEY)
    payload = {"data": {"taskId": "t1", "state": "failed", "failMsg": f"bad {VISITOR_KEY}"}}
    status = client.parse_callback(payload)
    assert VISITOR_KEY not in str(status.fail_message)


async def test_a_job_against_an_echoing_service_keeps_no_key_in_ledger_page_or_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    http = httpx.AsyncClient(transport=httpx.MockTransport(echoing_handler()))
    configs = {
        GP: ServiceConfig(GP, BASE_URLS[GP], api_key=OWNER_KEY),
        NBP: ServiceConfig(NBP, BASE_URLS[NBP], api_key=None),
    }
    backends = Backends(CATALOG, configs, http=http)
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    runner = JobRunner(backends=backends, ledger=ledger, outputs_dir=tmp_path / "out")
    spec = JobSpec(model="nano-banana-pro", prompt="a lighthouse")
    try:
        job_ids = await runner.start(spec, visitor_keys={NBP: VISITOR_KEY})
        shown: list[str] = []
        async with asyncio.timeout(20):
            async for snapshot in runner.follow(job_ids):
                shown.extend(repr(progress) for progress in snapshot)
        row = ledger.job(job_ids[0])
        assert row is not None and row.state is JobState.FAILED
        assert MASK in (row.error_message or "")
        everything = " ".join([*shown, repr(row), caplog.text])
        assert VISITOR_KEY not in everything
        assert OWNER_KEY not in everything
    finally:
        await runner.close()
        await backends.aclose()
        ledger.close()


def test_the_owners_key_is_scrubbed_from_any_service_while_backends_exist():
    only_in_env = "dk-ONLY-IN-THE-ENVIRONMENT-01"
    gc.collect()
    assert KEYRING.scrub(only_in_env) == only_in_env
    configs = {
        GP: ServiceConfig(GP, BASE_URLS[GP], api_key=only_in_env),
        NBP: ServiceConfig(NBP, BASE_URLS[NBP], api_key="ak-owner-apixo-key-0000"),
    }
    backends = Backends(CATALOG, configs)
    assert KEYRING.scrub(f"x {only_in_env} y") == f"x {MASK} y"
    err = TaskFailed(f"failed with {only_in_env}")
    assert only_in_env not in str(KEYRING.scrub_error(err))
    del backends


# ---------------------------------------------------------------------------- keys that enter


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("ak-abc\r\nX-Evil: 1", "printable ASCII"),
        ("ak-abc def-ghi", "printable ASCII"),
        ("ak-clé-secrète-1", "printable ASCII"),
        ("ak-\x00\x01-0000000", "printable ASCII"),
        ("short", "8 to 256 characters long (5 given)"),
        ("k" * 300, "8 to 256 characters long (300 given)"),
    ],
)
def test_a_visitor_key_no_header_can_carry_is_refused_with_a_sentence(key, words):
    backends = Backends(CATALOG, service_configs(CATALOG, {}))
    with pytest.raises(InvalidRequestError) as caught:
        backends.for_service(NBP, key)
    message = caught.value.user_message()
    assert words in message
    assert message.startswith("The Nano Banana Pro key ")
    assert key.strip() not in message
    assert key_problem("ak-" + "x" * 20, "Nano Banana Pro") is None


async def test_a_bad_visitor_key_records_and_sends_nothing(tmp_path: Path):
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    backends = Backends(CATALOG, service_configs(CATALOG, {}), http=http)
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    runner = JobRunner(backends=backends, ledger=ledger, outputs_dir=tmp_path / "out")
    try:
        with pytest.raises(InvalidRequestError, match="printable ASCII"):
            await runner.start(
                JobSpec(model="nano-banana-pro", prompt="a cat"),
                visitor_keys={NBP: "ak-line\nbreak-key"},
            )
        assert ledger.history(None) == []
        assert sent == []
    finally:
        await runner.close()
        await backends.aclose()
        ledger.close()


@pytest.mark.parametrize("value", ["dk-abc\ndef", "dk-ünïcode", "dk two"])
def test_an_owner_key_no_header_can_carry_stops_the_start_with_its_variable(value):
    with pytest.raises(ValueError, match="DEFAPI_API_KEY must be printable ASCII") as caught:
        service_configs(CATALOG, {"DEFAPI_API_KEY": value})
    assert value not in str(caught.value)


async def test_check_again_with_a_bad_key_leaves_the_job_as_it_was(tmp_path: Path):
    sim = Simulator(SimulatorConfig(time_scale=0.005))
    backends = Backends(CATALOG, service_configs(CATALOG, {}), simulator=sim)
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    runner = JobRunner(backends=backends, ledger=ledger, outputs_dir=tmp_path / "out")
    try:
        spec = JobSpec(model="nano-banana-pro", prompt="a cat [sim:never_finish]")
        (job_id,) = await runner.start(spec)
        async with asyncio.timeout(20):
            async for (progress,) in runner.follow([job_id]):
                if progress.state in (JobState.QUEUED, JobState.RUNNING):
                    break
        await runner.stop([job_id])
        assert ledger.job(job_id).state is JobState.STOPPED  # type: ignore[union-attr]
        with pytest.raises(InvalidRequestError, match="printable ASCII"):
            await runner.recheck(job_id, visitor_keys={NBP: "ak-line\nbreak-key"})
        assert ledger.job(job_id).state is JobState.STOPPED  # type: ignore[union-attr]
    finally:
        await runner.close()
        await backends.aclose()
        await sim.aclose()
        ledger.close()
