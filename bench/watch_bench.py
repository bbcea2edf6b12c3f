"""How fast and how cheaply each poll strategy notices that a task finished.

Run: `.venv/bin/python -m bench.watch_bench [--tasks N] [--time-scale S] [--seed K]`

Everything runs in-process against `simulator` through `httpx.ASGITransport`, with the
real clients from `providers.registry.build_client` and the real `providers.watch.watch_task`
loop. Each strategy is only a different `PollSchedule`, so the loop, the clients and the
transport are the same code for all:

1. "ours":             `schedule_for(spec, request, time_scale, run_times)` (the studio's), with
                       the run times learned from WARMUP earlier tasks of the same kind;
2. "ours, prior only": the same without run times (the documented window alone);
3. "ours, no early gaps": learned, but quiet before its window (one check at 2 s) instead of
                       the growing gaps that notice an early task within max(2 s, 30 %);
4. "seed recipe":      apixo's advice, "submit, wait 20 seconds, then poll every 3 seconds";
5. "every 3 s":        a read every 3 s from submit (the baseline for GemPix2, whose document
                       gives no timing);
6. "fixed 1 s":        a read every second from submit (documented speed only).

Groups: nano-banana-pro at 1K, 2K and 4K, and google/gempix2 (no resolution), each on a service
that runs as documented, 2x faster and 2x slower (the simulator's time scale times 0.5 or 2,
while every schedule's prior stays the documented window). Task durations come from the
simulator itself: uniform within the model's window, drawn from a seeded RNG.

Learning, as the studio does it (`studio.run_times`): WARMUP tasks of the group are submitted
together and watched with "ours, prior only"; each one's run time is what the runner records
(submit to the moment its success was seen), kept as the span the prior schedule allows (it
ended after the read before: `PollSchedule.ended_between`). Those spans are the learned
schedule's input for the measured run, whose tasks come from a simulator with another seed
(same distribution, other durations).

Pairing: strategies 1-5 poll the very same tasks, independently and at the same time: each task
is submitted once, then one `watch_task` loop per strategy starts on it from the same moment
(just after the submit returned, as the studio does): same durations, same submit moments and
the same machine load. "fixed 1 s" runs on fresh tasks with the same seed, hence the same
durations (checked and printed), so that its reads do not slow down the others.

Per task and strategy: requests = the status reads that strategy's loop sent until it saw the
final state (the simulator's own count must agree); notice delay = the moment `watch_task`
handed over the terminal status minus the moment the task finished on the service, divided by
the time scale; "early bound" = the share of tasks noticed within max(2 s, 30 % of their run
time). All reported times are unscaled seconds. The simulator's rendering is switched off (no
image is downloaded here). A probe prints the event loop's own lateness during each run.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, replace

import httpx

from bench.watch_report import Sample, print_report
from providers.capabilities import ImageSettings
from providers.registry import ImageClient, build_client, schedule_for
from providers.services import CATALOG
from providers.types import GenerationRequest, TaskState, TaskStatus
from providers.watch import Ended, PollSchedule, watch_task
from simulator import Simulator, SimulatorConfig

BASE_URL = "http://simulator.test"
API_KEY = "bench-key"
PROMPT = "a lighthouse at dusk, ultra detailed"
DEADLINE_SECONDS = 400.0  # unscaled; the slowest window ends at 120 s
PROBE_SECONDS = 0.25  # the lag probe wakes up this often (unscaled seconds)
WARMUP = 20  # tasks of a kind seen before the measured run ("after 20 tasks of a kind")


def _request(model: str, resolution: str | None = None) -> GenerationRequest:
    return GenerationRequest(model, PROMPT, settings=ImageSettings(resolution=resolution))


KINDS = (
    ("nano-banana-pro 1K", _request("nano-banana-pro", "1K")),
    ("nano-banana-pro 2K", _request("nano-banana-pro", "2K")),
    ("nano-banana-pro 4K", _request("nano-banana-pro", "4K")),
    ("google/gempix2", _request("google/gempix2")),
)
SPEEDS = (("", 1.0), (", 2x faster", 0.5), (", 2x slower", 2.0))  # label, duration factor

Learned = tuple[Ended, ...]  # when the warm-up's tasks ended (earliest, latest), scaled


@dataclass(frozen=True)
class Strategy:
    name: str
    schedule: Callable[[GenerationRequest, float, Learned], PollSchedule]


def _every(seconds: float) -> Callable[[GenerationRequest, float, Learned], PollSchedule]:
    def schedule(request: GenerationRequest, time_scale: float, learned: Learned) -> PollSchedule:
        # Every field set, so PollSchedule's defaults do not leak into the baseline.
        return PollSchedule(
            window=(seconds, seconds),
            first_check=seconds,
            quiet_interval=seconds,
            near_interval=seconds,
            late_interval=seconds,
            settle=0.0,
            early_gap=seconds,
            early_fraction=0.0,
        ).scaled(time_scale)

    return schedule


def _seed_recipe(request: GenerationRequest, time_scale: float, learned: Learned) -> PollSchedule:
    # First read at 20 s, then every 3 s.
    every_3 = _every(3.0)(request, time_scale, ())
    return replace(every_3, window=(20.0 * time_scale,) * 2, first_check=20.0 * time_scale)


def _ours(request: GenerationRequest, time_scale: float, learned: Learned) -> PollSchedule:
    return schedule_for(CATALOG.model(request.model), request, time_scale, learned)


def _prior_only(request: GenerationRequest, time_scale: float, learned: Learned) -> PollSchedule:
    return _ours(request, time_scale, ())


def _no_early_gaps(request: GenerationRequest, time_scale: float, learned: Learned) -> PollSchedule:
    ours = _ours(request, time_scale, learned)
    return replace(ours, early_gap=ours.quiet_interval)


OURS = Strategy("ours", _ours)
PRIOR = Strategy("ours, prior only", _prior_only)
NO_EARLY = Strategy("ours, no early gaps", _no_early_gaps)
SEED = Strategy("seed recipe", _seed_recipe)
EVERY_3 = Strategy("every 3 s", _every(3.0))
FIXED = Strategy("fixed 1 s", _every(1.0))
PAIRED = (OURS, PRIOR, NO_EARLY, SEED, EVERY_3)


@dataclass(frozen=True)
class Group:
    name: str
    request: GenerationRequest
    speed: float  # task durations = documented durations x speed

    @property
    def baseline(self) -> Strategy:
        return SEED if self.request.model == "nano-banana-pro" else EVERY_3


GROUPS = tuple(
    Group(name + label, request, speed) for label, speed in SPEEDS for name, request in KINDS
)


@dataclass
class Run:
    samples: dict[str, list[Sample]]  # by strategy name
    durations: list[float]  # sorted, scaled: the check that two runs had the same tasks
    run_times: tuple[float, ...]  # per task: submit to success seen, first strategy (scaled)


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


async def probe_lag(interval: float, lags: list[float], stop: asyncio.Event) -> None:
    """Record how late the event loop wakes up from `asyncio.sleep(interval)`."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        start = loop.time()
        await asyncio.sleep(interval)
        lags.append(max(0.0, loop.time() - start - interval))


async def run_group(
    group: Group,
    strategies: tuple[Strategy, ...],
    n: int,
    time_scale: float,
    sim_seed: int,
    learned: Learned = (),
) -> Run:
    """Submit N tasks of `group`; every strategy watches every task, all at once."""
    sim = Simulator(SimulatorConfig(time_scale=time_scale * group.speed, seed=sim_seed))
    sim.prewarm = _no_prewarm  # type: ignore[method-assign]
    sim.status_queries = deque()  # all of them: the simulator keeps only the latest by default
    service = CATALOG.model(group.request.model).service
    transport = httpx.ASGITransport(app=sim.app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        client = build_client(CATALOG.service(service), http, base_url=BASE_URL, api_key=API_KEY)
        sources = {s.name: CountedReads(client) for s in strategies}
        schedules = {s.name: s.schedule(group.request, time_scale, learned) for s in strategies}

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

        async def one() -> tuple[str, float, list[tuple[float, TaskState]]]:
            task = await client.submit(group.request)
            started = time.monotonic()
            seen = await asyncio.gather(*(watch(s.name, task.task_id, started) for s in strategies))
            return task.task_id, started, seen

        try:
            results = await asyncio.gather(*(one() for _ in range(n)))
        finally:
            await sim.aclose()
    total_reads = sum(sum(source.reads.values()) for source in sources.values())
    assert total_reads == len(sim.status_queries), "client and simulator disagree on reads"
    samples: dict[str, list[Sample]] = {s.name: [] for s in strategies}
    for task_id, started, seen in results:
        finished = sim.tasks[task_id].final_at()
        assert finished is not None, f"task {task_id} never finishes"
        for strategy, (seen_at, state) in zip(strategies, seen, strict=True):
            samples[strategy.name].append(
                Sample(
                    requests=sources[strategy.name].reads[task_id],
                    delay=(seen_at - finished) / time_scale,
                    state=state,
                    run=(finished - started) / time_scale,
                )
            )
    run_times = tuple(seen[0][0] - started for _, started, seen in results)
    return Run(samples, sorted(task.duration for task in sim.tasks.values()), run_times)


async def main_async(n: int, time_scale: float, seed: int) -> None:
    print("# Poll strategy benchmark (simulator, in-process)\n")
    print(f"- tasks per group (N): {n}; learned from {WARMUP} earlier tasks of each group")
    print(f"- time_scale: {time_scale:g} (1 ms of timer error = {0.001 / time_scale:.3f} s here)")
    print(f"- seed: {seed} (simulator seed = seed * 1000 + group index; warm-up + 500)")
    started = time.perf_counter()
    results: dict[tuple[str, str], list[Sample]] = {}
    same_tasks = True
    lags: dict[str, list[float]] = {}
    for index, group in enumerate(GROUPS):
        warmup = await run_group(group, (PRIOR,), WARMUP, time_scale, seed * 1000 + 500 + index)
        prior = _prior_only(group.request, time_scale, ())
        learned = tuple(prior.ended_between(seen) for seen in warmup.run_times)
        runs: list[tuple[tuple[Strategy, ...], Learned]] = [(PAIRED, learned)]
        if group.speed == 1.0:
            runs.append(((FIXED,), ()))
        durations = []
        for strategies, ended in runs:
            label = "paired" if strategies is PAIRED else "fixed 1 s"
            stop = asyncio.Event()
            probe = asyncio.create_task(
                probe_lag(PROBE_SECONDS * time_scale, lags.setdefault(label, []), stop)
            )
            run = await run_group(group, strategies, n, time_scale, seed * 1000 + index, ended)
            stop.set()
            await probe
            for name, samples in run.samples.items():
                results[(group.name, name)] = samples
            durations.append(run.durations)
        same_tasks = same_tasks and all(d == durations[0] for d in durations)
    print(
        "- the paired strategies poll the same tasks; fixed 1 s polls fresh tasks with the same "
        f"durations: {'yes' if same_tasks else 'NO, durations differ'}"
    )
    print_report(results, GROUPS, lags, time_scale, time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.watch_bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--tasks", type=int, default=60, help="tasks per group")
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
