"""The history tab: past generations, newest first, with search, filters and actions."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from providers.catalog import Catalog
from studio.lifecycle import JobState

ALL = "all"


@dataclass(frozen=True)
class HistoryView:
    search: gr.Textbox
    model: gr.Dropdown
    state: gr.Dropdown
    refresh: gr.Button
    thumbnails: gr.Gallery
    table: gr.Dataframe
    details: gr.Markdown
    use_as_reference: gr.Button
    recall: gr.Button
    rerun: gr.Button
    check_again: gr.Button
    download_zip: gr.Button
    zip_file: gr.File
    restore_drop: gr.File


COLUMNS = ["when", "prompt", "model", "settings", "state", "images"]


def build_history(catalog: Catalog) -> HistoryView:
    with gr.Row():
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
        refresh = gr.Button("Refresh", scale=1, elem_id="history-refresh")
    thumbnails = gr.Gallery(
        label="Results (select one to act on it)",
        columns=6,
        height=260,
        allow_preview=False,
        interactive=False,
        buttons=["download"],
        elem_id="history-thumbnails",
    )
    table = gr.Dataframe(
        headers=COLUMNS,
        interactive=False,
        wrap=True,
        max_height=360,
        label="Generations (select a row)",
        elem_id="history-table",
    )
    details = gr.Markdown("Select a generation to see its details.", elem_id="history-details")
    with gr.Row():
        use_as_reference = gr.Button("Use as reference", size="sm")
        recall = gr.Button("Recall settings", size="sm")
        rerun = gr.Button("Re-run", size="sm")
        check_again = gr.Button("Check again / retry download", size="sm")
        download_zip = gr.Button("Download shown as zip", size="sm")
    zip_file = gr.File(label="Zip", visible=False, interactive=False, elem_id="history-zip")
    restore_drop = gr.File(
        label="Drop an image made here to restore its settings",
        file_count="single",
        file_types=["image"],
        height=100,
        elem_id="restore-drop",
    )
    return HistoryView(
        search,
        model,
        state,
        refresh,
        thumbnails,
        table,
        details,
        use_as_reference,
        recall,
        rerun,
        check_again,
        download_zip,
        zip_file,
        restore_drop,
    )
