"""The history tab: past generations, newest first, with search, filters and actions."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from providers.catalog import Catalog
from studio.lifecycle import JobState

ALL = "all"
ALL_GENERATIONS = ("All generations", ALL)  # the experiment filter's "any"


@dataclass(frozen=True)
class HistoryView:
    search: gr.Textbox
    model: gr.Dropdown
    state: gr.Dropdown
    experiment: gr.Dropdown  # one experiment's cells; choices: the visitor's recent ones
    starred: gr.Checkbox
    refresh: gr.Button
    thumbnails: gr.Gallery
    table: gr.Dataframe
    more: gr.Button
    page_size: gr.State
    details: gr.Markdown
    use_as_reference: gr.Button
    recall: gr.Button
    rerun: gr.Button
    check_again: gr.Button
    star: gr.Button
    parent: gr.Button
    child: gr.Button
    delete: gr.Button
    confirm_box: gr.Row
    confirm_delete: gr.Button
    cancel_delete: gr.Button
    download_zip: gr.Button
    zip_file: gr.File
    restore_drop: gr.File


COLUMNS = ["when", "prompt", "model", "settings", "state", "images"]
# Shares of the table's width at 1440 px: the prompt gets the room, the rest fit their words.
COLUMN_WIDTHS: list[str | int] = ["13%", "35%", "16%", "15%", "10%", "11%"]
PAGE_SIZE = 60


def build_history(catalog: Catalog) -> HistoryView:
    with gr.Row(equal_height=True):
        search = gr.Textbox(label="Search prompts", scale=3, elem_id="history-search")
        model = gr.Dropdown(
            choices=[("All models", ALL)] + [(m.label, m.id) for m in catalog.models.values()],
            value=ALL,
            label="Model",
            scale=2,
            elem_id="history-model",
        )
        state = gr.Dropdown(
            choices=[("All states", ALL)]
            + [(s.value.replace("_", " "), s.value) for s in JobState],
            value=ALL,
            label="State",
            scale=2,
            elem_id="history-state",
        )
        experiment = gr.Dropdown(choices=[ALL_GENERATIONS], value=ALL, label="Experiment", scale=2)
        starred = gr.Checkbox(label="Starred only", scale=1, elem_id="history-starred")
        refresh = gr.Button("Refresh", scale=1, elem_id="history-refresh")
    thumbnails = gr.Gallery(
        label="Results (select one to act on it)",
        columns=8,
        height=180,
        allow_preview=False,
        interactive=False,
        buttons=["download"],
        elem_id="history-thumbnails",
    )
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=480):
            table = gr.Dataframe(
                headers=COLUMNS,
                interactive=False,
                wrap=True,
                max_height=420,
                column_widths=COLUMN_WIDTHS,
                label="Generations (select a row)",
                elem_id="history-table",
            )
            more = gr.Button("Show more", size="sm", elem_id="history-more")
        # The selection's details and everything one can do with it, beside the table.
        with gr.Column(scale=2, min_width=320, elem_id="history-selection"):
            details = gr.Markdown(
                "Select a generation to see its details.", elem_id="history-details"
            )
            with gr.Row():
                use_as_reference = gr.Button("Use as reference", size="sm")
                recall = gr.Button("Recall settings", size="sm")
                rerun = gr.Button("Re-run", size="sm")
                star = gr.Button("Star", size="sm", elem_id="history-star")
            with gr.Row():
                parent = gr.Button("Open parent", size="sm")
                child = gr.Button("Open next edit", size="sm")
                check_again = gr.Button("Check again / retry download", size="sm")
            with gr.Row():
                delete = gr.Button("Delete", size="sm", variant="stop")
                download_zip = gr.Button("Download shown as zip", size="sm")
            with gr.Row(visible=False) as confirm_box:
                gr.Markdown("Delete this generation and its images for good?")
                confirm_delete = gr.Button("Yes, delete", size="sm", variant="stop")
                cancel_delete = gr.Button("Cancel", size="sm")
            zip_file = gr.File(label="Zip", visible=False, interactive=False, elem_id="history-zip")
            restore_drop = gr.File(
                label="Drop an image made here to restore its settings",
                file_count="single",
                file_types=["image"],
                height=90,
                elem_id="restore-drop",
            )
    return HistoryView(
        search=search,
        model=model,
        state=state,
        experiment=experiment,
        starred=starred,
        refresh=refresh,
        thumbnails=thumbnails,
        table=table,
        more=more,
        page_size=gr.State(PAGE_SIZE),
        details=details,
        use_as_reference=use_as_reference,
        recall=recall,
        rerun=rerun,
        check_again=check_again,
        star=star,
        parent=parent,
        child=child,
        delete=delete,
        confirm_box=confirm_box,
        confirm_delete=confirm_delete,
        cancel_delete=cancel_delete,
        download_zip=download_zip,
        zip_file=zip_file,
        restore_drop=restore_drop,
    )
