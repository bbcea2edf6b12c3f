"""The workspace feed: the visitor's recent generations as cards, newest first, kept live.

The page follows its visitor's jobs through one subscription (`stream_feed`), started once the
browser id is known. Generate, Re-run, Check again, another tab and an API caller only add jobs
to the ledger; the feed shows whatever the ledger and the runner say, so nothing ever hides or
overwrites another job's progress. It re-reads the ledger when `Changes` says one of the
visitor's jobs changed, and otherwise only ticks once a second so times and bars stay live.

The feed has a fixed number of card slots (`FEED_SIZE`); older generations are in History.
Each yield sends only what changed (`gr.skip()` for the rest), so a tick costs a few bytes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import gradio as gr

from components.cards import Card, card_html
from components.handlers import Studio
from providers.capabilities import ImageSettings
from studio.ledger import JobRow
from studio.lifecycle import JobState
from studio.progress import Progress
from studio.visitors import UNKNOWN_VISITOR, Visitor

FEED_SIZE = 6  # cards on the page; History holds the rest
FEED_ROWS = 48  # ledger rows read to fill them (a card holds up to 4 variants)
TICK = 1.0  # seconds between repaints while a job runs
IDLE_REREAD = 15.0  # seconds between ledger reads when nothing is running
EMPTY = "Your generations appear here: write a prompt and press **Generate**."


@dataclass(frozen=True)
class Slot:
    box: gr.Group
    card: gr.HTML
    gallery: gr.Gallery
    actions: gr.Row
    use: gr.Button
    edit: gr.Button
    compare: gr.Button
    rerun: gr.Button

    @property
    def outputs(self) -> list[Any]:
        return [self.box, self.card, self.gallery, self.actions, self.use, self.edit, self.compare]


@dataclass(frozen=True)
class FeedView:
    empty: gr.Markdown
    compare_box: gr.Group
    slider: gr.ImageSlider
    close_compare: gr.Button
    slots: tuple[Slot, ...]
    shown: gr.State  # per slot: the job ids of the generation it shows ([] when empty)
    picked: gr.State  # per slot: the index of the selected result

    running: gr.Markdown  # beside Generate: how many of the visitor's tasks run now
    left: gr.Markdown  # beside Generate: what is left on the studio's key ("7 of 10 today ...")

    @property
    def outputs(self) -> list[Any]:
        slots = (c for slot in self.slots for c in slot.outputs)
        return [self.empty, *slots, self.shown, self.running, self.left]


def build_feed(running: gr.Markdown, left: gr.Markdown) -> FeedView:
    with gr.Group(visible=False, elem_id="compare") as compare_box:
        slider = gr.ImageSlider(
            label="Compare (drag the handle)",
            type="filepath",
            max_height=640,
            buttons=["download", "fullscreen"],
            interactive=False,
        )
        close_compare = gr.Button("Close compare", size="sm")
    empty = gr.Markdown(EMPTY, elem_id="feed-empty")
    slots = []
    for index in range(FEED_SIZE):
        with gr.Group(visible=False, elem_classes=["feed-card"]) as box:
            card = gr.HTML(elem_id=f"card-{index}")
            gallery = gr.Gallery(
                show_label=False,
                label="Results",
                columns=2,
                height="auto",
                object_fit="contain",
                preview=False,
                allow_preview=True,
                buttons=["download", "fullscreen"],
                interactive=False,
                elem_classes=["card-results"],
            )
            with gr.Row(visible=False, elem_classes=["card-actions"]) as actions:
                use = gr.Button("Use as reference", size="sm")
                edit = gr.Button("Edit this", size="sm")
                compare = gr.Button("Compare", size="sm")
                rerun = gr.Button("Re-run", size="sm")
        slots.append(Slot(box, card, gallery, actions, use, edit, compare, rerun))
    return FeedView(
        empty,
        compare_box,
        slider,
        close_compare,
        tuple(slots),
        gr.State([[] for _ in range(FEED_SIZE)]),
        gr.State([0] * FEED_SIZE),
        running,
        left,
    )


# ---- from the ledger and the runner to cards -----------------------------------------------------


def generation_of(row: JobRow) -> str:
    return str(row.params.get("generation") or row.job_id)


def progress_from_row(studio: Studio, row: JobRow) -> Progress:
    spec = studio.catalog.models.get(row.model)
    resolution = row.params.get("resolution")
    return Progress(
        job_id=row.job_id,
        variant=int(str(row.params.get("variant") or 1)),
        model_label=spec.label if spec else row.model,
        state=JobState(row.state),
        provider_state=row.provider_state,
        task_id=row.task_id,
        offline=bool(row.params.get("offline")),
        created_at=row.created_at,
        submitted_at=row.submitted_at,
        finished_at=row.finished_at,
        expected_seconds=spec.expected_window(str(resolution) if resolution else None)
        if spec
        else (10.0, 30.0),
        credits=row.credits,
        message=row.error_message or "",
        files=tuple(Path(r.path) for r in row.results if r.path and Path(r.path).is_file()),
    )


def cards_from_rows(studio: Studio, rows: list[JobRow]) -> list[Card]:
    """The newest `FEED_SIZE` generations among `rows` (newest first), live where running."""
    groups: dict[str, list[JobRow]] = {}
    for row in rows:
        if row.model in studio.catalog.models:
            groups.setdefault(generation_of(row), []).append(row)
    cards = []
    for generation, members in list(groups.items())[:FEED_SIZE]:
        members.sort(key=lambda r: int(str(r.params.get("variant") or 1)))
        first = members[0]
        tasks = tuple(
            studio.runner.progress(r.job_id) or progress_from_row(studio, r) for r in members
        )
        cards.append(
            Card(
                generation=generation,
                prompt=first.prompt,
                spec=studio.catalog.model(first.model),
                settings=ImageSettings.from_mapping(first.params),
                tasks=tasks,
                reference_count=len(first.reference_hashes),
                parent=str(first.params["parent"]) if first.params.get("parent") else None,
                estimate=studio.prices.estimate(
                    first.model, str(first.params.get("resolution") or "") or None
                ),
            )
        )
    return cards


def relive(studio: Studio, cards: list[Card]) -> list[Card]:
    """The same cards with the runner's newest progress for tasks it still holds."""
    return [
        replace(card, tasks=tuple(studio.runner.progress(t.job_id) or t for t in card.tasks))
        for card in cards
    ]


def gallery_value(card: Card) -> list[tuple[str, str]]:
    many = len(card.tasks) > 1
    return [
        (str(path), f"Variant {task.variant}" if many else card.spec.label)
        for task in card.tasks
        for path in task.files
    ]


def running_words(cards: list[Card]) -> str:
    tasks = [task for card in cards for task in card.tasks if task.is_active]
    # A task that waits for a running slot on the studio's key says so in its message.
    waiting = sum(task.state is JobState.RECORDED and bool(task.message) for task in tasks)
    words = [f"{len(tasks) - waiting} running" if len(tasks) > waiting else ""]
    words.append(f"{waiting} waiting" if waiting else "")
    return " · ".join(word for word in words if word)


def feed_values(cards: list[Card], now: float) -> list[Any]:
    """One value per output of `FeedView.outputs`, for these cards."""
    values: list[Any] = [gr.update(visible=not cards)]
    shown: list[list[str]] = []
    for index in range(FEED_SIZE):
        card = cards[index] if index < len(cards) else None
        if card is None:
            values += [gr.update(visible=False), "", gr.update(value=[], visible=False)]
            values += [gr.update(visible=False)]
            values += [gr.update(interactive=False)] * 3
            shown.append([])
            continue
        has_files = bool(card.files)
        values += [
            gr.update(visible=True),
            card_html(card, now),
            # No empty picture frame while the task runs: the gallery shows with the results.
            gr.update(value=gallery_value(card), visible=has_files),
            gr.update(visible=not card.is_active or has_files),
            *[gr.update(interactive=has_files)] * 3,
        ]
        shown.append(list(card.job_ids))
    return [*values, shown, running_words(cards)]


async def read_cards(studio: Studio, owner: str | None) -> list[Card]:
    rows = await asyncio.to_thread(studio.runner.ledger.history, owner, limit=FEED_ROWS)
    # Checking the result files on disk happens here too: off the event loop.
    return await asyncio.to_thread(cards_from_rows, studio, rows)


async def stream_feed(
    studio: Studio, owner: str | None, visitor: Visitor | None = None
) -> AsyncIterator[list[Any]]:
    """The feed of `owner`'s generations (None: everyone), for as long as the page is open,
    with what is left on the studio's key for `visitor`, read again with the cards."""
    changes = studio.runner.live.changes
    left_words = studio.runner.admission.left_words
    cards, left = await read_cards(studio, owner), await left_words(visitor or UNKNOWN_VISITOR)
    sent: list[Any] | None = None
    last_read = time.monotonic()
    while True:
        values = [*feed_values(cards, time.time()), left]
        yield (
            values
            if sent is None
            else [gr.skip() if new == old else new for new, old in zip(values, sent, strict=True)]
        )
        sent = values
        active = any(card.is_active for card in cards)
        changed = await changes.wait(owner, within=TICK if active else IDLE_REREAD)
        if changed:
            await asyncio.sleep(0.1)  # let a burst of changes (variants starting) settle
        if changed or not active or time.monotonic() - last_read > IDLE_REREAD:
            cards = await read_cards(studio, owner)
            left = await left_words(visitor or UNKNOWN_VISITOR)
            last_read = time.monotonic()
        else:
            cards = relive(studio, cards)
