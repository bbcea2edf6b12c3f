"""The contract every service client meets, and the explicit table of clients by service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import httpx

from providers.capabilities import MODELS, Service, model_spec
from providers.gempix2 import GemPix2Client
from providers.nano_banana_pro import NanoBananaProClient
from providers.retry import RetryPolicy
from providers.transport import ServiceTransport, Sleep
from providers.types import GenerationRequest, SubmittedTask, TaskStatus
from providers.watch import PollSchedule


class ImageClient(Protocol):
    service: Service
    provider: str

    async def submit(self, request: GenerationRequest) -> SubmittedTask: ...

    async def fetch_status(self, task_id: str) -> TaskStatus: ...

    def parse_callback(self, payload: dict[str, Any]) -> TaskStatus: ...


CLIENT_TYPES: dict[Service, Callable[[ServiceTransport], ImageClient]] = {
    Service.GEMPIX2: GemPix2Client,
    Service.NANO_BANANA_PRO: NanoBananaProClient,
}

PROVIDER_NAMES = {
    Service.GEMPIX2: GemPix2Client.provider,
    Service.NANO_BANANA_PRO: NanoBananaProClient.provider,
}


def build_client(
    service: Service,
    http: httpx.AsyncClient,
    *,
    base_url: str,
    api_key: str,
    retry: RetryPolicy | None = None,
    sleep: Sleep | None = None,
) -> ImageClient:
    """A client for `service` speaking through `http` (real, simulator or a test fake)."""
    extra = {"sleep": sleep} if sleep is not None else {}
    transport = ServiceTransport(
        http,
        base_url=base_url,
        api_key=api_key,
        provider=PROVIDER_NAMES[service],
        retry=retry,
        **extra,
    )
    return CLIENT_TYPES[service](transport)


def schedule_for(request: GenerationRequest, time_scale: float = 1.0) -> PollSchedule:
    """The poll schedule that fits the request's model and resolution."""
    window = model_spec(request.model).expected_window(request.resolution)
    return PollSchedule(window=window).scaled(time_scale)


def services_in_use() -> set[Service]:
    return {spec.service for spec in MODELS.values()}
