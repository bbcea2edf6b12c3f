"""What the buttons on a card do: use a result as a reference, edit it, compare, re-run.

Each action gets the slot's job ids (from the feed's `shown` state) and reads their rows from the
ledger scoped to the visitor, so a forged id does nothing. An edit records its parent: the job
whose result became the reference; History follows those links as an edit chain.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import gradio as gr

from components.handlers import Studio, file_paths, user_error
from components.history_handlers import owner_for
from providers.capabilities import ImageSettings
from providers.errors import ImageServiceError
from studio.jobs import JobSpec
from studio.ledger import JobRow
from studio.reference_store import URL_PREFIX
from studio.visitors import Visitor


async def slot_rows(studio: Studio, client_id: str | None, job_ids: list[str]) -> list[JobRow]:
    owner = owner_for(studio, client_id)

    def read() -> list[JobRow]:
        rows = [studio.runner.ledger.job(job_id, owner=owner) for job_id in job_ids]
        return [row for row in rows if row is not None]

    rows = await asyncio.to_thread(read)
    if not rows:
        raise user_error("That generation is no longer in your feed.")
    return rows


def kept_results(rows: list[JobRow]) -> list[tuple[JobRow, Path]]:
    """Every kept result of the generation, in the order its gallery shows them."""
    return [
        (row, Path(result.path))
        for row in rows
        for result in row.results
        if result.path and Path(result.path).is_file()
    ]


def picked_result(rows: list[JobRow], picked: int | None) -> tuple[JobRow, Path]:
    results = kept_results(rows)
    if not results:
        raise user_error("This generation has no saved image yet.")
    index = picked if isinstance(picked, int) and 0 <= picked < len(results) else 0
    return results[index]


def with_reference(studio: Studio, model: str, current: list[Any] | None, path: Path) -> list[str]:
    """The reference files with `path` added, within the model's cap."""
    files = [p for p in file_paths(current) if p != str(path)]
    spec = studio.catalog.model(model)
    if len(files) >= spec.max_references:
        raise user_error(
            f"{spec.label} takes at most {spec.max_references} references; "
            "remove one before adding another."
        )
    return [*files, str(path)]


async def use_as_reference(
    studio: Studio,
    client_id: str | None,
    job_ids: list[str],
    picked: int | None,
    model: str,
    current: list[Any] | None,
) -> tuple[list[str], str]:
    """(reference files, parent job id): the picked result joins the references."""
    row, path = picked_result(await slot_rows(studio, client_id, job_ids), picked)
    gr.Info("Added to the references.")
    return with_reference(studio, model, current, path), row.job_id


async def edit_this(
    studio: Studio, client_id: str | None, job_ids: list[str], picked: int | None
) -> tuple[list[str], str]:
    """(reference files, parent job id): the picked result becomes the only reference, so the
    next prompt is an instruction on it (the page then focuses the prompt)."""
    row, path = picked_result(await slot_rows(studio, client_id, job_ids), picked)
    return [str(path)], row.job_id


async def compare(
    studio: Studio, client_id: str | None, job_ids: list[str], picked: int | None
) -> tuple[Any, Any]:
    """(slider value, compare box update): the picked result beside another result of the same
    generation, or else beside the picture it was made from (its first reference)."""
    rows = await slot_rows(studio, client_id, job_ids)
    results = kept_results(rows)
    row, after = picked_result(rows, picked)
    others = [path for _, path in results if path != after]
    before = others[0] if others else _first_reference(studio, row)
    if before is None:
        raise user_error(
            "Nothing to compare with: this generation has one result and no reference image."
        )
    return (str(before), str(after)), gr.update(visible=True)


def _first_reference(studio: Studio, row: JobRow) -> Path | None:
    for recorded in row.reference_hashes:
        if not recorded.startswith(URL_PREFIX):
            path = studio.reference_store.find(recorded)
            if path is not None:
                return path
    return None


async def rerun(
    studio: Studio,
    client_id: str | None,
    job_ids: list[str],
    keys: dict[str, str],
    owner: str,
    visitor: Visitor | None = None,
) -> list[str]:
    """Start the generation again exactly: same model, prompt, settings, references and number
    of variants. References come back from the reference store byte for byte."""
    rows = await slot_rows(studio, client_id, job_ids)
    return await rerun_row(studio, rows[0], keys, owner, visitor)


async def rerun_row(
    studio: Studio,
    row: JobRow,
    keys: dict[str, str],
    owner: str,
    visitor: Visitor | None = None,
) -> list[str]:
    """`rerun` of a ledger row; `visitor` counts against the limits on the owner's keys."""
    urls = []
    for recorded in row.reference_hashes:
        if recorded.startswith(URL_PREFIX):
            urls.append(recorded[len(URL_PREFIX) :])
            continue
        ref = await asyncio.to_thread(studio.reference_store.load, recorded)
        if ref is None:
            raise user_error(
                "A reference image of this generation is no longer kept, so it cannot be "
                "re-run exactly; recall its settings and add the references again."
            )
        published = await asyncio.to_thread(studio.reference_host.publish, ref)
        urls.append(published.url)
    spec = JobSpec(
        model=row.model,
        prompt=row.prompt,
        reference_urls=tuple(urls),
        reference_hashes=tuple(row.reference_hashes),
        settings=ImageSettings.from_mapping(row.params),
        parent=str(row.params["parent"]) if row.params.get("parent") else None,
    )
    variants = int(str(row.params.get("variants") or 1))
    try:
        return await studio.runner.start(
            spec, variants=variants, owner=owner, visitor_keys=keys, visitor=visitor
        )
    except ImageServiceError as exc:
        raise user_error(exc.user_message()) from None
