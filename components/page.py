"""The studio page: built here from `components/`, with all event wiring in `wire()`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from components import handlers
from components.controls import Controls, build_controls
from components.handlers import Studio

KEY_STORAGE = "image-studio-keys"

# Ctrl+Enter / Cmd+Enter in the prompt clicks Generate.
SHORTCUT_JS = """
() => {
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
    if (!event.target.closest || !event.target.closest("#prompt")) return;
    event.preventDefault();
    document.querySelector("#generate")?.click();
  });
}
"""

CSS = """
#status textarea { font-family: ui-monospace, monospace; font-size: 0.85rem; }
footer { display: none !important; }
"""


@dataclass(frozen=True)
class Page:
    demo: gr.Blocks
    controls: Controls
    gallery: gr.Gallery
    status: gr.Textbox


def offline_notice(offline_services: Sequence[str]) -> str:
    if not offline_services:
        return ""
    names = " and ".join(offline_services)
    return (
        f"**Offline preview for {names}: images are placeholders — add a key to use the real "
        "service.**"
    )


def build_page(
    studio: Studio,
    *,
    offline_services: Sequence[str],
    browser_secret: str,
    concurrency_limit: int | None = None,
) -> Page:
    with gr.Blocks(title="Image Studio", delete_cache=(3600, 24 * 3600)) as demo:
        gr.Markdown("# Image Studio\nGemPix2 · Gemini 2.5 Flash Image · Nano Banana Pro")
        gr.Markdown(offline_notice(offline_services), elem_id="offline-notice")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=320):
                controls = build_controls(
                    {
                        "defapi": "set DEFAPI_API_KEY or paste a dk-… key",
                        "apixo": "set APIXO_API_KEY or paste a key",
                    }
                )
            with gr.Column(scale=3, min_width=320):
                status = gr.Textbox(
                    label="Status", lines=4, max_lines=12, interactive=False, elem_id="status"
                )
                gallery = gr.Gallery(
                    label="Results",
                    columns=2,
                    height="auto",
                    object_fit="contain",
                    format="png",
                    buttons=["download", "download_all", "fullscreen"],
                    interactive=False,
                    elem_id="results",
                )
        keys = gr.BrowserState(
            {"defapi": "", "apixo": ""}, storage_key=KEY_STORAGE, secret=browser_secret
        )
        job_ids = gr.State([])
        page = Page(demo, controls, gallery, status)
        wire(page, studio, keys, job_ids, concurrency_limit)
    return page


def wire(
    page: Page,
    studio: Studio,
    keys: gr.BrowserState,
    job_ids: gr.State,
    concurrency_limit: int | None = None,
) -> None:
    c = page.controls
    demo = page.demo

    # Keys move between the password boxes and browser storage in the browser only.
    demo.load(
        None,
        inputs=[keys],
        outputs=[c.defapi_key, c.apixo_key],
        js="(k) => [k?.defapi ?? '', k?.apixo ?? '']",
    )
    for box in (c.defapi_key, c.apixo_key):
        box.change(
            None,
            inputs=[c.defapi_key, c.apixo_key],
            outputs=[keys],
            js="(d, a) => ({defapi: d, apixo: a})",
            api_visibility="private",
        )

    c.model.change(
        handlers.on_model_change,
        inputs=[c.model, c.aspect_ratio, c.resolution, c.output_format, c.routing, c.references],
        outputs=[
            c.model_info,
            c.references,
            c.aspect_ratio,
            c.resolution,
            c.output_format,
            c.routing,
            c.references,
            c.reference_preview,
        ],
        api_name="reshape",
        api_visibility="private",
    )
    c.references.upload(
        handlers.trim_references,
        inputs=[c.model, c.references],
        outputs=[c.references],
        api_name="trim_references",
        api_visibility="private",
    )
    c.references.change(
        lambda files: handlers.file_paths(files),
        inputs=[c.references],
        outputs=[c.reference_preview],
        api_name="preview_references",
        api_visibility="private",
    )

    async def generate(
        model: str,
        prompt: str,
        reference_images: list[Any] | None = None,
        reference_urls: str | None = None,
        aspect_ratio: str | None = None,
        resolution: str | None = None,
        output_format: str | None = None,
        routing: str | None = None,
        variants: float | None = None,
        defapi_key: str | None = None,
        apixo_key: str | None = None,
    ) -> AsyncIterator[tuple[Any, str, list[str]]]:
        async for update in handlers.generate(
            studio,
            model,
            prompt,
            reference_images,
            reference_urls,
            aspect_ratio,
            resolution,
            output_format,
            routing,
            variants,
            defapi_key,
            apixo_key,
        ):
            yield update

    inputs = [
        c.model,
        c.prompt,
        c.references,
        c.reference_urls,
        c.aspect_ratio,
        c.resolution,
        c.output_format,
        c.routing,
        c.variants,
        c.defapi_key,
        c.apixo_key,
    ]
    run = c.generate.click(
        generate,
        inputs=inputs,
        outputs=[page.gallery, page.status, job_ids],
        validator=handlers.validate_generate,
        api_name="generate",
        concurrency_limit=concurrency_limit,
        show_progress_on=[page.status],
    )

    async def stop(ids: list[str]) -> str:
        return await handlers.stop(studio, ids)

    c.stop.click(
        stop,
        inputs=[job_ids],
        outputs=[page.status],
        cancels=[run],
        api_name="stop",
        api_visibility="private",
        concurrency_limit=None,
    )
