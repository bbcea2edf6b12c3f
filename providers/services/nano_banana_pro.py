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

from providers.capabilities import ModelSpec
from providers.catalog import ServiceDescriptor
from providers.client import (
    MAX_FAIL_CODE_CHARS,
    MAX_RESULT_IMAGES,
    Envelope,
    ServiceClient,
    known_state,
    service_text,
    submitted_task,
    success_needs_an_image,
    task_id_in,
)
from providers.errors import ServiceError
from providers.types import GeneratedImage, GenerationRequest, SubmittedTask, TaskState, TaskStatus

SERVICE_ID = "nano_banana_pro"
PROVIDER = "Nano Banana Pro"
ENVELOPE = Envelope(PROVIDER, ok_code=200)
read_response = ENVELOPE.read
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
    settings = request.settings
    task_input: dict[str, Any] = {
        "mode": "image-to-image" if request.reference_urls else "text-to-image",
        "prompt": request.prompt,
    }
    if settings.aspect_ratio:
        task_input["aspect_ratio"] = settings.aspect_ratio
    if settings.resolution:
        task_input["resolution"] = settings.resolution
    if request.reference_urls:
        task_input["image_urls"] = list(request.reference_urls)
    if settings.output_format:
        task_input["output_format"] = settings.output_format
    body: dict[str, Any] = {"request_type": "async", "provider": settings.routing or "auto"}
    if request.callback_url:
        body["request_type"] = "callback"
        body["callback_url"] = request.callback_url
    body["input"] = task_input
    return body


def parse_submit(data: dict[str, Any]) -> SubmittedTask:
    return submitted_task(data, "taskId", service=SERVICE_ID, provider=PROVIDER)


def _time(milliseconds: Any) -> datetime | None:
    if isinstance(milliseconds, int | float) and milliseconds > 0:
        try:
            return datetime.fromtimestamp(milliseconds / 1000, UTC)
        except (OverflowError, OSError, ValueError):  # a time past what datetime can hold
            return None
    return None


def _result_urls(result_json: Any, task_id: str) -> tuple[GeneratedImage, ...]:
    if not result_json:
        return ()
    try:
        parsed = json.loads(result_json) if isinstance(result_json, str) else result_json
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested JSON
        raise ServiceError("resultJson is not JSON", provider=PROVIDER, task_id=task_id) from exc
    urls = parsed.get("resultUrls") if isinstance(parsed, dict) else None
    if not isinstance(urls, list):
        return ()
    return tuple(
        GeneratedImage(url) for url in urls[:MAX_RESULT_IMAGES] if isinstance(url, str) and url
    )


def parse_task(data: dict[str, Any]) -> TaskStatus:
    task_id = task_id_in(data, "taskId", provider=PROVIDER)
    provider_state = str(data.get("state") or "")
    state = known_state(STATES, provider_state, provider=PROVIDER, task_id=task_id)
    images = _result_urls(data.get("resultJson"), task_id)
    fail_code = service_text(data.get("failCode"), MAX_FAIL_CODE_CHARS)
    fail_message = service_text(data.get("failMsg"))
    state, fail_message = success_needs_an_image(state, images, fail_message)
    cost = data.get("costTime")
    return TaskStatus(
        service=SERVICE_ID,
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
    service = SERVICE_ID
    provider = PROVIDER
    envelope = ENVELOPE
    submit_path = SUBMIT_PATH
    status_path = STATUS_PATH
    task_param = "taskId"
    build_submit_body = staticmethod(build_submit_body)
    parse_submit = staticmethod(parse_submit)
    parse_task = staticmethod(parse_task)

    @staticmethod
    def callback_data(payload: dict[str, Any]) -> dict[str, Any]:
        """apixo documents no callback body; we accept its status answer or its bare `data`."""
        data = payload.get("data")
        return data if isinstance(data, dict) else payload


SERVICE = ServiceDescriptor(
    id=SERVICE_ID,
    label=PROVIDER,
    vendor="apixo.ai",
    models=(
        ModelSpec(
            id=MODEL_PATH,
            label="Nano Banana Pro",
            description="apixo: up to 4K, ten aspect ratios, up to 10 references.",
            service=SERVICE_ID,
            max_references=10,
            aspect_ratios=("1:1", "16:9", "9:16", "21:9", "3:2", "2:3", "4:3", "3:4", "5:4", "4:5"),
            resolutions=("1K", "2K", "4K"),
            output_formats=("png", "jpeg"),
            routings=("auto", "value", "official"),
            # The seed's timing advice: 1K ~20-30 s, 2K ~30-45 s, 4K ~45-60 s.
            expected_seconds={"1K": (20.0, 30.0), "2K": (30.0, 45.0), "4K": (45.0, 60.0)},
        ),
    ),
    key_env="APIXO_API_KEY",
    base_url_env="APIXO_BASE_URL",
    default_base_url="https://api.apixo.ai",
    client=NanoBananaProClient,
    key_field="apixo_key",
    key_hint="apixo key",
    result_lifetime=15 * 24 * 3600.0,  # apixo keeps result files for 15 days
)
