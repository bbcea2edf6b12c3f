"""The contract every service client meets, and how a client is built from a descriptor."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import httpx

from providers.capabilities import ModelSpec
from providers.catalog import ServiceDescriptor
from providers.retry import RetryPolicy
from providers.transport import ServiceTransport, Sleep
from providers.types import GenerationRequest, SubmittedTask, TaskStatus
from providers.watch import PollSchedule


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
) -> ImageClient:
    """A client for `service` speaking through `http` (real, simulator or a test fake)."""
    transport = ServiceTransport(
        http,
        base_url=base_url,
        api_key=api_key,
        provider=service.label,
        retry=retry,
        sleep=sleep or asyncio.sleep,
    )
    return service.client(transport)


def schedule_for(
    spec: ModelSpec, request: GenerationRequest, time_scale: float = 1.0
) -> PollSchedule:
    """The poll schedule that fits the request's model and resolution."""
    window = spec.expected_window(request.settings.resolution)
    return PollSchedule(window=window).scaled(time_scale)
