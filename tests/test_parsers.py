"""Wire formats: every seed body through read_response and the parsers; submit bodies vs seeds."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from conftest import read_seed

from providers.capabilities import ImageSettings
from providers.errors import (
    AuthenticationError,
    BadRequestError,
    InsufficientCreditsError,
    ServiceError,
    TaskNotFoundError,
)
from providers.services import CATALOG, gempix2, nano_banana_pro
from providers.types import GeneratedImage, GenerationRequest, SubmittedTask, TaskState

GEMPIX2_IMAGE = (
    "https://google.datas.systems/fileSystem/response_images/287/2025/08/29/"
    "1756432513771985292_2989.png"
)
SERVICE_MODULES = {"gempix2": gempix2, "nano_banana_pro": nano_banana_pro}


def gempix2_query_answer(data: dict) -> dict:
    """A GemPix2 query answer: the seed's success envelope around its task data model."""
    return {"code": 0, "message": "ok", "data": data}


# ---------------------------------------------------------------------------- submit answers


@pytest.mark.parametrize(
    ("service", "seed", "expected"),
    [
        (
            "gempix2",
            "gempix2_submit_ok",
            SubmittedTask("gempix2", "ta12345678-1234-1234-1234-123456789abc"),
        ),
        (
            "nano_banana_pro",
            "apixo_submit_ok",
            SubmittedTask("nano_banana_pro", "task_12345678"),
        ),
    ],
)
def test_submit_answer_gives_task_id(service, seed, expected, load_seed):
    module = SERVICE_MODULES[service]
    data = module.read_response(httpx.Response(200, json=load_seed(seed)))
    assert module.parse_submit(data) == expected


@pytest.mark.parametrize(
    ("service", "data"),
    [
        ("gempix2", {}),
        ("gempix2", {"task_id": ""}),
        ("gempix2", {"task_id": 42}),
        ("nano_banana_pro", {}),
        ("nano_banana_pro", {"taskId": None}),
        ("nano_banana_pro", {"task_id": "task_1"}),  # the other service's spelling
    ],
)
def test_submit_answer_without_task_id_is_service_error(service, data):
    with pytest.raises(ServiceError, match=r"no task_?[iI]d"):
        SERVICE_MODULES[service].parse_submit(data)


# ---------------------------------------------------------------------------- error answers


@pytest.mark.parametrize(
    ("service", "seed", "http_status", "task_id", "error_type", "message", "status_code"),
    [
        (
            "gempix2",
            "gempix2_submit_400",
            400,
            None,
            BadRequestError,
            "prompt is required",
            400,
        ),
        (
            "gempix2",
            "gempix2_submit_401",
            401,
            None,
            AuthenticationError,
            "Invalid API key",
            401,
        ),
        (
            "gempix2",
            "gempix2_query_401",
            401,
            "ta1",
            AuthenticationError,
            "Invalid API key",
            401,
        ),
        (
            "gempix2",
            "gempix2_query_404",
            404,
            "ta1",
            TaskNotFoundError,
            "task not found",
            404,
        ),
        # apixo answers HTTP 200 and puts the error in the body's code.
        (
            "nano_banana_pro",
            "apixo_submit_insufficient_credits",
            200,
            None,
            InsufficientCreditsError,
            "Insufficient credits",
            400,
        ),
        (
            "nano_banana_pro",
            "apixo_submit_insufficient_credits",
            400,
            "task_1",
            InsufficientCreditsError,
            "Insufficient credits",
            400,
        ),
    ],
)
def test_error_seed_raises_typed_error(
    service, seed, http_status, task_id, error_type, message, status_code, load_seed
):
    module = SERVICE_MODULES[service]
    with pytest.raises(error_type) as caught:
        module.read_response(httpx.Response(http_status, json=load_seed(seed)), task_id=task_id)
    error = caught.value
    assert type(error) is error_type
    assert error.message == message
    assert error.status_code == status_code
    assert error.task_id == task_id
    assert error.provider == module.PROVIDER


# ---------------------------------------------------------------------------- task status


def test_apixo_success_seed_parses_to_typed_status(load_seed):
    data = nano_banana_pro.read_response(
        httpx.Response(200, json=load_seed("apixo_status_success")), task_id="task_12345678"
    )
    status = nano_banana_pro.parse_task(data)
    assert status.service == "nano_banana_pro"
    assert status.task_id == "task_12345678"
    assert status.state is TaskState.SUCCEEDED
    assert status.provider_state == "success"
    assert status.is_terminal
    assert status.images == (GeneratedImage("https://r2.apixo.ai/image.png"),)
    assert not status.images[0].is_data_uri
    assert status.created_at == datetime(2026, 1, 9, 13, 33, 30, 929000, tzinfo=UTC)
    assert status.completed_at == datetime(2026, 1, 9, 13, 34, 12, 317000, tzinfo=UTC)
    assert status.created_at.utcoffset().total_seconds() == 0
    assert status.cost_seconds == pytest.approx(41.388)
    assert status.fail_code is None
    assert status.fail_message is None
    assert status.credits is None


def test_apixo_failed_seed_parses_fail_code_and_message(load_seed):
    data = nano_banana_pro.read_response(httpx.Response(200, json=load_seed("apixo_status_failed")))
    status = nano_banana_pro.parse_task(data)
    assert status.task_id == "task_12345678"
    assert status.state is TaskState.FAILED
    assert status.provider_state == "failed"
    assert status.is_terminal
    assert status.images == ()
    assert status.fail_code == "CONTENT_VIOLATION"
    assert status.fail_message == "Content does not meet safety guidelines"
    assert status.created_at is None
    assert status.completed_at is None
    assert status.cost_seconds is None


def test_gempix2_callback_seed_parses_credits_and_image(load_seed):
    payload = load_seed("gempix2_callback_success")
    for status in (
        gempix2.parse_task(payload),
        gempix2.GemPix2Client(transport=None).parse_callback(payload),
        gempix2.parse_task(
            gempix2.read_response(httpx.Response(200, json=gempix2_query_answer(payload)))
        ),
    ):
        assert status.service == "gempix2"
        assert status.task_id == "ta5c9705-b8ae-4cb9-aa6f-97c4fee88c8d"
        assert status.state is TaskState.SUCCEEDED
        assert status.provider_state == "success"
        assert status.images == (GeneratedImage(GEMPIX2_IMAGE),)
        assert status.credits == 0.5
        assert isinstance(status.credits, float)
        assert status.fail_code is None
        assert status.fail_message is None


def test_gempix2_image_gen_result_seed_becomes_an_image(load_seed):
    data_uri = "data:image/png;base64,iVBORw0KGgo="
    status = gempix2.parse_task(
        {
            "task_id": "ta1",
            "status": "success",
            "result": [load_seed("gempix2_image_gen_result"), {"image": data_uri}],
            "consumed": "1.000000",
        }
    )
    assert status.images == (GeneratedImage(GEMPIX2_IMAGE), GeneratedImage(data_uri))
    assert [image.is_data_uri for image in status.images] == [False, True]
    assert status.credits == 1.0


def test_gempix2_failed_callback_keeps_reason(load_seed):
    payload = load_seed("gempix2_callback_success") | {
        "result": None,
        "status": "failed",
        "consumed": "0.000000",
        "status_reason": {"message": "Image generation failed: safety policy"},
    }
    status = gempix2.parse_task(payload)
    assert status.state is TaskState.FAILED
    assert status.provider_state == "failed"
    assert status.images == ()
    assert status.credits == 0.0
    assert status.fail_message == "Image generation failed: safety policy"


@pytest.mark.parametrize(
    ("provider_state", "state"),
    [
        ("pending", TaskState.QUEUED),
        ("submitted", TaskState.QUEUED),
        ("in_progress", TaskState.RUNNING),
        ("success", TaskState.SUCCEEDED),
        ("failed", TaskState.FAILED),
    ],
)
def test_gempix2_states_are_normalised(provider_state, state, load_seed):
    payload = load_seed("gempix2_callback_success") | {"status": provider_state}
    status = gempix2.parse_task(payload)
    assert status.state is state
    assert status.provider_state == provider_state
    assert status.is_terminal is (state in (TaskState.SUCCEEDED, TaskState.FAILED))


@pytest.mark.parametrize(
    ("provider_state", "state"),
    [
        ("pending", TaskState.QUEUED),
        ("processing", TaskState.RUNNING),
        ("success", TaskState.SUCCEEDED),
        ("failed", TaskState.FAILED),
    ],
)
def test_apixo_states_are_normalised(provider_state, state, load_seed):
    data = load_seed("apixo_status_success")["data"] | {"state": provider_state}
    status = nano_banana_pro.parse_task(data)
    assert status.state is state
    assert status.provider_state == provider_state
    assert status.is_terminal is (state in (TaskState.SUCCEEDED, TaskState.FAILED))


@pytest.mark.parametrize(
    ("service", "data"),
    [
        ("gempix2", {"task_id": "ta1", "status": "processing"}),  # apixo's word
        ("gempix2", {"task_id": "ta1"}),
        ("nano_banana_pro", {"taskId": "task_1", "state": "in_progress"}),  # GemPix2's word
        ("nano_banana_pro", {"taskId": "task_1", "state": "SUCCESS"}),
    ],
)
def test_unknown_state_is_service_error(service, data):
    with pytest.raises(ServiceError, match=r"unknown task (status|state)") as caught:
        SERVICE_MODULES[service].parse_task(data)
    assert caught.value.task_id == next(iter(data.values()))


@pytest.mark.parametrize(
    ("service", "data"),
    [
        ("gempix2", {"task_id": "ta1", "status": "success", "result": None}),
        ("gempix2", {"task_id": "ta1", "status": "success", "result": [{"image": ""}]}),
        ("nano_banana_pro", {"taskId": "t1", "state": "success"}),
        (
            "nano_banana_pro",
            {"taskId": "t1", "state": "success", "resultJson": '{"resultUrls":[]}'},
        ),
    ],
)
def test_success_without_image_is_reported_as_failed(service, data):
    status = SERVICE_MODULES[service].parse_task(data)
    assert status.state is TaskState.FAILED
    assert status.provider_state == "success"
    assert status.images == ()
    assert status.fail_message == "the service returned no image"


def test_apixo_result_json_is_parsed_twice_and_keeps_every_url():
    urls = ["https://r2.apixo.ai/a.png", "https://r2.apixo.ai/b.png"]
    data = {
        "taskId": "t1",
        "state": "success",
        "resultJson": '{"resultUrls":["https://r2.apixo.ai/a.png","https://r2.apixo.ai/b.png"]}',
    }
    assert nano_banana_pro.parse_task(data).images == tuple(GeneratedImage(u) for u in urls)


def test_apixo_result_json_that_is_not_json_is_service_error():
    with pytest.raises(ServiceError, match="resultJson is not JSON"):
        nano_banana_pro.parse_task({"taskId": "t1", "state": "success", "resultJson": "{oops"})


@pytest.mark.parametrize(
    "payload",
    [
        read_seed("apixo_status_success"),  # the status answer, envelope and all
        read_seed("apixo_status_success")["data"],  # or its bare data
    ],
)
def test_apixo_parse_callback_accepts_status_answer_or_data(payload):
    status = nano_banana_pro.NanoBananaProClient(transport=None).parse_callback(payload)
    assert status.task_id == "task_12345678"
    assert status.state is TaskState.SUCCEEDED
    assert status.images == (GeneratedImage("https://r2.apixo.ai/image.png"),)
    assert status.cost_seconds == pytest.approx(41.388)


# ---------------------------------------------------------------------------- submit bodies


@pytest.mark.parametrize(
    ("seed", "request_"),
    [
        (
            "gempix2_auth_example_request",
            GenerationRequest(model="google/gempix2", prompt="A beautiful landscape"),
        ),
        (
            "gempix2_submit_basic_request",
            GenerationRequest(
                model="google/gempix2", prompt="A beautiful girl dancing in a garden"
            ),
        ),
        (
            "gempix2_submit_references_request",
            GenerationRequest(
                model="google/gempix2",
                prompt="Put them in a basket",
                reference_urls=(
                    "https://cdn.openai.com/API/docs/images/body-lotion.png",
                    "https://cdn.openai.com/API/docs/images/soap.png",
                ),
                callback_url="https://example.com/webhook/image-callback",
            ),
        ),
    ],
)
def test_gempix2_submit_body_matches_seed(seed, request_, load_seed):
    assert gempix2.build_submit_body(request_) == load_seed(seed)


def test_gempix2_submit_body_leaves_out_settings_the_api_lacks():
    body = gempix2.build_submit_body(
        GenerationRequest(
            model="google/gemini-2.5-flash-image",
            prompt="p",
            settings=ImageSettings(
                aspect_ratio="16:9",
                resolution="4K",
                output_format="jpeg",
                routing="official",
            ),
        )
    )
    assert body == {"model": "google/gemini-2.5-flash-image", "prompt": "p"}


@pytest.mark.parametrize(
    ("seed", "request_"),
    [
        (
            "apixo_submit_text_to_image_request",
            GenerationRequest(
                model="nano-banana-pro",
                prompt="a cozy cyberpunk cafe with neon lights, ultra detailed",
                settings=ImageSettings(
                    aspect_ratio="3:2",
                    resolution="2K",
                    output_format="png",
                    routing="value",
                ),
            ),
        ),
        (
            "apixo_submit_image_to_image_request",
            GenerationRequest(
                model="nano-banana-pro",
                prompt="combine these styles into a futuristic cityscape",
                reference_urls=(
                    "https://example.com/ref1.jpg",
                    "https://example.com/ref2.jpg",
                    "https://example.com/ref3.jpg",
                ),
                settings=ImageSettings(
                    aspect_ratio="16:9",
                    resolution="4K",
                    output_format="jpeg",
                    routing="official",
                ),
                callback_url="https://your-server.com/callback",
            ),
        ),
    ],
)
def test_apixo_submit_body_matches_seed(seed, request_, load_seed):
    assert nano_banana_pro.build_submit_body(request_) == load_seed(seed)


def test_apixo_schema_template_fields_all_map_but_mode_and_type_follow_the_request(load_seed):
    template = load_seed("apixo_submit_schema_request")
    body = nano_banana_pro.build_submit_body(
        GenerationRequest(
            model="nano-banana-pro",
            prompt="...",
            reference_urls=("...",),
            settings=ImageSettings(
                aspect_ratio="16:9",
                resolution="2K",
                output_format="png",
            ),
            callback_url="https://...",
        )
    )
    assert set(body) == set(template)
    assert set(body["input"]) == set(template["input"])
    # The template pairs "text-to-image" with image_urls and "async" with a callback_url; the
    # client derives both: references mean image-to-image, a callback_url means callback.
    assert body["input"]["mode"] == "image-to-image"
    assert body["request_type"] == "callback"
    assert body["provider"] == template["provider"] == "auto"
    assert {k: v for k, v in body["input"].items() if k != "mode"} == {
        k: v for k, v in template["input"].items() if k != "mode"
    }


def request_problems(model, *, prompt, reference_count=0, **settings):
    return CATALOG.request_problems(
        model, prompt=prompt, reference_count=reference_count, settings=ImageSettings(**settings)
    )


@pytest.mark.parametrize(
    ("references", "callback_url", "mode", "request_type"),
    [
        ((), None, "text-to-image", "async"),
        (("https://e.com/a.png",), None, "image-to-image", "async"),
        ((), "https://me.example/cb", "text-to-image", "callback"),
        (("https://e.com/a.png",), "https://me.example/cb", "image-to-image", "callback"),
    ],
)
def test_apixo_mode_follows_references_and_callback_switches_request_type(
    references, callback_url, mode, request_type
):
    body = nano_banana_pro.build_submit_body(
        GenerationRequest(
            model="nano-banana-pro",
            prompt="p",
            reference_urls=references,
            callback_url=callback_url,
        )
    )
    assert body["input"]["mode"] == mode
    assert body["request_type"] == request_type
    assert body["provider"] == "auto"  # the documented default routing
    assert ("callback_url" in body) is (callback_url is not None)
    assert body["input"].get("image_urls") == (list(references) or None)
    assert set(body["input"]) == {"mode", "prompt"} | ({"image_urls"} if references else set())


# ---------------------------------------------------------------------------- request checks


@pytest.mark.parametrize(
    "seed",
    [
        "gempix2_auth_example_request",
        "gempix2_submit_basic_request",
        "gempix2_submit_references_request",
    ],
)
def test_gempix2_seed_requests_fit_the_capability_table(seed, load_seed):
    body = load_seed(seed)
    assert (
        request_problems(
            body["model"], prompt=body["prompt"], reference_count=len(body.get("images", []))
        )
        == []
    )


@pytest.mark.parametrize(
    "seed", ["apixo_submit_text_to_image_request", "apixo_submit_image_to_image_request"]
)
def test_apixo_seed_requests_fit_the_capability_table(seed, load_seed):
    body = load_seed(seed)
    task_input = body["input"]
    assert (
        request_problems(
            "nano-banana-pro",
            prompt=task_input["prompt"],
            reference_count=len(task_input.get("image_urls", [])),
            aspect_ratio=task_input["aspect_ratio"],
            resolution=task_input["resolution"],
            output_format=task_input["output_format"],
            routing=body["provider"],
        )
        == []
    )


@pytest.mark.parametrize(
    ("model", "kwargs", "problems"),
    [
        ("google/gempix2", {"prompt": "a cat", "reference_count": 4}, []),
        (
            "google/gempix2",
            {"prompt": "a cat", "reference_count": 5},
            ["GemPix2 (Nano Banana) takes at most 4 reference images (5 given)."],
        ),
        (
            "google/gemini-2.5-flash-image",
            {"prompt": "a cat", "aspect_ratio": "16:9"},
            [
                "Gemini 2.5 Flash Image cannot take aspect ratio '16:9'; "
                "choices: none (the API has no such setting)."
            ],
        ),
        ("nano-banana-pro", {"prompt": "a cat", "reference_count": 10}, []),
        (
            "nano-banana-pro",
            {"prompt": "a cat", "reference_count": 11},
            ["Nano Banana Pro takes at most 10 reference images (11 given)."],
        ),
        (
            "nano-banana-pro",
            {"prompt": "a cat", "resolution": "8K"},
            ["Nano Banana Pro cannot take resolution '8K'; choices: 1K, 2K, 4K."],
        ),
        (
            "nano-banana-pro",
            {"prompt": "a cat", "output_format": "webp", "routing": "cheap"},
            [
                "Nano Banana Pro cannot take output format 'webp'; choices: png, jpeg.",
                "Nano Banana Pro cannot take routing 'cheap'; choices: auto, value, official.",
            ],
        ),
        ("nano-banana-pro", {"prompt": "   \n"}, ["Write a prompt first."]),
        (
            "dall-e-3",
            {"prompt": "a cat"},
            [
                "Unknown model 'dall-e-3'; choose one of: google/gempix2, "
                "google/gemini-2.5-flash-image, nano-banana-pro."
            ],
        ),
    ],
)
def test_request_problems(model, kwargs, problems):
    assert request_problems(model, **kwargs) == problems


def test_documented_apixo_aspect_ratios_are_offered():
    spec = CATALOG.models["nano-banana-pro"]
    assert {"1:1", "16:9", "9:16", "21:9", "3:2"} <= set(spec.aspect_ratios)
    assert spec.defaults.resolution == "1K"
    assert spec.defaults.output_format == "png"  # the seed's default
    assert spec.defaults.routing == "auto"  # the seed's default
