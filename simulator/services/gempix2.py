"""GemPix2 (defapi) as the simulator speaks it: request checks, bodies, error shape, phases."""

from __future__ import annotations

import uuid
from typing import Any

from providers.services.gempix2 import QUERY_PATH, SERVICE, SUBMIT_PATH
from simulator.tasks import Phase, Snapshot, TaskRecord
from simulator.twin import Endpoint, PhasePlan, Submission, Twin
from simulator.wire import ValidationError, is_http_url, optional_str, url_list

MODELS = {spec.id: spec for spec in SERVICE.models}
# The seed's CallbackPayload example bills 0.5 credits; nothing is billed before success.
CONSUMED_ON_SUCCESS = "0.500000"
CONSUMED_NOTHING = "0.000000"
PHASES = PhasePlan(running=((0.10, "pending"), (0.20, "submitted"), (1.0, "in_progress")))


def parse_submit(body: Any) -> Submission:
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    model = body.get("model")
    if model is None or model == "":
        raise ValidationError("model is required")
    if not isinstance(model, str) or model not in MODELS:
        raise ValidationError(f"model must be one of: {', '.join(MODELS)}")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValidationError("prompt is required")
    images = url_list(body.get("images"), "images must be an array of image URL strings")
    limit = MODELS[model].max_references
    if len(images) > limit:
        raise ValidationError(f"images supports at most {limit} items")
    callback_url = optional_str(body, "callback_url", "callback_url must be a string")
    if callback_url is not None and not is_http_url(callback_url):
        raise ValidationError("callback_url must be an http(s) URL")
    # GemPix2 calls back whenever a callback_url is set.
    return Submission(model, prompt, {}, images, callback_url or None)


def task_data(task: TaskRecord, snapshot: Snapshot, images: list[str]) -> dict[str, Any]:
    """The CallbackPayload fields; the query answer carries the same object as `data`."""
    success = snapshot.phase is Phase.SUCCESS
    return {
        "result": [{"image": image} for image in images] if success else None,
        "status": task.wire_state(snapshot.phase),
        "task_id": task.id,
        "consumed": CONSUMED_ON_SUCCESS if success else CONSUMED_NOTHING,
        "status_reason": {"message": snapshot.fail_message},
    }


def ok_body(data: dict[str, Any]) -> dict[str, Any]:
    return {"code": 0, "message": "ok", "data": data}


def error_body(status: int, message: str, endpoint: Endpoint) -> dict[str, Any]:
    if status == 400:
        return {"code": 1, "message": "failed", "detail": message}
    if status == 401:
        # The seed documents different body codes for the two endpoints; keep both as written.
        return {"code": 1 if endpoint == "submit" else 401, "message": message}
    if status == 404:
        return {"code": 1, "message": message}
    # 429 is undocumented; its body code repeats the HTTP status as the 401/500 bodies do.
    return {"code": status, "message": message}


def new_task_id() -> str:
    # Random rather than seeded: ids must not repeat across restarts (clients keep them).
    return "ta" + str(uuid.uuid4())[2:]


TWIN = Twin(
    service=SERVICE.id,
    models=MODELS,
    submit_path=SUBMIT_PATH,
    status_path=QUERY_PATH,
    task_param="task_id",
    parse_submit=parse_submit,
    submit_data=lambda task_id: {"task_id": task_id},
    task_data=task_data,
    ok_body=ok_body,
    error_body=error_body,
    phases=PHASES,
    new_task_id=new_task_id,
    can_return_data_uri=True,
    bad_request_text="invalid request parameters",
    credits_http_status=400,
    error_prefix="/api/",
)
