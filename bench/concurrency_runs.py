"""One configuration of the concurrency benchmark, start to end: its subprocesses and its rows.

`bench_config` starts the simulator (with --service process) and the app, releases each user
count in turn (the single-user case --baseline-runs times), turns the samples into one `Run` per
user count, and collects notes on failures and on error lines in the logs.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from bench.concurrency_processes import Config, log_tail, running_server, running_simulator
from bench.concurrency_report import fmt
from bench.concurrency_users import MODEL, RESOLUTION, Sample, run_users
from bench.procstats import read_status_kb
from providers.services import CATALOG

ERROR_WORDS = ("Traceback", " ERROR ", "ERROR:", "Exception", "WARNING:")


@dataclass
class Run:
    users: int
    walls: list[float]
    latencies: list[float]
    failures: int
    peak_rss_mb: float
    server_cpu: float  # median over the samples, like the wall
    service_cpu: float | None  # the separate simulator's; None when it runs in the app
    bench_cpu: float
    load: float  # 1-minute load average when the row started
    errors: list[str] = field(default_factory=list)

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)


def bench_config(
    config: Config, user_counts: list[int], time_scale: float, baseline_runs: int, service: str
) -> tuple[list[Run], float | None, list[str]]:
    """All runs of one configuration; returns (runs, VmHWM MB, notes). `service` is "process"
    (the simulator in a process of its own) or "in-app" (the app's offline preview)."""
    runs: list[Run] = []
    notes: list[str] = []
    hwm_mb: float | None = None
    task_max = CATALOG.model(MODEL).expected_window(RESOLUTION)[1] * time_scale
    with tempfile.TemporaryDirectory(prefix="concurrency-bench-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        service_url, service_proc = None, None
        if service == "process":
            print(f"\n[{config.name}] starting the simulator (logs: {workdir})", flush=True)
            service_url, service_proc = stack.enter_context(running_simulator(time_scale, workdir))
        print(f"[{config.name}] starting app.py (logs: {workdir / 'server.log'})", flush=True)
        service_pid = service_proc.pid if service_proc is not None else None
        with running_server(config, time_scale, workdir, service_url) as (url, proc, log_path):
            for users in user_counts:
                repeats = baseline_runs if users == 1 else 1
                serial = users if config.concurrency_limit == "1" else 1
                timeout = 60 + 3 * task_max * serial
                load = os.getloadavg()[0]
                samples: list[Sample] = []
                for attempt in range(repeats):
                    tag = f"{config.name} n{users} r{attempt}"
                    downloads = workdir / "downloads" / f"n{users}-r{attempt}"
                    samples.append(
                        run_users(url, proc.pid, service_pid, users, tag, downloads, timeout)
                    )
                results = [r for sample in samples for r in sample.results]
                errors = [r.error for r in results if r.error is not None]
                run = Run(
                    users=users,
                    walls=[sample.wall for sample in samples],
                    latencies=[
                        r.latency for r in results if r.error is None and r.latency is not None
                    ],
                    failures=len(errors),
                    peak_rss_mb=max(sample.peak_rss_mb for sample in samples),
                    server_cpu=statistics.median(sample.server_cpu for sample in samples),
                    service_cpu=None
                    if service_pid is None
                    else statistics.median(sample.service_cpu or 0.0 for sample in samples),
                    bench_cpu=statistics.median(sample.bench_cpu for sample in samples),
                    load=load,
                    errors=errors,
                )
                runs.append(run)
                walls = ", ".join(f"{w:.2f}" for w in run.walls)
                print(
                    f"[{config.name}] {users} users: wall {run.wall:.2f} s"
                    + (f" (median of {walls})" if repeats > 1 else "")
                    + f", failures {run.failures}, peak RSS {run.peak_rss_mb:.0f} MB, "
                    f"app CPU {run.server_cpu:.2f} s, simulator CPU {fmt(run.service_cpu)} s, "
                    f"clients CPU {run.bench_cpu:.2f} s",
                    flush=True,
                )
                if errors or proc.poll() is not None:
                    shown = "\n  ".join(sorted(set(errors))[:5])
                    notes.append(f"{config.name}, {users} users: {len(errors)} failures\n  {shown}")
                    print(f"  errors:\n  {shown}\n--- server log tail ---\n{log_tail(log_path)}")
                for name, process in (("server", proc), ("simulator", service_proc)):
                    if process is not None and process.poll() is not None:
                        code = process.returncode
                        how = f"signal {-code}, not sent by this benchmark" if code < 0 else "code"
                        raise RuntimeError(f"{name} exited mid-benchmark ({how}: {code})")
            hwm = read_status_kb(proc.pid, "VmHWM")
            hwm_mb = hwm / 1024 if hwm is not None else None
            logs = [("server", log_path)]
            if service_proc is not None:
                logs.append(("simulator", workdir / "simulator.log"))
            notes += [note for name, path in logs if (note := log_problems(config, name, path))]
    return runs, hwm_mb, notes


def log_problems(config: Config, name: str, path: Path) -> str | None:
    """A note when a process's log holds errors (a failed callback shows up here, too)."""
    lines = path.read_text(errors="replace").splitlines()
    bad = [line for line in lines if any(word in line for word in ERROR_WORDS)]
    if not bad:
        return None
    print(f"--- {name} log tail ---\n{log_tail(path)}")
    return f"{config.name}: {len(bad)} error lines in the {name} log, e.g. {bad[0]!r}"
