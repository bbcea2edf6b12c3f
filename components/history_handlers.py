"""History handlers: list, select, recall, reuse, re-check and zip a visitor's own generations.

On a shared deployment every call is scoped to the visitor's browser id (an unguessable token
kept in browser storage); a missing or malformed id sees nothing. Locally (single-user mode)
the one user sees everything.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
import zipfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import gradio as gr

from components.handlers import Studio, file_paths, user_error
from components.history import ALL, ALL_GENERATIONS
from providers.capabilities import ImageSettings
from providers.catalog import Catalog
from providers.errors import ImageServiceError
from studio.ledger import JobRow, LedgerError
from studio.metadata import read_parameters
from studio.reference_store import split_references

FORM_VALUES = 11  # what form_values gives: the outputs of Recall and of restoring from an image
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{32,128}$")
NOBODY = "\x00nobody"  # an owner no job can have: what a shared deployment shows to no id
PAGE_SIZE = 60  # rows per "Show more"
MAX_ROWS = 1000  # the most the table shows at once; search or filter to find older ones
RECENT_EXPERIMENTS = 20  # the experiments History's filter offers


def valid_client_id(client_id: str | None) -> bool:
    """Whether `client_id` has the form of a browser id this app mints."""
    return bool(client_id and _CLIENT_ID.match(client_id))


def owner_for(studio: Studio, client_id: str | None) -> str | None:
    """The ledger owner to filter by: None (everyone) locally, the browser id when shared."""
    if not studio.multi_user:
        return None
    return client_id if valid_client_id(client_id) else NOBODY


def owner_for_new_job(studio: Studio, client_id: str | None) -> str:
    owner = owner_for(studio, client_id)
    if owner is None:
        return ""
    # An API caller without a browser id still gets its images, in a history no one can list.
    return secrets.token_urlsafe(32) if owner == NOBODY else owner


def _settings(row: JobRow) -> str:
    params = row.params
    parts = [
        str(params[k]) for k in ("aspect_ratio", "resolution", "output_format") if params.get(k)
    ]
    if row.reference_hashes:
        parts.append(f"{len(row.reference_hashes)} ref")
    if params.get("offline"):
        parts.append("preview")
    return " · ".join(parts)


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


def _label(catalog: Catalog, model: str) -> str:
    return catalog.models[model].label if model in catalog.models else model


def _kept(row: JobRow) -> list[str]:
    return [r.path for r in row.results if r.path and Path(r.path).exists()]


async def load_history(
    studio: Studio,
    client_id: str | None,
    search: str | None,
    model: str | None,
    state: str | None,
    starred: bool = False,
    limit: int = PAGE_SIZE,
    experiment: str | None = None,
) -> tuple[list[tuple[str, str]], list[list[Any]], list[str], list[str]]:
    """Thumbnails, table rows, and the job ids behind each (for selection): the newest
    `limit` generations that match (with `experiment`, only that experiment's cells)."""
    owner = owner_for(studio, client_id)
    rows = await asyncio.to_thread(
        studio.runner.ledger.history,
        owner,
        search=(search or "").strip(),
        model=None if model in (None, "", ALL) else model,
        state=None if state in (None, "", ALL) else state,
        starred=bool(starred),
        experiment=None if experiment in (None, "", ALL) else experiment,
        limit=max(1, min(int(limit or PAGE_SIZE), MAX_ROWS)),
    )
    # Building the listing checks each file on disk: done off the event loop.
    return await asyncio.to_thread(_listing, studio.catalog, rows)


async def experiment_choices(studio: Studio, client_id: str | None) -> list[tuple[str, str]]:
    """The experiment filter's choices: any, then the visitor's recent experiments."""
    owner = owner_for(studio, client_id)
    runs = await asyncio.to_thread(studio.experiments.store.recent, owner, RECENT_EXPERIMENTS)
    choices = [ALL_GENERATIONS]
    for run in runs:
        rows = run.plan.rows
        first = rows[0].prompt if rows else ""
        first = first if len(first) <= 32 else first[:31] + "…"
        more = f" +{len(rows) - 1}" if len(rows) > 1 else ""
        cells = len(run.plan.cells)
        choices.append((f"{_when(run.created_at)} · {first}{more} · {cells} cells", run.id))
    return choices


def _listing(
    catalog: Catalog, rows: list[JobRow]
) -> tuple[list[tuple[str, str]], list[list[Any]], list[str], list[str]]:
    thumbnails, thumb_ids, table, row_ids = [], [], [], []
    for row in rows:
        kept = _kept(row)
        for path in kept:
            thumbnails.append((path, f"{row.prompt[:60]} · {_label(catalog, row.model)}"))
            thumb_ids.append(row.job_id)
        table.append(
            [
                _when(row.created_at),
                ("★ " if row.starred else "") + row.prompt,
                _label(catalog, row.model),
                _settings(row),
                row.state.value.replace("_", " "),
                len(kept),
            ]
        )
        row_ids.append(row.job_id)
    return thumbnails, table, row_ids, thumb_ids


async def selected_row(studio: Studio, client_id: str | None, job_id: str | None) -> JobRow:
    """The selected generation's row, if it is the visitor's; a sentence otherwise."""
    if not job_id:
        raise user_error("Select a generation in the history first.")
    row = await asyncio.to_thread(
        studio.runner.ledger.job, job_id, owner=owner_for(studio, client_id)
    )
    if row is None:
        raise user_error("That generation is not in your history.")
    return row


async def describe(studio: Studio, client_id: str | None, job_id: str | None) -> str:
    row = await selected_row(studio, client_id, job_id)
    state = row.state.value.replace("_", " ")
    lines = [
        f"**{_label(studio.catalog, row.model)}** · {state} · {_when(row.created_at)}",
        f"> {row.prompt}",
        f"Settings: {_settings(row) or 'defaults'}",
    ]
    if row.task_id:
        lines.append(f"Task id: `{row.task_id}`")
    if row.credits is not None:
        lines.append(f"Credits: {row.credits:g}")
    if row.error_message:
        lines.append(f"Why: {row.error_message}")
    for result in row.results:
        if result.error:
            expiry = f", link valid until {_when(result.expires_at)}" if result.expires_at else ""
            lines.append(f"Image {result.idx} not downloaded: {result.error}{expiry}")
    if row.starred:
        lines.append("★ Starred")
    lines.extend(await _chain_lines(studio, client_id, row))
    return "\n\n".join(lines)


def _short(prompt: str, limit: int = 48) -> str:
    return prompt if len(prompt) <= limit else prompt[: limit - 1] + "…"


async def _chain_lines(studio: Studio, client_id: str | None, row: JobRow) -> list[str]:
    """The generation's place in its edit chain: what it was made from, what was made of it."""
    owner = owner_for(studio, client_id)
    ledger = studio.runner.ledger
    above = await asyncio.to_thread(ledger.ancestors, row.job_id, owner=owner)
    below = await asyncio.to_thread(ledger.children, row.job_id, owner=owner)
    if not above and not below:
        return []
    steps = [*(f"“{_short(r.prompt)}”" for r in reversed(above)), f"**“{_short(row.prompt)}”**"]
    lines = ["Edit chain: " + " → ".join(steps)]
    if below:
        edits = ", ".join(f"“{_short(r.prompt)}”" for r in below)
        lines.append(f"Edits made from this: {edits}")
    return lines


async def toggle_star(studio: Studio, client_id: str | None, job_id: str | None) -> str:
    row = await selected_row(studio, client_id, job_id)
    await asyncio.to_thread(
        studio.runner.ledger.set_starred, row.job_id, not row.starred, owner=row.owner
    )
    return await describe(studio, client_id, row.job_id)


async def neighbour(
    studio: Studio, client_id: str | None, job_id: str | None, *, up: bool
) -> tuple[str, str]:
    """(job id, details) of the generation above (its parent) or below (its first edit)."""
    row = await selected_row(studio, client_id, job_id)
    owner = owner_for(studio, client_id)
    ledger = studio.runner.ledger
    if up:
        found = row.parent if row.parent and ledger.job(row.parent, owner=owner) else None
        missing = "This generation was not made from an earlier result."
    else:
        children = await asyncio.to_thread(ledger.children, row.job_id, owner=owner)
        found = children[0].job_id if children else None
        missing = "Nothing has been made from this generation yet."
    if found is None:
        raise user_error(missing)
    return found, await describe(studio, client_id, found)


async def delete_generation(studio: Studio, client_id: str | None, job_id: str | None) -> str:
    """Delete the selected generation: its ledger row, its saved images, and the kept
    references no other generation uses."""
    row = await selected_row(studio, client_id, job_id)
    ledger = studio.runner.ledger
    try:
        deleted = await asyncio.to_thread(ledger.delete_job, row.job_id, owner=row.owner)
    except LedgerError as exc:
        raise user_error(str(exc).capitalize() + ".") from None

    def remove_files() -> None:
        for result in deleted.results:
            if result.path:
                Path(result.path).unlink(missing_ok=True)
        hashes = [h for h in deleted.reference_hashes if not h.startswith("url:")]
        used = ledger.references_in_use(hashes)
        studio.reference_store.forget([h for h in hashes if h not in used])

    await asyncio.to_thread(remove_files)
    return f"Deleted “{_short(deleted.prompt)}” and its images."


def form_values(
    studio: Studio,
    params: dict[str, Any],
    model: str,
    prompt: str,
    reference_hashes: Sequence[str],
    *,
    parent: str | None = None,
) -> tuple[Any, ...]:
    """The form as it was for a generation: model, prompt, the four settings, references (the
    kept files and the links), variants, parent, and an empty set-aside list.

    The settings are given as recorded; the model's change then reshapes the form around them.
    """
    settings = ImageSettings.from_mapping(params)
    files, links, missing = split_references(reference_hashes, studio.reference_store)
    if missing:
        count = len(missing)
        gr.Warning(
            f"{count} reference image{'s are' if count != 1 else ' is'} no longer kept; "
            f"add {'them' if count != 1 else 'it'} again."
        )
    return (
        model,
        prompt,
        *settings.as_dict().values(),
        [str(path) for path in files],
        "\n".join(links),
        int(str(params.get("variants") or 1)),
        parent,
        [],
    )


async def recall(studio: Studio, client_id: str | None, job_id: str | None) -> tuple[Any, ...]:
    """The form as it was for the selected generation, references and variants included."""
    row = await selected_row(studio, client_id, job_id)
    parent = str(row.params["parent"]) if row.params.get("parent") else None
    return form_values(
        studio, row.params, row.model, row.prompt, row.reference_hashes, parent=parent
    )


async def check_again(
    studio: Studio,
    client_id: str | None,
    job_id: str | None,
    keys: dict[str, str] | None = None,
) -> str:
    """Watch a stopped or timed-out task again; `keys` are the visitor's keys by service id."""
    row = await selected_row(studio, client_id, job_id)
    try:
        await studio.runner.recheck(
            row.job_id, owner=owner_for(studio, client_id), visitor_keys=keys
        )
    except ImageServiceError as exc:
        raise user_error(exc.user_message()) from None
    return f"Checking task {row.task_id} again; its card on the Generate tab shows how it goes."


ZIP_LIFETIME = 3600.0  # seconds a zip stays on disk after it was made


async def zip_shown(studio: Studio, client_id: str | None, job_ids: list[str] | None) -> Any:
    """A zip of every saved image among the shown generations."""
    owner = owner_for(studio, client_id)
    ledger = studio.runner.ledger
    folder = studio.runner.outputs_dir.parent / "zips"

    def write() -> Path | None:
        paths = [
            path
            for job_id in job_ids or ()
            if (row := ledger.job(job_id, owner=owner)) is not None
            for path in _kept(row)
        ]
        if not paths:
            return None
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("images-*.zip"):  # zips are for one download, not for keeping
            if old.stat().st_mtime < time.time() - ZIP_LIFETIME:
                old.unlink(missing_ok=True)
        target = folder / f"images-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(8)}.zip"
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
            for path in paths:  # images are compressed already
                archive.write(path, arcname=Path(path).name)
        return target

    target = await asyncio.to_thread(write)
    if target is None:
        raise user_error("No saved images among the generations shown.")
    return gr.update(value=str(target), visible=True)


def restore_from_image(studio: Studio, file: Any) -> tuple[Any, ...]:
    """The form from the parameters embedded in an image made here."""
    paths = file_paths([file] if file else [])
    if not paths:
        return tuple(gr.skip() for _ in range(FORM_VALUES))
    params = read_parameters(Path(paths[0]).read_bytes())
    if not params or params.get("model") not in studio.catalog.models:
        raise user_error(f"{Path(paths[0]).name} carries no Image Studio settings.")
    gr.Info("Settings restored from the image.")
    hashes = [str(h) for h in params.get("reference_hashes") or () if isinstance(h, str)]
    return form_values(studio, params, str(params["model"]), str(params.get("prompt", "")), hashes)
