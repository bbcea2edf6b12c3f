"""Prompt experiments planned before anything is sent: the grid, its cells, their cost and time.

An experiment is prompts (rows) × columns × variants, with shared references. A column is a
model with one aspect ratio and one resolution from the lists given, for the models that take
them; a model that takes neither is one column. Each cell is one ordinary generation
(`JobSpec` with `variants` tasks), recorded with the experiment's id and the cell's
coordinates in its params, so it is a job like any other in the ledger, History and the feed.

Everything here is pure (no I/O, no clock): `plan` turns what was asked into a `Plan` with the
number of tasks and an estimate of credits and time, or refuses with sentences
(`PlanError`) that name the prompt, CSV line, model or value at fault. Running it is
`studio.experiment_runner`; the prompt and CSV reading is `studio.experiment_prompts`.

Estimates, not bills:
* credits: `CREDITS_PER_TASK` for the models whose service reports what it bills (GemPix2's
  `consumed`, 0.5 in its documented example, which is what the simulator bills); the owner's
  `PRICE_TABLE` (`price_of`) for the others (apixo reports no credits for Nano Banana Pro);
  tasks of a model priced by neither are counted apart, as `unpriced`;
* time: each cell lasts its model's expected window (`ModelSpec.expected_window`, scaled for the
  offline preview), `cells_in_flight` at a time, in order.
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from providers.capabilities import SETTING_NAMES, ImageSettings
from providers.catalog import Catalog
from studio.experiment_prompts import PlanError, PromptRow
from studio.job_spec import JobSpec
from studio.progress import seconds_words

__all__ = ["CREDITS_PER_TASK", "Cell", "Column", "Estimate", "Plan", "PlanError", "plan"]

# ESTIMATES of the credits one task costs, by model: the one price table. GemPix2's document
# bills "0.500000" in its example and the service reports `consumed` per task; Gemini 2.5
# Flash Image runs on the same service and is taken at the same price. Models missing here
# (Nano Banana Pro: apixo reports no credits) are counted as tasks without an estimate.
CREDITS_PER_TASK: dict[str, float] = {
    "google/gempix2": 0.5,
    "google/gemini-2.5-flash-image": 0.5,
}
MAX_TASKS = 200  # tasks of one experiment
MAX_VARIANTS = 4  # tasks per cell, as for one generation
CELLS_IN_FLIGHT = 4  # cells of one experiment running at once: the visitor's other work goes on

PriceOf = Callable[[str, str | None], float | None]  # (model, resolution) → credits per task

# The job params that tie a job to its experiment and its cell.
EXPERIMENT_PARAM, ROW_PARAM, COLUMN_PARAM = "experiment", "experiment_row", "experiment_column"


@dataclass(frozen=True)
class Column:
    """A model with the aspect ratio and resolution of this column (None: not taken)."""

    model: str
    aspect_ratio: str | None = None
    resolution: str | None = None

    def label(self, catalog: Catalog) -> str:
        spec = catalog.models.get(self.model)
        parts = [spec.label if spec else self.model, self.aspect_ratio, self.resolution]
        return " · ".join(p for p in parts if p)


@dataclass(frozen=True)
class Cell:
    """One generation of the grid: row `row` (a prompt) in column `column`."""

    row: int
    column: int
    model: str
    prompt: str
    settings: ImageSettings
    variants: int

    @property
    def key(self) -> str:
        return f"{self.row}:{self.column}"

    def spec(
        self,
        experiment_id: str,
        reference_urls: Sequence[str] = (),
        reference_hashes: Sequence[str] = (),
    ) -> JobSpec:
        return JobSpec(
            model=self.model,
            prompt=self.prompt,
            reference_urls=tuple(reference_urls),
            reference_hashes=tuple(reference_hashes),
            settings=self.settings,
            extra_params={
                EXPERIMENT_PARAM: experiment_id,
                ROW_PARAM: self.row,
                COLUMN_PARAM: self.column,
            },
        )


@dataclass(frozen=True)
class Estimate:
    """What the plan will send: tasks, credits (an estimate) and wall time (low, high) s."""

    tasks: int
    credits: float  # of the tasks whose model has a price (CREDITS_PER_TASK, or the owner's)
    unpriced_tasks: int  # tasks whose model reports no credits and has no price
    seconds: tuple[float, float]
    unpriced_models: tuple[str, ...] = ()

    def words(self, catalog: Catalog) -> str:
        tasks = f"{self.tasks} task{'s' if self.tasks != 1 else ''}"
        if self.unpriced_tasks == self.tasks:
            credits = "credits: not reported by the service, so not estimated"
        else:
            credits = f"about {self.credits:g} credits (an estimate from typical prices)"
            if self.unpriced_tasks:
                labels = " and ".join(catalog.model(m).label for m in self.unpriced_models)
                credits += f", plus {self.unpriced_tasks} {labels} task(s) that report no credits"
        low, high = self.seconds
        return f"{tasks}; {credits}; about {seconds_words(low)}–{seconds_words(high)}"


@dataclass(frozen=True)
class Plan:
    experiment_id: str
    rows: tuple[PromptRow, ...]
    columns: tuple[Column, ...]
    cells: tuple[Cell, ...]
    variants: int
    reference_hashes: tuple[str, ...]  # shared by every cell ("url:<link>" for a link)
    cells_in_flight: int
    estimate: Estimate
    notes: tuple[str, ...] = ()

    def cell(self, row: int, column: int) -> Cell | None:
        return next((c for c in self.cells if (c.row, c.column) == (row, column)), None)

    def summary(self, catalog: Catalog, *, sending: bool = False) -> str:
        """The plan in words: before anything is sent, or (`sending`) as it starts."""
        rows, columns = len(self.rows), len(self.columns)
        head = (
            f"{len(self.cells)} cell{'s' if len(self.cells) != 1 else ''} "
            f"({rows} prompt{'s' if rows != 1 else ''} × {columns} column"
            f"{'s' if columns != 1 else ''}, {self.variants} variant"
            f"{'s' if self.variants != 1 else ''} each): "
        )
        estimate = self.estimate.words(catalog)
        when = "Sending now." if sending else "Nothing is sent until you press Run."
        notes = "".join(" " + n for n in self.notes)
        return f"{head}{estimate}, {self.cells_in_flight} cells at a time. {when}{notes}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "experiment_id": self.experiment_id,
            "rows": [r.as_dict() for r in self.rows],
            "columns": [
                {"model": c.model, "aspect_ratio": c.aspect_ratio, "resolution": c.resolution}
                for c in self.columns
            ],
            "cells": [
                {
                    "row": c.row,
                    "column": c.column,
                    "model": c.model,
                    "prompt": c.prompt,
                    "settings": c.settings.given(),
                    "variants": c.variants,
                }
                for c in self.cells
            ],
            "variants": self.variants,
            "reference_hashes": list(self.reference_hashes),
            "cells_in_flight": self.cells_in_flight,
            "estimate": {
                "tasks": self.estimate.tasks,
                "credits": self.estimate.credits,
                "unpriced_tasks": self.estimate.unpriced_tasks,
                "seconds": list(self.estimate.seconds),
                "unpriced_models": list(self.estimate.unpriced_models),
            },
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> Plan:
        estimate = value["estimate"]
        low, high = estimate["seconds"]
        return cls(
            experiment_id=str(value["experiment_id"]),
            rows=tuple(PromptRow.from_dict(r) for r in value["rows"]),
            columns=tuple(
                Column(c["model"], c.get("aspect_ratio"), c.get("resolution"))
                for c in value["columns"]
            ),
            cells=tuple(
                Cell(
                    row=int(c["row"]),
                    column=int(c["column"]),
                    model=str(c["model"]),
                    prompt=str(c["prompt"]),
                    settings=ImageSettings.from_mapping(c.get("settings") or {}),
                    variants=int(c["variants"]),
                )
                for c in value["cells"]
            ),
            variants=int(value["variants"]),
            reference_hashes=tuple(str(h) for h in value.get("reference_hashes", ())),
            cells_in_flight=int(value.get("cells_in_flight", CELLS_IN_FLIGHT)),
            estimate=Estimate(
                int(estimate["tasks"]),
                float(estimate["credits"]),
                int(estimate["unpriced_tasks"]),
                (float(low), float(high)),
                tuple(str(m) for m in estimate.get("unpriced_models", ())),
            ),
            notes=tuple(str(n) for n in value.get("notes", ())),
        )


def columns_for(
    catalog: Catalog,
    models: Sequence[str],
    aspect_ratios: Sequence[str] = (),
    resolutions: Sequence[str] = (),
) -> list[Column]:
    """Model × aspect ratio × resolution, each list only for the models that take it. A value a
    model takes the setting but not the value for is refused with a sentence naming both."""
    columns: list[Column] = []
    problems: list[str] = []
    for model in models:
        spec = catalog.model(model)
        lists: dict[str, list[str | None]] = {}
        for name, values in (("aspect_ratio", aspect_ratios), ("resolution", resolutions)):
            wanted = list(dict.fromkeys(v for v in values if v))
            if not spec.takes(name) or not wanted:
                lists[name] = [None]
                continue
            for value in wanted:
                problems += spec.setting_problems(ImageSettings(**{name: value}))
            lists[name] = [v for v in wanted if v in spec.choices(name)]
        for ratio in lists["aspect_ratio"]:
            for resolution in lists["resolution"]:
                columns.append(Column(model, ratio, resolution))
    if problems:
        raise PlanError(problems)
    return columns


def cell_settings(
    catalog: Catalog, row: PromptRow, column: Column
) -> tuple[ImageSettings, list[str]]:
    """The settings of a cell: the column's, then the row's, then the model's defaults;
    settings the model has no parameter for are dropped. Problems name the row."""
    spec = catalog.model(column.model)
    varied = ImageSettings(column.aspect_ratio, column.resolution)
    given = {**row.settings.given(), **varied.given()}
    wanted = ImageSettings.from_mapping({k: v for k, v in given.items() if spec.takes(k)})
    problems = [f"{_capital(row.where)}: {p}" for p in spec.setting_problems(wanted)]
    filled = spec.settings_for(wanted)
    return ImageSettings(**{n: getattr(filled, n) for n in SETTING_NAMES}), problems


def plan(
    catalog: Catalog,
    rows: Sequence[PromptRow],
    models: Sequence[str],
    *,
    aspect_ratios: Sequence[str] = (),
    resolutions: Sequence[str] = (),
    variants: int = 1,
    reference_hashes: Sequence[str] = (),
    time_scales: Mapping[str, float] | None = None,
    cells_in_flight: int = CELLS_IN_FLIGHT,
    experiment_id: str | None = None,
    notes: Sequence[str] = (),
    price_of: PriceOf | None = None,
) -> Plan:
    """The experiment's grid and its estimate, or PlanError. `time_scales` by service id (the
    offline preview runs faster); `reference_hashes` count as the references each cell has;
    `price_of(model, resolution)` prices the models CREDITS_PER_TASK does not (the owner's
    PRICE_TABLE)."""
    models = list(dict.fromkeys(m for m in models if m))
    if not rows:
        raise PlanError(["Write at least one prompt."])
    if not models:
        raise PlanError(["Pick at least one model."])
    unknown = [catalog.unknown_model_sentence(m) for m in models if m not in catalog.models]
    if unknown:
        raise PlanError(unknown)
    if not 1 <= variants <= MAX_VARIANTS:
        raise PlanError([f"Variants must be 1 to {MAX_VARIANTS}."])
    columns = columns_for(catalog, models, aspect_ratios, resolutions)
    tasks = len(rows) * len(columns) * variants
    if tasks > MAX_TASKS:
        raise PlanError(
            [
                f"This experiment would be {tasks} tasks; the limit is {MAX_TASKS}. Use fewer "
                "prompts, models, settings or variants."
            ]
        )
    # The references are shared: a model that cannot take that many is named once.
    problems = [
        problem
        for model in models
        for problem in catalog.request_problems(
            model, prompt="-", reference_count=len(reference_hashes), settings=ImageSettings()
        )
    ]
    cells = []
    for r, row in enumerate(rows):
        for c, column in enumerate(columns):
            settings, cell_problems = cell_settings(catalog, row, column)
            problems += cell_problems
            problems += [
                f"{_capital(row.where)}: {p}"
                for p in catalog.request_problems(
                    column.model, prompt=row.prompt, reference_count=0, settings=settings
                )
            ]
            cells.append(Cell(r, c, column.model, row.prompt, settings, variants))
    if problems:
        raise PlanError(list(dict.fromkeys(problems)))
    return Plan(
        experiment_id=experiment_id or uuid.uuid4().hex,
        rows=tuple(rows),
        columns=tuple(columns),
        cells=tuple(cells),
        variants=variants,
        reference_hashes=tuple(reference_hashes),
        cells_in_flight=max(1, cells_in_flight),
        estimate=estimate(
            catalog, cells, time_scales or {}, max(1, cells_in_flight), price_of=price_of
        ),
        notes=tuple(notes),
    )


def price_for(cell: Cell, price_of: PriceOf | None = None) -> float | None:
    """The estimated credits of one task of `cell`, or None when nothing prices it."""
    if cell.model in CREDITS_PER_TASK:
        return CREDITS_PER_TASK[cell.model]
    return price_of(cell.model, cell.settings.resolution) if price_of else None


def estimate(
    catalog: Catalog,
    cells: Sequence[Cell],
    time_scales: Mapping[str, float],
    in_flight: int,
    *,
    price_of: PriceOf | None = None,
) -> Estimate:
    """Tasks, credits (`price_for`), and the wall time of running `cells` in order,
    `in_flight` at a time, each for its model's expected window (its variants in parallel)."""
    tasks = sum(c.variants for c in cells)
    prices = [(cell, price_for(cell, price_of)) for cell in cells]
    credits = sum(price * c.variants for c, price in prices if price is not None)
    unpriced = [c for c, price in prices if price is None]
    windows = []
    for cell in cells:
        spec = catalog.model(cell.model)
        scale = time_scales.get(spec.service, 1.0)
        low, high = spec.expected_window(cell.settings.resolution)
        windows.append((low * scale, high * scale))
    return Estimate(
        tasks=tasks,
        credits=round(credits, 6),
        unpriced_tasks=sum(c.variants for c in unpriced),
        seconds=(
            _makespan([w[0] for w in windows], in_flight),
            _makespan([w[1] for w in windows], in_flight),
        ),
        unpriced_models=tuple(dict.fromkeys(c.model for c in unpriced)),
    )


def _makespan(durations: Sequence[float], slots: int) -> float:
    """When the last of `durations` ends, each started in order on the first free slot."""
    free = [0.0] * min(slots, max(len(durations), 1))
    end = 0.0
    for duration in durations:
        start = heapq.heappop(free)
        end = max(end, start + duration)
        heapq.heappush(free, start + duration)
    return end


def _capital(words: str) -> str:
    return words[:1].upper() + words[1:]
