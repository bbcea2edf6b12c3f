"""Nano Banana Pro (apixo) as the simulator speaks it: request checks, bodies, error shape."""

from __future__ import annotations

import json
import secrets
from typing import Any

from providers.services.nano_banana_pro import MODEL_PATH, SERVICE, STATUS_PATH, SUBMIT_PATH
from simulator.tasks import Phase, Snapshot, TaskRecord
from simulator.twin import Endpoint, PhasePlan, Submission, Twin
from simulator.wire import ValidationError, is_http_url, optional_str, url_list

MODEL_ID = MODEL_PATH
SPEC = SERVICE.models[0]
REQUEST_TYPES = ("async", "callback")
MODES = ("text-to-image", "image-to-image")
PHASES = PhasePlan(running=((0.15, "pending"), (1.0, "processing")))


def _choice(value: Any, allowed: tuple[str, ...], default: str | None, name: str) -> str:
    if value is None and default is not None:
        return default
    if value not in allowed:
        raise ValidationError(f"{name} must be one of: {', '.join(allowed)}")
    return str(value)


def _setting(payload: dict[str, Any], name: str) -> str:
    allowed = SPEC.choices(name)
    return _choice(payload.get(name), allowed, allowed[0], f"input.{name}")


def parse_submit(body: Any) -> Submission:
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    request_type = _choice(body.get("request_type"), REQUEST_TYPES, "async", "request_type")
    callback_url = optional_str(body, "callback_url", "callback_url must be a string") or None
    if request_type == "callback" and callback_url is None:
        raise ValidationError("callback_url is required when request_type is callback")
    if callback_url is not None and not is_http_url(callback_url):
        raise ValidationError("callback_url must be an http(s) URL")
    provider = _choice(body.get("provider"), SPEC.routings, SPEC.routings[0], "provider")
    payload = body.get("input")
    if not isinstance(payload, dict):
        raise ValidationError("input is required and must be an object")
    prompt = payload.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValidationError("input.prompt is required")
    mode = _choice(payload.get("mode"), MODES, None, "input.mode")
    image_urls = url_list(
        payload.get("image_urls"), "input.image_urls must be an array of image URL strings"
    )
    if len(image_urls) > SPEC.max_references:
        raise ValidationError(f"input.image_urls supports at most {SPEC.max_references} images")
    if mode == "image-to-image" and not image_urls:
        raise ValidationError("input.image_urls is required when input.mode is image-to-image")
    if mode == "text-to-image" and image_urls:
        raise ValidationError(
            "input.image_urls must be empty when input.mode is text-to-image; "
            "use image-to-image for reference images"
        )
    params = {
        "request_type": request_type,
        "provider": provider,
        "mode": mode,
        "aspect_ratio": _setting(payload, "aspect_ratio"),
        "resolution": _setting(payload, "resolution"),
        "output_format": _setting(payload, "output_format"),
        "callback_url": callback_url,
    }
    # In async mode the callback_url is kept but not called: polling was asked for.
    calls_back = callback_url if request_type == "callback" else None
    return Submission(MODEL_ID, prompt, params, image_urls, calls_back)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def task_data(task: TaskRecord, snapshot: Snapshot, result_urls: list[str]) -> dict[str, Any]:
    create_ms = _ms(task.created_wall)
    data: dict[str, Any] = {"taskId": task.id, "state": task.wire_state(snapshot.phase)}
    if snapshot.phase is Phase.SUCCESS:
        data["resultJson"] = json.dumps({"resultUrls": result_urls}, separators=(",", ":"))
    elif snapshot.phase is Phase.FAILED:
        data["failCode"] = snapshot.fail_code.value if snapshot.fail_code else "INTERNAL_ERROR"
        data["failMsg"] = snapshot.fail_message
    data["createTime"] = create_ms
    if snapshot.phase.terminal and snapshot.final_at is not None:
        complete_ms = _ms(task.created_wall + (snapshot.final_at - task.created))
        data["completeTime"] = complete_ms
        data["costTime"] = complete_ms - create_ms
    return data


def ok_body(data: dict[str, Any]) -> dict[str, Any]:
    return {"code": 200, "message": "success", "data": data}


def error_body(status: int, message: str, endpoint: Endpoint) -> dict[str, Any]:
    return {"code": status, "message": message, "data": None}


def new_task_id() -> str:
    return "task_" + secrets.token_hex(12)


TWIN = Twin(
    service=SERVICE.id,
    models={SPEC.id: SPEC},
    submit_path=SUBMIT_PATH,
    status_path=STATUS_PATH,
    task_param="taskId",
    parse_submit=parse_submit,
    submit_data=lambda task_id: {"taskId": task_id},
    task_data=task_data,
    ok_body=ok_body,
    error_body=error_body,
    phases=PHASES,
    new_task_id=new_task_id,
    callback_is_full_answer=True,  # apixo posts its status answer
    bad_request_text="Invalid parameters",
    credits_http_status=200,  # as in the seed: the failure is in the body's code
    error_prefix="/api/v1/",
)
