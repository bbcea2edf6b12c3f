"""How long N simultaneous users wait for one image each: our queue settings vs Gradio's default.

Run: `.venv/bin/python -m bench.concurrency_bench [--users 1,10,50] [--time-scale 0.25]
          [--max-default-users 10] [--baseline-runs 3] [--configs ours,default]
          [--service process|in-app]`

Where the image service runs (--service):

- "process" (the default): the simulator is its own process (`python -m simulator`
  on a free port), as a real service is its own machine. The app gets `APIXO_BASE_URL` pointing
  at it and a key, so it talks to it with its real client over HTTP, and `PUBLIC_URL` set to
  its own address, so the simulator's callbacks wake each watcher the moment a task finishes
  (with a key the app polls on the service's real timing, which a time-scaled task outruns).
- "in-app": no key, so the app uses its built-in offline preview: the simulator inside the
  app's own process, drawing every placeholder on the app's CPU.

Two configurations of the real app (`python app.py` as a subprocess, on 127.0.0.1 only):

1. "ours":           CONCURRENCY_LIMIT unset, so `/generate` runs with no concurrency limit;
2. "gradio default": CONCURRENCY_LIMIT=1, Gradio's default of one running event for all users.

Each configuration gets a fresh server (free port, fresh DATA_DIR in a temporary directory,
SIMULATOR_TIME_SCALE=--time-scale; a 1K Nano Banana Pro task lasts 20-30 s x scale). For each N
in --users, N threads each hold their own `gradio_client.Client` made beforehand; a barrier
releases them together and each generates ONE image (nano-banana-pro, 1K, 1 variant, its own
prompt) through the `/generate` API. Measured:

- wall s: from the release to the last result;
- each user's latency: from the release to that user's result (median and p95 reported);
- failures: a call that raised, timed out, or did not return exactly one image file that exists
  and starts with a PNG/JPEG signature;
- server peak RSS: the app process's VmRSS read from /proc/<pid>/status every 50 ms during the
  run (VmHWM, the peak since start, is printed per configuration at the end).

Below the table, a second one gives the CPU seconds the app's process, the simulator's process
(with --service process) and this benchmark's own process (the N clients) used between the
release and the last result, and the 1-minute load average when the row started. A time scale
below 1 shrinks the waiting but not the CPU work of drawing, checking and saving each image:
when their sum comes near (CPUs x wall), the run measures the machine, not the queue.

Clients are made with `httpx_kwargs={"timeout": 60}`: gradio_client's default 5 s timeout on
`POST /queue/join` fails a user whose join is merely slow (a browser has no such limit), so a
slow join shows up in that user's latency instead. They also pass `ssl_verify=False` (plain
HTTP to 127.0.0.1, nothing to verify): otherwise gradio_client builds a fresh SSL context from
the CA bundle for each request it makes, ~25 ms of CPU each, which on a small machine is CPU
taken from the server being measured.

"wall / single-user wall" divides by the same configuration's single-user wall. Task durations
are random (uniform within the model's window, unseeded in the app), so one single-user run may
draw anything from the short to the long end of the window; the single-user case therefore runs
--baseline-runs times and the row shows the median wall (latencies pooled over the runs). Even
with perfect concurrency, N users finish when the longest of N draws does: the printed "ideal"
ratio is E[max of N draws] / mean draw.

The default configuration at 50 users would take ~50 tasks back to back, so it only runs user
counts up to --max-default-users (default 10); the output says which counts were skipped.
The server subprocess is always terminated, and its stdout/stderr go to `server.log` in the
temporary directory; the log's tail is printed when a run has failures or the server misbehaves.

The code: this module is the command line and the summary; `concurrency_runs` runs one
configuration, `concurrency_users` is the load driver, `concurrency_processes` starts the app
and the simulator, `procstats` reads memory and CPU from /proc, `concurrency_report` prints
the tables.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.concurrency_processes import CONFIGS
from bench.concurrency_report import cpu_table, fmt, ideal_ratio, table
from bench.concurrency_runs import Run, bench_config
from bench.concurrency_users import MODEL, RESOLUTION
from providers.services import CATALOG

GOAL_RATIO = 1.5
SERVICE_PLACES = {"process": "in its own process", "in-app": "inside the app"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--users", default="1,10,50", help="comma-separated user counts")
    parser.add_argument("--time-scale", type=float, default=0.25, help="SIMULATOR_TIME_SCALE")
    parser.add_argument(
        "--max-default-users",
        type=int,
        default=10,
        help="largest user count run for the 'gradio default' config (it runs one at a time)",
    )
    parser.add_argument(
        "--baseline-runs", type=int, default=3, help="single-user runs (median wall reported)"
    )
    parser.add_argument(
        "--configs",
        default="ours,default",
        help="which configurations to run: ours, default, or both (comma-separated)",
    )
    parser.add_argument(
        "--service",
        choices=("process", "in-app"),
        default="process",
        help="the simulator in its own process (like a real service) or inside the app",
    )
    args = parser.parse_args(argv)
    user_counts = sorted({int(u) for u in args.users.split(",") if u.strip()})
    if 1 not in user_counts:
        user_counts.insert(0, 1)  # the baseline every ratio divides by
    wanted = {c.strip() for c in args.configs.split(",") if c.strip()}
    configs = [c for c in CONFIGS if ("default" if c.concurrency_limit else "ours") in wanted]
    if not configs:
        parser.error("--configs takes ours and/or default")

    cpus = os.cpu_count() or 1
    started = time.monotonic()
    rows: list[tuple[str, Run, float | None]] = []
    hwms: dict[str, float | None] = {}
    notes: list[str] = []
    skipped: list[int] = []
    for config in configs:
        counts = user_counts
        if config.concurrency_limit == "1":
            counts = [n for n in user_counts if n <= args.max_default_users]
            skipped = [n for n in user_counts if n > args.max_default_users]
        runs, hwms[config.name], config_notes = bench_config(
            config, counts, args.time_scale, args.baseline_runs, args.service
        )
        notes += config_notes
        single = next(r.wall for r in runs if r.users == 1)
        rows += [(config.name, run, run.wall / single) for run in runs]

    low, high = CATALOG.model(MODEL).expected_window(RESOLUTION)
    print(
        f"\n## Concurrency: {MODEL} {RESOLUTION}, 1 image per user, "
        f"SIMULATOR_TIME_SCALE={args.time_scale:g} "
        f"(a task lasts {low * args.time_scale:g}-{high * args.time_scale:g} s), "
        f"simulator {SERVICE_PLACES[args.service]}, {cpus} CPUs\n"
    )
    print(table(rows))
    print()
    print(
        f"- single-user wall = median of {args.baseline_runs} single-user runs (latencies "
        "pooled); p95 is nearest-rank over the users of the row."
    )
    print(
        "- server peak RSS = max of VmRSS sampled every 50 ms during the row's runs; VmHWM at "
        "the end: " + ", ".join(f"{name} {fmt(mb, 0)} MB" for name, mb in hwms.items()) + "."
    )
    print(
        "- ideal ratio with perfect concurrency (longest of N random task durations / mean): "
        + ", ".join(f"{n} users {ideal_ratio(n):.2f}" for n in user_counts if n > 1)
        + "."
    )
    if skipped and any(c.concurrency_limit == "1" for c in configs):
        print(
            f"- 'gradio default' skipped {', '.join(map(str, skipped))} users (> "
            f"--max-default-users {args.max_default_users}): one task at a time, it would take "
            f"~{max(skipped)} x {(low + high) / 2 * args.time_scale:g} s."
        )
    print("\nCPU during the timed window (release to last result):\n")
    print(cpu_table(rows, cpus))
    print()
    verdict = "not run"
    ours_rows = [(run, ratio) for name, run, ratio in rows if name == "ours"]
    if ours_rows:
        top_run, top_ratio = max(ours_rows, key=lambda row: row[0].users)
        met = top_ratio is not None and top_ratio <= GOAL_RATIO and not top_run.failures
        verdict = "MET" if met else "NOT MET"
        print(
            f"- goal (ours, {top_run.users} users within {GOAL_RATIO}x single-user wall, "
            f"no failures): {verdict} ({fmt(top_ratio)}x, {top_run.failures} failures)."
        )
    for note in notes:
        print(f"- problem: {note}")
    print(f"- total benchmark time {time.monotonic() - started:.0f} s.")
    return 0 if verdict in ("MET", "not run") else 1


if __name__ == "__main__":
    sys.exit(main())
