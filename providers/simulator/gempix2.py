"""GemPix2 (defapi) wire format: request checks, response bodies and error shapes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse

from providers.capabilities import MODELS, Service
from providers.simulator.faults import Endpoint, HttpFault
from providers.simulator.tasks import Phase, Snapshot, TaskRecord, wire_state
from providers.simulator.wire import (
    ValidationError,
    is_http_url,
    json_response,
    optional_str,
    retry_after_headers,
    url_list,
)

MODEL_IDS: tuple[str, ...] = tuple(
    model_id for model_id, spec in MODELS.items() if spec.service is Service.GEMPIX2
)
# The seed's CallbackPayload example bills 0.5 credits; nothing is billed before success.
CONSUMED_ON_SUCCESS = "0.500000"
CONSUMED_NOTHING = "0.000000"


@dataclass(frozen=True)
class GemPix2Request:
    model: str
    prompt: str
    images: tuple[str, ...]
    callback_url: str | None


def parse_submit(body: Any) -> GemPix2Request:
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    model = body.get("model")
    if model is None or model == "":
        raise ValidationError("model is required")
    if model not in MODEL_IDS:
        raise ValidationError(f"model must be one of: {', '.join(MODEL_IDS)}")
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
    return GemPix2Request(model, prompt, images, callback_url or None)


def submit_ok(task_id: str) -> JSONResponse:
    return json_response(200, {"code": 0, "message": "ok", "data": {"task_id": task_id}})


def task_payload(task: TaskRecord, snapshot: Snapshot, images: list[str] | None) -> dict[str, Any]:
    """The CallbackPayload fields; the query response carries the same object as `data`."""
    success = snapshot.phase is Phase.SUCCESS
    return {
        "result": [{"image": image} for image in images or []] if success else None,
        "status": wire_state(Service.GEMPIX2, snapshot.phase),
        "task_id": task.id,
        "consumed": CONSUMED_ON_SUCCESS if success else CONSUMED_NOTHING,
        "status_reason": {"message": snapshot.fail_message},
    }


def status_ok(payload: dict[str, Any]) -> JSONResponse:
    return json_response(200, {"code": 0, "message": "ok", "data": payload})


def bad_request(detail: str) -> JSONResponse:
    return json_response(400, {"code": 1, "message": "failed", "detail": detail})


def unauthorized(endpoint: Endpoint) -> JSONResponse:
    # The seed documents different body codes for the two endpoints; keep both as written.
    code = 1 if endpoint == "submit" else 401
    return json_response(401, {"code": code, "message": "Invalid API key"})


def not_found(endpoint: Endpoint) -> JSONResponse:
    message = "task not found" if endpoint == "status" else "not found"
    return json_response(404, {"code": 1, "message": message})


def server_error() -> JSONResponse:
    return json_response(500, {"code": 500, "message": "Internal server error"})


def fault_response(fault: HttpFault, endpoint: Endpoint) -> JSONResponse:
    if fault.kind == "unauthorized":
        return unauthorized(endpoint)
    if fault.kind == "bad_request":
        return bad_request("invalid request parameters")
    if fault.kind == "not_found":
        return not_found(endpoint)
    if fault.kind == "rate_limited":
        # Undocumented for GemPix2; the body code repeats the HTTP status as its 401/500 do.
        body = {"code": 429, "message": "Rate limit exceeded"}
        return json_response(429, body, retry_after_headers(fault))
    if fault.kind == "insufficient_credits":
        return bad_request("Insufficient credits")
    return server_error()
