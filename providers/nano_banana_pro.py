"""Nano Banana Pro (apixo.ai): its wire format and nothing else.

Submit `POST /api/v1/generateTask/nano-banana-pro`, read
`GET /api/v1/statusTask/nano-banana-pro?taskId=`. The body's `code` is 200 on success and can be
an error (e.g. 400 "Insufficient credits") even when the HTTP status is 200, so both are read.
`resultJson` is a JSON string inside the JSON answer and is parsed a second time.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx

from providers.capabilities import Service
from providers.client import ServiceClient
from providers.errors import ServiceError
from providers.transport import error_for_status, json_body, retry_after_of
from providers.types import GeneratedImage, GenerationRequest, SubmittedTask, TaskState, TaskStatus

PROVIDER = "Nano Banana Pro"
MODEL_PATH = "nano-banana-pro"
SUBMIT_PATH = f"/api/v1/generateTask/{MODEL_PATH}"
STATUS_PATH = f"/api/v1/statusTask/{MODEL_PATH}"

STATES = {
    "pending": TaskState.QUEUED,
    "processing": TaskState.RUNNING,
    "success": TaskState.SUCCEEDED,
    "failed": TaskState.FAILED,
}


def build_submit_body(request: GenerationRequest) -> dict[str, Any]:
    """The submit body; `mode` follows from whether references are given."""
    task_input: dict[str, Any] = {
        "mode": "image-to-image" if request.reference_urls else "text-to-image",
        "prompt": request.prompt,
    }
    if request.aspect_ratio:
        task_input["aspect_ratio"] = request.aspect_ratio
    if request.resolution:
        task_input["resolution"] = request.resolution
    if request.reference_urls:
        task_input["image_urls"] = list(request.reference_urls)
    if request.output_format:
        task_input["output_format"] = request.output_format
    body: dict[str, Any] = {"request_type": "async", "provider": request.routing or "auto"}
    if request.callback_url:
        body["request_type"] = "callback"
        body["callback_url"] = request.callback_url
    body["input"] = task_input
    return body


def read_response(response: httpx.Response, *, task_id: str | None = None) -> dict[str, Any]:
    """The `data` object of a successful answer; otherwise the fitting error from the tree."""
    body = json_body(response)
    code = body.get("code") if body is not None else None
    if response.is_success and code == 200:
        data = body.get("data") if body is not None else None
        if isinstance(data, dict):
            return data
        raise ServiceError("answer without data", provider=PROVIDER, task_id=task_id)
    if body is None and response.is_success:
        raise ServiceError(
            f"unreadable answer (HTTP {response.status_code})",
            provider=PROVIDER,
            task_id=task_id,
            status_code=response.status_code,
        )
    message = (
        str(body.get("message") or "no message")
        if body
        else (f"unreadable answer (HTTP {response.status_code})")
    )
    status = response.status_code
    if response.is_success:
        status = code if isinstance(code, int) and code >= 400 else 400
    raise error_for_status(
        status, message, provider=PROVIDER, task_id=task_id, retry_after=retry_after_of(response)
    )


def parse_submit(data: dict[str, Any]) -> SubmittedTask:
    task_id = data.get("taskId")
    if not isinstance(task_id, str) or not task_id:
        raise ServiceError("submit answer has no taskId", provider=PROVIDER)
    return SubmittedTask(service=Service.NANO_BANANA_PRO, task_id=task_id)


def _time(milliseconds: Any) -> datetime | None:
    if isinstance(milliseconds, int | float) and milliseconds > 0:
        return datetime.fromtimestamp(milliseconds / 1000, UTC)
    return None


def _result_urls(result_json: Any, task_id: str) -> tuple[GeneratedImage, ...]:
    if not result_json:
        return ()
    try:
        parsed = json.loads(result_json) if isinstance(result_json, str) else result_json
    except ValueError as exc:
        raise ServiceError("resultJson is not JSON", provider=PROVIDER, task_id=task_id) from exc
    urls = parsed.get("resultUrls") if isinstance(parsed, dict) else None
    return tuple(GeneratedImage(url) for url in urls or () if isinstance(url, str) and url)


def parse_task(data: dict[str, Any]) -> TaskStatus:
    task_id = str(data.get("taskId") or "")
    provider_state = str(data.get("state") or "")
    state = STATES.get(provider_state)
    if state is None:
        raise ServiceError(
            f"unknown task state {provider_state!r}", provider=PROVIDER, task_id=task_id
        )
    images = _result_urls(data.get("resultJson"), task_id)
    fail_code = data.get("failCode") or None
    fail_message = data.get("failMsg") or None
    if state is TaskState.SUCCEEDED and not images:
        state, fail_message = TaskState.FAILED, "the service returned no image"
    cost = data.get("costTime")
    return TaskStatus(
        service=Service.NANO_BANANA_PRO,
        task_id=task_id,
        state=state,
        provider_state=provider_state,
        images=images,
        fail_code=fail_code if state is TaskState.FAILED else None,
        fail_message=fail_message if state is TaskState.FAILED else None,
        created_at=_time(data.get("createTime")),
        completed_at=_time(data.get("completeTime")),
        cost_seconds=cost / 1000 if isinstance(cost, int | float) else None,
    )


class NanoBananaProClient(ServiceClient):
    service = Service.NANO_BANANA_PRO
    provider = PROVIDER
    submit_path = SUBMIT_PATH
    status_path = STATUS_PATH
    task_param = "taskId"
    build_submit_body = staticmethod(build_submit_body)
    read_response = staticmethod(read_response)
    parse_submit = staticmethod(parse_submit)
    parse_task = staticmethod(parse_task)

    def parse_callback(self, payload: dict[str, Any]) -> TaskStatus:
        """apixo documents no callback body; we accept its status answer or its bare `data`."""
        data = payload.get("data") if isinstance(payload.get("data"), dict) else payload
        return parse_task(data)
