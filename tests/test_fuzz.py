"""Fuzzing the parsers at both ends of the wire (Hypothesis): whatever arrives, each one either
returns a value or raises its documented refusal, never anything else.

* the simulator's request checks (`simulator/services/*.py` `parse_submit`): `ValidationError`;
* the clients' answer parsers (`providers/services/*.py` `parse_submit`, `parse_task`, a
  client's `parse_callback`) and `Envelope.read`: an `ImageServiceError` from the tree.

Inputs are arbitrary JSON values and, more often, bodies shaped like the real ones with each
field absent, junk or right, so the checks past the first field are reached too.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers.errors import ImageServiceError
from providers.services import gempix2, nano_banana_pro
from providers.types import TaskStatus
from simulator.services import gempix2 as gempix2_twin
from simulator.services import nano_banana_pro as nano_banana_pro_twin
from simulator.wire import ValidationError

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def field(*right: Any) -> st.SearchStrategy[Any]:
    """A field's value: one of the right ones, or any JSON value."""
    return st.sampled_from(right) | json_values if right else json_values


def shaped(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts with each of `fields` present (with a drawn value) or absent."""
    return st.fixed_dictionaries({}, optional=fields)


URLS = ("https://e.example/a.png", "data:image/png;base64,iVBORw0KGgo=", "", " ", "ftp://x")

gempix2_bodies = shaped(
    {
        "model": field("google/gempix2", "google/gemini-2.5-flash-image", ""),
        "prompt": field("a cat", "", "   "),
        "images": field(list(URLS[:1]), list(URLS), [], [1]),
        "callback_url": field("https://me.example/cb", "nope"),
    }
)
apixo_inputs = shaped(
    {
        "mode": field("text-to-image", "image-to-image"),
        "prompt": field("a cat", ""),
        "aspect_ratio": field("1:1", "16:9", "7:3"),
        "resolution": field("1K", "4K", "8K"),
        "image_urls": field(list(URLS[:1]), [], list(URLS)),
        "output_format": field("png", "jpeg", "gif"),
    }
)
apixo_bodies = shaped(
    {
        "request_type": field("async", "callback"),
        "callback_url": field("https://me.example/cb", "x"),
        "provider": field("auto", "value", "official", "cheap"),
        "input": apixo_inputs | json_values,
    }
)


@FUZZ
@given(body=gempix2_bodies | json_values)
def test_the_gempix2_twin_refuses_with_validation_errors_only(body: Any) -> None:
    try:
        gempix2_twin.parse_submit(body)
    except ValidationError:
        pass


@FUZZ
@given(body=apixo_bodies | json_values)
def test_the_apixo_twin_refuses_with_validation_errors_only(body: Any) -> None:
    try:
        nano_banana_pro_twin.parse_submit(body)
    except ValidationError:
        pass


# ---------------------------------------------------------------------------- the clients

task_ids = field("ta-1", "task_1", "", "x" * 300, "with space", "täsk")
gempix2_tasks = shaped(
    {
        "task_id": task_ids,
        "status": field("pending", "submitted", "in_progress", "success", "failed", "odd"),
        "result": field([{"image": "https://e.example/a.png"}], [], [{"image": 3}], [None]),
        "consumed": field("0.500000", "junk", 0.5),
        "status_reason": field({"message": None}, {"message": "boom"}, {"message": [1]}),
    }
)
apixo_tasks = shaped(
    {
        "taskId": task_ids,
        "state": field("pending", "processing", "success", "failed", "odd"),
        "resultJson": field(
            '{"resultUrls":["https://e.example/a.png"]}', "{not json", "[]", '{"resultUrls":7}'
        )
        | json_values.map(json.dumps),
        "failCode": field("CONTENT_VIOLATION", "INVALID_IMAGE_URL"),
        "failMsg": field("boom"),
        "createTime": field(1700000000000, 10**30, -1),
        "completeTime": field(1700000000000, float("inf")),
        "costTime": field(1000, True, float("nan")),
    }
)
CLIENTS = {
    "gempix2": gempix2.GemPix2Client(transport=None),  # type: ignore[arg-type]
    "nano_banana_pro": nano_banana_pro.NanoBananaProClient(transport=None),  # type: ignore[arg-type]
}


def parsed_or_refused(parse: Any, data: Any) -> None:
    try:
        result = parse(data)
    except ImageServiceError:
        return
    assert result is not None


@FUZZ
@given(data=gempix2_tasks | st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_the_gempix2_parsers_refuse_with_service_errors_only(data: dict[str, Any]) -> None:
    parsed_or_refused(gempix2.parse_submit, data)
    parsed_or_refused(gempix2.parse_task, data)
    parsed_or_refused(CLIENTS["gempix2"].parse_callback, data)


@FUZZ
@given(data=apixo_tasks | st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_the_apixo_parsers_refuse_with_service_errors_only(data: dict[str, Any]) -> None:
    parsed_or_refused(nano_banana_pro.parse_submit, data)
    parsed_or_refused(nano_banana_pro.parse_task, data)
    parsed_or_refused(CLIENTS["nano_banana_pro"].parse_callback, {"data": data})


@FUZZ
@given(data=gempix2_tasks | apixo_tasks)
def test_a_parsed_status_holds_only_plain_values(data: dict[str, Any]) -> None:
    for parse in (gempix2.parse_task, nano_banana_pro.parse_task):
        try:
            status: TaskStatus = parse(data)
        except ImageServiceError:
            continue
        assert isinstance(status.task_id, str) and len(status.task_id) <= 200
        assert status.fail_message is None or isinstance(status.fail_message, str)
        assert status.fail_code is None or isinstance(status.fail_code, str)
        assert all(isinstance(image.location, str) for image in status.images)


envelopes = st.fixed_dictionaries(
    {},
    optional={
        "code": field(0, 1, 200, 400, 401, 404, 429, 500, -1, 10**20),
        "message": field("ok", "success", "Insufficient credits", "") | json_values,
        "detail": field("prompt is required") | json_values,
        "data": gempix2_tasks | apixo_tasks | json_values,
    },
)
bodies = (
    envelopes.map(lambda body: json.dumps(body).encode())
    | json_values.map(lambda value: json.dumps(value).encode())
    | st.binary(max_size=200)
)


@pytest.mark.parametrize(
    "envelope", [gempix2.ENVELOPE, nano_banana_pro.ENVELOPE], ids=["gp", "nbp"]
)
@FUZZ
@given(
    status=st.sampled_from([200, 201, 204, 301, 400, 401, 402, 403, 404, 418, 429, 500, 503]),
    body=bodies,
    retry_after=st.none() | st.text(max_size=30) | st.integers(-5, 10**12).map(str),
)
def test_envelope_read_refuses_with_service_errors_only(
    envelope: Any, status: int, body: bytes, retry_after: str | None
) -> None:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    try:
        response = httpx.Response(status, content=body, headers=headers)
    except (UnicodeEncodeError, ValueError):
        return  # not a header httpx can even hold
    try:
        data = envelope.read(response, task_id="t1")
    except ImageServiceError:
        return
    assert isinstance(data, dict)


def test_an_absurdly_nested_result_json_is_a_service_error() -> None:
    data = {"taskId": "t1", "state": "success", "resultJson": "[" * 100_000}
    with pytest.raises(ImageServiceError):
        nano_banana_pro.parse_task(data)
