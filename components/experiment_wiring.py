"""The Experiment tab's events, and the public `/experiment` endpoint.

Plan turns the form into a plan and says what it will send (tasks, estimated credits and
time, what the limits leave) before anything is; Run plans again from the form as it is then,
prepares the shared references once and starts the experiment, whose cells the experiment
runner sends a few at a time. The grid follows the visitor's newest experiment through one
subscription per page (`experiment_handlers.watch`), so Run, a second tab, an API call and a
restart all show in the same place; Stop ends the experiment the grid shows, Export writes its
files. What each event does is in `components/experiment_handlers.py`.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Sequence
from typing import Any

import gradio as gr

from components import history_handlers as history
from components.callers import document_endpoint, visitor_of
from components.experiment_handlers import (
    export_files,
    make_plan,
    plan_words,
    start_experiment,
    watch,
)
from components.experiment_tab import NOT_PLANNED, ExperimentTab
from components.handlers import Studio, file_paths, url_lines, user_error
from components.page import Page
from providers.catalog import Catalog

PRIVATE: dict[str, Any] = {"api_visibility": "private"}

# `/experiment`'s parameters before the service keys and the client id.
EXPERIMENT_FIELDS: tuple[tuple[str, Any], ...] = (
    ("prompts", inspect.Parameter.empty),
    ("models", inspect.Parameter.empty),
    ("aspect_ratios", None),
    ("resolutions", None),
    ("variants", 1),
    ("prompts_csv", None),
    ("reference_images", None),
    ("reference_urls", None),
)


def experiment_signature(catalog: Catalog) -> inspect.Signature:
    names = [
        *EXPERIMENT_FIELDS,
        *((field, None) for field in catalog.key_fields),
        ("client_id", None),
    ]
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature([inspect.Parameter(n, kind, default=d) for n, d in names])


def experiment_doc(catalog: Catalog) -> str:
    models = "; ".join(f"{m.id} ({m.label})" for m in catalog.models.values())
    keys = "\n".join(
        f"        {s.key_field}: your own {s.vendor} key for {s.label} (optional)."
        for s in catalog.services
    )
    return f"""Run a prompt experiment: every prompt on every model and setting, as a grid.

    Each cell (a prompt on a model with one aspect ratio and one resolution) is an ordinary
    generation, kept in your history. A few cells run at a time. The status streams the
    progress (the experiment id first); at the end come the contact sheet (one PNG of the
    grid, labelled), the manifest (CSV and JSON: prompt, model, settings, task id, time,
    credits, file name per task) and a zip of everything with the images.

    Args:
        prompts: the prompts, one per line.
        models: a list of model ids, from: {models}.
        aspect_ratios: a list of aspect ratios, used for the models that take them.
        resolutions: a list of resolutions (1K, 2K, 4K), for the models that take them.
        variants: images per cell, 1 to 4.
        prompts_csv: a CSV with a prompt column (and settings columns); rows follow prompts.
        reference_images: image files every cell uses as references.
        reference_urls: http:// or https:// links to reference images, one per line.
{keys}
        client_id: your id (32+ letters, digits, - or _) on a shared deployment.

    Returns:
        The status in words, the contact sheet PNG, the manifest (CSV, JSON) and the zip.
    """


# ---- events ------------------------------------------------------------------------------------


def wire_experiment(page: Page, studio: Studio, identified: Any, tab: ExperimentTab) -> None:
    catalog = studio.catalog
    key_boxes = page.controls.key_boxes
    form_size = len(tab.form)

    def visitor_keys(values: Sequence[str | None]) -> dict[str, str]:
        return catalog.keys_from(dict(zip(catalog.key_fields, values, strict=True)))

    async def planned(request: gr.Request, *values: Any) -> tuple[str, Any]:
        form, keys = values[:form_size], visitor_keys(values[form_size:-1])
        prompts, csv_file, models, ratios, resolutions, variants, references, links = form
        count = len(file_paths(references)) + len(url_lines(links))
        result = make_plan(
            studio, prompts, csv_file, models, ratios, resolutions, variants, ["-"] * count, keys
        )
        visitor = visitor_of(studio, request, values[-1])
        words, runnable = await plan_words(studio, result, keys, visitor)
        return words, gr.update(interactive=runnable)

    tab.plan.click(
        planned,
        inputs=[*tab.form, *key_boxes, page.client_id],
        outputs=[tab.summary, tab.run],
        api_name="plan_experiment",
        concurrency_limit=None,
        show_progress_on=[tab.summary],
        **PRIVATE,
    )
    for box in tab.form:  # what was planned is what Run sends: a change plans again
        box.change(
            lambda: (NOT_PLANNED, gr.update(interactive=False)),
            outputs=[tab.summary, tab.run],
            queue=False,
            show_progress="hidden",
            trigger_mode="always_last",
            **PRIVATE,
        )

    async def run(request: gr.Request, *values: Any) -> tuple[str, str]:
        form, keys, client_id = values[:form_size], values[form_size:-1], values[-1]
        started, notes = await start_experiment(
            studio,
            form,
            keys=visitor_keys(keys),
            owner=history.owner_for_new_job(studio, client_id),
            visitor=visitor_of(studio, request, client_id),
        )
        return started.plan.summary(catalog, sending=True), " ".join(["Started.", *notes])

    tab.run.click(
        run,
        inputs=[*tab.form, *key_boxes, page.client_id],
        outputs=[tab.summary, tab.message],
        api_name="run_experiment",
        concurrency_limit=None,
        show_progress_on=[tab.message],
        **PRIVATE,
    )

    async def stop(client_id: str, shown: str) -> str:
        stopped = await studio.experiments.stop(shown, history.owner_for(studio, client_id))
        return "Stopped: no more cells are sent." if stopped else "No experiment to stop."

    tab.stop.click(
        stop,
        inputs=[page.client_id, tab.shown],
        outputs=[tab.message],
        api_name="stop_experiment",
        concurrency_limit=None,
        **PRIVATE,
    )

    async def export_shown(client_id: str, shown: str) -> list[str]:
        found = await studio.experiments.get(shown, history.owner_for(studio, client_id))
        if found is None:
            raise user_error("No experiment to export yet.")
        files = await export_files(studio, found)
        paths = (files.contact_sheet, files.manifest_csv, files.manifest_json, files.zip)
        return [str(path) for path in paths]

    tab.export.click(
        export_shown,
        inputs=[page.client_id, tab.shown],
        outputs=[tab.exports],
        api_name="export_experiment",
        concurrency_limit=None,
        **PRIVATE,
    )

    async def follow(client_id: str) -> AsyncIterator[tuple[Any, Any, Any]]:
        async for values in watch(studio, history.owner_for(studio, client_id)):
            yield values

    identified.then(
        follow,
        inputs=[page.client_id],
        outputs=[tab.grid, tab.status, tab.shown],
        api_name="experiment_grid",
        concurrency_limit=None,
        show_progress="hidden",
        **PRIVATE,
    )
    _wire_api(studio, tab)


def _wire_api(studio: Studio, tab: ExperimentTab) -> None:
    catalog = studio.catalog
    api = tab.api

    async def experiment(request: gr.Request, *values: Any) -> AsyncIterator[tuple[Any, ...]]:
        bound = experiment_signature(catalog).bind(*values)
        bound.apply_defaults()
        args = bound.arguments
        keys = catalog.keys_from({field: args[field] for field in catalog.key_fields})
        form = [
            args["prompts"],
            args["prompts_csv"],
            args["models"] if isinstance(args["models"], list) else [args["models"]],
            args["aspect_ratios"],
            args["resolutions"],
            args["variants"],
            args["reference_images"],
            args["reference_urls"],
        ]
        owner = history.owner_for_new_job(studio, args["client_id"])
        visitor = visitor_of(studio, request, args["client_id"])
        run, notes = await start_experiment(studio, form, keys=keys, owner=owner, visitor=visitor)
        # The id first (a caller may stop or look it up), then the plan; the progress follows.
        head = [f"Experiment {run.id}.", run.plan.summary(catalog, sending=True), *notes]
        try:
            async for view in studio.experiments.follow(run):
                yield "\n".join([*head, view.words()]), None, None, None
        except asyncio.CancelledError:
            await studio.experiments.stop(run.id, run.owner)  # the caller went away
            raise
        files = await export_files(studio, run)
        final = await studio.experiments.view(run)
        yield (
            "\n".join([*head, final.words()]),
            str(files.contact_sheet),
            [str(files.manifest_csv), str(files.manifest_json)],
            str(files.zip),
        )

    document_endpoint(experiment, experiment_signature(catalog), experiment_doc(catalog))
    api.trigger.click(
        experiment,
        inputs=[*api.fields, *api.keys, api.client_id],
        outputs=[api.status, api.contact_sheet, api.manifest, api.archive],
        api_name="experiment",
        concurrency_limit=None,
    )
