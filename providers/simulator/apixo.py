"""Nano Banana Pro (apixo) wire format: request checks, response bodies and error shapes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse

from providers.capabilities import MODELS
from providers.simulator.faults import Endpoint, HttpFault
from providers.simulator.tasks import Phase, Snapshot, TaskRecord
from providers.simulator.wire import (
    ValidationError,
    is_http_url,
    json_response,
    optional_str,
    retry_after_headers,
    url_list,
)

MODEL_ID = "nano-banana-pro"
SPEC = MODELS[MODEL_ID]
REQUEST_TYPES = ("async", "callback")
MODES = ("text-to-image", "image-to-image")


@dataclass(frozen=True)
class NanoBananaProRequest:
    request_type: str
    callback_url: str | None
    provider: str
    mode: str
    prompt: str
    aspect_ratio: str
    resolution: str
    image_urls: tuple[str, ...]
    output_format: str

    @property
    def params(self) -> dict[str, Any]:
        return {
            "request_type": self.request_type,
            "provider": self.provider,
            "mode": self.mode,
            "aspect_ratio": self.aspect_ratio,
            "resolution": self.resolution,
            "output_format": self.output_format,
        }


def _choice(value: Any, allowed: tuple[str, ...], default: str | None, name: str) -> str:
    if value is None and default is not None:
        return default
    if value not in allowed:
        raise ValidationError(f"{name} must be one of: {', '.join(allowed)}")
    return str(value)


def parse_submit(body: Any) -> NanoBananaProRequest:
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    request_type = _choice(body.get("request_type"), REQUEST_TYPES, "async", "request_type")
    callback_url = optional_str(body, "callback_url", "callback_url must be a string") or None
    if request_type == "callback" and callback_url is None:
        raise ValidationError("callback_url is required when request_type is callback")
    if callback_url is not None and not is_http_url(callback_url):
        raise ValidationError("callback_url must be an http(s) URL")
    provider = _choice(body.get("provider"), SPEC.routings, SPEC.default_routing, "provider")
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
    aspect_ratio = _choice(
        payload.get("aspect_ratio"),
        SPEC.aspect_ratios,
        SPEC.default_aspect_ratio,
        "input.aspect_ratio",
    )
    resolution = _choice(
        payload.get("resolution"), SPEC.resolutions, SPEC.default_resolution, "input.resolution"
    )
    output_format = _choice(
        payload.get("output_format"),
        SPEC.output_formats,
        SPEC.default_output_format,
        "input.output_format",
    )
    return NanoBananaProRequest(
        request_type,
        callback_url,
        provider,
        mode,
        prompt,
        aspect_ratio,
        resolution,
        image_urls,
        output_format,
    )


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def status_body(task: TaskRecord, snapshot: Snapshot, result_urls: list[str]) -> dict[str, Any]:
    """The full status response; callbacks POST this same body."""
    create_ms = _ms(task.created_wall)
    data: dict[str, Any] = {"taskId": task.id, "state": snapshot.phase.value}
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
    return {"code": 200, "message": "success", "data": data}


def submit_ok(task_id: str) -> JSONResponse:
    return json_response(200, {"code": 200, "message": "success", "data": {"taskId": task_id}})


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return json_response(status, {"code": status, "message": message, "data": None}, headers)


def bad_request(message: str) -> JSONResponse:
    return error(400, message)


def unauthorized(endpoint: Endpoint) -> JSONResponse:
    return error(401, "Invalid API key")


def not_found(endpoint: Endpoint) -> JSONResponse:
    return error(404, "task not found" if endpoint == "status" else "not found")


def server_error() -> JSONResponse:
    return error(500, "Internal server error")


def fault_response(fault: HttpFault, endpoint: Endpoint) -> JSONResponse:
    if fault.kind == "unauthorized":
        return unauthorized(endpoint)
    if fault.kind == "bad_request":
        return bad_request("Invalid parameters")
    if fault.kind == "not_found":
        return not_found(endpoint)
    if fault.kind == "rate_limited":
        return error(429, "Rate limit exceeded", retry_after_headers(fault))
    if fault.kind == "insufficient_credits":
        # As in the seed: the failure is in the body's code while HTTP says 200.
        return json_response(200, {"code": 400, "message": "Insufficient credits", "data": None})
    return server_error()
