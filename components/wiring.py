"""The Generate tab's events: the form, Generate and Stop, the feed, the cards' actions, and
the public `/generate` endpoint.

Generate only adds jobs: it checks, prepares and starts them, says so beside the button and
returns, so it can be pressed again while jobs run. What the jobs do is shown by the feed, one
subscription per page (`components/feed.py`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import gradio as gr

from components import feed_actions as actions
from components import handlers
from components import history_handlers as history
from components.browser import (
    CLIENT_ID_JS,
    FOCUS_PROMPT_JS,
    SHOW_COMPARE_JS,
    SHOW_FEED_JS,
    form_js,
    keys_js,
    offline_js,
)
from components.callers import document_endpoint, visitor_of
from components.cards import pixel_size_words
from components.feed import stream_feed
from components.handlers import Studio
from components.page import FORM_FIELDS, Page, generate_signature
from providers.capabilities import ImageSettings

PRIVATE: dict[str, Any] = {"api_visibility": "private"}


def wire(
    page: Page, studio: Studio, concurrency_limit: int | None, offline_services: Sequence[str]
) -> Any:
    """Wire the Generate tab; returns the event that knows the browser id (History chains)."""
    c = page.controls
    demo = page.demo
    catalog = studio.catalog

    # Keys, the form and the browser id stay in the browser: these events run as JavaScript.
    identified = demo.load(None, inputs=[page.client_id], outputs=[page.client_id], js=CLIENT_ID_JS)
    load_keys, store_keys = keys_js(catalog)
    offline = [
        (service.label, index)
        for index, service in enumerate(catalog.services)
        if service.label in offline_services
    ]
    banner_js = offline_js(offline)
    demo.load(None, inputs=[page.keys], outputs=c.key_boxes, js=load_keys).then(
        None, inputs=c.key_boxes, outputs=[page.banner], js=banner_js
    )
    for box in c.key_boxes:
        box.change(None, inputs=c.key_boxes, outputs=[page.keys], js=store_keys, **PRIVATE)
        box.change(None, inputs=c.key_boxes, outputs=[page.banner], js=banner_js, **PRIVATE)
    kept: list[Any] = [c.model, c.prompt, c.aspect_ratio, c.resolution, c.output_format]
    kept += [c.routing, c.variants]
    load_form, store_form = form_js(catalog)
    demo.load(None, inputs=[page.form, *kept], outputs=kept, js=load_form)
    for box in kept:
        box.change(None, inputs=kept, outputs=[page.form], js=store_form, **PRIVATE)

    _wire_form(page, studio)
    _wire_generate(page, studio)
    _wire_api(page, studio, concurrency_limit)
    _wire_feed(page, studio, identified)
    return identified


def _wire_form(page: Page, studio: Studio) -> None:
    c = page.controls
    catalog = studio.catalog
    settings = [c.aspect_ratio, c.resolution, c.output_format, c.routing]

    def on_model_change(*values: Any) -> tuple[Any, ...]:
        return handlers.on_model_change(catalog, *values)

    c.model.change(
        on_model_change,
        inputs=[c.model, *settings, c.references, c.set_aside],
        outputs=[
            c.model_info,
            c.references,
            *settings,
            c.references,
            c.reference_preview,
            c.settings_box,
            c.set_aside,
            c.set_aside_note,
            c.pixel_size,
        ],
        api_name="reshape",
        **PRIVATE,
    )

    def pixel_size(model: str, aspect: str | None, resolution: str | None) -> str:
        spec = catalog.models.get(model)
        return pixel_size_words(spec, ImageSettings(aspect, resolution)) if spec else ""

    for box in (c.aspect_ratio, c.resolution):
        box.change(
            pixel_size,
            inputs=[c.model, c.aspect_ratio, c.resolution],
            outputs=[c.pixel_size],
            **PRIVATE,
        )

    async def trim_references(model: str, files: list[Any] | None) -> list[str]:
        return await handlers.trim_references(catalog, model, files)

    c.references.upload(
        trim_references,
        inputs=[c.model, c.references],
        outputs=[c.references],
        api_name="trim_references",
        **PRIVATE,
    )

    def preview(files: list[Any] | None, parent: str | None) -> tuple[Any, Any]:
        paths = handlers.file_paths(files)
        # No references left: whatever was edited is no longer the parent of the next one.
        return gr.update(value=paths, visible=bool(paths)), parent if paths else None

    c.references.change(
        preview,
        inputs=[c.references, c.parent],
        outputs=[c.reference_preview, c.parent],
        api_name="preview_references",
        **PRIVATE,
    )


def _form_inputs(page: Page) -> list[Any]:
    c = page.controls
    return [
        c.model,
        c.prompt,
        c.references,
        c.reference_urls,
        c.aspect_ratio,
        c.resolution,
        c.output_format,
        c.routing,
        c.variants,
    ]


def _wire_generate(page: Page, studio: Studio) -> None:
    c = page.controls
    catalog = studio.catalog
    form_size = len(FORM_FIELDS)

    def visitor_keys(values: Sequence[str | None]) -> dict[str, str]:
        return catalog.keys_from(dict(zip(catalog.key_fields, values, strict=True)))

    async def start(request: gr.Request, *values: Any) -> str:
        form, keys = values[:form_size], values[form_size : form_size + len(catalog.key_fields)]
        client_id, parent = values[-2], values[-1]
        job_ids, notes = await handlers.start_generation(
            studio,
            *form,
            keys=visitor_keys(keys),
            owner=history.owner_for_new_job(studio, client_id),
            parent=parent,
            visitor=visitor_of(studio, request, client_id),
        )
        count = len(job_ids)
        started = f"Started {count} task{'s' if count != 1 else ''}."
        return " ".join([started, *notes])

    def validate(*values: Any) -> list[Any]:
        verdicts = handlers.validate_generate(catalog, *values[:form_size])
        rest = len(values) - form_size
        return [*verdicts, *(gr.validate(True, "") for _ in range(rest))]

    c.generate.click(
        start,
        inputs=[*_form_inputs(page), *c.key_boxes, page.client_id, c.parent],
        outputs=[c.message],
        validator=validate,
        api_name="start",
        concurrency_limit=None,
        trigger_mode="multiple",  # each press queues another generation
        show_progress="minimal",
        show_progress_on=[c.message],
        **PRIVATE,
    ).success(None, js=SHOW_FEED_JS)

    async def stop_all(client_id: str) -> str:
        owner = history.owner_for(studio, client_id)
        return await handlers.stop(studio, studio.runner.active_jobs(owner))

    c.stop.click(
        stop_all,
        inputs=[page.client_id],
        outputs=[c.message],
        api_name="stop",
        concurrency_limit=None,
        **PRIVATE,
    )


def _wire_api(page: Page, studio: Studio, concurrency_limit: int | None) -> None:
    catalog = studio.catalog
    form_size = len(FORM_FIELDS)
    api = page.api

    async def generate(request: gr.Request, *values: Any) -> AsyncIterator[tuple[Any, str]]:
        bound = generate_signature(catalog).bind(*values)
        bound.apply_defaults()
        args = list(bound.arguments.values())
        form, keys, client_id = args[:form_size], args[form_size:-1], args[-1]
        async for gallery, status, _ in handlers.generate(
            studio,
            *form,
            keys=catalog.keys_from(dict(zip(catalog.key_fields, keys, strict=True))),
            owner=history.owner_for_new_job(studio, client_id),
            visitor=visitor_of(studio, request, client_id),
        ):
            yield gallery, status

    document_endpoint(generate, generate_signature(catalog), generate_doc(catalog))
    api.trigger.click(
        generate,
        inputs=[*api.fields, *api.keys, api.client_id],
        outputs=[api.gallery, api.status],
        api_name="generate",
        concurrency_limit=concurrency_limit,
    )


def generate_doc(catalog: Any) -> str:
    """The `/generate` description, for the API page and the MCP tool (its `Args:` section
    documents each parameter), from the catalog."""
    models = "; ".join(
        f"{m.id} ({m.label}, up to {m.max_references} references)" for m in catalog.models.values()
    )
    ratios = ", ".join(dict.fromkeys(r for m in catalog.models.values() for r in m.aspect_ratios))
    keys = "\n".join(
        f"        {s.key_field}: your own {s.vendor} key for {s.label} (optional; the studio's "
        "key or the offline preview otherwise)."
        for s in catalog.services
    )
    return f"""Generate images from a prompt, optionally with reference images, and wait for them.

    The status names the job ids first (after the offline-preview notice, if any), so a
    caller can find its jobs later with get_generation. Images are saved by the studio.

    Args:
        model: one of {models}.
        prompt: what to make, in words (at most a few thousand characters).
        reference_images: image files to use as references.
        reference_urls: http:// or https:// links to reference images, one per line.
        aspect_ratio: for models that take one: {ratios}.
        resolution: for models that take one: 1K, 2K or 4K.
        output_format: for models that take one: png or jpeg.
        routing: for models that take one: auto, value or official.
        variants: how many images to make in parallel, 1 to 4.
{keys}
        client_id: an id of yours (32+ letters, digits, - or _) that keeps your generations
            together on a shared deployment; list_generations and get_generation take it too.

    Returns:
        The saved images, and the status of each task in plain words.
    """


def _wire_feed(page: Page, studio: Studio, identified: Any) -> None:
    c = page.controls
    feed = page.feed

    async def follow(request: gr.Request, client_id: str) -> AsyncIterator[list[Any]]:
        owner, visitor = (
            history.owner_for(studio, client_id),
            visitor_of(studio, request, client_id),
        )
        async for values in stream_feed(studio, owner, visitor):
            yield values

    identified.then(
        follow,
        inputs=[page.client_id],
        outputs=feed.outputs,
        api_name="feed",
        concurrency_limit=None,
        show_progress="hidden",
        **PRIVATE,
    )
    feed.close_compare.click(
        lambda: gr.update(visible=False), outputs=[feed.compare_box], **PRIVATE
    )
    for index, slot in enumerate(feed.slots):
        _wire_slot(page, studio, index, slot)
    del c


def _wire_slot(page: Page, studio: Studio, index: int, slot: Any) -> None:
    c = page.controls
    feed = page.feed
    catalog = studio.catalog

    def pick(picked: list[int], event: gr.SelectData) -> list[int]:
        chosen = event.index[0] if isinstance(event.index, list | tuple) else event.index
        return [chosen if i == index else value for i, value in enumerate(picked)]

    slot.gallery.select(pick, inputs=[feed.picked], outputs=[feed.picked], **PRIVATE)

    async def use(client_id: str, shown: list, picked: list, model: str, refs: Any) -> Any:
        return await actions.use_as_reference(
            studio, client_id, shown[index], picked[index], model, refs
        )

    slot.use.click(
        use,
        inputs=[page.client_id, feed.shown, feed.picked, c.model, c.references],
        outputs=[c.references, c.parent],
        **PRIVATE,
    )

    async def edit(client_id: str, shown: list, picked: list) -> Any:
        return await actions.edit_this(studio, client_id, shown[index], picked[index])

    slot.edit.click(
        edit,
        inputs=[page.client_id, feed.shown, feed.picked],
        outputs=[c.references, c.parent],
        **PRIVATE,
    ).success(None, js=FOCUS_PROMPT_JS)

    async def compare(client_id: str, shown: list, picked: list) -> Any:
        return await actions.compare(studio, client_id, shown[index], picked[index])

    slot.compare.click(
        compare,
        inputs=[page.client_id, feed.shown, feed.picked],
        outputs=[feed.slider, feed.compare_box],
        **PRIVATE,
    ).success(None, js=SHOW_COMPARE_JS)

    async def rerun(request: gr.Request, client_id: str, shown: list, *keys: str | None) -> str:
        own_keys = catalog.keys_from(dict(zip(catalog.key_fields, keys, strict=True)))
        owner = history.owner_for_new_job(studio, client_id)
        visitor = visitor_of(studio, request, client_id)
        job_ids = await actions.rerun(studio, client_id, shown[index], own_keys, owner, visitor)
        return f"Re-running: started {len(job_ids)} task{'s' if len(job_ids) != 1 else ''}."

    slot.rerun.click(
        rerun,
        inputs=[page.client_id, feed.shown, *c.key_boxes],
        outputs=[c.message],
        **PRIVATE,
    )
