"""Thousands of tasks in flight in one process: the app's runner against the simulator.

    .venv/bin/python -m bench.scale_bench [--tasks 1000 2000 5000] [--time-scale 0.25]
                                          [--modes callbacks polling]

For each number of tasks and each mode, a fresh simulator process (`python -m simulator`,
loopback, one drawing per model and settings reused for every task so that its drawing does
not dominate) and a fresh app process (`python -m bench.scale_run`): the app's own `Backends`,
`Ledger` and `JobRunner` start N tasks at once (Nano Banana Pro 1K, 2K, 4K jpeg and GemPix2 in
turn), watch them and download, tag and save every result. "callbacks": the app serves its
callback route and the simulator calls back as each task ends; "polling": no public address,
so only the poll schedule notices the ends.

The simulator runs `--time-scale` times the documented durations (0.25: the longest task, a
4K one, lasts 15 s), and the app is told so, as the offline preview is: its schedules shrink by
the same factor, so it reads statuses 4x as often as it would at real timing (a harsher load
per task than a real service would see).

Printed per run: wall / longest task (the longest documented duration of the mix, scaled),
event-loop lag of the app (p50 / p99 / max of a 50 ms sleep's lateness), the app's peak RSS,
its CPU per task (all its threads), status requests per task (counted at its gates), failures
(tasks not ending `done`), and the deepest queue on each gate. Each run is bounded in time
(`RUN_TIMEOUT`); a run that overruns is reported as such.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.concurrency_processes import (
    HOST,
    PROJECT_DIR,
    SERVICE_KEY,
    free_port,
    log_tail,
    running_process,
)
from bench.procstats import RssSampler, process_cpu_seconds

RUN_TIMEOUT = 600.0  # seconds for one app process, however many tasks
SIMULATOR_SEED = 11


def run_one(tasks: int, callbacks: bool, time_scale: float, workdir: Path) -> dict[str, Any]:
    port = free_port()
    url = f"http://{HOST}:{port}"
    argv = [
        *(sys.executable, "-m", "simulator", "--host", HOST, "--port", str(port)),
        *("--time-scale", str(time_scale), "--api-key", SERVICE_KEY, "--log-level", "warning"),
        *("--seed", str(SIMULATOR_SEED), "--reuse-renders"),
    ]
    env = {"PYTHONUNBUFFERED": "1", "NO_PROXY": HOST, "no_proxy": HOST}
    sim_log = workdir / f"simulator-{tasks}-{callbacks}.log"
    with running_process(
        argv, {**_environ(), **env}, url + "/_simulator/stats", sim_log
    ) as simulator:
        sim_cpu = process_cpu_seconds(simulator.pid)
        app = [sys.executable, "-m", "bench.scale_run", "--tasks", str(tasks)]
        app += ["--service-url", url, "--time-scale", str(time_scale)]
        if callbacks:
            app.append("--callbacks")
        with subprocess.Popen(
            app,
            cwd=PROJECT_DIR,
            env={**_environ(), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as proc:
            with RssSampler(proc.pid) as sampler:
                try:
                    out, err = proc.communicate(timeout=RUN_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    out, err = proc.communicate()
                    return {"tasks": tasks, "callbacks": callbacks, "error": "timed out"}
        sim_cpu = process_cpu_seconds(simulator.pid) - sim_cpu
    if proc.returncode != 0 or not out.strip():
        tail = "\n".join(err.splitlines()[-20:])
        return {"tasks": tasks, "callbacks": callbacks, "error": f"exit {proc.returncode}: {tail}"}
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["rss_sampled_mb"] = sampler.peak_kb / 1024
    result["simulator_cpu_s"] = sim_cpu
    if "Traceback" in log_tail(sim_log):
        result["simulator_log"] = log_tail(sim_log)
    return result


def _environ() -> dict[str, str]:
    drop = ("DEFAPI_API_KEY", "APIXO_API_KEY", "PUBLIC_URL", "HTTP_PROXY", "HTTPS_PROXY")
    return {k: v for k, v in os.environ.items() if k.upper() not in drop}


def print_table(results: list[dict[str, Any]]) -> None:
    print(
        "| tasks | mode | wall s | wall / longest task | lag p50 / p99 / max ms | peak RSS MB "
        "| app CPU ms/task | status requests/task | failures | deepest wait: submits, "
        "status, saves | load before, after |"
    )
    print("|---:|---|---:|---:|---|---:|---:|---:|---:|---|---|")
    for r in results:
        mode = "callbacks" if r["callbacks"] else "polling"
        if "error" in r:
            print(f"| {r['tasks']:,} | {mode} | {r['error'][:60]} ||||||||")
            continue
        waits = r["peak_waiting"]
        print(
            f"| {r['tasks']:,} | {mode} | {r['wall_s']:.1f} "
            f"| {r['wall_s'] / r['longest_task_s']:.2f} "
            f"| {r['lag_p50_ms']:.0f} / {r['lag_p99_ms']:.0f} / {r['lag_max_ms']:.0f} "
            f"| {r['rss_peak_mb']:.0f} | {r['cpu_ms_per_task']:.1f} "
            f"| {r['status_per_task']:.1f} | {r['failures']} "
            f"| {waits['submits']}, {waits['status']}, {waits['saves']} "
            f"| {r['load_average'][0]:.1f}, {r['load_average'][1]:.1f} |"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale_bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--tasks", type=int, nargs="+", default=[1000, 2000, 5000])
    parser.add_argument("--time-scale", type=float, default=0.25)
    parser.add_argument(
        "--modes", nargs="+", choices=["callbacks", "polling"], default=["callbacks", "polling"]
    )
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="scale-bench-logs-") as tmp:
        for tasks in args.tasks:
            for mode in args.modes:
                result = run_one(tasks, mode == "callbacks", args.time_scale, Path(tmp))
                results.append(result)
                print(json.dumps(result), file=sys.stderr, flush=True)
    print(f"\ntime scale {args.time_scale:g}; longest task of the mix: 60 s x time scale\n")
    print_table(results)
    print("\nwhere the time went, per job (s, p50 / p95 / max), from its ledger events:\n")
    for r in results:
        if "error" not in r:
            mode = "callbacks" if r["callbacks"] else "polling"
            phases = "; ".join(
                f"{name} {p50:.1f} / {p95:.1f} / {top:.1f}"
                for name, (p50, p95, top) in r["phases_s"].items()
            )
            print(f"- {r['tasks']:,} {mode}: {phases}")


if __name__ == "__main__":
    main()
