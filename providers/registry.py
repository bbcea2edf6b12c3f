"""The contract every service client meets, and how a client is built from a descriptor."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

import httpx

from providers.capabilities import ModelSpec
from providers.catalog import ServiceDescriptor
from providers.lanes import Lanes
from providers.retry import RetryPolicy
from providers.transport import ServiceTransport, Sleep
from providers.types import GenerationRequest, SubmittedTask, TaskStatus
from providers.watch import Ended, PollSchedule


class ImageClient(Protocol):
    # Read-only: a client class names its service and provider once, as class constants.
    @property
    def service(self) -> str: ...

    @property
    def provider(self) -> str: ...

    async def submit(self, request: GenerationRequest) -> SubmittedTask: ...

    async def fetch_status(self, task_id: str) -> TaskStatus: ...

    def parse_callback(self, payload: dict[str, Any]) -> TaskStatus: ...


def build_client(
    service: ServiceDescriptor,
    http: httpx.AsyncClient,
    *,
    base_url: str,
    api_key: str,
    retry: RetryPolicy | None = None,
    sleep: Sleep | None = None,
    lanes: Lanes | None = None,
) -> ImageClient:
    """A client for `service` speaking through `http` (real, simulator or a test fake).

    `lanes`: the service's gate, shared by all its clients (`providers.lanes`); None gives
    this client one of its own."""
    transport = ServiceTransport(
        http,
        base_url=base_url,
        api_key=api_key,
        provider=service.label,
        retry=retry,
        sleep=sleep or asyncio.sleep,
        lanes=lanes,
    )
    return service.client(transport)


def schedule_for(
    spec: ModelSpec,
    request: GenerationRequest,
    time_scale: float = 1.0,
    ended: Sequence[Ended | float] = (),
) -> PollSchedule:
    """The poll schedule that fits the request's model and resolution.

    `ended`: when recent tasks of this kind ended (seconds since their submit on the
    service's clock, already time-scaled; see `PollSchedule.learned`); the model's documented
    window, scaled, is the prior they replace."""
    lo, hi = spec.expected_window(request.settings.resolution)
    return PollSchedule().scaled(time_scale).learned((lo * time_scale, hi * time_scale), ended)
