"""How fast the history page reads a ledger of 1,000 jobs, against a 1-second budget.

    .venv/bin/python bench/history_bench.py        (or: python -m bench.history_bench)

Builds a ledger in a temporary directory through the public API (varied prompts, models,
states and owners; finished jobs carry 1-4 results), then times each operation over RUNS runs
and prints the median and 95th percentile in milliseconds. "p95 / budget" is the p95 as a share
of one second, the most a user should wait for the history tab. The prompt search runs twice:
with the FTS5 trigram index and with the plain scan used on builds without FTS5.
"""

from __future__ import annotations

import asyncio
import os
import random
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

JOBS = 1_000
RUNS = 50
BUDGET_MS = 1_000.0
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


def build(path: Path, rng: random.Random) -> None:
    now = [1_700_000_000.0]
    ledger = Ledger(path, clock=lambda: now[0])
    models = list(CATALOG.models.values())
    try:
        for n in range(JOBS):
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


def measure(operation: Callable[[], object]) -> tuple[float, float]:
    samples = []
    for _ in range(RUNS):
        started = time.perf_counter()
        operation()
        samples.append((time.perf_counter() - started) * 1_000)
    p95 = statistics.quantiles(samples, n=20, method="inclusive")[18]
    return statistics.median(samples), p95


def measure_history_tab(ledger: Ledger, tmp: Path) -> list[tuple[str, tuple[float, float]]]:
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
            ("history tab handler (60 jobs)", measure(tab)),
            ("history tab handler, search", measure(lambda: tab("lighthouse"))),
        ]
    finally:
        loop.run_until_complete(backends.aclose())
        loop.close()


def main() -> None:
    rng = random.Random(20_240_601)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "jobs.sqlite3"
        started = time.perf_counter()
        build(path, rng)
        built_s = time.perf_counter() - started

        opened: list[Ledger] = []

        def open_ledger() -> None:
            opened.append(Ledger(path))

        open_stats = measure(open_ledger)
        for ledger in opened:
            ledger.close()

        with Ledger(path) as ledger, Ledger(path, full_text_search=False) as scanning:
            rows = [
                ("open (Ledger() on the file)", open_stats),
                ("history, first page (everyone)", measure(lambda: ledger.history(None))),
                ("history, first page (one owner)", measure(lambda: ledger.history("browser-a"))),
                (
                    "search 'lighthouse' (FTS5)",
                    measure(lambda: ledger.history(None, search="lighthouse")),
                ),
                (
                    "search 'lighthouse' (scan)",
                    measure(lambda: scanning.history(None, search="lighthouse")),
                ),
                (
                    "filter model + state",
                    measure(lambda: ledger.history(None, model="nano-banana-pro", state="done")),
                ),
            ]
            rows += measure_history_tab(ledger, Path(tmp))
            fts = "FTS5 trigram" if ledger.full_text_search else "scan (no FTS5)"
            first_page = ledger.history(None)

        print(f"{JOBS} jobs (built in {built_s:.1f} s), {RUNS} runs each, default search: {fts}")
        print(
            f"first page: {len(first_page)} jobs, {sum(len(j.results) for j in first_page)} results"
        )
        print()
        print(f"{'operation':<34}{'median ms':>11}{'p95 ms':>10}{'p95 / 1 s budget':>19}")
        for name, (median, p95) in rows:
            print(f"{name:<34}{median:>11.2f}{p95:>10.2f}{p95 / BUDGET_MS:>19.2%}")


if __name__ == "__main__":
    main()
