"""What the Experiment tab and `/experiment` do: plan the form, say what the plan will send and
what the limits leave, start it, export it, and follow the visitor's newest experiment.

Plain async functions on domain values; `gr.Error` only here, at the edge. The events are wired
in `components/experiment_wiring.py`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from components import handlers
from components.experiment_tab import grid_html
from components.handlers import Studio, file_paths, url_lines, user_error
from providers.catalog import Catalog
from studio.experiment_export import Exports, export
from studio.experiment_prompts import MAX_CSV_BYTES, PlanError, read_prompts
from studio.experiment_quota import owner_key_tasks, quota_problem, tasks_left
from studio.experiment_runner import ExperimentError
from studio.experiment_store import ExperimentRun
from studio.experiments import Plan, plan
from studio.keeper import owner_folder
from studio.visitors import Visitor

IDLE = 15.0  # seconds between looks for a newer experiment when nothing changes


def _csv_text(csv_file: Any) -> str | None:
    paths = file_paths([csv_file] if csv_file else [])
    if not paths:
        return None
    path = Path(paths[0])
    try:
        if path.stat().st_size > MAX_CSV_BYTES:
            raise user_error(f"The CSV is larger than {MAX_CSV_BYTES // 1_000_000} MB.")
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise user_error(f"{path.name} is not UTF-8 text; save the CSV as UTF-8.") from None
    except OSError:
        raise user_error(f"Could not read {path.name}; upload it again.") from None


def _time_scales(studio: Studio, keys: dict[str, str]) -> dict[str, float]:
    """The offline preview's speed for the services that would run on it."""
    backends = studio.runner.backends
    return {
        s.id: backends.simulator_time_scale
        for s in studio.catalog.services
        if not keys.get(s.id) and not backends.has_key(s.id)
    }


def make_plan(
    studio: Studio,
    prompts: str | None,
    csv_file: Any,
    models: Sequence[str] | None,
    aspect_ratios: Sequence[str] | None,
    resolutions: Sequence[str] | None,
    variants: float | None,
    reference_hashes: Sequence[str],
    keys: dict[str, str],
) -> Plan:
    """The plan of the form's values, or gr.Error with the plan's sentences. Models and
    settings keep the catalog's order, whatever order they were ticked in."""
    try:
        count = int(variants or 1)
    except (TypeError, ValueError):
        count = 0
    try:
        rows, notes = read_prompts(prompts, _csv_text(csv_file))
        return plan(
            studio.catalog,
            rows,
            _in_order(models, list(studio.catalog.models)),
            aspect_ratios=_in_order(aspect_ratios, _choices(studio.catalog, "aspect_ratio")),
            resolutions=_in_order(resolutions, _choices(studio.catalog, "resolution")),
            variants=count,
            reference_hashes=reference_hashes,
            time_scales=_time_scales(studio, keys),
            notes=notes,
            price_of=studio.prices.estimate,
        )
    except PlanError as exc:
        raise user_error(str(exc)) from None


def _choices(catalog: Catalog, setting: str) -> list[str]:
    return list(dict.fromkeys(v for m in catalog.models.values() for v in m.choices(setting)))


def _in_order(values: Sequence[str] | str | None, order: list[str]) -> list[str]:
    """`values` in `order`; values `order` does not know follow (the plan refuses them)."""
    if isinstance(values, str):
        values = [values]
    given = list(dict.fromkeys(values or ()))
    return sorted(given, key=lambda v: order.index(v) if v in order else len(order))


async def plan_words(
    studio: Studio, planned: Plan, keys: dict[str, str], visitor: Visitor
) -> tuple[str, bool]:
    """The plan in words with what the limits on the owner's keys leave, and whether it
    may run (False when it needs more tasks than are left)."""
    words = planned.summary(studio.catalog)
    needed = owner_key_tasks(planned, studio.runner.backends, keys)
    if not needed:
        return words, True
    left = await asyncio.to_thread(tasks_left, studio.runner.admission, visitor)
    problem = quota_problem(needed, left)
    if problem:
        return f"{words}\n\n**{problem}**", False
    left_words = await studio.runner.admission.left_words(visitor)
    return (f"{words} Left for you: {left_words}." if left_words else words), True


async def start_experiment(
    studio: Studio,
    form: Sequence[Any],
    *,
    keys: dict[str, str],
    owner: str,
    visitor: Visitor | None = None,
) -> tuple[ExperimentRun, list[str]]:
    """Plan `form` (prompts, csv, models, ratios, resolutions, variants, references, links),
    prepare its references once, and start it. Returns the run and notes."""
    prompts, csv_file, models, ratios, resolutions, variants, references, links = form
    count = len(file_paths(references)) + len(url_lines(links))
    # Planned first with the count alone: a plan that cannot run prepares nothing.
    make_plan(studio, prompts, csv_file, models, ratios, resolutions, variants, ["-"] * count, keys)
    _, hashes, notes = await handlers.prepare_references(studio, references, links)
    planned = make_plan(
        studio, prompts, csv_file, models, ratios, resolutions, variants, hashes, keys
    )
    try:
        run = await studio.experiments.start(
            planned, owner=owner, visitor_keys=keys, visitor=visitor
        )
    except ExperimentError as exc:
        raise user_error(str(exc)) from None
    return run, notes


async def export_files(studio: Studio, run: ExperimentRun) -> Exports:
    view = await studio.experiments.view(run)
    folder = studio.runner.outputs_dir / owner_folder(run.owner) / "experiments" / run.id
    return await asyncio.to_thread(export, view, studio.catalog, folder)


async def watch(studio: Studio, owner: str | None) -> AsyncIterator[tuple[Any, Any, Any]]:
    """(grid, status, shown id) for the visitor's newest experiment, whenever it changes;
    then the next one. What did not change is skipped."""
    last: tuple[str, str, str] | None = None
    while True:
        run = await studio.experiments.latest(owner)
        shown: tuple[str, str, str] = (grid_html(None), "", "")
        newer = False
        if run is None and last is None:
            last = shown
            yield shown
        elif run is not None:
            async for view in studio.experiments.follow(run):
                shown = (grid_html(view), f"{view.words()} Experiment {run.id}.", run.id)
                if shown != last:
                    yield _changed(shown, last)
                    last = shown
                newer = studio.experiments.has_newer(run)
                if newer:
                    break  # the visitor started another experiment: show that one
        if not newer:
            await studio.experiments.wait_for_change(owner, IDLE)


def _changed(new: tuple[str, str, str], old: tuple[str, str, str] | None) -> tuple[Any, Any, Any]:
    """`new`, with gr.skip() where it is what the page shows already."""
    if old is None:
        return new
    grid, status, shown = (gr.skip() if a == b else a for a, b in zip(new, old, strict=True))
    return grid, status, shown
