"""Seedream, a made-up third image service: its wire format and nothing else.

It lives under tests/ on purpose: it is written the way `providers/services/*.py` are, and the
tests in `test_third_service.py` put it into a catalog of their own, so adding it touches no
product file.

Submit `POST /seedream/v1/tasks` with `{"model", "prompt", "images", "ratio"}` (and
`notify_url` for a callback), read `GET /seedream/v1/tasks/query?id=`. Every answer is an
envelope `{"code": 1000, "msg": "ok", "data": {...}}`; an error carries its text under `msg`.
A task is `queued`, `running`, then `done` (with `urls`) or `error` (with a plain `error` text).
"""

from __future__ import annotations

from typing import Any

from providers.capabilities import ModelSpec
from providers.catalog import ServiceDescriptor
from providers.client import Envelope, ServiceClient
from providers.errors import ServiceError
from providers.types import GeneratedImage, GenerationRequest, SubmittedTask, TaskState, TaskStatus

SERVICE_ID = "seedream"
PROVIDER = "Seedream"
ENVELOPE = Envelope(PROVIDER, ok_code=1000, message_keys=("msg",))
read_response = ENVELOPE.read
SUBMIT_PATH = "/seedream/v1/tasks"
QUERY_PATH = "/seedream/v1/tasks/query"
MODEL_ID = "seedream-4"

STATES = {
    "queued": TaskState.QUEUED,
    "running": TaskState.RUNNING,
    "done": TaskState.SUCCEEDED,
    "error": TaskState.FAILED,
}


def build_submit_body(request: GenerationRequest) -> dict[str, Any]:
    body: dict[str, Any] = {"model": request.model, "prompt": request.prompt}
    if request.reference_urls:
        body["images"] = list(request.reference_urls)
    if request.settings.aspect_ratio:
        body["ratio"] = request.settings.aspect_ratio
    if request.callback_url:
        body["notify_url"] = request.callback_url
    return body


def parse_submit(data: dict[str, Any]) -> SubmittedTask:
    task_id = data.get("id")
    if not isinstance(task_id, str) or not task_id:
        raise ServiceError("submit answer has no id", provider=PROVIDER)
    return SubmittedTask(service=SERVICE_ID, task_id=task_id)


def parse_task(data: dict[str, Any]) -> TaskStatus:
    task_id = str(data.get("id") or "")
    provider_state = str(data.get("state") or "")
    state = STATES.get(provider_state)
    if state is None:
        raise ServiceError(
            f"unknown task state {provider_state!r}", provider=PROVIDER, task_id=task_id
        )
    images = tuple(
        GeneratedImage(url) for url in data.get("urls") or () if isinstance(url, str) and url
    )
    fail_message = data.get("error") or None
    if state is TaskState.SUCCEEDED and not images:
        state, fail_message = TaskState.FAILED, "the service returned no image"
    return TaskStatus(
        service=SERVICE_ID,
        task_id=task_id,
        state=state,
        provider_state=provider_state,
        images=images,
        fail_message=str(fail_message) if state is TaskState.FAILED and fail_message else None,
    )


class SeedreamClient(ServiceClient):
    service = SERVICE_ID
    provider = PROVIDER
    envelope = ENVELOPE
    submit_path = SUBMIT_PATH
    status_path = QUERY_PATH
    task_param = "id"
    build_submit_body = staticmethod(build_submit_body)
    parse_submit = staticmethod(parse_submit)
    parse_task = staticmethod(parse_task)


SERVICE = ServiceDescriptor(
    id=SERVICE_ID,
    label=PROVIDER,
    vendor="seedream.example",
    models=(
        ModelSpec(
            id=MODEL_ID,
            label="Seedream 4",
            description="Seedream 4 (a test service): five aspect ratios, up to 6 references.",
            service=SERVICE_ID,
            max_references=6,
            aspect_ratios=("1:1", "16:9", "9:16", "4:3", "3:4"),
            expected_seconds={"": (10.0, 20.0)},
        ),
    ),
    key_env="SEEDREAM_API_KEY",
    base_url_env="SEEDREAM_BASE_URL",
    default_base_url="https://api.seedream.example",
    client=SeedreamClient,
    key_field="seedream_key",
    key_hint="sd-…",
    result_lifetime=24 * 3600.0,
)
