"""The concurrency benchmark's load driver: N `gradio_client` users released at once.

Each user generates ONE image (MODEL at RESOLUTION, 1 variant, its own prompt) through the app's
`/generate` API; `run_users` times them from the release and measures the app's peak RSS and the
CPU of the app, the separate simulator and this process in that window.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# Offline, no telemetry: set before gradio_client (and huggingface_hub) are imported.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_PROXY", "localhost,127.0.0.1")

from gradio_client import Client

from bench.procstats import RssSampler, own_cpu_seconds, process_cpu_seconds

MODEL = "nano-banana-pro"
RESOLUTION = "1K"
IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")
SUBJECTS = ["lighthouse", "fox", "teapot", "castle", "robot", "forest", "harbor", "comet"]


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
