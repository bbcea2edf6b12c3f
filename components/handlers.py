"""Event handlers: plain async functions on domain values; `gr.Error` only at this edge."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gradio as gr

from components.controls import VARIANTS_MAX, reshape, settings_visibility
from providers.capabilities import ImageSettings, ModelSpec
from providers.catalog import Catalog
from providers.errors import ImageServiceError
from studio.jobs import JobRunner, JobSpec
from studio.netguard import UnsafeUrlError, resolve_public_addresses
from studio.progress import Progress
from studio.reference_host import ReferenceHost, check_reference_url
from studio.references import BadReferenceError, deduplicate, prepare_reference

GalleryItems = list[tuple[str, str]]


@dataclass
class Studio:
    """What the handlers need; built once in app.py."""

    runner: JobRunner
    reference_host: ReferenceHost
    multi_user: bool = False

    @property
    def catalog(self) -> Catalog:
        return self.runner.catalog


def user_error(message: str) -> gr.Error:
    return gr.Error(message, print_exception=False)


def file_paths(files: Sequence[Any] | None) -> list[str]:
    """Paths from a gr.File value (strings, or dicts from an API caller)."""
    paths = []
    for item in files or ():
        if isinstance(item, str | Path):
            paths.append(str(item))
        elif isinstance(item, dict) and item.get("path"):
            paths.append(str(item["path"]))
        elif hasattr(item, "name"):
            paths.append(str(item.name))
    return paths


def url_lines(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def reference_count(files: Sequence[Any] | None, urls: str | None) -> int:
    return len(file_paths(files)) + len(url_lines(urls))


# ---- form reshaping and the reference cap (layer 1: trim with a warning) ------------------------


def on_model_change(
    catalog: Catalog,
    model: str,
    aspect: str | None,
    resolution: str | None,
    output_format: str | None,
    routing: str | None,
    files: Sequence[Any] | None,
) -> tuple[Any, ...]:
    spec = catalog.model(model)
    kept = trim_references(catalog, model, files)
    current = ImageSettings(aspect, resolution, output_format, routing)
    return (*reshape(spec, current), kept, kept, settings_visibility(spec))


def trim_references(catalog: Catalog, model: str, files: Sequence[Any] | None) -> list[str]:
    """Keep the first `max_references` files, warning about the rest."""
    paths = file_paths(files)
    spec = catalog.model(model)
    cap = spec.max_references
    if len(paths) > cap:
        dropped = ", ".join(Path(p).name for p in paths[cap:])
        gr.Warning(f"{spec.label} takes at most {cap} references; removed {dropped}.")
    return paths[:cap]


# ---- layer 2: the validator runs before the event is queued -------------------------------------


def validate_generate(
    catalog: Catalog,
    model: str,
    prompt: str,
    reference_images: Sequence[Any] | None,
    reference_urls: str | None,
    aspect_ratio: str | None,
    resolution: str | None,
    output_format: str | None,
    routing: str | None,
    variants: float | None,
) -> list[Any]:
    """One verdict per form input (the key boxes after these always pass)."""
    known = model in catalog.models
    count = reference_count(reference_images, reference_urls)
    cap = catalog.models[model].max_references if known else 0
    return [
        gr.validate(known, f"Unknown model {model!r}."),
        gr.validate(bool((prompt or "").strip()), "Write a prompt first."),
        gr.validate(
            not known or count <= cap,
            f"This model takes at most {cap} reference images ({count} given).",
        ),
        gr.validate(True, ""),
        gr.validate(True, ""),
        gr.validate(True, ""),
        gr.validate(True, ""),
        gr.validate(True, ""),
        gr.validate(
            1 <= int(variants or 1) <= VARIANTS_MAX, f"Variants must be 1 to {VARIANTS_MAX}."
        ),
    ]


# ---- generation ----------------------------------------------------------------------------------


async def prepare_references(
    studio: Studio, files: Sequence[Any] | None, urls: str | None
) -> tuple[tuple[str, ...], tuple[str, ...], list[str]]:
    """Reference URLs the service can fetch, their hashes, and notes for the status."""
    notes = []
    prepared = []
    for path in file_paths(files):
        name = Path(path).name
        try:
            data = await asyncio.to_thread(Path(path).read_bytes)
            prepared.append(await asyncio.to_thread(prepare_reference, data, name))
        except BadReferenceError as exc:
            raise user_error(str(exc)) from None
        except OSError:
            raise user_error(f"Could not read {name}; upload it again.") from None
    unique, dropped = deduplicate(prepared)
    if dropped:
        notes.append(f"Skipped duplicate reference(s): {', '.join(dropped)}.")
    locations, hashes = [], []
    for ref in unique:
        published = await asyncio.to_thread(studio.reference_host.publish, ref)
        locations.append(published.url)
        hashes.append(ref.sha256)
    if any(location.startswith("data:") for location in locations):
        notes.append(
            "References are sent inline (data URIs) because the app has no public URL; "
            "set PUBLIC_URL for the most reliable results."
        )
    for url in url_lines(urls):
        try:
            checked = check_reference_url(url)
            parts = urlsplit(checked)
            await resolve_public_addresses(parts.hostname or "", parts.port or 443)
        except UnsafeUrlError as exc:
            raise user_error(f"Reference URL refused: {exc}") from None
        locations.append(checked)
        hashes.append("url:" + checked)
    return tuple(locations), tuple(hashes), notes


def gallery_items(progresses: Sequence[Progress]) -> GalleryItems:
    return [(str(path), f"#{p.variant} {p.model_label}") for p in progresses for path in p.files]


def status_text(
    progresses: Sequence[Progress], notes: Sequence[str] = (), now: float | None = None
) -> str:
    now = time.time() if now is None else now
    lines = list(notes)
    if any(p.offline for p in progresses):
        lines.insert(
            0, "Offline preview: images are placeholders — add a key to use the real service."
        )
    lines.extend(p.status_line(now) for p in progresses)
    return "\n".join(lines)


async def generate(
    studio: Studio,
    model: str,
    prompt: str,
    reference_images: Sequence[Any] | None = None,
    reference_urls: str | None = None,
    aspect_ratio: str | None = None,
    resolution: str | None = None,
    output_format: str | None = None,
    routing: str | None = None,
    variants: float | None = 1,
    *,
    keys: Mapping[str, str] | None = None,
    owner: str = "",
) -> AsyncIterator[tuple[GalleryItems, str, list[str]]]:
    """Submit `variants` tasks and stream (gallery, status, job ids) until all end.

    `keys` are the visitor's own keys by service id."""
    catalog = studio.catalog
    if model not in catalog.models:
        raise user_error(catalog.unknown_model_sentence(model))
    spec = catalog.model(model)
    count = reference_count(reference_images, reference_urls)
    # Layer 3 of the reference cap: API callers skip the page's trimming and validator.
    if count > spec.max_references:
        raise user_error(
            f"{spec.label} takes at most {spec.max_references} reference images ({count} given)."
        )
    n = int(variants or 1)
    if not 1 <= n <= VARIANTS_MAX:
        raise user_error(f"Variants must be 1 to {VARIANTS_MAX}.")
    urls, hashes, notes = await prepare_references(studio, reference_images, reference_urls)
    job = JobSpec(
        model=model,
        prompt=(prompt or "").strip(),
        reference_urls=urls,
        reference_hashes=hashes,
        # Settings the model does not take are dropped; missing ones take the model's default.
        settings=_fill(spec, ImageSettings(aspect_ratio, resolution, output_format, routing)),
    )
    try:
        job_ids = await studio.runner.start(job, variants=n, owner=owner, visitor_keys=keys)
    except ImageServiceError as exc:
        raise user_error(exc.user_message()) from None
    try:
        async for progresses in studio.runner.follow(job_ids):
            yield gallery_items(progresses), status_text(progresses, notes), job_ids
    except asyncio.CancelledError:
        # Stop pressed: stop watching now (the services have no cancel; ids stay in history).
        await studio.runner.stop(job_ids)
        raise


def _fill(spec: ModelSpec, wanted: ImageSettings) -> ImageSettings:
    """Missing settings take the model's defaults and untaken ones are dropped; a given value
    the model cannot take stays, so the runner refuses it with a sentence naming it."""
    filled = spec.settings_for(wanted)
    given = wanted.given()
    return ImageSettings(
        **{
            name: given.get(name, value) if spec.takes(name) else None
            for name, value in filled.as_dict().items()
        }
    )


async def reattach(
    studio: Studio, owner: str | None
) -> AsyncIterator[tuple[GalleryItems, str, list[str]]]:
    """On page load: follow the visitor's jobs still running (after a reload or a new tab)."""
    job_ids = studio.runner.active_jobs(owner)
    if not job_ids:
        return
    async for progresses in studio.runner.follow(job_ids):
        yield gallery_items(progresses), status_text(progresses), job_ids


async def stop(studio: Studio, job_ids: Sequence[str] | None) -> str:
    ids = list(job_ids or ())
    await studio.runner.stop(ids)
    progresses = [p for p in (studio.runner.progress(i) for i in ids) if p is not None]
    if not progresses:
        return "Nothing to stop."
    return status_text(progresses)
