"""The simulator object: task store, background work (references, renders, callbacks)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import random
import secrets
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any

import httpx
from starlette.applications import Starlette

from providers.capabilities import ModelSpec
from simulator.callbacks import post_callback
from simulator.config import SimulatorConfig
from simulator.faults import Faults, parse_prompt
from simulator.references import (
    FetchReference,
    ReferenceFetchError,
    client_fetch,
    load_references,
)
from simulator.render import (
    RenderCache,
    RenderRequest,
    content_type,
    file_extension,
    render_image,
)
from simulator.retention import KEPT_TASKS, Retention, compact
from simulator.routes import build_app
from simulator.services import TWINS
from simulator.tasks import EARLY_FAILURE_SECONDS, Outcome, Phase, TaskRecord
from simulator.twin import Submission, Twin

logger = logging.getLogger("simulator")

# Background waits re-read the clock at least this often, so an injected clock that jumps
# ahead is noticed quickly.
_CLOCK_POLL_SECONDS = 0.2
# Callbacks being delivered at once. Without a bound, thousands of tasks ending together queue
# their POSTs in httpx's pool, whose bookkeeping then costs the simulator more CPU than all the
# rest of its work (bench/scale_bench.py: 2,000 tasks, 165 s of CPU, submits timing out).
_CALLBACKS_IN_FLIGHT = 32
_HTTP_TIMEOUT_SECONDS = 10.0
# Submit bodies and requests kept for inspection: enough for any test, flat in a long run.
_KEPT_REQUESTS = 1000


def token_fingerprint(token: str) -> str:
    """A short hash of a Bearer token: lets a test tell keys apart without keeping them."""
    return hashlib.sha256(token.encode()).hexdigest()[:12] if token else ""


class Simulator:
    """Every twin's API in one ASGI app (`self.app`), with inspectable state and faults.

    `submissions` holds the latest submit bodies (a bounded window; `submission_count` counts
    them all), `requests` the latest (kind, service, token fingerprint) triples.

    Nothing starts until the first request: the app needs no lifespan events, so it works
    behind httpx.ASGITransport as well as under uvicorn. Call `aclose()` to stop background
    work and close the HTTP clients the simulator created itself.
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        twins: Sequence[Twin] = TWINS,
        fetch_client: httpx.AsyncClient | None = None,
        fetch_reference: FetchReference | None = None,
        max_tasks: int = KEPT_TASKS,
        callback_client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] | None = None,
        wall_clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config or SimulatorConfig()
        self.faults = Faults()
        self.twins = tuple(twins)
        self._models: dict[str, ModelSpec] = {m: s for t in self.twins for m, s in t.models.items()}
        self.tasks: dict[str, TaskRecord] = {}
        self.submissions: deque[Any] = deque(maxlen=_KEPT_REQUESTS)
        self.submission_count = 0
        self.status_queries: deque[str] = deque(maxlen=_KEPT_REQUESTS)
        self.requests: deque[tuple[str, str, str]] = deque(maxlen=_KEPT_REQUESTS)
        self._clock = clock or time.monotonic
        self._wall_clock = wall_clock or time.time
        self._rng = random.Random(self.config.seed)
        self._fetch_client = fetch_client
        # How http(s) references are fetched (see simulator.references): the app injects its
        # guarded fetcher; otherwise a plain client that follows no redirect.
        self._fetch_reference = fetch_reference
        self._callback_client = callback_client
        self._owned_clients: list[httpx.AsyncClient] = []
        self._files: dict[str, str] = {}
        self._retention = Retention(self.tasks, self._files, max_tasks=max_tasks)
        self._cache = RenderCache()
        self._rendering: dict[str, asyncio.Task[bytes]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._callback_slots = asyncio.Semaphore(_CALLBACKS_IN_FLIGHT)
        self.app: Starlette = build_app(self, self.twins)

    # -- what the routes report ----------------------------------------------------------------

    @property
    def api_keys(self) -> frozenset[str] | None:
        return self.config.api_keys

    def note_submission(self, body: Any, token: str, service: str) -> None:
        self.submissions.append(compact(body))  # data URIs of megabytes are kept shortened
        self.submission_count += 1
        self.requests.append(("submit", service, token_fingerprint(token)))

    def note_status_query(self, task_id: str, token: str, service: str) -> None:
        self.status_queries.append(task_id)
        self.requests.append(("status", service, token_fingerprint(token)))

    def stats(self) -> dict[str, Any]:
        return {
            "submissions": self.submission_count,
            "tasks": {task_id: task.state for task_id, task in self.tasks.items()},
        }

    # -- tasks -------------------------------------------------------------------------------

    def create_task(self, twin: Twin, submission: Submission, base_url: str) -> TaskRecord:
        """Register a task and start its background work; must run inside the event loop."""
        prompt, params = submission.prompt, submission.params
        tags = parse_prompt(prompt)
        # A prompt tag wins over the queue and leaves the queued outcome for the next task.
        outcome = Outcome(tags.outcome or self.faults.take_outcome() or Outcome.SUCCESS)
        low, high = self._models[submission.model].expected_window(params.get("resolution"))
        scale = self.config.time_scale
        now = self._clock()
        extension = file_extension(str(params.get("output_format") or "png"))
        task = TaskRecord(
            id=twin.new_task_id(),
            service=twin.service,
            phases=twin.phases,
            model=submission.model,
            prompt=prompt,
            text=tags.text,
            params=dict(params),
            references=list(submission.references),
            callback_url=submission.callback_url,
            created=now,
            created_wall=self._wall_clock(),
            duration=self._rng.uniform(low, high) * scale,
            early_failure_delay=EARLY_FAILURE_SECONDS * scale,
            outcome=outcome,
            data_uri=twin.can_return_data_uri and (tags.data_uri or self.config.gempix2_data_uri),
            base_url=base_url.rstrip("/"),
            file_name=f"{secrets.token_urlsafe(18)}.{extension}",
            clock=self._clock,
        )
        self.tasks[task.id] = task
        self._files[task.file_name] = task.id
        self._retention.task_added()
        if task.references:
            self._spawn(self._load_references(task))
        else:
            task.refs_done_at = now
            task.refs_done.set()
        if task.callback_url is not None:
            self._spawn(self._run_callback(twin, task))
        return task

    def find_task(self, service: str, task_id: str) -> TaskRecord | None:
        task = self.tasks.get(task_id)
        return task if task is not None and task.service == service else None

    def find_file(self, name: str) -> TaskRecord | None:
        task_id = self._files.get(name)
        return self.tasks.get(task_id) if task_id is not None else None

    # -- results -----------------------------------------------------------------------------

    def result_url(self, task: TaskRecord) -> str:
        base = self.config.public_url or task.base_url
        return f"{base}/files/{task.file_name}"

    async def result_images(self, task: TaskRecord) -> list[str]:
        """The result as the status answer carries it: a file URL or (if asked) a data URI."""
        if task.data_uri:
            data = await self.image_bytes(task)
            encoded = base64.b64encode(data).decode("ascii")
            return [f"data:{content_type(task.output_format)};base64,{encoded}"]
        self.prewarm(task)
        return [self.result_url(task)]

    def prewarm(self, task: TaskRecord) -> None:
        """Start rendering so the client's download right after the status answer is quick."""
        key = self._render_key(task)
        if key not in self._cache and key not in self._rendering:
            self._spawn(self.image_bytes(task))

    def _render_key(self, task: TaskRecord) -> str:
        """The task's own image, or with `reuse_renders` the one drawn for its settings."""
        if not self.config.reuse_renders or task.references:
            return task.id
        settings = (task.params.get("resolution"), task.params.get("aspect_ratio"))
        return "|".join(map(str, (task.model, *settings, task.output_format)))

    async def image_bytes(self, task: TaskRecord) -> bytes:
        key = self._render_key(task)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        job = self._rendering.get(key)
        if job is None:
            job = self._spawn(self._render(task, key))
            self._rendering[key] = job
        # Shielded: a client hanging up must not cancel a render other requests wait for.
        return await asyncio.shield(job)

    async def _render(self, task: TaskRecord, key: str) -> bytes:
        spec = self._models[task.model]
        aspect_ratio = task.params.get("aspect_ratio")
        resolution = task.params.get("resolution")
        request = RenderRequest(
            text=task.text,
            model=task.model,
            resolution=resolution or "1K",
            size=spec.pixel_size(aspect_ratio, resolution),
            output_format=task.output_format,
            references=tuple(task.reference_images),
        )
        try:
            data = await asyncio.to_thread(render_image, request)
            self._cache.put(key, data)
            return data
        finally:
            self._rendering.pop(key, None)

    # -- background work ---------------------------------------------------------------------

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        job = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(job)
        job.add_done_callback(self._background_done)
        return job

    def _background_done(self, job: asyncio.Task[Any]) -> None:
        self._background.discard(job)
        if not job.cancelled() and job.exception() is not None:
            logger.error("simulator background job failed", exc_info=job.exception())

    def _reference_fetch(self) -> FetchReference:
        if self._fetch_reference is not None:
            return self._fetch_reference
        if self._fetch_client is None:
            self._fetch_client = httpx.AsyncClient(timeout=_HTTP_TIMEOUT_SECONDS)
            self._owned_clients.append(self._fetch_client)
        return client_fetch(self._fetch_client)

    def _poster(self) -> httpx.AsyncClient:
        if self._callback_client is None:
            self._callback_client = httpx.AsyncClient(timeout=_HTTP_TIMEOUT_SECONDS)
            self._owned_clients.append(self._callback_client)
        return self._callback_client

    async def _load_references(self, task: TaskRecord) -> None:
        try:
            task.reference_images = await load_references(task.references, self._reference_fetch())
        except ReferenceFetchError as exc:
            task.refs_error_url = exc.url
            logger.info("task %s: reference unusable: %s", task.id, exc)
        finally:
            self._retention.references_read(task)
            task.refs_done_at = self._clock()
            task.refs_done.set()

    async def _run_callback(self, twin: Twin, task: TaskRecord) -> None:
        final_at = task.final_at()
        if final_at is None:
            await task.refs_done.wait()
            final_at = task.final_at()
            if final_at is None:
                return  # never finishes, so nothing to announce
        while True:
            remaining = final_at - self._clock()
            if remaining <= 0:
                break
            await asyncio.sleep(min(remaining, _CLOCK_POLL_SECONDS))
        snapshot = task.snapshot()
        images = await self.result_images(task) if snapshot.phase is Phase.SUCCESS else []
        body = twin.callback_body(twin.task_data(task, snapshot, images))
        async with self._callback_slots:
            await post_callback(
                self._poster(),
                task,
                body,
                attempts=self.config.callback_attempts,
                backoff=max(0.01, self.config.time_scale),
            )

    # -- lifecycle ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        jobs = list(self._background)
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        for client in self._owned_clients:
            await client.aclose()
        self._owned_clients.clear()

    async def __aenter__(self) -> Simulator:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
