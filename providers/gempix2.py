"""GemPix2 (defapi.org): its wire format and nothing else.

Submit `POST /api/image/gen`, read `GET /api/task/query?task_id=`. A body `code` of 0 means ok;
errors carry `message` and sometimes `detail`. The seed shows no full query body: we read the
CallbackPayload fields (status, result, consumed, status_reason) from `data`, which is what the
service documents as its task data model.
"""

from __future__ import annotations

from typing import Any

import httpx

from providers.capabilities import Service
from providers.client import ServiceClient
from providers.errors import ServiceError
from providers.transport import error_for_status, json_body, retry_after_of
from providers.types import GeneratedImage, GenerationRequest, SubmittedTask, TaskState, TaskStatus

PROVIDER = "GemPix2"
SUBMIT_PATH = "/api/image/gen"
QUERY_PATH = "/api/task/query"

STATES = {
    "pending": TaskState.QUEUED,
    "submitted": TaskState.QUEUED,
    "in_progress": TaskState.RUNNING,
    "success": TaskState.SUCCEEDED,
    "failed": TaskState.FAILED,
}


def build_submit_body(request: GenerationRequest) -> dict[str, Any]:
    body: dict[str, Any] = {"model": request.model, "prompt": request.prompt}
    if request.reference_urls:
        body["images"] = list(request.reference_urls)
    if request.callback_url:
        body["callback_url"] = request.callback_url
    return body


def read_response(response: httpx.Response, *, task_id: str | None = None) -> dict[str, Any]:
    """The `data` object of a successful answer; otherwise the fitting error from the tree.

    The HTTP status is read first (as the seed advises), then the body's `code`, which is 0 on
    success; the 401 on query carries code 401, the 400 and 401 on submit carry code 1.
    """
    body = json_body(response)
    if response.is_success and body is not None and body.get("code") == 0:
        data = body.get("data")
        if isinstance(data, dict):
            return data
        raise ServiceError("answer without data", provider=PROVIDER, task_id=task_id)
    if body is None:
        message = f"unreadable answer (HTTP {response.status_code})"
        if response.is_success:
            raise ServiceError(
                message, provider=PROVIDER, task_id=task_id, status_code=response.status_code
            )
    else:
        message = str(body.get("detail") or body.get("message") or "no message")
    status = response.status_code
    if response.is_success:  # HTTP 200 with a failing body code
        code = body.get("code") if body else None
        status = code if isinstance(code, int) and code >= 400 else 400
    raise error_for_status(
        status,
        message,
        provider=PROVIDER,
        task_id=task_id,
        retry_after=retry_after_of(response),
    )


def parse_submit(data: dict[str, Any]) -> SubmittedTask:
    task_id = data.get("task_id")
    if not isinstance(task_id, str) or not task_id:
        raise ServiceError("submit answer has no task_id", provider=PROVIDER)
    return SubmittedTask(service=Service.GEMPIX2, task_id=task_id)


def _credits(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def parse_task(data: dict[str, Any]) -> TaskStatus:
    """A query `data` object or a CallbackPayload: both carry the same fields."""
    task_id = str(data.get("task_id") or "")
    provider_state = str(data.get("status") or "")
    state = STATES.get(provider_state)
    if state is None:
        raise ServiceError(
            f"unknown task status {provider_state!r}", provider=PROVIDER, task_id=task_id
        )
    images = tuple(
        GeneratedImage(item["image"])
        for item in data.get("result") or ()
        if isinstance(item, dict) and isinstance(item.get("image"), str) and item["image"]
    )
    reason = data.get("status_reason") or {}
    fail_message = reason.get("message") if isinstance(reason, dict) else None
    if state is TaskState.SUCCEEDED and not images:
        # A success without an image is no success to the user: say so rather than show nothing.
        state, fail_message = TaskState.FAILED, fail_message or "the service returned no image"
    return TaskStatus(
        service=Service.GEMPIX2,
        task_id=task_id,
        state=state,
        provider_state=provider_state,
        images=images,
        credits=_credits(data.get("consumed")),
        fail_message=fail_message if state is TaskState.FAILED else None,
    )


class GemPix2Client(ServiceClient):
    service = Service.GEMPIX2
    provider = PROVIDER
    submit_path = SUBMIT_PATH
    status_path = QUERY_PATH
    task_param = "task_id"
    build_submit_body = staticmethod(build_submit_body)
    read_response = staticmethod(read_response)
    parse_submit = staticmethod(parse_submit)
    parse_task = staticmethod(parse_task)
