"""Event handlers: plain async functions on domain values; `gr.Error` only at this edge."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gradio as gr

from components.cards import pixel_size_words
from components.controls import VARIANTS_MAX, reshape, settings_visibility
from providers.capabilities import ImageSettings, ModelSpec
from providers.catalog import MAX_PROMPT_CHARS, Catalog
from providers.errors import ImageServiceError
from studio.experiment_runner import ExperimentRunner
from studio.experiment_store import ExperimentStore
from studio.jobs import JobRunner, JobSpec
from studio.netguard import UnsafeUrlError, resolve_public_addresses
from studio.progress import Progress
from studio.reference_host import ReferenceHost, check_reference_url
from studio.reference_store import URL_PREFIX, ReferenceStore
from studio.references import BadReferenceError, deduplicate, prepare_reference
from studio.spending import PriceTable
from studio.visitors import Visitor, VisitorPolicy

GalleryItems = list[tuple[str, str]]


@dataclass
class Studio:
    """What the handlers need; built once in app.py."""

    runner: JobRunner
    reference_host: ReferenceHost
    multi_user: bool = False
    # Prepared references by hash, for recall, re-run and compare (beside the outputs).
    reference_store: ReferenceStore = None  # type: ignore[assignment]
    # Who a caller is for the limits on the owner's keys (components.callers), and the
    # credits shown as an estimate for services that report none.
    visitors: VisitorPolicy = field(default_factory=VisitorPolicy)
    prices: PriceTable = field(default_factory=PriceTable)
    # Prompt experiments: grids of ordinary jobs, their plans kept beside the outputs.
    experiments: ExperimentRunner = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        data = self.runner.outputs_dir.parent
        if self.reference_store is None:
            self.reference_store = ReferenceStore(data / "kept-references")
        if self.experiments is None:
            self.experiments = ExperimentRunner(
                self.runner,
                ExperimentStore(data / "experiments"),
                self.reference_store,
                self.reference_host,
            )

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
    set_aside: Sequence[str] | None,
) -> tuple[Any, ...]:
    """Reshape the form for `model`. References beyond its cap are set aside, not dropped:
    they come back (in their order) when a model that takes them is chosen."""
    spec = catalog.model(model)
    paths = [*file_paths(files), *(set_aside or ())]
    kept, aside = paths[: spec.max_references], paths[spec.max_references :]
    current = ImageSettings(aspect, resolution, output_format, routing)
    return (
        *reshape(spec, current),
        kept,
        gr.update(value=kept, visible=bool(kept)),
        settings_visibility(spec),
        aside,
        set_aside_words(spec, aside),
        pixel_size_words(spec, spec.settings_for(current)),
    )


def set_aside_words(spec: ModelSpec, aside: Sequence[str]) -> str:
    if not aside:
        return ""
    count = len(aside)
    return (
        f"{count} reference{'s' if count != 1 else ''} set aside: {spec.label} takes "
        f"{spec.max_references}. {'They come' if count != 1 else 'It comes'} back when you "
        "choose a model that takes more."
    )


async def trim_references(catalog: Catalog, model: str, files: Sequence[Any] | None) -> list[str]:
    """On upload: refuse, by name, a file that is not an image; keep the first
    `max_references`, warning about the rest."""
    paths = []
    for path in file_paths(files):
        problem = await asyncio.to_thread(_upload_problem, path)
        if problem:
            gr.Warning(problem)
        else:
            paths.append(path)
    spec = catalog.model(model)
    cap = spec.max_references
    if len(paths) > cap:
        dropped = ", ".join(Path(p).name for p in paths[cap:])
        gr.Warning(f"{spec.label} takes at most {cap} references; removed {dropped}.")
    return paths[:cap]


def _upload_problem(path: str) -> str | None:
    """Why an uploaded file cannot be a reference (None if it can): the same check Generate
    makes, run now so a wrong file is refused where it was dropped."""
    name = Path(path).name
    try:
        prepare_reference(Path(path).read_bytes(), name)
    except BadReferenceError as exc:
        return str(exc)
    except OSError:
        return f"Could not read {name}; upload it again."
    return None


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
        gr.validate(bool((prompt or "").strip()), "Write a prompt first.")
        if len(prompt or "") <= MAX_PROMPT_CHARS
        else gr.validate(
            False,
            f"The prompt is {len(prompt):,} characters long; the limit is "
            f"{MAX_PROMPT_CHARS:,} characters.",
        ),
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
        await asyncio.to_thread(studio.reference_store.keep, ref)
        published = await asyncio.to_thread(studio.reference_host.publish, ref)
        locations.append(published.url)
        hashes.append(ref.sha256)
    if any(location.startswith("data:") for location in locations):
        notes.append(
            "References are sent inline (data URIs) because the app has no public URL; "
            "set PUBLIC_URL for the most reliable results."
        )
    for url in url_lines(urls):
        checked = await checked_reference_url(url)
        locations.append(checked)
        hashes.append(URL_PREFIX + checked)
    return tuple(locations), tuple(hashes), notes


async def checked_reference_url(url: str) -> str:
    """A pasted reference link, refused with a sentence unless it leads to a public host."""
    try:
        checked = check_reference_url(url)
        parts = urlsplit(checked)
        await resolve_public_addresses(parts.hostname or "", parts.port or 443)
    except UnsafeUrlError as exc:
        raise user_error(f"Reference URL refused: {exc}") from None
    return checked


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


async def start_generation(
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
    parent: str | None = None,
    visitor: Visitor | None = None,
) -> tuple[list[str], list[str]]:
    """Check, prepare and start `variants` tasks; returns (job ids, notes for the status).

    `keys` are the visitor's own keys by service id; `parent` the job whose result this edits;
    `visitor` who asks, for the limits on the owner's keys (see components.callers)."""
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
    try:
        n = int(variants or 1)
    except (TypeError, ValueError):
        n = 0
    if not 1 <= n <= VARIANTS_MAX:
        raise user_error(f"Variants must be 1 to {VARIANTS_MAX}.")
    settings = _fill(spec, ImageSettings(aspect_ratio, resolution, output_format, routing))
    problems = catalog.request_problems(
        model, prompt=(prompt or "").strip(), reference_count=count, settings=settings
    )
    if problems:  # before any reference is prepared or published
        raise user_error(" ".join(problems))
    service = catalog.service_of(model).id
    on_owner_key = studio.runner.backends.uses_owner_key(service, (keys or {}).get(service))
    try:  # a quota or budget already spent: refused before any work goes into references
        await studio.runner.admission.precheck(visitor, n, owner_key=on_owner_key)
    except ImageServiceError as exc:
        raise user_error(exc.user_message()) from None
    urls, hashes, notes = await prepare_references(studio, reference_images, reference_urls)
    job = JobSpec(
        model=model,
        prompt=(prompt or "").strip(),
        reference_urls=urls,
        reference_hashes=hashes,
        # Settings the model does not take are dropped; missing ones take the model's default.
        settings=settings,
        parent=parent or None,
    )
    try:
        job_ids = await studio.runner.start(
            job, variants=n, owner=owner, visitor_keys=keys, visitor=visitor
        )
    except ImageServiceError as exc:
        raise user_error(exc.user_message()) from None
    return job_ids, notes


async def generate(
    studio: Studio,
    *form: Any,
    keys: Mapping[str, str] | None = None,
    owner: str = "",
    visitor: Visitor | None = None,
) -> AsyncIterator[tuple[GalleryItems, str, list[str]]]:
    """The public `/generate`: start, then stream (gallery, status, job ids) until all end.
    The first update carries the job ids, so a caller whose stream drops can find its jobs."""
    # `form`: start_generation's model, prompt, references, settings and variants, in order.
    job_ids, notes = await start_generation(studio, *form, keys=keys, owner=owner, visitor=visitor)
    # The ids first, so a caller whose stream drops can still find its jobs.
    notes = [f"Job ids: {', '.join(job_ids)}.", *notes]
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
