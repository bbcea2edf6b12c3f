"""The Starlette routes, generated from the twins: latency, faults and auth in front of one
shared submit handler and one shared status handler; plus result files and counts."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulator.faults import Faults, HttpFault
from simulator.render import content_type
from simulator.tasks import Phase, TaskRecord
from simulator.twin import Endpoint, Submission, Twin
from simulator.wire import ValidationError, retry_after_headers

logger = logging.getLogger("simulator")

FILES = "/files/{name}"
STATS = "/_simulator/stats"

# Results stay downloadable as long as the real apixo promises (15 days).
_FILE_CACHE_CONTROL = "public, max-age=1296000, immutable"


class TaskStore(Protocol):
    """What the routes need from the simulator (kept apart so routes and core import one way)."""

    faults: Faults

    @property
    def api_keys(self) -> frozenset[str] | None: ...

    def note_submission(self, body: Any, token: str, service: str) -> None: ...

    def note_status_query(self, task_id: str, token: str, service: str) -> None: ...

    def create_task(self, twin: Twin, submission: Submission, base_url: str) -> TaskRecord: ...

    def find_task(self, service: str, task_id: str) -> TaskRecord | None: ...

    def find_file(self, name: str) -> TaskRecord | None: ...

    async def result_images(self, task: TaskRecord) -> list[str]: ...

    async def image_bytes(self, task: TaskRecord) -> bytes: ...

    def stats(self) -> dict[str, Any]: ...


# The fault ladder: each kind's HTTP status and text, the same for every twin except where the
# twin says otherwise (its 400 wording, the HTTP status of "insufficient credits").
def fault_response(twin: Twin, fault: HttpFault, endpoint: Endpoint) -> Response:
    def error(status: int, message: str, http_status: int | None = None) -> Response:
        body = twin.error_body(status, message, endpoint)
        return JSONResponse(body, status_code=http_status or status, headers=headers)

    headers = None
    if fault.kind == "unauthorized":
        return error(401, "Invalid API key")
    if fault.kind == "bad_request":
        return error(400, twin.bad_request_text)
    if fault.kind == "not_found":
        return error(404, "task not found" if endpoint == "status" else "not found")
    if fault.kind == "rate_limited":
        headers = retry_after_headers(fault)
        return error(429, "Rate limit exceeded")
    if fault.kind == "insufficient_credits":
        return error(400, "Insufficient credits", twin.credits_http_status)
    return error(500, "Internal server error")


def _error(twin: Twin, status: int, message: str, endpoint: Endpoint) -> Response:
    return JSONResponse(twin.error_body(status, message, endpoint), status_code=status)


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


class _Malformed:
    """Marks a submit body that is not JSON."""


_MALFORMED = _Malformed()


class _Routes:
    def __init__(self, store: TaskStore) -> None:
        self.store = store

    def authorized(self, token: str | None) -> bool:
        keys = self.store.api_keys
        return token is not None and (keys is None or token in keys)

    async def guarded(
        self,
        request: Request,
        twin: Twin,
        endpoint: Endpoint,
        handle: Callable[[], Awaitable[Response]],
    ) -> Response:
        """Latency, then a queued fault, then auth, then the real handler."""
        try:
            latency = self.store.faults.latency
            if latency > 0:
                await asyncio.sleep(latency)
            fault = self.store.faults.take(endpoint, twin.service)
            if fault is not None and fault.kind != "hang":
                return fault_response(twin, fault, endpoint)
            if not self.authorized(bearer_token(request)):
                response = _error(twin, 401, "Invalid API key", endpoint)
            else:
                response = await handle()
            if fault is not None:
                # The task (if any) exists now; only the answer is withheld.
                await asyncio.sleep(fault.hang_seconds)
            return response
        except Exception:
            logger.exception("simulator %s %s request failed", twin.service, endpoint)
            return _error(twin, 500, "Internal server error", endpoint)

    def submit(self, twin: Twin) -> Callable[[Request], Awaitable[Response]]:
        async def submit(request: Request) -> Response:
            raw = await request.body()
            try:
                body: Any = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                body = _MALFORMED
            self.store.note_submission(
                raw.decode("utf-8", "replace") if body is _MALFORMED else body,
                bearer_token(request) or "",
                twin.service,
            )

            async def handle() -> Response:
                if body is _MALFORMED:
                    return _error(twin, 400, "malformed JSON body", "submit")
                try:
                    submission = twin.parse_submit(body)
                except ValidationError as exc:
                    return _error(twin, 400, str(exc), "submit")
                base_url = str(request.base_url).rstrip("/")
                task = self.store.create_task(twin, submission, base_url)
                return JSONResponse(twin.ok_body(twin.submit_data(task.id)))

            return await self.guarded(request, twin, "submit", handle)

        return submit

    def status(self, twin: Twin) -> Callable[[Request], Awaitable[Response]]:
        async def status(request: Request) -> Response:
            task_id = request.query_params.get(twin.task_param, "").strip()
            self.store.note_status_query(task_id, bearer_token(request) or "", twin.service)

            async def handle() -> Response:
                if not task_id:
                    return _error(twin, 400, f"{twin.task_param} is required", "status")
                task = self.store.find_task(twin.service, task_id)
                if task is None:
                    return _error(twin, 404, "task not found", "status")
                snapshot = task.snapshot()
                images: list[str] = []
                if snapshot.phase is Phase.SUCCESS:
                    images = await self.store.result_images(task)
                return JSONResponse(twin.ok_body(twin.task_data(task, snapshot, images)))

            return await self.guarded(request, twin, "status", handle)

        return status

    async def file(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            task = self.store.find_file(name)
            if task is None or task.snapshot().phase is not Phase.SUCCESS:
                return JSONResponse({"code": 404, "message": "file not found"}, status_code=404)
            data = await self.store.image_bytes(task)
        except Exception:
            logger.exception("simulator file %s failed", name)
            return JSONResponse({"code": 500, "message": "Internal server error"}, status_code=500)
        return Response(
            data,
            media_type=content_type(task.output_format),
            headers={"Cache-Control": _FILE_CACHE_CONTROL},
        )

    async def stats(self, request: Request) -> Response:
        """Counts for tests that watch the simulator from another process (no auth)."""
        return JSONResponse(self.store.stats())


Handler = Callable[[Request, Exception], Awaitable[Response]]


def _http_error_handler(twins: Sequence[Twin]) -> Handler:
    async def http_error(request: Request, exc: Exception) -> Response:
        """Unknown paths and wrong methods answer JSON in the shape of the service asked."""
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        message = exc.detail if isinstance(exc, HTTPException) else "Internal server error"
        headers = exc.headers if isinstance(exc, HTTPException) else None
        path = request.url.path
        body: dict[str, Any] = {"code": status, "message": message}
        matching = [t for t in twins if t.error_prefix and path.startswith(t.error_prefix)]
        if matching:
            # Keep the twin's extra envelope fields (apixo's "data": null), not its codes.
            twin = max(matching, key=lambda t: len(t.error_prefix))
            extra = twin.error_body(status, message, "submit")
            body |= {k: v for k, v in extra.items() if k not in ("code", "message", "detail")}
        return JSONResponse(body, status_code=status, headers=headers)

    return http_error


def build_app(store: TaskStore, twins: Sequence[Twin]) -> Starlette:
    routes = _Routes(store)
    table = []
    for twin in twins:
        table.append(Route(twin.submit_path, routes.submit(twin), methods=["POST"]))
        table.append(Route(twin.status_path, routes.status(twin), methods=["GET"]))
    table.append(Route(FILES, routes.file, methods=["GET"]))
    table.append(Route(STATS, routes.stats, methods=["GET"]))
    return Starlette(routes=table, exception_handlers={HTTPException: _http_error_handler(twins)})
