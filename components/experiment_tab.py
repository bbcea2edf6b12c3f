"""The Experiment tab: prompts × models × settings, planned, then run as a live grid.

Built here; its events are in `components/experiment_wiring.py`. The grid is one HTML table
(`grid_html`), rows the prompts and columns model × setting, each cell its images (served from
the saved files through Gradio's file route), its state, time and credits, or its sentence. It
is drawn from immutable views (`studio.experiment_views`), so it reads the same live and after a
restart, and tests read it as a person does: a table, its headers, images by their names.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import gradio as gr

from providers.catalog import Catalog
from studio.experiment_prompts import MAX_PROMPTS
from studio.experiment_views import CellView, ExperimentView
from studio.experiments import CELLS_IN_FLIGHT, MAX_TASKS, MAX_VARIANTS

EMPTY_GRID = "<p>Your experiment's grid appears here: plan it, then press <strong>Run</strong>.</p>"
NOT_PLANNED = (
    "Press **Plan** to see the tasks, the estimated credits and time before anything is sent."
)
PROMPT_SHOWN = 160  # characters of a prompt in its row header; all of it in the tooltip

GRID_CSS = """
.experiment-grid { border-collapse: collapse; font-size: 0.85rem; }
.experiment-grid th, .experiment-grid td {
  border: 1px solid var(--border-color-primary); padding: 6px; vertical-align: top;
}
.experiment-grid thead th { text-align: left; min-width: 150px; }
.experiment-grid tbody th { text-align: left; font-weight: normal; max-width: 220px; }
.experiment-grid td { min-width: 150px; }
.experiment-grid img {
  max-width: 140px; max-height: 140px; margin: 0 4px 4px 0; border-radius: 4px;
}
.experiment-grid .cell-words { color: var(--body-text-color-subdued); }
.experiment-grid .cell-error { color: var(--error-text-color, #b91c1c); max-width: 220px; }
.experiment-grid-wrap { overflow-x: auto; }
"""


@dataclass(frozen=True)
class ExperimentApi:
    """The public `/experiment` endpoint's own hidden inputs and outputs (see
    `components.experiment_wiring.EXPERIMENT_FIELDS` for their order)."""

    trigger: gr.Button
    fields: tuple[gr.components.Component, ...]
    keys: tuple[gr.Textbox, ...]  # in catalog.key_fields order
    client_id: gr.Textbox
    status: gr.Textbox
    contact_sheet: gr.File
    manifest: gr.File
    archive: gr.File


@dataclass(frozen=True)
class ExperimentTab:
    prompts: gr.Textbox
    csv_file: gr.File
    models: gr.CheckboxGroup
    aspect_ratios: gr.CheckboxGroup
    resolutions: gr.CheckboxGroup
    variants: gr.Slider
    references: gr.File
    reference_urls: gr.Textbox
    plan: gr.Button
    summary: gr.Markdown
    run: gr.Button
    stop: gr.Button
    message: gr.Markdown
    status: gr.Markdown
    grid: gr.HTML
    export: gr.Button
    show_in_history: gr.Button  # History filtered to this experiment's cells
    exports: gr.File
    shown: gr.State  # the id of the experiment the grid shows
    api: ExperimentApi

    @property
    def form(self) -> list[Any]:
        """The inputs a plan is made from, in `plan_from_form`'s order."""
        return [
            self.prompts,
            self.csv_file,
            self.models,
            self.aspect_ratios,
            self.resolutions,
            self.variants,
            self.references,
            self.reference_urls,
        ]


def _takers(catalog: Catalog, setting: str) -> tuple[list[str], str]:
    """Every value of `setting` any model takes, and the labels of those models."""
    models = [m for m in catalog.models.values() if m.takes(setting)]
    values = list(dict.fromkeys(v for m in models for v in m.choices(setting)))
    return values, " and ".join(m.label for m in models)


def build_experiment_tab(catalog: Catalog) -> ExperimentTab:
    ratios, ratio_models = _takers(catalog, "aspect_ratio")
    resolutions, resolution_models = _takers(catalog, "resolution")
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=340, elem_id="experiment-form"):
            prompts = gr.Textbox(
                label="Prompts, one per line",
                lines=4,
                max_lines=12,
                placeholder="a red kite over the dunes\na lighthouse at dusk",
                elem_id="experiment-prompts",
            )
            csv_file = gr.File(
                label="Or a CSV with a prompt column (optional settings columns per row)",
                file_types=[".csv", ".txt"],
                file_count="single",
                height=90,
            )
            models = gr.CheckboxGroup(
                choices=[(m.label, m.id) for m in catalog.models.values()],
                value=[],
                label="Models",
            )
            aspect_ratios = gr.CheckboxGroup(
                choices=ratios, value=[], label=f"Aspect ratios (for {ratio_models})"
            )
            resolution_box = gr.CheckboxGroup(
                choices=resolutions, value=[], label=f"Resolutions (for {resolution_models})"
            )
            variants = gr.Slider(1, MAX_VARIANTS, value=1, step=1, label="Variants per cell")
            references = gr.File(
                label="Shared reference images (every cell gets them)",
                file_count="multiple",
                file_types=["image"],
                height=90,
            )
            reference_urls = gr.Textbox(
                label="Shared reference links (one per line)", lines=1, max_lines=4
            )
            gr.Markdown(
                f"Up to {MAX_PROMPTS} prompts and {MAX_TASKS} tasks; {CELLS_IN_FLIGHT} cells "
                "run at a time, so your other generations go on beside it. A CSV may have "
                "`aspect_ratio`, `resolution`, `output_format` and `routing` columns.",
                elem_classes=["hint"],
            )
            with gr.Row():
                plan = gr.Button("Plan", variant="secondary")
                run = gr.Button("Run", variant="primary", interactive=False)
            summary = gr.Markdown(NOT_PLANNED, elem_id="experiment-plan")
        with gr.Column(scale=3, min_width=340, elem_id="experiment-results"):
            status = gr.Markdown("", elem_id="experiment-status")
            grid = gr.HTML(EMPTY_GRID, css_template=GRID_CSS, elem_id="experiment-grid")
            with gr.Row():
                stop = gr.Button("Stop experiment", variant="stop")
                export = gr.Button("Export", variant="secondary")
                show_in_history = gr.Button("Show in History", variant="secondary")
            message = gr.Markdown("")
            exports = gr.File(label="Exports", file_count="multiple", interactive=False)
    return ExperimentTab(
        prompts=prompts,
        csv_file=csv_file,
        models=models,
        aspect_ratios=aspect_ratios,
        resolutions=resolution_box,
        variants=variants,
        references=references,
        reference_urls=reference_urls,
        plan=plan,
        summary=summary,
        run=run,
        stop=stop,
        message=message,
        status=status,
        grid=grid,
        export=export,
        show_in_history=show_in_history,
        exports=exports,
        shown=gr.State(""),
        api=_build_api(catalog, ratios, resolutions),
    )


def _build_api(catalog: Catalog, ratios: list[str], resolutions: list[str]) -> ExperimentApi:
    with gr.Column(visible=False):
        trigger = gr.Button("Experiment (API)")
        fields = (
            gr.Textbox(label="prompts"),
            gr.Dropdown(choices=list(catalog.models), multiselect=True, label="models"),
            gr.Dropdown(
                choices=ratios, multiselect=True, allow_custom_value=True, label="aspect_ratios"
            ),
            gr.Dropdown(
                choices=resolutions, multiselect=True, allow_custom_value=True, label="resolutions"
            ),
            gr.Number(value=1, precision=0, label="variants"),
            gr.File(label="prompts_csv", file_count="single"),
            gr.File(file_count="multiple", label="reference_images"),
            gr.Textbox(label="reference_urls"),
        )
        keys = tuple(gr.Textbox(label=field, type="password") for field in catalog.key_fields)
        client_id = gr.Textbox(label="client_id")
        status = gr.Textbox(label="Status")
        contact_sheet = gr.File(label="Contact sheet")
        manifest = gr.File(label="Manifest", file_count="multiple")
        archive = gr.File(label="Zip")
    return ExperimentApi(trigger, fields, keys, client_id, status, contact_sheet, manifest, archive)


# ---- the grid ----------------------------------------------------------------------------------


def file_url(path: Path) -> str:
    """A saved file through Gradio's file route (relative, so it works under any root path)."""
    return "gradio_api/file=" + quote(str(path))


def _cell_html(view: CellView, prompt: str, column_label: str) -> str:
    images = "".join(
        f'<img src="{html.escape(file_url(path))}" loading="lazy" '
        f'alt="{html.escape(f"{prompt[:60]} — {column_label} #{index}")}">'
        for index, path in enumerate(view.files, start=1)
    )
    state = "done" if view.files else "active" if view.is_active else "waiting"
    if view.is_settled and not view.files:
        state = "failed"
    parts = [f'<div class="cell-images">{images}</div>'] if images else []
    parts.append(f'<div class="cell-words">{html.escape(view.words())}</div>')
    if view.message and not view.files:
        parts.append(f'<div class="cell-error">{html.escape(view.message)}</div>')
    label = html.escape(f"{prompt[:60]} · {column_label}")
    return f'<td data-state="{state}" aria-label="{label}">{"".join(parts)}</td>'


def grid_html(view: ExperimentView | None) -> str:
    """The experiment as a table: a header row of columns, a row per prompt."""
    if view is None:
        return EMPTY_GRID
    head = "".join(f'<th scope="col">{html.escape(label)}</th>' for label in view.column_labels)
    rows = []
    for r, prompt in enumerate(view.row_labels):
        shown = prompt if len(prompt) <= PROMPT_SHOWN else prompt[: PROMPT_SHOWN - 1] + "…"
        cells = "".join(
            _cell_html(cell, prompt, view.column_labels[c])
            for c in range(len(view.column_labels))
            if (cell := view.cell(r, c)) is not None
        )
        rows.append(
            f'<tr><th scope="row" title="{html.escape(prompt)}">{html.escape(shown)}</th>'
            f"{cells}</tr>"
        )
    return (
        '<div class="experiment-grid-wrap"><table class="experiment-grid" '
        'aria-label="Experiment grid">'
        f'<thead><tr><th scope="col">Prompt</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )
