"""The studio page: built here from `components/`, with all event wiring in `wire()`.

What runs in the browser itself (scripts, styles, storage names) is in `components/browser.py`.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from components import handlers
from components import history_handlers as history
from components.browser import CLIENT_ID_JS, CLIENT_STORAGE, KEY_STORAGE, keys_js
from components.controls import Controls, build_controls
from components.handlers import Studio
from components.history import HistoryView, build_history
from providers.catalog import Catalog


@dataclass(frozen=True)
class Page:
    demo: gr.Blocks
    controls: Controls
    gallery: gr.Gallery
    status: gr.Textbox
    history: HistoryView
    tabs: gr.Tabs
    keys: gr.BrowserState
    client_id: gr.BrowserState
    job_ids: gr.State
    shown_ids: gr.State
    thumb_ids: gr.State
    selected: gr.State


def offline_notice(offline_services: Sequence[str]) -> str:
    if not offline_services:
        return ""
    names = " and ".join(offline_services)
    return (
        f"**Offline preview for {names}: images are placeholders — add a key to use the real "
        "service.**"
    )


# The form's inputs to /generate, in order; each service's key field and the browser id follow.
FORM_FIELDS: tuple[tuple[str, Any], ...] = (
    ("model", inspect.Parameter.empty),
    ("prompt", inspect.Parameter.empty),
    ("reference_images", None),
    ("reference_urls", None),
    ("aspect_ratio", None),
    ("resolution", None),
    ("output_format", None),
    ("routing", None),
    ("variants", None),
)


def generate_signature(catalog: Catalog) -> inspect.Signature:
    """The `/generate` parameters: the form, one keyword per service key, the browser id.

    Gradio names the API's parameters after the function's signature, so a service added to
    the catalog gets its key keyword here without any code naming it."""
    names = [*FORM_FIELDS, *((field, None) for field in catalog.key_fields), ("client_id", None)]
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature([inspect.Parameter(n, kind, default=d) for n, d in names])


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
        with gr.Tabs() as tabs:
            with gr.Tab("Generate", id="generate-tab"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=320):
                        controls = build_controls(studio.catalog)
                    with gr.Column(scale=3, min_width=320):
                        status = gr.Textbox(
                            label="Status",
                            lines=4,
                            max_lines=12,
                            interactive=False,
                            elem_id="status",
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
            with gr.Tab("History", id="history-tab"):
                history_view = build_history(studio.catalog)
        page = Page(
            demo=demo,
            controls=controls,
            gallery=gallery,
            status=status,
            history=history_view,
            tabs=tabs,
            keys=gr.BrowserState(
                dict.fromkeys(studio.catalog.key_fields, ""),
                storage_key=KEY_STORAGE,
                secret=browser_secret,
            ),
            client_id=gr.BrowserState("", storage_key=CLIENT_STORAGE, secret=browser_secret),
            job_ids=gr.State([]),
            shown_ids=gr.State([]),
            thumb_ids=gr.State([]),
            selected=gr.State(None),
        )
        wire(page, studio, concurrency_limit)
    return page


def wire(page: Page, studio: Studio, concurrency_limit: int | None = None) -> None:
    c = page.controls
    h = page.history
    demo = page.demo
    catalog = studio.catalog
    private: dict[str, Any] = {"api_visibility": "private"}

    # Keys and the browser id stay in the browser: these events run as JavaScript only.
    identified = demo.load(None, inputs=[page.client_id], outputs=[page.client_id], js=CLIENT_ID_JS)
    load_keys, store_keys = keys_js(catalog)
    demo.load(None, inputs=[page.keys], outputs=c.key_boxes, js=load_keys)
    for box in c.key_boxes:
        box.change(None, inputs=c.key_boxes, outputs=[page.keys], js=store_keys, **private)

    def visitor_keys(values: Sequence[str | None]) -> dict[str, str]:
        return catalog.keys_from(dict(zip(catalog.key_fields, values, strict=True)))

    settings = [
        c.model,
        c.prompt,
        c.model_info,
        c.references,
        c.aspect_ratio,
        c.resolution,
        c.output_format,
        c.routing,
    ]

    def on_model_change(*values: Any) -> tuple[Any, ...]:
        return handlers.on_model_change(catalog, *values)

    c.model.change(
        on_model_change,
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
            c.settings_box,
        ],
        api_name="reshape",
        **private,
    )

    def trim_references(model: str, files: list[Any] | None) -> list[str]:
        return handlers.trim_references(catalog, model, files)

    c.references.upload(
        trim_references,
        inputs=[c.model, c.references],
        outputs=[c.references],
        api_name="trim_references",
        **private,
    )
    c.references.change(
        handlers.file_paths,
        inputs=[c.references],
        outputs=[c.reference_preview],
        api_name="preview_references",
        **private,
    )

    form_size = len(FORM_FIELDS)
    key_count = len(catalog.key_fields)

    async def generate(*values: Any) -> AsyncIterator[tuple[Any, str, list[str]]]:
        bound = generate_signature(catalog).bind(*values)
        bound.apply_defaults()
        args = list(bound.arguments.values())
        form, keys, client_id = args[:form_size], args[form_size:-1], args[-1]
        async for update in handlers.generate(
            studio,
            *form,
            keys=visitor_keys(keys),
            owner=history.owner_for_new_job(studio, client_id),
        ):
            yield update

    generate.__signature__ = generate_signature(catalog)  # type: ignore[attr-defined]

    def validate(*values: Any) -> list[Any]:
        verdicts = handlers.validate_generate(catalog, *values[:form_size])
        return [*verdicts, *(gr.validate(True, "") for _ in range(key_count + 1))]

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
        *c.key_boxes,
        page.client_id,
    ]
    outputs = [page.gallery, page.status, page.job_ids]
    run = c.generate.click(
        generate,
        inputs=inputs,
        outputs=outputs,
        validator=validate,
        api_name="generate",
        concurrency_limit=concurrency_limit,
        show_progress_on=[page.status],
    )

    async def stop(ids: list[str]) -> str:
        return await handlers.stop(studio, ids)

    c.stop.click(
        stop,
        inputs=[page.job_ids],
        outputs=[page.status],
        cancels=[run],
        api_name="stop",
        concurrency_limit=None,
        **private,
    )

    async def reattach(client_id: str) -> AsyncIterator[tuple[Any, str, list[str]]]:
        async for update in handlers.reattach(studio, history.owner_for(studio, client_id)):
            yield update

    # After a reload or in a new tab, jobs still running stream into the gallery again; this
    # runs after the browser id is known.
    identified.then(
        reattach,
        inputs=[page.client_id],
        outputs=outputs,
        api_name="reattach",
        concurrency_limit=None,
        show_progress_on=[page.status],
        **private,
    )

    # ---- history ----
    async def load(client_id: str, search: str, model: str, state: str) -> tuple[Any, ...]:
        return await history.load_history(studio, client_id, search, model, state)

    listing = dict(
        fn=load,
        inputs=[page.client_id, h.search, h.model, h.state],
        outputs=[h.thumbnails, h.table, page.shown_ids, page.thumb_ids],
        concurrency_limit=None,
        **private,
    )
    h.refresh.click(api_name="history", **listing)
    h.search.submit(api_name="history_search", **listing)
    h.model.change(api_name="history_model", **listing)
    h.state.change(api_name="history_state", **listing)
    page.tabs.select(api_name="history_tab", **listing)

    async def pick(client_id: str, ids: list[str], event: gr.SelectData) -> tuple[Any, str]:
        index = event.index[0] if isinstance(event.index, list | tuple) else event.index
        job_id = ids[index] if ids and 0 <= index < len(ids) else None
        return job_id, await history.describe(studio, client_id, job_id)

    h.thumbnails.select(
        pick, inputs=[page.client_id, page.thumb_ids], outputs=[page.selected, h.details], **private
    )
    h.table.select(
        pick, inputs=[page.client_id, page.shown_ids], outputs=[page.selected, h.details], **private
    )

    async def recall(client_id: str, job_id: str | None) -> tuple[Any, ...]:
        return (*await history.recall(studio, client_id, job_id), gr.Tabs(selected="generate-tab"))

    recalled = dict(
        fn=recall, inputs=[page.client_id, page.selected], outputs=[*settings, page.tabs], **private
    )
    h.recall.click(api_name="recall", **recalled)
    h.rerun.click(api_name="rerun", **recalled).then(
        generate,
        inputs=inputs,
        outputs=outputs,
        api_visibility="private",
        concurrency_limit=concurrency_limit,
        show_progress_on=[page.status],
    )

    async def reuse(
        client_id: str, job_id: str | None, model: str, current: list[Any] | None
    ) -> tuple[Any, Any]:
        files = await history.use_as_reference(studio, client_id, job_id, model, current)
        return files, gr.Tabs(selected="generate-tab")

    h.use_as_reference.click(
        reuse,
        inputs=[page.client_id, page.selected, c.model, c.references],
        outputs=[c.references, page.tabs],
        api_name="reuse",
        **private,
    )

    async def check_again(client_id: str, job_id: str | None, *keys: str | None) -> str:
        return await history.check_again(studio, client_id, job_id, visitor_keys(keys))

    h.check_again.click(
        check_again,
        inputs=[page.client_id, page.selected, *c.key_boxes],
        outputs=[h.details],
        api_name="check_again",
        **private,
    ).then(
        reattach,
        inputs=[page.client_id],
        outputs=outputs,
        api_visibility="private",
        concurrency_limit=None,
        show_progress_on=[page.status],
    )

    async def zip_shown(client_id: str, ids: list[str]) -> Any:
        return await history.zip_shown(studio, client_id, ids)

    h.download_zip.click(
        zip_shown,
        inputs=[page.client_id, page.shown_ids],
        outputs=[h.zip_file],
        api_name="zip",
        **private,
    )

    def restore(file: Any) -> tuple[Any, ...]:
        return history.restore_from_image(catalog, file)

    h.restore_drop.upload(
        restore,
        inputs=[h.restore_drop],
        outputs=[*settings],
        api_name="restore",
        **private,
    ).then(lambda: gr.Tabs(selected="generate-tab"), outputs=[page.tabs], api_visibility="private")
