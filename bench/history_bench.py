"""How fast the history page reads a ledger of 1,000 and of 100,000 jobs.

    .venv/bin/python bench/history_bench.py        (or: python -m bench.history_bench)
    options: --jobs 1000 100000 (the sizes), --runs 50

Builds each ledger in a temporary directory through the public API (varied prompts, models,
states and owners; finished jobs carry 1-4 results), then times each operation over RUNS runs
and prints the median and 95th percentile in milliseconds, per size, the ratio of the medians
(largest size / smallest: 1.0 means the operation does not grow with the history), and the
largest size's p95 against the 20 ms target. The prompt search runs twice: with the FTS5
trigram index and with the plain scan used on builds without FTS5 (the scan reads every row it
must check, so it grows with the history: it is the fallback, not the target).

Building 100,000 jobs through the public API commits about 700,000 times; with one fsync each
on a disk that takes minutes, so the ledger is built in /dev/shm when it exists and copied to
the temporary directory on disk before anything is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from providers.services import CATALOG
from studio.ledger import Ledger, NewJob
from studio.lifecycle import JobState

SIZES = (1_000, 100_000)
RUNS = 50
TARGET_MS = 20.0  # first page, search and filters: p95 at 100,000 jobs (issue 11)
SHM = Path("/dev/shm")
OWNERS = ["", "browser-a", "browser-b", "browser-c", "browser-d"]
SUBJECTS = ["fox", "lighthouse", "robot", "cat", "castle", "teapot", "dragon", "city", "forest"]
STYLES = ["watercolor", "ultra detailed", "isometric", "film photo", "pixel art", "oil painting"]
PLACES = ["at dawn", "in the snow", "on Mars", "under the sea", "in a neon alley", "at noon"]
# Outcomes weighted roughly as a real history looks: mostly done.
OUTCOMES = [JobState.DONE] * 14 + [
    JobState.FAILED,
    JobState.DOWNLOAD_FAILED,
    JobState.TIMED_OUT,
    JobState.RUNNING,
    JobState.STOPPED,
]


def build(path: Path, rng: random.Random, jobs: int) -> None:
    now = [1_700_000_000.0]
    ledger = Ledger(path, clock=lambda: now[0])
    models = list(CATALOG.models.values())
    try:
        for n in range(jobs):
            now[0] += rng.uniform(5, 600)
            spec = rng.choice(models)
            prompt = f"{rng.choice(STYLES)} {rng.choice(SUBJECTS)} {rng.choice(PLACES)} #{n}"
            job = ledger.record_job(
                NewJob(
                    owner=rng.choice(OWNERS),
                    service=spec.service,
                    model=spec.id,
                    prompt=prompt,
                    params={"aspect_ratio": spec.defaults.aspect_ratio, "variant": n % 4},
                    reference_hashes=[f"{rng.getrandbits(256):064x}"] * rng.randint(0, 3),
                )
            )
            ledger.mark_submitting(job.job_id)
            ledger.set_task_id(job.job_id, f"task_{n:05}", submitted_at=now[0])
            outcome = rng.choice(OUTCOMES)
            if outcome in (JobState.DONE, JobState.DOWNLOAD_FAILED):
                ledger.record_state(job.job_id, JobState.SAVING, "success", credits=0.5)
                for idx in range(rng.randint(1, 4)):
                    url = f"https://cdn.example/{job.job_id}/{idx}.png"
                    if outcome is JobState.DONE:
                        ledger.record_result(
                            job.job_id,
                            idx,
                            path=f"data/images/{job.job_id}-{idx}.png",
                            sha256=f"{rng.getrandbits(256):064x}",
                            source_url=url,
                            expires_at=now[0] + 15 * 86_400,
                        )
                    else:
                        ledger.record_download_failure(
                            job.job_id, idx, source_url=url, expires_at=None, message="HTTP 503"
                        )
            ledger.record_state(job.job_id, outcome, "")
    finally:
        ledger.close()


def measure(operation: Callable[[], object], runs: int = RUNS) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        operation()
        samples.append((time.perf_counter() - started) * 1_000)
    p95 = statistics.quantiles(samples, n=20, method="inclusive")[18]
    return statistics.median(samples), p95


def measure_history_tab(
    ledger: Ledger, tmp: Path, runs: int
) -> list[tuple[str, tuple[float, float]]]:
    """The history tab's own handler: the ledger query plus building thumbnails and rows."""
    from components.handlers import Studio
    from components.history_handlers import load_history
    from providers.settings import service_configs
    from studio.backends import Backends
    from studio.jobs import JobRunner
    from studio.reference_host import ReferenceHost

    backends = Backends(CATALOG, service_configs(CATALOG, {}))
    runner = JobRunner(backends=backends, ledger=ledger, outputs_dir=tmp)
    studio = Studio(runner=runner, reference_host=ReferenceHost(tmp / "refs", None))
    loop = asyncio.new_event_loop()
    try:

        def tab(search: str = "") -> object:
            return loop.run_until_complete(load_history(studio, "", search, "all", "all"))

        return [
            ("history tab handler (60 jobs)", measure(tab, runs)),
            ("history tab handler, search", measure(lambda: tab("lighthouse"), runs)),
        ]
    finally:
        loop.run_until_complete(backends.aclose())
        loop.close()


Rows = list[tuple[str, tuple[float, float]]]


def built_ledger(tmp: Path, jobs: int) -> tuple[Path, float]:
    """The ledger of `jobs` jobs on disk in `tmp`, and how long building it took (s)."""
    rng = random.Random(20_240_601)
    path = tmp / f"jobs-{jobs}.sqlite3"
    started = time.perf_counter()
    if SHM.is_dir():
        with tempfile.TemporaryDirectory(dir=SHM) as fast:
            build(Path(fast) / path.name, rng, jobs)
            shutil.copyfile(Path(fast) / path.name, path)  # closed: the WAL is checkpointed
    else:
        build(path, rng, jobs)
    return path, time.perf_counter() - started


def measure_size(path: Path, tmp: Path, runs: int) -> tuple[Rows, str]:
    opened: list[Ledger] = []
    open_stats = measure(lambda: opened.append(Ledger(path)), runs)
    for ledger in opened:
        ledger.close()
    with Ledger(path) as ledger, Ledger(path, full_text_search=False) as scanning:
        rows: Rows = [
            ("open (Ledger() on the file)", open_stats),
            ("history, first page (everyone)", measure(lambda: ledger.history(None), runs)),
            (
                "history, first page (one owner)",
                measure(lambda: ledger.history("browser-a"), runs),
            ),
            (
                "history, page 4 (one owner)",
                measure(lambda: ledger.history("browser-a", offset=3 * 50), runs),
            ),
            (
                "search 'lighthouse' (FTS5)",
                measure(lambda: ledger.history(None, search="lighthouse"), runs),
            ),
            (
                "search 'lighthouse', one owner",
                measure(lambda: ledger.history("browser-a", search="lighthouse"), runs),
            ),
            (
                "search 'lighthouse' + model + state",
                measure(
                    lambda: ledger.history(
                        None, search="lighthouse", model="nano-banana-pro", state="done"
                    ),
                    runs,
                ),
            ),
            (
                "search 'fox lighthouse' (no match)",
                measure(lambda: ledger.history(None, search="fox lighthouse"), runs),
            ),
            (
                "search 'lighthouse' (scan)",
                measure(lambda: scanning.history(None, search="lighthouse"), runs),
            ),
            (
                "filter model + state",
                measure(lambda: ledger.history(None, model="nano-banana-pro", state="done"), runs),
            ),
            (
                "filter state 'failed', one owner",
                measure(lambda: ledger.history("browser-a", state="failed"), runs),
            ),
            (
                "filter, no match",
                measure(lambda: ledger.history(None, model="no-such-model"), runs),
            ),
        ]
        rows += measure_history_tab(ledger, tmp, runs)
        fts = "FTS5 trigram" if ledger.full_text_search else "scan (no FTS5)"
    return rows, fts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.history_bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--jobs", type=int, nargs="+", default=list(SIZES), help="ledger sizes")
    parser.add_argument("--runs", type=int, default=RUNS)
    args = parser.parse_args(argv)
    sizes = sorted(set(args.jobs))
    results: dict[int, Rows] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for jobs in sizes:
            path, built_s = built_ledger(tmp, jobs)
            results[jobs], fts = measure_size(path, tmp, args.runs)
            size_mb = path.stat().st_size / 1e6
            print(f"{jobs:,} jobs: built in {built_s:.1f} s, {size_mb:.1f} MB, search: {fts}")
    small, large = sizes[0], sizes[-1]
    print(f"\n{args.runs} runs of each operation; times in ms\n")
    header = "| operation | " + " | ".join(f"{n:,} median | {n:,} p95" for n in sizes)
    print(header + f" | median {large:,} / {small:,} | p95 / {TARGET_MS:g} ms |")
    print("|---|" + "---:|---:|" * len(sizes) + "---:|---:|")
    for index, (name, _) in enumerate(results[small]):
        cells = []
        for jobs in sizes:
            median, p95 = results[jobs][index][1]
            cells.append(f"{median:.2f} | {p95:.2f}")
        ratio = results[large][index][1][0] / results[small][index][1][0]
        share = results[large][index][1][1] / TARGET_MS
        print(f"| {name} | " + " | ".join(cells) + f" | {ratio:.2f} | {share:.0%} |")


if __name__ == "__main__":
    main()
