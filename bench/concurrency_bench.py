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
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

# Offline, no telemetry: set before gradio_client (and huggingface_hub) are imported.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_PROXY", "localhost,127.0.0.1")

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gradio_client import Client

from providers.services import CATALOG

PROJECT_DIR = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
MODEL = "nano-banana-pro"
RESOLUTION = "1K"
GOAL_RATIO = 1.5
SAMPLE_SECONDS = 0.05
STARTUP_TIMEOUT = 90.0
LOG_TAIL_LINES = 40
IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")
SUBJECTS = ["lighthouse", "fox", "teapot", "castle", "robot", "forest", "harbor", "comet"]


@dataclass(frozen=True)
class Config:
    name: str
    concurrency_limit: str | None  # the CONCURRENCY_LIMIT value; None = unset


CONFIGS = (Config("ours", None), Config("gradio default", "1"))
SERVICE_KEY = "bench-key"  # the separate simulator accepts only this key
ERROR_WORDS = ("Traceback", " ERROR ", "ERROR:", "Exception", "WARNING:")
SERVICE_PLACES = {"process": "in its own process", "in-app": "inside the app"}


@dataclass
class UserResult:
    latency: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class Sample:
    """One release of N users."""

    wall: float
    results: list[UserResult]
    peak_rss_mb: float
    server_cpu: float
    service_cpu: float | None
    bench_cpu: float


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


# ---- the server ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def server_env(
    config: Config, port: int, data_dir: Path, time_scale: float, service_url: str | None
) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DEFAPI_API_KEY", "APIXO_API_KEY", "CONCURRENCY_LIMIT", "PUBLIC_URL")
        and not k.startswith("GRADIO_")
    }
    env.update(
        GRADIO_SERVER_NAME=HOST,
        GRADIO_SERVER_PORT=str(port),
        DATA_DIR=str(data_dir),
        SIMULATOR_TIME_SCALE=str(time_scale),
        GRADIO_ANALYTICS_ENABLED="False",
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        NO_PROXY="localhost,127.0.0.1",
        no_proxy="localhost,127.0.0.1",
        GRADIO_TEMP_DIR=str(data_dir.parent / "gradio-cache"),
        PYTHONUNBUFFERED="1",
    )
    if service_url is not None:  # Nano Banana Pro on the separate simulator, with callbacks
        env.update(
            APIXO_BASE_URL=service_url,
            APIXO_API_KEY=SERVICE_KEY,
            PUBLIC_URL=f"http://{HOST}:{port}",
        )
    if config.concurrency_limit is not None:
        env["CONCURRENCY_LIMIT"] = config.concurrency_limit
    return env


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text[-lines:])


def wait_until_up(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{proc.args} exited with code {proc.returncode} before answering:\n"
                + log_tail(log_path)
            )
        try:
            with opener.open(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{proc.args} did not answer 200 on {url} in {STARTUP_TIMEOUT:.0f} s")


@contextmanager
def running_process(
    argv: list[str], env: dict[str, str], ready_url: str, log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Start `argv` in the project folder, wait until `ready_url` answers 200, always stop it."""
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            argv,
            cwd=PROJECT_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_up(ready_url, proc, log_path)
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=15)


@contextmanager
def running_server(
    config: Config, time_scale: float, workdir: Path, service_url: str | None
) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    """`python app.py`; on the separate simulator at `service_url`, or offline when None."""
    port = free_port()
    url = f"http://{HOST}:{port}/"
    log_path = workdir / "server.log"
    env = server_env(config, port, workdir / "data", time_scale, service_url)
    with running_process([sys.executable, "app.py"], env, url, log_path) as proc:
        yield url, proc, log_path


@contextmanager
def running_simulator(
    time_scale: float, workdir: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`python -m simulator` on a free port, accepting only SERVICE_KEY."""
    port = free_port()
    url = f"http://{HOST}:{port}"
    argv = [
        *(sys.executable, "-m", "simulator", "--host", HOST, "--port", str(port)),
        *("--time-scale", str(time_scale), "--api-key", SERVICE_KEY, "--log-level", "warning"),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_PROXY": HOST, "no_proxy": HOST}
    with running_process(argv, env, url + "/_simulator/stats", workdir / "simulator.log") as proc:
        yield url, proc


# ---- memory ----------------------------------------------------------------------------------


def read_status_kb(pid: int, field_name: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields_after_name = stat.read().rsplit(")", 1)[1].split()
        return (int(fields_after_name[11]) + int(fields_after_name[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


class RssSampler:
    """Reads VmRSS of one process every SAMPLE_SECONDS in a thread while in its `with` block."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while True:
            rss = read_status_kb(self.pid, "VmRSS")
            if rss is not None:
                self.peak_kb = max(self.peak_kb, rss)
            if self._stop.wait(SAMPLE_SECONDS):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return self.peak_kb / 1024


# ---- users -----------------------------------------------------------------------------------


def check_result(result: object) -> str | None:
    """None when the result holds exactly one existing image file, else what is wrong."""
    if not isinstance(result, (list, tuple)) or not result:
        return f"unexpected result {result!r:.200}"
    gallery = result[0]
    if not isinstance(gallery, list) or len(gallery) != 1:
        count = len(gallery) if isinstance(gallery, list) else "no"
        status = result[1] if len(result) > 1 else ""
        return f"{count} images, expected 1; status: {status!r:.300}"
    item = gallery[0]
    path = item.get("image") if isinstance(item, dict) else item
    if not isinstance(path, str) or not Path(path).is_file():
        return f"image file missing: {path!r:.200}"
    with open(path, "rb") as image:
        head = image.read(8)
    if not any(head.startswith(sig) for sig in IMAGE_SIGNATURES):
        return f"not a PNG/JPEG file: {path}"
    return None


def run_users(
    url: str,
    pid: int,
    service_pid: int | None,
    users: int,
    tag: str,
    download_dir: Path,
    timeout: float,
) -> Sample:
    """Release `users` clients at once and wait for all of them. `pid` is the app's process,
    `service_pid` the separate simulator's (None when it runs inside the app)."""
    clients = [
        Client(
            url,
            analytics_enabled=False,
            verbose=False,
            download_files=str(download_dir),
            httpx_kwargs={"timeout": 60.0},
            # Plain HTTP on 127.0.0.1, so nothing is verified either way; with verification on,
            # every request gradio_client makes builds an SSL context from the CA bundle
            # (~25 ms of CPU each), and the load generator would steal that CPU from the server.
            ssl_verify=False,
        )
        for _ in range(users)
    ]
    results = [UserResult() for _ in range(users)]
    ends: list[float] = [0.0] * users
    released = [0.0]
    cpu_at_release = [0.0, 0.0, 0.0]

    def service_cpu_seconds() -> float:
        return process_cpu_seconds(service_pid) if service_pid is not None else 0.0

    def release() -> None:
        cpu_at_release[:] = [process_cpu_seconds(pid), service_cpu_seconds(), own_cpu_seconds()]
        released[0] = time.monotonic()

    barrier = threading.Barrier(users + 1, action=release)

    def user(i: int) -> None:
        subject = SUBJECTS[i % len(SUBJECTS)]
        prompt = f"{tag} user {i}: a {subject} at dusk, ultra detailed"
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return
        try:
            job = clients[i].submit(
                model=MODEL,
                prompt=prompt,
                resolution=RESOLUTION,
                variants=1,
                api_name="/generate",
            )
            problem = check_result(job.result(timeout=timeout))
        except Exception as exc:  # a failed user is counted, not fatal
            problem = f"{type(exc).__name__}: {exc}"
        ends[i] = time.monotonic()
        results[i] = UserResult(latency=ends[i] - released[0], error=problem)

    threads = [threading.Thread(target=user, args=(i,), daemon=True) for i in range(users)]
    for thread in threads:
        thread.start()
    try:
        with RssSampler(pid) as sampler:
            barrier.wait()
            deadline = time.monotonic() + timeout + 30
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            server_cpu = process_cpu_seconds(pid) - cpu_at_release[0]
            service_cpu = service_cpu_seconds() - cpu_at_release[1]
            bench_cpu = own_cpu_seconds() - cpu_at_release[2]
    finally:
        barrier.abort()  # frees the threads if the main thread failed before the release
        for client in clients:
            try:
                client.close()
            except Exception:  # closing is best effort
                pass
    for i, thread in enumerate(threads):
        if thread.is_alive():
            results[i] = UserResult(error="no result before the timeout")
    finished = [end for end in ends if end]
    wall = (max(finished) if finished else time.monotonic()) - released[0]
    service = service_cpu if service_pid is not None else None
    return Sample(wall, results, sampler.peak_mb, server_cpu, service, bench_cpu)


# ---- reporting -------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil
    return ordered[int(rank) - 1]


def ideal_ratio(users: int) -> float:
    """E[max of `users` uniform draws from the 1K window] / mean draw."""
    low, high = CATALOG.model(MODEL).expected_window(RESOLUTION)
    return (low + (high - low) * users / (users + 1)) / ((low + high) / 2)


def fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def table(rows: list[tuple[str, Run, float | None]]) -> str:
    lines = [
        "| config | users | wall s | wall / single-user wall | median user latency s "
        "| p95 user latency s | failures | server peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, run, ratio in rows:
        ok = run.latencies
        lines.append(
            f"| {name} | {run.users} | {fmt(run.wall)} | {fmt(ratio)} "
            f"| {fmt(statistics.median(ok) if ok else None)} "
            f"| {fmt(percentile(ok, 95) if ok else None)} "
            f"| {run.failures} | {run.peak_rss_mb:.0f} |"
        )
    return "\n".join(lines)


def cpu_table(rows: list[tuple[str, Run, float | None]], cpus: int) -> str:
    lines = [
        "| config | users | app CPU s | simulator CPU s | clients CPU s "
        "| all CPU / (CPUs x wall) | load avg at start |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, run, _ in rows:
        used = run.server_cpu + (run.service_cpu or 0.0) + run.bench_cpu
        busy = used / (cpus * run.wall) if run.wall else None
        service = fmt(run.service_cpu) if run.service_cpu is not None else "in app"
        lines.append(
            f"| {name} | {run.users} | {fmt(run.server_cpu)} | {service} "
            f"| {fmt(run.bench_cpu)} | {fmt(busy)} | {run.load:.1f} |"
        )
    return "\n".join(lines)


# ---- main ------------------------------------------------------------------------------------


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
