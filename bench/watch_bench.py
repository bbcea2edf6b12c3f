"""How fast and how cheaply each poll strategy notices that a task finished.

Run: `.venv/bin/python -m bench.watch_bench [--tasks N] [--time-scale S] [--seed K]`

Everything runs in-process against `simulator` through `httpx.ASGITransport`, with the
real clients from `providers.registry.build_client` and the real `providers.watch.watch_task`
loop. Each strategy is only a different `PollSchedule`, so the loop, the clients and the
transport are the same code for all three:

1. "ours":        `providers.registry.schedule_for(spec, request, time_scale)` (the studio's);
2. "seed recipe": apixo's advice, "submit, wait 20 seconds, then poll every 3 seconds";
3. "fixed 1 s":   a read every second from submit.

Groups: nano-banana-pro at 1K, 2K and 4K, and google/gempix2 (no resolution). Task durations come
from the simulator itself: uniform within the model's expected window, drawn from a seeded RNG.

Which tasks each strategy polls: "ours" and "seed recipe" poll the very same tasks,
independently and at the same time: each task is submitted once, then two `watch_task` loops
start on it from the same moment (just after the submit returned, as the studio does). The
comparison that the target is about is therefore paired: same durations, same submit moments,
and the same machine load (other processes on this machine stall the event loop now and then;
with separate runs a stall would fall on one strategy only). "fixed 1 s" runs on fresh tasks:
a second `Simulator` with the same seed (`seed * 1000 + group index`), hence the same durations
(the benchmark checks this and says so), so that its ~10 reads per task and second do not slow
down the other two. Within a run the N tasks are submitted and watched concurrently
(`asyncio.gather`).

Per task and strategy the benchmark records
- requests: the status reads that strategy's loop sent for the task until it saw the final
  state (counted at the client; the simulator's own count of status queries must agree);
- notice delay: the moment `watch_task` handed over the terminal status (the status read has just
  returned; nothing is awaited in between) minus the moment the task finished on the service
  (`TaskRecord.final_at()`, on the same `time.monotonic` clock), divided by time_scale.
All reported times are unscaled seconds.

The simulator's result rendering is switched off (`sim.prewarm` becomes a no-op): a real service
renders on its own machines, and the benchmark never downloads an image, while rendering dozens
of 4K PNGs in this process would only add timer jitter.

Timer resolution: at time_scale S an event-loop wake-up that is 1 ms late looks like 1/S ms of
unscaled delay. Timers here wake up 0.2-2 ms late when the machine is quiet, but while other
processes load it the loop stalls for 50-400 ms now and then (measured: at 0.1 such stalls cost
1-4 s unscaled and visibly bent single rows). The default 0.25 keeps 1 ms at 0.004 s and a
100 ms stall at 0.4 s unscaled, and the run at about 80 s; the paired design above makes a stall
hit "ours" and "seed recipe" alike. A probe measures the loop's actual lateness during each run
and prints it, to compare with the delays measured.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, fields

import httpx

from providers.capabilities import ImageSettings
from providers.registry import ImageClient, build_client, schedule_for
from providers.services import CATALOG
from providers.types import GenerationRequest, TaskState, TaskStatus
from providers.watch import PollSchedule, watch_task
from simulator import Simulator, SimulatorConfig

BASE_URL = "http://simulator.test"
API_KEY = "bench-key"
PROMPT = "a lighthouse at dusk, ultra detailed"
# Give up on a task after this many unscaled seconds (the longest window ends at 60 s).
DEADLINE_SECONDS = 300.0
# The lag probe wakes up this often (unscaled seconds).
PROBE_SECONDS = 0.25


@dataclass(frozen=True)
class Group:
    name: str
    request: GenerationRequest


GROUPS = (
    Group(
        "nano-banana-pro 1K",
        GenerationRequest("nano-banana-pro", PROMPT, settings=ImageSettings(resolution="1K")),
    ),
    Group(
        "nano-banana-pro 2K",
        GenerationRequest("nano-banana-pro", PROMPT, settings=ImageSettings(resolution="2K")),
    ),
    Group(
        "nano-banana-pro 4K",
        GenerationRequest("nano-banana-pro", PROMPT, settings=ImageSettings(resolution="4K")),
    ),
    Group("google/gempix2", GenerationRequest("google/gempix2", PROMPT)),
)


def _seed_recipe(request: GenerationRequest, time_scale: float) -> PollSchedule:
    # First read at 20 s, then every 3 s; every field is set, so PollSchedule's defaults
    # do not leak into the baseline.
    return PollSchedule(
        window=(20.0, 20.0),
        first_check=20.0,
        quiet_interval=3.0,
        near_interval=3.0,
        late_interval=3.0,
        settle=0.0,
    ).scaled(time_scale)


def _fixed_1s(request: GenerationRequest, time_scale: float) -> PollSchedule:
    return PollSchedule(
        window=(1.0, 1.0),
        first_check=1.0,
        quiet_interval=1.0,
        near_interval=1.0,
        late_interval=1.0,
        settle=0.0,
    ).scaled(time_scale)


@dataclass(frozen=True)
class Strategy:
    name: str
    schedule: Callable[[GenerationRequest, float], PollSchedule]  # request, time scale


def window_of(request: GenerationRequest) -> tuple[float, float]:
    return CATALOG.model(request.model).expected_window(request.settings.resolution)


def _ours(request: GenerationRequest, time_scale: float) -> PollSchedule:
    return schedule_for(CATALOG.model(request.model), request, time_scale)


OURS = Strategy("ours", _ours)
SEED = Strategy("seed recipe", _seed_recipe)
FIXED = Strategy("fixed 1 s", _fixed_1s)
STRATEGIES = (OURS, SEED, FIXED)
# One run per tuple and group: ours and the seed recipe share their tasks (paired).
RUNS = ((OURS, SEED), (FIXED,))


@dataclass(frozen=True)
class Sample:
    requests: int
    delay: float  # unscaled seconds
    state: TaskState


@dataclass
class Run:
    samples: dict[str, list[Sample]]  # by strategy name
    durations: list[float]  # sorted, scaled: the check that all runs had the same tasks


class CountedReads:
    """A StatusSource that counts the status reads of one strategy, per task."""

    def __init__(self, client: ImageClient) -> None:
        self.provider = client.provider
        self._client = client
        self.reads: Counter[str] = Counter()

    async def fetch_status(self, task_id: str) -> TaskStatus:
        self.reads[task_id] += 1
        return await self._client.fetch_status(task_id)


def _no_prewarm(task: object) -> None:
    """Stands in for Simulator.prewarm: no result rendering during the benchmark."""


async def _probe_lag(interval: float, lags: list[float], stop: asyncio.Event) -> None:
    """Record how late the event loop wakes up from `asyncio.sleep(interval)`."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        start = loop.time()
        await asyncio.sleep(interval)
        lags.append(max(0.0, loop.time() - start - interval))


async def run_group(
    group: Group,
    index: int,
    strategies: tuple[Strategy, ...],
    n: int,
    time_scale: float,
    seed: int,
) -> Run:
    """Submit N tasks of `group`; every strategy watches every task, all at once."""
    sim = Simulator(SimulatorConfig(time_scale=time_scale, seed=seed * 1000 + index))
    sim.prewarm = _no_prewarm  # type: ignore[method-assign]
    service = CATALOG.model(group.request.model).service
    transport = httpx.ASGITransport(app=sim.app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        client = build_client(CATALOG.service(service), http, base_url=BASE_URL, api_key=API_KEY)
        sources = {s.name: CountedReads(client) for s in strategies}
        schedules = {s.name: s.schedule(group.request, time_scale) for s in strategies}

        async def watch(name: str, task_id: str, started: float) -> tuple[float, TaskState]:
            async for status in watch_task(
                sources[name],
                task_id,
                schedule=schedules[name],
                deadline=DEADLINE_SECONDS * time_scale,
                submitted_at=started,
            ):
                if status.is_terminal:
                    return time.monotonic(), status.state
            raise AssertionError("watch_task ended without a terminal state")

        async def one() -> tuple[str, list[tuple[float, TaskState]]]:
            task = await client.submit(group.request)
            started = time.monotonic()
            seen = await asyncio.gather(*(watch(s.name, task.task_id, started) for s in strategies))
            return task.task_id, seen

        try:
            results = await asyncio.gather(*(one() for _ in range(n)))
        finally:
            await sim.aclose()
    total_reads = sum(sum(source.reads.values()) for source in sources.values())
    assert total_reads == len(sim.status_queries), "client and simulator disagree on reads"
    samples: dict[str, list[Sample]] = {s.name: [] for s in strategies}
    for task_id, seen in results:
        finished = sim.tasks[task_id].final_at()
        assert finished is not None, f"task {task_id} never finishes"
        for strategy, (seen_at, state) in zip(strategies, seen, strict=True):
            delay = (seen_at - finished) / time_scale
            reads = sources[strategy.name].reads[task_id]
            samples[strategy.name].append(Sample(reads, delay, state))
    return Run(samples, sorted(task.duration for task in sim.tasks.values()))


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18]


@dataclass(frozen=True)
class Row:
    requests_median: float
    requests_mean: float
    delay_median: float
    delay_p95: float

    @classmethod
    def of(cls, samples: list[Sample]) -> Row:
        requests = [s.requests for s in samples]
        delays = [s.delay for s in samples]
        return cls(
            statistics.median(requests),
            statistics.fmean(requests),
            statistics.median(delays),
            p95(delays),
        )


def _table(results: dict[tuple[str, str], list[Sample]]) -> tuple[list[str], dict[str, Row]]:
    lines = [
        "| group | strategy | requests/task (median, mean) | notice delay median s | p95 s "
        "| requests ratio vs seed | median-delay ratio vs seed |",
        "|---|---|---|---|---|---|---|",
    ]
    overall: dict[str, Row] = {}
    for group_name in [g.name for g in GROUPS] + ["all"]:
        rows: dict[str, Row] = {}
        for strategy in STRATEGIES:
            if group_name == "all":
                pooled = [s for g in GROUPS for s in results[(g.name, strategy.name)]]
                rows[strategy.name] = overall[strategy.name] = Row.of(pooled)
            else:
                rows[strategy.name] = Row.of(results[(group_name, strategy.name)])
        base = rows[SEED.name]
        for strategy in STRATEGIES:
            row = rows[strategy.name]
            label = f"**{group_name}**" if group_name == "all" else group_name
            lines.append(
                f"| {label} | {strategy.name} "
                f"| {row.requests_median:g}, {row.requests_mean:.2f} "
                f"| {row.delay_median:.2f} | {row.delay_p95:.2f} "
                f"| {row.requests_mean / base.requests_mean:.2f} "
                f"| {row.delay_median / base.delay_median:.2f} |"
            )
    return lines, overall


async def main_async(n: int, time_scale: float, seed: int) -> None:
    defaults = PollSchedule()
    settings = ", ".join(
        f"{f.name}={getattr(defaults, f.name):g}"
        for f in fields(PollSchedule)
        if f.name != "window"
    )
    print("# Poll strategy benchmark (simulator, in-process)\n")
    print(f"- tasks per group and strategy (N): {n}")
    print(f"- time_scale: {time_scale:g} (1 ms of timer error = {0.001 / time_scale:.3f} s here)")
    print(f"- seed: {seed} (simulator seed = seed * 1000 + group index)")
    print(f"- ours = schedule_for(spec, request): PollSchedule defaults {settings}")
    print(
        "- expected windows (s): " + "; ".join(f"{g.name} {window_of(g.request)}" for g in GROUPS)
    )
    started = time.perf_counter()
    results: dict[tuple[str, str], list[Sample]] = {}
    durations: dict[str, list[list[float]]] = {}
    lags: dict[str, list[float]] = {}
    for index, group in enumerate(GROUPS):
        for strategies in RUNS:
            label = " + ".join(s.name for s in strategies)
            stop = asyncio.Event()
            lag_samples = lags.setdefault(label, [])
            probe = asyncio.create_task(_probe_lag(PROBE_SECONDS * time_scale, lag_samples, stop))
            run = await run_group(group, index, strategies, n, time_scale, seed)
            stop.set()
            await probe
            for name, samples in run.samples.items():
                results[(group.name, name)] = samples
            durations.setdefault(group.name, []).append(run.durations)
    elapsed = time.perf_counter() - started

    same = all(all(d == runs[0] for d in runs) for runs in durations.values())
    failed = sum(
        s.state is not TaskState.SUCCEEDED for samples in results.values() for s in samples
    )
    print(
        "- ours and seed recipe poll the same tasks; fixed 1 s polls fresh tasks with the same "
        f"durations: {'yes' if same else 'NO, durations differ'}"
    )
    print(f"- tasks not ending in success: {failed}")
    print(
        "- event-loop lateness per run (unscaled s, median / p95 / max): "
        + "; ".join(
            f"{name} {statistics.median(v) / time_scale:.3f} / {p95(v) / time_scale:.3f} / "
            f"{max(v) / time_scale:.3f}"
            for name, v in lags.items()
        )
    )
    print(f"- wall time: {elapsed:.1f} s\n")

    lines, overall = _table(results)
    print("\n".join(lines))
    ours, base = overall[OURS.name], overall[SEED.name]
    requests_ratio = ours.requests_mean / base.requests_mean
    median_requests_ratio = ours.requests_median / base.requests_median
    delay_ratio = ours.delay_median / base.delay_median
    met = requests_ratio <= 1.0 and delay_ratio <= 0.5
    print(
        f"\nTarget on the all row (ours vs seed recipe): requests/task (mean) <= 1.00x: "
        f"{requests_ratio:.2f}x; median notice delay <= 0.50x: {delay_ratio:.2f}x "
        f"-> {'met' if met else 'MISSED'}. (Median requests/task: {median_requests_ratio:.2f}x.)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.watch_bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--tasks", type=int, default=60, help="tasks per group and strategy")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=0.25,
        help="multiplies every duration (0.25: a 60 s task takes 15 s)",
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.tasks < 2 or args.time_scale <= 0:
        parser.error("--tasks must be >= 2 and --time-scale > 0")
    asyncio.run(main_async(args.tasks, args.time_scale, args.seed))


if __name__ == "__main__":
    main()
