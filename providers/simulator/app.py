"""The Starlette routes: auth, latency and queued faults in front of each service's handlers."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from providers.capabilities import Service
from providers.simulator import apixo, gempix2
from providers.simulator.faults import Endpoint, HttpFault
from providers.simulator.render import content_type
from providers.simulator.tasks import Phase
from providers.simulator.wire import ValidationError

if TYPE_CHECKING:
    from providers.simulator.core import Simulator

logger = logging.getLogger("providers.simulator")

GEMPIX2_SUBMIT = "/api/image/gen"
GEMPIX2_STATUS = "/api/task/query"
APIXO_SUBMIT = "/api/v1/generateTask/nano-banana-pro"
APIXO_STATUS = "/api/v1/statusTask/nano-banana-pro"
FILES = "/files/{name}"
STATS = "/_simulator/stats"

# Results stay downloadable as long as the real apixo promises (15 days).
_FILE_CACHE_CONTROL = "public, max-age=1296000, immutable"


@dataclass(frozen=True)
class _ErrorShapes:
    fault: Callable[[HttpFault, Endpoint], Response]
    unauthorized: Callable[[Endpoint], Response]
    server_error: Callable[[], Response]


_SHAPES: dict[Service, _ErrorShapes] = {
    Service.GEMPIX2: _ErrorShapes(
        gempix2.fault_response, gempix2.unauthorized, gempix2.server_error
    ),
    Service.NANO_BANANA_PRO: _ErrorShapes(
        apixo.fault_response, apixo.unauthorized, apixo.server_error
    ),
}


class _Malformed:
    """Marks a submit body that is not JSON."""


_MALFORMED = _Malformed()


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


class _Routes:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or " " in token:
            return False
        keys = self.sim.config.api_keys
        return keys is None or token in keys

    async def guarded(
        self,
        request: Request,
        service: Service,
        endpoint: Endpoint,
        handle: Callable[[], Awaitable[Response]],
    ) -> Response:
        """Latency, then a queued fault, then auth, then the real handler."""
        shapes = _SHAPES[service]
        try:
            latency = self.sim.faults.latency
            if latency > 0:
                await asyncio.sleep(latency)
            fault = self.sim.faults.take(endpoint, service)
            if fault is not None and fault.kind != "hang":
                return shapes.fault(fault, endpoint)
            if not self.authorized(request):
                response = shapes.unauthorized(endpoint)
            else:
                response = await handle()
            if fault is not None:
                # The task (if any) exists now; only the answer is withheld.
                await asyncio.sleep(fault.hang_seconds)
            return response
        except Exception:
            logger.exception("simulator %s %s request failed", service.value, endpoint)
            return shapes.server_error()

    async def read_submission(self, request: Request) -> Any:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            self.sim.submissions.append(raw.decode("utf-8", "replace"))
            return _MALFORMED
        self.sim.submissions.append(body)
        return body

    # -- GemPix2 -----------------------------------------------------------------------------

    async def gempix2_submit(self, request: Request) -> Response:
        body = await self.read_submission(request)

        async def handle() -> Response:
            if body is _MALFORMED:
                return gempix2.bad_request("malformed JSON body")
            try:
                parsed = gempix2.parse_submit(body)
            except ValidationError as exc:
                return gempix2.bad_request(str(exc))
            task = self.sim.create_task(
                service=Service.GEMPIX2,
                model=parsed.model,
                prompt=parsed.prompt,
                params={},
                references=list(parsed.images),
                callback_url=parsed.callback_url,
                base_url=_base_url(request),
            )
            return gempix2.submit_ok(task.id)

        return await self.guarded(request, Service.GEMPIX2, "submit", handle)

    async def gempix2_status(self, request: Request) -> Response:
        task_id = request.query_params.get("task_id", "").strip()
        self.sim.status_queries.append(task_id)

        async def handle() -> Response:
            if not task_id:
                return gempix2.bad_request("task_id is required")
            task = self.sim.find_task(Service.GEMPIX2, task_id)
            if task is None:
                return gempix2.not_found("status")
            snapshot = task.snapshot()
            images = None
            if snapshot.phase is Phase.SUCCESS:
                images = await self.sim.result_images(task)
            return gempix2.status_ok(gempix2.task_payload(task, snapshot, images))

        return await self.guarded(request, Service.GEMPIX2, "status", handle)

    # -- Nano Banana Pro ---------------------------------------------------------------------

    async def apixo_submit(self, request: Request) -> Response:
        body = await self.read_submission(request)

        async def handle() -> Response:
            if body is _MALFORMED:
                return apixo.bad_request("malformed JSON body")
            try:
                parsed = apixo.parse_submit(body)
            except ValidationError as exc:
                return apixo.bad_request(str(exc))
            task = self.sim.create_task(
                service=Service.NANO_BANANA_PRO,
                model=apixo.MODEL_ID,
                prompt=parsed.prompt,
                params={**parsed.params, "callback_url": parsed.callback_url},
                references=list(parsed.image_urls),
                # In async mode the callback_url is kept but not called: polling was asked for.
                callback_url=parsed.callback_url if parsed.request_type == "callback" else None,
                base_url=_base_url(request),
            )
            return apixo.submit_ok(task.id)

        return await self.guarded(request, Service.NANO_BANANA_PRO, "submit", handle)

    async def apixo_status(self, request: Request) -> Response:
        task_id = request.query_params.get("taskId", "").strip()
        self.sim.status_queries.append(task_id)

        async def handle() -> Response:
            if not task_id:
                return apixo.bad_request("taskId is required")
            task = self.sim.find_task(Service.NANO_BANANA_PRO, task_id)
            if task is None:
                return apixo.not_found("status")
            snapshot = task.snapshot()
            if snapshot.phase is Phase.SUCCESS:
                self.sim.prewarm(task)
            body = apixo.status_body(task, snapshot, [self.sim.result_url(task)])
            return JSONResponse(body)

        return await self.guarded(request, Service.NANO_BANANA_PRO, "status", handle)

    # -- files -------------------------------------------------------------------------------

    async def file(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            task = self.sim.find_file(name)
            if task is None or task.snapshot().phase is not Phase.SUCCESS:
                return JSONResponse({"code": 404, "message": "file not found"}, status_code=404)
            data = await self.sim.image_bytes(task)
        except Exception:
            logger.exception("simulator file %s failed", name)
            return JSONResponse({"code": 500, "message": "Internal server error"}, status_code=500)
        return Response(
            data,
            media_type=content_type(task.output_format),
            headers={"Cache-Control": _FILE_CACHE_CONTROL},
        )

    # -- introspection -----------------------------------------------------------------------

    async def stats(self, request: Request) -> Response:
        """Counts for tests that watch the simulator from another process (no auth)."""
        return JSONResponse(
            {
                "submissions": len(self.sim.submissions),
                "tasks": {task_id: task.state for task_id, task in self.sim.tasks.items()},
            }
        )


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and wrong methods answer JSON in the shape of the service asked."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = exc.detail if isinstance(exc, HTTPException) else "Internal server error"
    headers = exc.headers if isinstance(exc, HTTPException) else None
    body: dict[str, Any] = {"code": status, "message": message}
    if request.url.path.startswith("/api/v1/"):
        body["data"] = None
    return JSONResponse(body, status_code=status, headers=headers)


def build_app(sim: Simulator) -> Starlette:
    routes = _Routes(sim)
    return Starlette(
        routes=[
            Route(GEMPIX2_SUBMIT, routes.gempix2_submit, methods=["POST"]),
            Route(GEMPIX2_STATUS, routes.gempix2_status, methods=["GET"]),
            Route(APIXO_SUBMIT, routes.apixo_submit, methods=["POST"]),
            Route(APIXO_STATUS, routes.apixo_status, methods=["GET"]),
            Route(FILES, routes.file, methods=["GET"]),
            Route(STATS, routes.stats, methods=["GET"]),
        ],
        exception_handlers={HTTPException: _http_error},
    )
