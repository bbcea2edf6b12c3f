"""A local stand-in for the image APIs: the other side of the wire, never imported by clients.

One Starlette app serves every twin's documented endpoints (`simulator/services/`, one module
per service, registered in `simulator.services.TWINS`) with their bodies, states, error shapes
and Bearer auth, plus the rendered results. With the two services of this studio:

    POST /api/image/gen                          GemPix2 submit
    GET  /api/task/query?task_id=...             GemPix2 query
    POST /api/v1/generateTask/nano-banana-pro    Nano Banana Pro submit
    GET  /api/v1/statusTask/nano-banana-pro?taskId=...
    GET  /files/{name}                           result images (no auth, like a CDN URL)
    GET  /_simulator/stats                       {"submissions": <submit POSTs received>,
                                                 "tasks": {task_id: state}} (no auth; lets a
                                                 test count POSTs from another process)

The routes are generated from the twins; `sim.submissions` keeps the latest 1,000 submit
bodies (long strings such as data URIs shortened; `sim.submission_count` counts all),
`sim.requests` the latest (endpoint, service, token fingerprint) triples, and `sim.tasks` the
latest 10,000 tasks, each with its references shortened once read (`simulator.retention`), so
memory stays flat however long it runs.

References: `data:` URIs are decoded without any network; http(s) links go through the fetch
function the simulator is given (`fetch_reference`; inside the app, the app's guarded fetcher,
see `simulator.references`), else a plain client that follows no redirect.

Use it in-process through httpx.ASGITransport (no lifespan events needed) or standalone with
`python -m simulator --port 8900`.

Timing: each task lasts a duration drawn (seeded) from the model's expected window in
providers.capabilities, multiplied by `SimulatorConfig.time_scale`. States follow from the clock
when asked: apixo is pending for the first 15 % then processing; GemPix2 is pending for 10 %,
submitted until 20 %, then in_progress. Moderation and reference failures come early
(1.5 s x time_scale after submission, or once the references were read).

Decisions where the seeds are silent:
- References may be http(s) URLs or `data:` URIs on both services; each must decode with
  Pillow and be at most 10 MB, else the task fails (apixo INVALID_IMAGE_URL; GemPix2 status
  "failed" with "Cannot access provided image URL: ...").
- apixo calls back only when request_type is "callback"; GemPix2 whenever callback_url is set.
  Callbacks carry no signature. GemPix2 posts the CallbackPayload, apixo its status body.
- GemPix2 bills "0.500000" credits on success and reports "0.000000" otherwise.
- Task ids are random even with a seed (the seed drives durations only), so ids never repeat
  across restarts.

Prompt tags (anywhere in the prompt, removed from the rendered text; the first outcome wins):
    [sim:content_violation]  fails early: CONTENT_VIOLATION / "Content does not meet ..."
    [sim:invalid_image_url]  fails early as if a reference could not be fetched
    [sim:fail]               fails at the end of its duration: INTERNAL_ERROR
    [sim:never_finish]       stays pending/processing forever
    [sim:data_uri]           GemPix2 returns the image as a data:image/png;base64 URI

Faults (`sim.faults`, mutable while running):
    faults.latency = 0.5                      real seconds added before every API response
    faults.push(endpoint, kind, *, retry_after=None, hang_seconds=30.0, service=None, times=1)
        endpoint: "submit" | "status"; service: "gempix2" | "nano_banana_pro" | None (either).
        One queued fault is consumed per matching request, in order. Kinds:
        unauthorized          401 in the service's shape
        bad_request           400
        not_found             404
        rate_limited          429, with Retry-After (whole seconds) only if retry_after given
        server_error          500 {"code": 500, "message": "Internal server error"[, "data": null]}
        insufficient_credits  apixo: HTTP 200 {"code": 400, "message": "Insufficient credits"};
                              GemPix2: HTTP 400 {"code": 1, "message": "failed",
                              "detail": "Insufficient credits"}
        hang                  submit only: the task is created, the answer comes after
                              hang_seconds (real seconds)
    faults.next_task_outcome  deque of outcomes for the next tasks ("success",
                              "content_violation", "invalid_image_url", "fail", "never_finish");
                              faults.push_outcome(outcome, times=1) appends with a check.
    faults.clear()            drops everything queued and resets latency.
"""

from simulator.config import SimulatorConfig
from simulator.core import Simulator
from simulator.faults import Faults, HttpFault
from simulator.tasks import Outcome, TaskRecord

__all__ = ["Faults", "HttpFault", "Outcome", "Simulator", "SimulatorConfig", "TaskRecord"]
