"""The History tab's events: list, search and filter, select, recall, re-run, reuse, re-check,
zip, and restore from an image. Re-run and Check again add jobs that the feed shows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gradio as gr

from components import feed_actions as actions
from components import history_handlers as history
from components.callers import visitor_of
from components.handlers import Studio
from components.history import ALL
from components.page import Page

PRIVATE: dict[str, Any] = {"api_visibility": "private"}
TO_GENERATE = gr.update(selected="generate-tab")  # switches the tabs to Generate
TO_HISTORY = gr.update(selected="history-tab")


def wire_history(page: Page, studio: Studio, identified: Any) -> None:
    c = page.controls
    h = page.history
    catalog = studio.catalog

    def visitor_keys(values: Sequence[str | None]) -> dict[str, str]:
        return catalog.keys_from(dict(zip(catalog.key_fields, values, strict=True)))

    async def load(
        client_id: str,
        search: str,
        model: str,
        state: str,
        experiment: str,
        starred: bool,
        size: int,
    ) -> tuple[Any, ...]:
        return await history.load_history(
            studio,
            client_id,
            search,
            model,
            state,
            starred=starred,
            limit=size,
            experiment=experiment,
        )

    listing = dict(
        fn=load,
        inputs=[page.client_id, h.search, h.model, h.state, h.experiment, h.starred, h.page_size],
        outputs=[h.thumbnails, h.table, page.shown_ids, page.thumb_ids],
        concurrency_limit=None,
        **PRIVATE,
    )
    h.refresh.click(api_name="history", **listing)
    h.search.submit(api_name="history_search", **listing)
    h.model.change(api_name="history_model", **listing)
    h.state.change(api_name="history_state", **listing)
    h.starred.change(api_name="history_starred", **listing)
    h.experiment.input(api_name="history_experiment", **listing)
    page.tabs.select(api_name="history_tab", **listing)

    async def experiments(client_id: str, current: str) -> Any:
        """The visitor's recent experiments as the filter's choices, keeping the one picked."""
        choices = await history.experiment_choices(studio, client_id)
        known = current in {value for _, value in choices}
        return gr.update(choices=choices, value=current if known else ALL)

    page.tabs.select(
        experiments, inputs=[page.client_id, h.experiment], outputs=[h.experiment], **PRIVATE
    )
    # The Experiment tab's "Show in History": History filtered to the experiment shown there.
    page.experiment.show_in_history.click(lambda: TO_HISTORY, outputs=[page.tabs], **PRIVATE).then(
        experiments,
        inputs=[page.client_id, page.experiment.shown],
        outputs=[h.experiment],
        **PRIVATE,
    ).then(api_name="history_of_experiment", **listing)
    h.more.click(
        lambda size: min(int(size) + history.PAGE_SIZE, history.MAX_ROWS),
        inputs=[h.page_size],
        outputs=[h.page_size],
        **PRIVATE,
    ).then(api_name="history_more", **listing)

    async def pick(client_id: str, ids: list[str], event: gr.SelectData) -> tuple[Any, str]:
        index = event.index[0] if isinstance(event.index, list | tuple) else event.index
        job_id = ids[index] if ids and 0 <= index < len(ids) else None
        return job_id, await history.describe(studio, client_id, job_id)

    h.thumbnails.select(
        pick, inputs=[page.client_id, page.thumb_ids], outputs=[page.selected, h.details], **PRIVATE
    )
    h.table.select(
        pick, inputs=[page.client_id, page.shown_ids], outputs=[page.selected, h.details], **PRIVATE
    )

    form = [
        c.model,
        c.prompt,
        c.aspect_ratio,
        c.resolution,
        c.output_format,
        c.routing,
        c.references,
        c.reference_urls,
        c.variants,
        c.parent,
        c.set_aside,
    ]

    async def recall(client_id: str, job_id: str | None) -> tuple[Any, ...]:
        return (*await history.recall(studio, client_id, job_id), TO_GENERATE)

    h.recall.click(
        recall,
        inputs=[page.client_id, page.selected],
        outputs=[*form, page.tabs],
        api_name="recall",
        **PRIVATE,
    )

    async def rerun(
        request: gr.Request, client_id: str, job_id: str | None, *keys: str | None
    ) -> tuple[str, Any]:
        row = await history.selected_row(studio, client_id, job_id)
        owner = history.owner_for_new_job(studio, client_id)
        visitor = visitor_of(studio, request, client_id)
        started = await actions.rerun_row(studio, row, visitor_keys(keys), owner, visitor)
        count = len(started)
        return f"Re-running: started {count} task{'s' if count != 1 else ''}.", TO_GENERATE

    h.rerun.click(
        rerun,
        inputs=[page.client_id, page.selected, *c.key_boxes],
        outputs=[c.message, page.tabs],
        api_name="rerun",
        **PRIVATE,
    )

    async def reuse(
        client_id: str, job_id: str | None, model: str, current: list[Any] | None
    ) -> tuple[Any, Any, Any]:
        row = await history.selected_row(studio, client_id, job_id)
        _, path = actions.picked_result([row], 0)
        files = actions.with_reference(studio, model, current, path)
        return files, row.job_id, TO_GENERATE

    h.use_as_reference.click(
        reuse,
        inputs=[page.client_id, page.selected, c.model, c.references],
        outputs=[c.references, c.parent, page.tabs],
        api_name="reuse",
        **PRIVATE,
    )

    async def check_again(client_id: str, job_id: str | None, *keys: str | None) -> str:
        return await history.check_again(studio, client_id, job_id, visitor_keys(keys))

    h.check_again.click(
        check_again,
        inputs=[page.client_id, page.selected, *c.key_boxes],
        outputs=[h.details],
        api_name="check_again",
        **PRIVATE,
    )

    async def star(client_id: str, job_id: str | None) -> str:
        return await history.toggle_star(studio, client_id, job_id)

    h.star.click(star, inputs=[page.client_id, page.selected], outputs=[h.details], **PRIVATE).then(
        api_name="history_after_star", **listing
    )

    async def up(client_id: str, job_id: str | None) -> tuple[str, str]:
        return await history.neighbour(studio, client_id, job_id, up=True)

    async def down(client_id: str, job_id: str | None) -> tuple[str, str]:
        return await history.neighbour(studio, client_id, job_id, up=False)

    for button, step in ((h.parent, up), (h.child, down)):
        button.click(
            step,
            inputs=[page.client_id, page.selected],
            outputs=[page.selected, h.details],
            **PRIVATE,
        )

    async def ask(client_id: str, job_id: str | None) -> Any:
        await history.selected_row(studio, client_id, job_id)  # a sentence if none is selected
        return gr.update(visible=True)

    h.delete.click(ask, inputs=[page.client_id, page.selected], outputs=[h.confirm_box], **PRIVATE)
    h.cancel_delete.click(lambda: gr.update(visible=False), outputs=[h.confirm_box], **PRIVATE)

    async def delete(client_id: str, job_id: str | None) -> tuple[str, Any, None]:
        said = await history.delete_generation(studio, client_id, job_id)
        return said, gr.update(visible=False), None

    h.confirm_delete.click(
        delete,
        inputs=[page.client_id, page.selected],
        outputs=[h.details, h.confirm_box, page.selected],
        **PRIVATE,
    ).then(api_name="history_after_delete", **listing)

    async def zip_shown(client_id: str, ids: list[str]) -> Any:
        return await history.zip_shown(studio, client_id, ids)

    h.download_zip.click(
        zip_shown,
        inputs=[page.client_id, page.shown_ids],
        outputs=[h.zip_file],
        api_name="zip",
        **PRIVATE,
    )

    def restore(file: Any) -> tuple[Any, ...]:
        return (*history.restore_from_image(studio, file), TO_GENERATE)

    h.restore_drop.upload(
        restore,
        inputs=[h.restore_drop],
        outputs=[*form, page.tabs],
        api_name="restore",
        **PRIVATE,
    )
    del identified
