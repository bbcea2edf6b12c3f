"""Shared fixtures: seed examples, a fake clock, and fake services behind httpx.MockTransport."""

from __future__ import annotations

import os
import tempfile

# Gradio must not phone home in tests: set before anything imports it.
for _name, _value in {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_OFFLINE": "1",
    "NO_PROXY": "localhost,127.0.0.1",
    "no_proxy": "localhost,127.0.0.1",
}.items():
    os.environ[_name] = _value
# Gradio's file cache goes to a folder of the test run's own, not the project's data folder.
os.environ["GRADIO_TEMP_DIR"] = tempfile.mkdtemp(prefix="image-studio-tests-")
for _name in ("DEFAPI_API_KEY", "APIXO_API_KEY", "PUBLIC_URL", "SPACE_HOST", "SPACE_ID"):
    os.environ.pop(_name, None)  # tests never use real keys or a real public address

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from providers.registry import ImageClient, build_client
from providers.retry import RetryPolicy
from providers.services import CATALOG

SEEDS_DIR = Path(__file__).parent / "fixtures" / "seeds"

BASE_URLS = {
    "gempix2": "https://api.defapi.org",
    "nano_banana_pro": "https://api.apixo.ai",
}

# Looks like a real defapi key; tests assert it never leaks anywhere but the Authorization header.
TEST_API_KEY = "dk-SECRET-1234567890abcdef"


def read_seed(name: str) -> Any:
    """The parsed JSON of tests/fixtures/seeds/<name>.json."""
    return json.loads((SEEDS_DIR / f"{name}.json").read_text(encoding="utf-8"))


@pytest.fixture
def load_seed():
    return read_seed


class FakeClock:
    """A monotonic clock that only moves when `sleep` is awaited; `sleeps` records each wait."""

    def __init__(self, start: float = 1000.0) -> None:
        self.time = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.time

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.time += seconds
        await asyncio.sleep(0)


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@dataclass
class FakeService:
    """A real client talking to a scripted MockTransport; `requests` holds what it sent."""

    client: ImageClient
    requests: list[httpx.Request]
    api_key: str


@pytest.fixture
async def fake_service(fake_clock):
    """`make(service, *script, retry=None)`: each request takes the next script step (the last
    one repeats). A step is an httpx.Response (copied per request) or an httpx exception class,
    raised with the request. The client sleeps on `fake_clock`."""
    opened: list[httpx.AsyncClient] = []

    def make(service: str, *script: Any, retry: RetryPolicy | None = None) -> FakeService:
        steps = list(script)
        requests: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            requests.append(request)
            step = steps.pop(0) if len(steps) > 1 else steps[0]
            if isinstance(step, type) and issubclass(step, Exception):
                raise step(f"scripted {step.__name__}", request=request)
            return httpx.Response(step.status_code, headers=step.headers, content=step.content)

        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        opened.append(http)
        client = build_client(
            CATALOG.service(service),
            http,
            base_url=BASE_URLS[service],
            api_key=TEST_API_KEY,
            retry=retry,
            sleep=fake_clock.sleep,
        )
        return FakeService(client=client, requests=requests, api_key=TEST_API_KEY)

    yield make
    for http in opened:
        await http.aclose()
