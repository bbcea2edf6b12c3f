"""Seedream (the test service of `seedream_service.py`) as the simulator speaks it.

Written like `simulator/services/*.py`: request checks, answer bodies, error shape, phases.
Give it to a simulator with `Simulator(config, twins=(*TWINS, TWIN))`.
"""

from __future__ import annotations

import secrets
from typing import Any

from seedream_service import QUERY_PATH, SERVICE, SUBMIT_PATH

from simulator.tasks import Phase, Snapshot, TaskRecord
from simulator.twin import Endpoint, PhasePlan, Submission, Twin
from simulator.wire import ValidationError, is_http_url, optional_str, url_list

SPEC = SERVICE.models[0]
OK_CODE = 1000
PHASES = PhasePlan(running=((0.25, "queued"), (1.0, "running")), success="done", failed="error")


def parse_submit(body: Any) -> Submission:
    if not isinstance(body, dict):
        raise ValidationError("body must be a JSON object")
    if body.get("model") != SPEC.id:
        raise ValidationError(f"model must be {SPEC.id}")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValidationError("prompt is required")
    images = url_list(body.get("images"), "images must be a list of image URLs")
    if len(images) > SPEC.max_references:
        raise ValidationError(f"images takes at most {SPEC.max_references} URLs")
    ratio = body.get("ratio", SPEC.aspect_ratios[0])
    if ratio not in SPEC.aspect_ratios:
        raise ValidationError(f"ratio must be one of: {', '.join(SPEC.aspect_ratios)}")
    notify_url = optional_str(body, "notify_url", "notify_url must be a string") or None
    if notify_url is not None and not is_http_url(notify_url):
        raise ValidationError("notify_url must be an http(s) URL")
    return Submission(SPEC.id, prompt, {"aspect_ratio": ratio}, images, notify_url)


def task_data(task: TaskRecord, snapshot: Snapshot, images: list[str]) -> dict[str, Any]:
    data: dict[str, Any] = {"id": task.id, "state": task.wire_state(snapshot.phase)}
    if snapshot.phase is Phase.SUCCESS:
        data["urls"] = images
    elif snapshot.phase is Phase.FAILED:
        data["error"] = snapshot.fail_message
    return data


def ok_body(data: dict[str, Any]) -> dict[str, Any]:
    return {"code": OK_CODE, "msg": "ok", "data": data}


def error_body(status: int, message: str, endpoint: Endpoint) -> dict[str, Any]:
    return {"code": status, "msg": message, "data": None}


def new_task_id() -> str:
    return "sd-" + secrets.token_hex(10)


TWIN = Twin(
    service=SERVICE.id,
    models={SPEC.id: SPEC},
    submit_path=SUBMIT_PATH,
    status_path=QUERY_PATH,
    task_param="id",
    parse_submit=parse_submit,
    submit_data=lambda task_id: {"id": task_id},
    task_data=task_data,
    ok_body=ok_body,
    error_body=error_body,
    phases=PHASES,
    new_task_id=new_task_id,
    bad_request_text="bad request",
    credits_http_status=402,
    error_prefix="/seedream/",
)
