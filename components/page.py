"""The studio page: a workspace of two columns (the form; the live feed of cards) and History.

Built here from `components/`; the events are wired in `components/wiring.py` (form, generation,
feed and cards) and `components/history_wiring.py` (History). What runs in the browser itself
(scripts, style, storage names) is in `components/browser.py`.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from components.browser import CLIENT_STORAGE, FORM_STORAGE, KEY_STORAGE
from components.controls import Controls, build_controls
from components.experiment_tab import ExperimentTab, build_experiment_tab
from components.feed import FeedView, build_feed
from components.handlers import Studio
from components.history import HistoryView, build_history
from providers.capabilities import SETTING_NAMES
from providers.catalog import Catalog


@dataclass(frozen=True)
class ApiInputs:
    """The public `/generate` endpoint's own hidden inputs and outputs.

    Not the form's controls: the model list is documented as the API's choices, and each setting
    lists every model's values but takes any, so a value the model does not take reaches the
    model's own check and gets a sentence that names it, instead of a bare HTTP 400."""

    trigger: gr.Button
    fields: tuple[gr.components.Component, ...]  # in FORM_FIELDS order
    keys: tuple[gr.Textbox, ...]  # in catalog.key_fields order
    client_id: gr.Textbox  # a text box, not the page's browser storage: a typed parameter
    gallery: gr.Gallery
    status: gr.Textbox


@dataclass(frozen=True)
class Page:
    demo: gr.Blocks
    controls: Controls
    feed: FeedView
    history: HistoryView
    experiment: ExperimentTab
    tabs: gr.Tabs
    banner: gr.Markdown
    api: ApiInputs
    keys: gr.BrowserState
    form: gr.BrowserState
    client_id: gr.BrowserState
    job_ids: gr.State  # the jobs of the last API generation (for its Stop)
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


def _build_api(catalog: Catalog) -> ApiInputs:
    with gr.Column(visible=False):
        trigger = gr.Button("Generate (API)")
        fields: list[gr.components.Component] = []
        for name, _ in FORM_FIELDS:
            if name == "model":
                fields.append(gr.Dropdown(choices=list(catalog.models), label=name))
            elif name in SETTING_NAMES:
                choices = list(
                    dict.fromkeys(c for m in catalog.models.values() for c in m.choices(name))
                )
                fields.append(gr.Dropdown(choices=choices, allow_custom_value=True, label=name))
            elif name == "reference_images":
                fields.append(gr.File(file_count="multiple", label=name))
            elif name == "variants":
                fields.append(gr.Number(value=1, precision=0, label=name))
            else:
                fields.append(gr.Textbox(label=name))
        keys = tuple(gr.Textbox(label=field, type="password") for field in catalog.key_fields)
        client_id = gr.Textbox(label="client_id")
        gallery = gr.Gallery(label="Results", format="png")
        status = gr.Textbox(label="Status")
    return ApiInputs(trigger, tuple(fields), keys, client_id, gallery, status)


def build_page(
    studio: Studio,
    *,
    offline_services: Sequence[str],
    browser_secret: str,
    concurrency_limit: int | None = None,
) -> Page:
    from components.experiment_wiring import wire_experiment
    from components.history_wiring import wire_history
    from components.mcp_tools import register_tools
    from components.wiring import wire

    catalog = studio.catalog
    names = " · ".join(m.label for m in catalog.models.values())
    with gr.Blocks(title="Image Studio", delete_cache=(3600, 24 * 3600)) as demo:
        with gr.Row(elem_id="masthead"):
            gr.Markdown(f"# Image Studio\n{names}", elem_id="title")
            banner = gr.Markdown(offline_notice(offline_services), elem_id="offline-notice")
        with gr.Tabs() as tabs:
            with gr.Tab("Generate", id="generate-tab"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=340, elem_id="form-column"):
                        controls = build_controls(catalog)
                    with gr.Column(scale=3, min_width=340, elem_id="feed"):
                        feed = build_feed(controls.running, controls.left)
            with gr.Tab("Experiment", id="experiment-tab"):
                experiment = build_experiment_tab(catalog)
            with gr.Tab("History", id="history-tab"):
                history_view = build_history(catalog)
        page = Page(
            demo=demo,
            controls=controls,
            feed=feed,
            history=history_view,
            experiment=experiment,
            tabs=tabs,
            banner=banner,
            api=_build_api(catalog),
            keys=gr.BrowserState(
                dict.fromkeys(catalog.key_fields, ""),
                storage_key=KEY_STORAGE,
                secret=browser_secret,
            ),
            form=gr.BrowserState({}, storage_key=FORM_STORAGE, secret=browser_secret),
            client_id=gr.BrowserState("", storage_key=CLIENT_STORAGE, secret=browser_secret),
            job_ids=gr.State([]),
            shown_ids=gr.State([]),
            thumb_ids=gr.State([]),
            selected=gr.State(None),
        )
        identified = wire(page, studio, concurrency_limit, offline_services)
        wire_history(page, studio, identified)
        wire_experiment(page, studio, identified, experiment)
        register_tools(studio)
    return page
