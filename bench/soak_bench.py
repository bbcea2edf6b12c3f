"""Soak: many offline-preview generations with references and odd prompts; memory and latency.

    python -m bench.soak_bench [--count 1000] [--workers 4] [--time-limit 900]

Everything runs in this one process, the way the app runs it, minus the page: the job runner,
the built-in simulator (time-scaled), the placeholder renderer, reference preparation
(`studio.references.prepare_reference`, sent inline as data URIs as without PUBLIC_URL), the
ledger and the result files, in a temporary folder. Nothing leaves loopback: the simulator is
in-process and every reference is a data URI.

1. Idle: a "normal visitor" makes `--normal` plain generations one after another (Nano Banana
   Pro 1K, a short prompt, no references); their wall times are the baseline.
2. Soak: `--workers` visitors make `--count` generations between them, each with one to ten
   references (one upload prepared for it, from JPEG photos of 1 to 12 MP and PNG screenshots;
   the rest drawn from a pool prepared at the start; duplicates dropped) and
   an odd prompt (a 1,200-character word without a space, 4,000 characters, emoji and
   combining marks, right-to-left text, control characters, the simulator's failure tags),
   while the normal visitor keeps generating as in step 1.

Reported: RSS after the first 100 soak generations and at the end (the goal: within 50 MB),
the normal visitor's median and p95 wall time idle and under the soak (the goal: p95 within
1.5x of idle), and how the soak generations ended. Bounded in count and in time: at
`--time-limit` seconds the soak stops where it is and reports what it has.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import logging
import os
import random
import statistics
import tempfile
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from bench.procstats import read_status_kb
from providers.capabilities import ImageSettings
from providers.catalog import MAX_PROMPT_CHARS
from providers.services import CATALOG
from providers.settings import service_configs
from studio.backends import Backends
from studio.jobs import JobRunner, JobSpec
from studio.ledger import Ledger
from studio.lifecycle import JobState
from studio.references import PreparedReference, prepare_reference

NBP_1K = ImageSettings(aspect_ratio="1:1", resolution="1K", output_format="png")
NORMAL_PROMPT = "a lighthouse at dusk, ultra detailed"


def rss_mb() -> float:
    return (read_status_kb(os.getpid(), "VmRSS") or 0) / 1024


def heap_mb() -> float | None:
    """Live Python objects (not Pillow's pixel buffers), when tracemalloc runs."""
    return tracemalloc.get_traced_memory()[0] / 2**20 if tracemalloc.is_tracing() else None


def odd_prompts(rng: random.Random) -> list[str]:
    """Prompts a hostile or careless visitor sends, each within the 4,000-character limit."""
    word = "".join(
        rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789") for _ in range(1200)
    )
    return [
        word,
        ("lorem ipsum dolor sit amet " * 200)[:MAX_PROMPT_CHARS],
        "🦊🌅🏰" * 300,
        "Z\u0351\u0352\u0353a\u0354\u0355l\u0356\u0357g\u0358o\u0359 " * 120,
        "منارة عند الغسق " * 100,
        "tab\tnew\nline\rreturn\x00nul\x1bescape " * 50,
        "a fox [sim:content_violation]",
        "a fox [sim:fail]",
        "   padded prompt   ",
        "x",
    ]


def upload_bytes(rng: random.Random) -> list[tuple[str, bytes]]:
    """A pool of uploads: noisy JPEG photos (1 to 12 MP) and PNG screenshots."""
    uploads = []
    for index, size in enumerate([(1200, 900), (2400, 1700), (4000, 3000), (900, 1200)]):
        small = Image.frombytes("RGB", (64, 48), rng.randbytes(64 * 48 * 3))
        photo = small.resize(size, Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        photo.save(buffer, "JPEG", quality=88)
        uploads.append((f"photo-{index}.jpg", buffer.getvalue()))
    for index, size in enumerate([(1440, 900), (390, 844)]):
        shot = Image.new("RGB", size, (240, 240, 245))
        shot.paste((30, 90, 200), (20, 20, size[0] // 2, size[1] // 3))
        buffer = io.BytesIO()
        shot.save(buffer, "PNG")
        uploads.append((f"screen-{index}.png", buffer.getvalue()))
    return uploads


@dataclass
class Run:
    normal_idle: list[float] = field(default_factory=list)
    normal_soak: list[float] = field(default_factory=list)
    endings: Counter[str] = field(default_factory=Counter)
    soak_done: int = 0
    rss_after_100: float | None = None
    heap_after_100: float | None = None  # MB of live Python objects (with --python-heap)
    heap_end: float | None = None
    rss_start: float = 0.0
    rss_end: float = 0.0
    rss_peak: float = 0.0
    soak_seconds: float = 0.0
    stopped_early: bool = False


async def generate(runner: JobRunner, ledger: Ledger, spec: JobSpec) -> JobState:
    job_ids = await runner.start(spec)
    async for _ in runner.follow(job_ids):
        pass
    row = await asyncio.to_thread(ledger.job, job_ids[0])
    return row.state if row is not None else JobState.FAILED


async def normal_generation(runner: JobRunner, ledger: Ledger) -> float:
    started = time.perf_counter()
    state = await generate(
        runner, ledger, JobSpec("nano-banana-pro", NORMAL_PROMPT, settings=NBP_1K)
    )
    if state is not JobState.DONE:
        raise RuntimeError(f"the normal visitor's generation ended {state}")
    return time.perf_counter() - started


async def soak_generation(
    runner: JobRunner,
    ledger: Ledger,
    rng: random.Random,
    prompts: list[str],
    uploads: list[tuple[str, bytes]],
    pool: list[PreparedReference],
) -> str:
    """One visitor's generation: one fresh upload prepared now, plus up to nine references
    from the pool prepared at the start (re-preparing the same bytes would measure nothing
    new), duplicates dropped as the page drops them."""
    name, data = rng.choice(uploads)
    fresh = await asyncio.to_thread(prepare_reference, data, name)
    chosen = [fresh, *rng.choices(pool, k=rng.randint(0, 9))]
    unique = list({ref.sha256: ref for ref in chosen}.values())
    model = rng.choice(["nano-banana-pro", "google/gempix2"])
    limit = CATALOG.model(model).max_references
    urls = tuple(ref.as_data_uri() for ref in unique[:limit])
    settings = NBP_1K if model == "nano-banana-pro" else ImageSettings()
    spec = JobSpec(model, rng.choice(prompts), reference_urls=urls, settings=settings)
    return str(await generate(runner, ledger, spec))


async def soak(args: argparse.Namespace, folder: Path) -> Run:
    rng = random.Random(args.seed)
    prompts, uploads = odd_prompts(rng), upload_bytes(rng)
    pool = [prepare_reference(data, name) for name, data in uploads]
    backends = Backends(CATALOG, service_configs(CATALOG, {}), simulator_time_scale=args.time_scale)
    ledger = Ledger(folder / "ledger.sqlite3")
    runner = JobRunner(
        backends=backends,
        ledger=ledger,
        outputs_dir=folder / "outputs",
        deadline=60.0,
        keep_ended=args.keep_ended,
    )
    run = Run()
    try:
        for _ in range(args.normal):
            run.normal_idle.append(await normal_generation(runner, ledger))
        gc.collect()
        run.rss_start = rss_mb()
        remaining = args.count
        started = time.perf_counter()
        stop_at = started + args.time_limit

        async def worker(seed: int) -> None:
            nonlocal remaining
            local = random.Random(seed)
            while remaining > 0 and time.perf_counter() < stop_at:
                remaining -= 1
                ending = await soak_generation(runner, ledger, local, prompts, uploads, pool)
                run.endings[ending] += 1
                run.soak_done += 1
                run.rss_peak = max(run.rss_peak, rss_mb())
                if run.soak_done == 100:
                    gc.collect()
                    run.rss_after_100 = rss_mb()
                    run.heap_after_100 = heap_mb()

        async def normal_visitor() -> None:
            while remaining > 0 and time.perf_counter() < stop_at:
                run.normal_soak.append(await normal_generation(runner, ledger))

        await asyncio.gather(
            normal_visitor(), *(worker(args.seed + i) for i in range(args.workers))
        )
        run.soak_seconds = time.perf_counter() - started
        run.stopped_early = remaining > 0
        gc.collect()
        run.rss_end = rss_mb()
        run.heap_end = heap_mb()
    finally:
        await runner.close()
        await backends.aclose()
        ledger.close()
    return run


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return (
        ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        if ordered
        else float("nan")
    )


def report(run: Run, args: argparse.Namespace) -> str:
    idle_p95, soak_p95 = p95(run.normal_idle), p95(run.normal_soak)
    after_100 = run.rss_after_100 if run.rss_after_100 is not None else float("nan")
    lines = [
        f"soak: {run.soak_done} generations by {args.workers} visitors in {run.soak_seconds:.0f} s"
        + (" (stopped at the time limit)" if run.stopped_early else "")
        + f", time scale {args.time_scale}",
        "endings: " + ", ".join(f"{state} {count}" for state, count in sorted(run.endings.items())),
        "",
        "| measure | value |",
        "|---|---:|",
        f"| RSS before the soak MB | {run.rss_start:.0f} |",
        f"| RSS after the first 100 MB | {after_100:.0f} |",
        f"| RSS at the end MB | {run.rss_end:.0f} |",
        f"| end minus after-100 MB (goal: at most 50) | {run.rss_end - after_100:+.0f} |",
        f"| peak RSS MB | {run.rss_peak:.0f} |",
        *(
            [
                f"| live Python objects after 100 / at the end MB | "
                f"{run.heap_after_100 or float('nan'):.0f} / {run.heap_end:.0f} |"
            ]
            if run.heap_end is not None
            else []
        ),
        f"| normal visitor idle: runs, median s, p95 s | {len(run.normal_idle)}, "
        f"{statistics.median(run.normal_idle):.2f}, {idle_p95:.2f} |",
        f"| normal visitor under the soak: runs, median s, p95 s | {len(run.normal_soak)}, "
        f"{statistics.median(run.normal_soak) if run.normal_soak else float('nan'):.2f}, "
        f"{soak_p95:.2f} |",
        f"| p95 under the soak / p95 idle (goal: at most 1.5) | {soak_p95 / idle_p95:.2f} |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="soak generations (at most)")
    parser.add_argument("--workers", type=int, default=4, help="visitors soaking at once")
    parser.add_argument("--normal", type=int, default=20, help="idle runs of the normal visitor")
    parser.add_argument("--time-scale", type=float, default=0.02, help="simulator speed-up")
    parser.add_argument("--time-limit", type=float, default=900.0, help="seconds, at most")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--keep-ended",
        type=int,
        default=256,
        help="the runner's just-ended window (the app's default: 256 jobs)",
    )
    parser.add_argument(
        "--python-heap",
        action="store_true",
        help="also trace live Python objects (slower), to tell growth from allocator reuse",
    )
    args = parser.parse_args()
    if args.python_heap:
        tracemalloc.start()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="soak-") as folder:
        run = asyncio.run(soak(args, Path(folder)))
    print(report(run, args))


if __name__ == "__main__":
    main()
