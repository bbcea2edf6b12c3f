"""Inputs bounded where they enter: the prompt, the placeholder renderer's work, callback bodies
and the callback route itself."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import httpx
import pytest
from app_server import running_app
from PIL import Image

from providers.capabilities import ImageSettings
from providers.catalog import MAX_PROMPT_CHARS
from providers.services import CATALOG
from simulator.render import RenderRequest, render_image, wrap_text
from studio.callbacks import MAX_CALLBACK_BYTES, CallbackTooLarge, read_callback_body
from studio.jobs import JobSpec

NBP_SETTINGS = ImageSettings(aspect_ratio="1:1", resolution="1K", output_format="png")


# ---------------------------------------------------------------------------- the prompt


@pytest.mark.parametrize("model", ["nano-banana-pro", "google/gempix2"])
def test_a_prompt_over_the_limit_is_refused_with_a_sentence_naming_it(model):
    settings = NBP_SETTINGS if model == "nano-banana-pro" else ImageSettings()
    long = "a" * (MAX_PROMPT_CHARS + 1)
    problems = CATALOG.request_problems(model, prompt=long, reference_count=0, settings=settings)
    assert problems == ["The prompt is 4,001 characters long; the limit is 4,000 characters."]
    fits = "a" * MAX_PROMPT_CHARS
    assert CATALOG.request_problems(model, prompt=fits, reference_count=0, settings=settings) == []


def test_a_10_mb_prompt_never_becomes_a_job():
    spec = JobSpec(model="nano-banana-pro", prompt="x" * 10_000_000, settings=NBP_SETTINGS)
    assert any("the limit is 4,000" in problem for problem in spec.problems(CATALOG))


# ---------------------------------------------------------------------------- the renderer


class CountingMeasure:
    """A stand-in for a font's getlength: 10 units per character, counting each call."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, text: str) -> float:
        self.calls += 1
        return 10.0 * len(text)


def test_a_long_word_costs_a_few_measurements_per_line_not_one_per_character():
    measure = CountingMeasure()
    lines = wrap_text("x" * 1200, measure, max_width=400.0)  # 40 characters a line
    assert lines == ["x" * 40] * 30
    # Bisection: about log2(1200) + 1 per line. Cutting one character at a time took ~18,000.
    assert measure.calls < 30 * 14


def test_wrapped_lines_fit_and_keep_every_character():
    measure = CountingMeasure()
    text = "short words " + "y" * 95 + " and " + "z" * 7
    lines = wrap_text(text, measure, max_width=100.0)
    assert all(measure(line) <= 100.0 for line in lines)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")


def test_a_huge_spaceless_prompt_renders_a_picture():
    request = RenderRequest(
        text="W" * 100_000, model="m", resolution="1K", size=(512, 512), output_format="png"
    )
    with Image.open(io.BytesIO(render_image(request))) as image:
        assert image.size == (512, 512)


# ---------------------------------------------------------------------------- callback bodies


class Sent:
    def __init__(self) -> None:
        self.chunks = 0


async def fifty_megabytes(sent: Sent) -> AsyncIterator[bytes]:
    for _ in range(50 * 16):
        sent.chunks += 1
        yield b"{" * 65536


async def test_a_50_mb_callback_body_is_refused_after_the_cap_without_parsing():
    sent = Sent()
    with pytest.raises(CallbackTooLarge, match="at most 16,384 bytes"):
        await read_callback_body({}, fifty_megabytes(sent))
    assert sent.chunks == 1  # the first 64 KB chunk is already past the cap: nothing more read


async def test_a_declared_length_over_the_cap_is_refused_before_reading():
    sent = Sent()
    with pytest.raises(CallbackTooLarge):
        await read_callback_body({"content-length": str(50 * 2**20)}, fifty_megabytes(sent))
    assert sent.chunks == 0


async def test_a_small_callback_body_is_parsed_and_junk_is_none():
    async def body(data: bytes) -> AsyncIterator[bytes]:
        yield data

    assert await read_callback_body({}, body(b'{"task_id": "t1"}')) == {"task_id": "t1"}
    assert await read_callback_body({}, body(b"not json")) is None
    assert await read_callback_body({}, body(b"[" * MAX_CALLBACK_BYTES)) is None


# ---------------------------------------------------------------------------- the route


@pytest.mark.slow
def test_the_callback_route_exists_only_with_a_public_address_and_caps_its_body():
    path = "/callbacks/no-such-job/no-such-token"
    with running_app() as server:
        assert [p for p, _, _ in server.app.routes() if p.startswith("/callbacks")] == []
        response = httpx.post(server.url.rstrip("/") + path, json={"task_id": "t1"})
        assert response.status_code in (404, 405)
    with running_app(env={"PUBLIC_URL": "https://studio.example"}) as server:
        url = server.url.rstrip("/") + path
        small = httpx.post(url, json={"task_id": "t1", "status": "success"})
        assert (small.status_code, small.json()) == (200, {"received": True})
        large = httpx.post(url, content=b" " * (MAX_CALLBACK_BYTES + 1))
        assert large.status_code == 413
        assert "at most 16,384 bytes" in large.json()["error"]
