"""One card per generation in the feed: what was asked, how each task is doing, what came of it.

A generation is the tasks one press of Generate started (its variants). The card is plain HTML
built from immutable values (`Card`), so it renders the same from a live job and from a ledger
row, and tests read it as a person does: by its words and its ARIA roles. Everything that came
from a user or a service is escaped.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

from providers.capabilities import ImageSettings, ModelSpec
from studio.lifecycle import JobState
from studio.progress import Progress, seconds_words

STATE_WORDS = {
    JobState.RECORDED: "Waiting to send",
    JobState.SUBMITTING: "Sending",
    JobState.QUEUED: "Queued",
    JobState.RUNNING: "Running",
    JobState.SAVING: "Saving the results",
    JobState.DONE: "Done",
    JobState.FAILED: "Failed",
    JobState.DOWNLOAD_FAILED: "Not downloaded",
    JobState.OUTCOME_UNKNOWN: "Outcome unknown",
    JobState.STOPPED: "Stopped",
    JobState.TIMED_OUT: "Timed out",
}
PROMPT_SHOWN = 280  # characters of the prompt on a card; the whole prompt is in its tooltip


@dataclass(frozen=True)
class Card:
    generation: str
    prompt: str
    spec: ModelSpec
    settings: ImageSettings
    tasks: tuple[Progress, ...]  # one per variant, in variant order
    reference_count: int = 0
    parent: str | None = None
    # Credits a task costs by the owner's price table, for a service that reports none.
    estimate: float | None = None

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(path for task in self.tasks for path in task.files)

    @property
    def is_active(self) -> bool:
        return any(task.is_active for task in self.tasks)

    @property
    def job_ids(self) -> tuple[str, ...]:
        return tuple(task.job_id for task in self.tasks)


def settings_words(spec: ModelSpec, settings: ImageSettings) -> str:
    """The settings in words: "16:9 · 2K (2752×1536 px) · PNG"; empty for a model with none."""
    kept = spec.settings_for(settings)
    parts = []
    if kept.aspect_ratio or kept.resolution:
        width, height = spec.pixel_size(kept.aspect_ratio, kept.resolution)
        size = " · ".join(p for p in (kept.aspect_ratio, kept.resolution) if p)
        parts.append(f"{size} ({width}×{height} px)")
    if kept.output_format:
        parts.append(kept.output_format.upper())
    if kept.routing and kept.routing != "auto":
        parts.append(f"{kept.routing} routing")
    return " · ".join(parts)


def pixel_size_words(spec: ModelSpec, settings: ImageSettings) -> str:
    """What the form shows beside the aspect ratio and resolution."""
    if not (spec.takes("aspect_ratio") or spec.takes("resolution")):
        return ""
    kept = spec.settings_for(settings)
    width, height = spec.pixel_size(kept.aspect_ratio, kept.resolution)
    return f"Output: {width} × {height} px"


def fraction_done(task: Progress, now: float) -> float | None:
    """How far along the task is against the model's expected window; None when unknown
    (not yet running: the bar is indeterminate)."""
    if task.state is JobState.DONE:
        return 1.0
    if not task.is_active or task.submitted_at is None or task.state is not JobState.RUNNING:
        return None if task.is_active else 1.0
    low, high = task.expected_seconds
    expected = (low + high) / 2 or 1.0
    return min((now - task.submitted_at) / expected, 0.95)  # never "full" before it is done


def state_line(task: Progress, now: float, estimate: float | None = None) -> str:
    """The task's state in plain words, with its time and credits: those the service reported,
    else for a task done on a real service the `estimate` from the price table, marked so."""
    words = STATE_WORDS.get(task.state, task.state.value)
    started = task.submitted_at or task.created_at
    if task.state is JobState.DONE:
        count = len(task.files)
        words += f" in {seconds_words((task.finished_at or now) - started)}"
        words += f" · {count} image{'s' if count != 1 else ''}"
    elif task.is_active:
        left = task.time_left(now)
        if task.submitted_at is not None:
            words += f" · {seconds_words(now - started)}"
        if left:
            words += f" · {left}"
    if task.credits is not None:
        words += f" · {task.credits:g} credits"
    elif estimate is not None and task.state is JobState.DONE and not task.offline:
        words += f" · {estimate:g} credits (estimate)"
    return words


def short_id(task_id: str) -> str:
    return task_id if len(task_id) <= 14 else f"{task_id[:12]}…"


def _task_html(task: Progress, now: float, of: int, estimate: float | None = None) -> str:
    name = f"Variant {task.variant}" if of > 1 else "Task"
    fraction = fraction_done(task, now)
    value = "" if fraction is None else f' aria-valuenow="{round(fraction * 100)}"'
    width = "" if fraction is None else f' style="width:{fraction * 100:.0f}%"'
    bar_class = "bar indeterminate" if fraction is None else "bar"
    parts = [
        f'<div class="task task-{task.state.value}">',
        f'<div class="task-head"><span class="task-name">{name}</span> '
        f'<span class="task-state">{html.escape(state_line(task, now, estimate))}</span></div>',
        f'<div class="{bar_class}" role="progressbar" aria-label="{name} progress" '
        f'aria-valuemin="0" aria-valuemax="100"{value}><span{width}></span></div>',
    ]
    if task.message and not task.is_active and task.state is not JobState.DONE:
        parts.append(f'<p class="task-error" role="alert">{html.escape(task.message)}</p>')
    elif task.message and task.is_active:  # e.g. its place in line for a running slot
        parts.append(f'<p class="task-note" role="status">{html.escape(task.message)}</p>')
    details = []
    if task.provider_state:
        details.append(f"The service says: “{html.escape(task.provider_state)}”.")
    if task.task_id:
        tid = html.escape(task.task_id)
        details.append(
            f'Task id <code title="{tid}">{html.escape(short_id(task.task_id))}</code> '
            f'<button type="button" class="copy-id" data-copy="{tid}" '
            f'aria-label="Copy task id {tid}">Copy id</button>'
        )
    if task.offline:
        details.append("Offline preview: a placeholder image from the built-in simulator.")
    if details:
        parts.append(
            "<details><summary>Details</summary><p>" + "</p><p>".join(details) + "</p></details>"
        )
    parts.append("</div>")
    return "".join(parts)


def card_html(card: Card, now: float) -> str:
    prompt = card.prompt if len(card.prompt) <= PROMPT_SHOWN else card.prompt[:PROMPT_SHOWN] + "…"
    facts = [card.spec.label]
    words = settings_words(card.spec, card.settings)
    if words:
        facts.append(words)
    if len(card.tasks) > 1:
        facts.append(f"{len(card.tasks)} variants")
    if card.reference_count:
        refs = card.reference_count
        facts.append(f"{refs} reference{'s' if refs != 1 else ''}")
    if card.parent:
        facts.append("edit of an earlier result")
    tasks = "".join(_task_html(task, now, len(card.tasks), card.estimate) for task in card.tasks)
    return (
        f'<article class="card" aria-label="Generation: {html.escape(prompt)}">'
        f'<p class="card-prompt" title="{html.escape(card.prompt)}">{html.escape(prompt)}</p>'
        f'<p class="card-facts">{html.escape(" · ".join(facts))}</p>'
        f"{tasks}</article>"
    )
