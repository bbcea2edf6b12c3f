"""An abusive client against a public demo: it gets exactly its quota, and the others' images
still come in their usual time.

Run: `.venv/bin/python -m bench.abuse_bench [--attempts 200] [--honest 10] [--time-scale 0.25]`

The app (`python app.py`) runs as a public demo would: the owner's key for Nano Banana Pro,
VISITOR_QUOTA=10/day, DAILY_TASK_BUDGET=200, MAX_RUNNING=20, MAX_RUNNING_PER_VISITOR=4, behind
a "proxy" (TRUSTED_PROXIES=127.0.0.1, and each client sends the X-Forwarded-For a proxy would
add). The service is the simulator as a process of its own (`python -m simulator`, callbacks on),
which counts every submit it receives.

1. Baseline: --honest visitors (each its own address and browser id) generate one image each at
   once, through `/generate`; their latencies are measured.
2. Abuse: one client, always from one address, starts --attempts generations as fast as it can,
   each with a fresh browser id, each stream closed after its first message (so no page waits on
   anything); half a second in, --honest new visitors generate one image each at once, as in 1.

Printed: how many of the abuser's attempts started, how many submits the service received, and
the honest visitors' median and p95 latency in both phases.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_PROXY", "localhost,127.0.0.1")

import httpx
from gradio_client import Client

from bench.concurrency_processes import (
    HOST,
    SERVICE_KEY,
    free_port,
    running_process,
    running_simulator,
)

QUOTA = 10
LIMITS = {
    "VISITOR_QUOTA": f"{QUOTA}/day",
    "DAILY_TASK_BUDGET": "200",
    "MAX_RUNNING": "20",
    "MAX_RUNNING_PER_VISITOR": "4",
    "TRUSTED_PROXIES": HOST,
}
FORM = ["nano-banana-pro", "", None, "", "1:1", "1K", "png", "auto", 1, "", "", ""]


def app_env(port: int, workdir: Path, service_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADIO_", "APIXO_"))}
    env.update(
        LIMITS,
        GRADIO_SERVER_NAME=HOST,
        GRADIO_SERVER_PORT=str(port),
        GRADIO_ANALYTICS_ENABLED="False",
        GRADIO_TEMP_DIR=str(workdir / "gradio-cache"),
        DATA_DIR=str(workdir / "data"),
        APIXO_BASE_URL=service_url,
        APIXO_API_KEY=SERVICE_KEY,
        PUBLIC_URL=f"http://{HOST}:{port}",
        MCP_SERVER="0",
        PYTHONUNBUFFERED="1",
    )
    return env


def abuse(url: str, attempts: int, address: str) -> tuple[int, int, str]:
    """Start `attempts` generations from `address`, each with a new browser id, hanging up
    after the first message. Returns (started, refused, one refusal sentence)."""
    started = refused = 0
    sentence = ""
    with httpx.Client(base_url=url, timeout=30, headers={"X-Forwarded-For": address}) as http:
        for n in range(attempts):
            data = [*FORM[:-1], secrets.token_urlsafe(32)]  # a fresh browser id each time
            data[1] = f"abusive request {n}"
            event = http.post("gradio_api/call/generate", json={"data": data}).json()["event_id"]
            with http.stream("GET", f"gradio_api/call/generate/{event}") as stream:
                kind = ""
                for line in stream.iter_lines():
                    if line.startswith("event:"):
                        kind = line.split(":", 1)[1].strip()
                    elif line.startswith("data:"):
                        if kind == "error":
                            refused += 1
                            sentence = sentence or line[5:].strip()
                        else:
                            started += 1
                        break
    return started, refused, sentence


def honest(url: str, count: int, first_address: int) -> list[float]:
    """`count` visitors released together, one image each; their latencies in seconds."""
    clients = [
        Client(
            url,
            verbose=False,
            analytics_enabled=False,
            download_files=False,
            ssl_verify=False,
            httpx_kwargs={"timeout": 60},
            headers={"X-Forwarded-For": f"81.2.69.{first_address + n}"},
        )
        for n in range(count)
    ]
    barrier = threading.Barrier(count + 1)
    latencies: list[float] = []

    def visit(n: int) -> None:
        barrier.wait()
        began = time.monotonic()
        clients[n].predict(
            model="nano-banana-pro",
            prompt=f"an honest lighthouse {first_address + n}",
            resolution="1K",
            client_id=secrets.token_urlsafe(32),
            api_name="/generate",
        )
        latencies.append(time.monotonic() - began)

    threads = [threading.Thread(target=visit, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    barrier.wait()
    for thread in threads:
        thread.join()
    return latencies


def wait_for_submits(service_url: str, expected: int, limit: float = 120.0) -> int:
    """The submits the service has received, once `expected` arrived (or `limit` passed)."""
    deadline = time.monotonic() + limit
    while True:
        submits = int(httpx.get(f"{service_url}/_simulator/stats").json()["submissions"])
        if submits >= expected or time.monotonic() > deadline:
            return submits
        time.sleep(0.5)


def p95(values: list[float]) -> float:
    return sorted(values)[max(round(0.95 * len(values)) - 1, 0)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attempts", type=int, default=200)
    parser.add_argument("--honest", type=int, default=10)
    parser.add_argument("--time-scale", type=float, default=0.25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="abuse-bench-") as tmp:
        workdir = Path(tmp)
        with running_simulator(args.time_scale, workdir) as (service_url, _):
            port = free_port()
            url = f"http://{HOST}:{port}/"
            env = app_env(port, workdir, service_url)
            with running_process([sys.executable, "app.py"], env, url, workdir / "app.log"):
                baseline = honest(url, args.honest, 1)
                outcome: dict[str, tuple[int, int, str]] = {}
                abuser = threading.Thread(
                    target=lambda: outcome.update(run=abuse(url, args.attempts, "81.2.70.1"))
                )
                began = time.monotonic()
                abuser.start()
                time.sleep(0.5)
                during = honest(url, args.honest, 101)
                abuser.join()
                abuse_seconds = time.monotonic() - began
                started, refused, sentence = outcome["run"]
                # The abuser's tasks beyond MAX_RUNNING_PER_VISITOR wait in line: let them go.
                submits = wait_for_submits(service_url, 2 * args.honest + started)
    print(f"limits: {', '.join(f'{k}={v}' for k, v in LIMITS.items())}")
    print(f"abuser: {args.attempts} attempts in {abuse_seconds:.1f} s, each with a new browser id")
    print(f"  started {started} (the quota is {QUOTA}), refused {refused}")
    print(f"  refusal: {sentence[:200]}")
    abusive = submits - 2 * args.honest
    print(f"service: {submits} submits = {2 * args.honest} honest + {abusive} abusive")
    print()
    print("| honest visitors | median latency s | p95 latency s |")
    print("|---|---:|---:|")
    for name, values in (("alone", baseline), ("during the abuse", during)):
        print(f"| {name} | {statistics.median(values):.2f} | {p95(values):.2f} |")


if __name__ == "__main__":
    main()
