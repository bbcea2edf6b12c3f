"""The client shape both services share: submit once, read a status, read a callback.

Each service module subclasses `ServiceClient` with its paths and its wire format (pure
functions that build the submit body and parse answers); the HTTP rules live in the transport.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from providers.capabilities import Service
from providers.transport import ServiceTransport
from providers.types import GenerationRequest, SubmittedTask, TaskStatus


class ServiceClient:
    service: ClassVar[Service]
    provider: ClassVar[str]
    submit_path: ClassVar[str]
    status_path: ClassVar[str]
    task_param: ClassVar[str]  # the status query's task-id parameter

    def __init__(self, transport: ServiceTransport) -> None:
        self._transport = transport

    # The wire format, supplied by each service as plain functions.
    @staticmethod
    def build_submit_body(request: GenerationRequest) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def read_response(response: httpx.Response, *, task_id: str | None = None) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def parse_submit(data: dict[str, Any]) -> SubmittedTask:
        raise NotImplementedError

    @staticmethod
    def parse_task(data: dict[str, Any]) -> TaskStatus:
        raise NotImplementedError

    async def submit(self, request: GenerationRequest) -> SubmittedTask:
        # Parsing happens inside post_once: a 200 without a usable task id is an outcome unknown.
        return await self._transport.post_once(
            self.submit_path,
            self.build_submit_body(request),
            lambda response: self.parse_submit(self.read_response(response)),
        )

    async def fetch_status(self, task_id: str) -> TaskStatus:
        data = await self._transport.get_with_retry(
            self.status_path,
            {self.task_param: task_id},
            lambda response: self.read_response(response, task_id=task_id),
            task_id=task_id,
        )
        return self.parse_task(data)

    def parse_callback(self, payload: dict[str, Any]) -> TaskStatus:
        return self.parse_task(payload)
