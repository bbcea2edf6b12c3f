"""GemPix2 (defapi.org): its wire format and nothing else.

Submit `POST /api/image/gen`, read `GET /api/task/query?task_id=`. A body `code` of 0 means ok;
errors carry `message` and sometimes `detail`. The seed shows no full query body: we read the
CallbackPayload fields (status, result, consumed, status_reason) from `data`, which is what the
service documents as its task data model.
"""

from __future__ import annotations

from typing import Any

from providers.capabilities import ModelSpec
from providers.catalog import ServiceDescriptor
from providers.client import (
    MAX_RESULT_IMAGES,
    Envelope,
    ServiceClient,
    known_state,
    optional_credits,
    service_text,
    submitted_task,
    success_needs_an_image,
    task_id_in,
)
from providers.types import GeneratedImage, GenerationRequest, SubmittedTask, TaskState, TaskStatus

SERVICE_ID = "gempix2"
PROVIDER = "GemPix2"
# Code 0 means ok; the 401 on query carries code 401, the 400 and 401 on submit carry code 1.
ENVELOPE = Envelope(PROVIDER, ok_code=0, message_keys=("detail", "message"))
read_response = ENVELOPE.read
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


def parse_submit(data: dict[str, Any]) -> SubmittedTask:
    return submitted_task(data, "task_id", service=SERVICE_ID, provider=PROVIDER)


def parse_task(data: dict[str, Any]) -> TaskStatus:
    """A query `data` object or a CallbackPayload: both carry the same fields."""
    task_id = task_id_in(data, "task_id", provider=PROVIDER)
    provider_state = str(data.get("status") or "")
    state = known_state(STATES, provider_state, provider=PROVIDER, task_id=task_id)
    result = data.get("result")
    images = tuple(
        GeneratedImage(item["image"])
        for item in (result if isinstance(result, list) else ())[:MAX_RESULT_IMAGES]
        if isinstance(item, dict) and isinstance(item.get("image"), str) and item["image"]
    )
    reason = data.get("status_reason") or {}
    fail_message = service_text(reason.get("message")) if isinstance(reason, dict) else None
    state, fail_message = success_needs_an_image(state, images, fail_message)
    return TaskStatus(
        service=SERVICE_ID,
        task_id=task_id,
        state=state,
        provider_state=provider_state,
        images=images,
        credits=optional_credits(data.get("consumed")),
        fail_message=fail_message if state is TaskState.FAILED else None,
    )


class GemPix2Client(ServiceClient):
    service = SERVICE_ID
    provider = PROVIDER
    envelope = ENVELOPE
    submit_path = SUBMIT_PATH
    status_path = QUERY_PATH
    task_param = "task_id"
    build_submit_body = staticmethod(build_submit_body)
    parse_submit = staticmethod(parse_submit)
    parse_task = staticmethod(parse_task)


_WINDOW = {"": (8.0, 20.0)}

SERVICE = ServiceDescriptor(
    id=SERVICE_ID,
    label=PROVIDER,
    vendor="defapi.org",
    models=(
        ModelSpec(
            id="google/gempix2",
            label="GemPix2 (Nano Banana)",
            description="Nano Banana via defapi: fast edits and blends, up to 4 references.",
            service=SERVICE_ID,
            max_references=4,
            expected_seconds=_WINDOW,
        ),
        ModelSpec(
            id="google/gemini-2.5-flash-image",
            label="Gemini 2.5 Flash Image",
            description="Gemini 2.5 Flash Image via defapi: quick drafts, up to 4 references.",
            service=SERVICE_ID,
            max_references=4,
            expected_seconds=_WINDOW,
        ),
    ),
    key_env="DEFAPI_API_KEY",
    base_url_env="DEFAPI_BASE_URL",
    default_base_url="https://api.defapi.org",
    client=GemPix2Client,
    key_field="defapi_key",
    key_hint="dk-…",
    result_lifetime=None,  # defapi does not say how long result links live
)
