"""One run of the scale benchmark, in a process of its own: N tasks through the app's runner.

    python -m bench.scale_run --tasks N --service-url URL --time-scale S [--callbacks]

Everything the app does for a generation happens here, with the app's own parts: `Backends`
with real clients (keys, lanes, pool) pointed at the simulator process, a `Ledger` on disk, a
`JobRunner` that records, submits, watches and keeps every result (downloaded, tagged, written).
With --callbacks the process also serves the app's callback route on loopback (uvicorn, in this
event loop) and gives the runner its address, so the simulator calls back as each task ends.

The last line of stdout is one JSON object with the measurements (see `bench.scale_bench`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench.concurrency_processes import HOST, SERVICE_KEY, free_port
from providers.capabilities import ImageSettings
from providers.services import CATALOG
from providers.settings import service_configs
from studio.backends import Backend, Backends
from studio.callbacks import CALLBACK_PATH
from studio.jobs import JobRunner, JobSpec
from studio.ledger import Ledger
from studio.lifecycle import JobState

PROBE_SECONDS = 0.05  # how often the lag probe wakes up
# The mix, in turn: Nano Banana Pro 1K, 2K and 4K (jpeg, as apixo suggests for 4K), GemPix2.
MIX = (
    JobSpec("nano-banana-pro", "a lighthouse", settings=ImageSettings(resolution="1K")),
    JobSpec("nano-banana-pro", "a lighthouse", settings=ImageSettings(resolution="2K")),
    JobSpec(
        "nano-banana-pro",
        "a lighthouse",
        settings=ImageSettings(resolution="4K", output_format="jpeg"),
    ),
    JobSpec("google/gempix2", "a red fox"),
)
LONGEST_DOCUMENTED = 60.0  # seconds: the end of the 4K window, the longest task of the mix


class ScaledBackends(Backends):
    """The app's backends, told that the keyed services run `time_scale` times the documented
    durations (as the offline preview is told of the simulator's speed)."""

    def __init__(self, *args: Any, time_scale: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.time_scale = time_scale

    def for_service(self, service: str, visitor_key: str | None = None) -> Backend:
        return replace(super().for_service(service, visitor_key), time_scale=self.time_scale)


# Where a job's time went, from its ledger events: (name, from state, to state).
PHASES = (
    ("record to submit", JobState.RECORDED, JobState.SUBMITTING),
    ("submit answered", JobState.SUBMITTING, JobState.QUEUED),
    ("run + notice", JobState.QUEUED, JobState.SAVING),
    ("download + save", JobState.SAVING, JobState.DONE),
)


def tally(
    ledger: Ledger, job_ids: list[str]
) -> tuple[Counter[str], int, dict[str, list[float]], Counter[str]]:
    """How the jobs ended, how many result files are on disk, each phase's p50/p95/max in
    seconds, and the errors of the jobs that did not end `done`."""
    rows = [ledger.job(job_id) for job_id in job_ids]
    states = Counter(str(row.state) if row else "missing" for row in rows)
    errors = Counter(
        f"{row.state}: {row.error_message}"[:120]
        for row in rows
        if row and row.state is not JobState.DONE
    )
    files = sum(1 for row in rows if row for r in row.results if r.path and Path(r.path).exists())
    spans: dict[str, list[float]] = {name: [] for name, _, _ in PHASES}
    for job_id in job_ids:
        first: dict[JobState, float] = {}
        for event in ledger.events(job_id):
            first.setdefault(event.state, event.at)
        for name, start, end in PHASES:
            if start in first and end in first:
                spans[name].append(first[end] - first[start])
    phases = {
        name: [quantile(v, 0.5), quantile(v, 0.95), max(v, default=0.0)]
        for name, v in spans.items()
    }
    return states, files, phases, errors


def load_average() -> float:
    """The machine's 1-minute load average (other work on it slows every number here)."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


async def probe(lags: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        start = loop.time()
        await asyncio.sleep(PROBE_SECONDS)
        lags.append(max(0.0, loop.time() - start - PROBE_SECONDS))


def quantile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else 0.0


async def serve_callbacks(
    runner: JobRunner, port: int
) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    async def deliver(request: Request) -> JSONResponse:
        try:
            payload = await request.json()
        except ValueError:
            payload = None
        params = request.path_params
        woken = await runner.receive_callback(params["job_id"], params["token"], payload)
        return JSONResponse({"ok": True, "woken": woken})

    app = Starlette(routes=[Route(CALLBACK_PATH, deliver, methods=["POST"])])
    config = uvicorn.Config(app, host=HOST, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for it
        await asyncio.sleep(0.01)
    return server, task


async def run(tasks: int, service_url: str, time_scale: float, callbacks: bool) -> dict[str, Any]:
    env = {
        "APIXO_API_KEY": SERVICE_KEY,
        "APIXO_BASE_URL": service_url,
        "DEFAPI_API_KEY": SERVICE_KEY,
        "DEFAPI_BASE_URL": service_url,
    }
    backends = ScaledBackends(CATALOG, service_configs(CATALOG, env), time_scale=time_scale)
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
        ledger = Ledger(
            Path(tmp) / "ledger.sqlite3", known_services=[s.id for s in CATALOG.services]
        )
        port = free_port()
        runner = JobRunner(
            backends=backends,
            ledger=ledger,
            outputs_dir=Path(tmp) / "images",
            public_url=f"http://{HOST}:{port}" if callbacks else None,
            deadline=600.0 * max(time_scale, 0.25),
        )
        server = serving = None
        if callbacks:
            server, serving = await serve_callbacks(runner, port)
        rss_before = rss_mb()
        load_before = load_average()
        lags: list[float] = []
        stop = asyncio.Event()
        prober = asyncio.create_task(probe(lags, stop))
        cpu_started, started = time.process_time(), time.perf_counter()
        try:
            started_ids = await asyncio.gather(
                *(runner.start(MIX[n % len(MIX)]) for n in range(tasks))
            )
            job_ids = [job_id for ids in started_ids for job_id in ids]
            submitted_s = time.perf_counter() - started
            # The runner has no "all ended" event; the running set is cheap to look at.
            while runner.active_jobs(None):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            wall = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
        finally:
            stop.set()
            await prober
            await runner.close()
            if server is not None and serving is not None:
                server.should_exit = True
                await serving
        states, files, phases, errors = await asyncio.to_thread(tally, ledger, job_ids)
        ledger.close()
    lanes = [backends.lanes[s.id] for s in CATALOG.services]
    result = {
        "tasks": tasks,
        "callbacks": callbacks,
        "time_scale": time_scale,
        "wall_s": wall,
        "submitted_s": submitted_s,
        "longest_task_s": LONGEST_DOCUMENTED * time_scale,
        "lag_p50_ms": quantile(lags, 0.50) * 1000,
        "lag_p99_ms": quantile(lags, 0.99) * 1000,
        "lag_max_ms": max(lags, default=0.0) * 1000,
        "rss_before_mb": rss_before,
        "rss_peak_mb": rss_mb(),
        "cpu_s": cpu,
        "cpu_ms_per_task": cpu / tasks * 1000,
        "status_per_task": sum(lane.status.passed for lane in lanes) / tasks,
        "submits": sum(lane.submits.passed for lane in lanes),
        "downloads": runner.fetcher.downloads.passed,
        "files": files,
        "done": states.get(str(JobState.DONE), 0),
        "failures": tasks - states.get(str(JobState.DONE), 0),
        "states": dict(states),
        "errors": dict(errors),
        "peak_waiting": {
            "submits": max(lane.submits.peak_waiting for lane in lanes),
            "status": max(lane.status.peak_waiting for lane in lanes),
            "downloads": runner.fetcher.downloads.peak_waiting,
            "saves": runner.keeper.lane.peak_waiting,
        },
        "lag_median_ms": statistics.median(lags) * 1000 if lags else 0.0,
        "phases_s": phases,
        "load_average": [load_before, load_average()],
    }
    await backends.aclose()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_run")
    parser.add_argument("--tasks", type=int, required=True)
    parser.add_argument("--service-url", required=True)
    parser.add_argument("--time-scale", type=float, default=0.25)
    parser.add_argument("--callbacks", action="store_true")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.tasks, args.service_url, args.time_scale, args.callbacks))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
