"""Pieces of the HTTP surface both services share."""

from __future__ import annotations

import math
from typing import Any

from starlette.responses import JSONResponse

from simulator.faults import HttpFault


class ValidationError(Exception):
    """A request body the service would reject with HTTP 400; the message is shown to clients."""


def json_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


def retry_after_headers(fault: HttpFault) -> dict[str, str] | None:
    # HTTP allows only whole seconds here, so fractions round up.
    if fault.retry_after is None:
        return None
    return {"Retry-After": str(max(0, math.ceil(fault.retry_after)))}


def optional_str(body: dict[str, Any], key: str, message: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(message)
    return value


def url_list(value: Any, message: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(
        isinstance(item, str) and item.strip() for item in value
    ):
        raise ValidationError(message)
    return tuple(item.strip() for item in value)


def is_http_url(value: str) -> bool:
    lowered = value.lower()
    return lowered.startswith(("http://", "https://")) and len(value) > len("https://")
