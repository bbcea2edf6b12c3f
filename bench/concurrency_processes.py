"""The concurrency benchmark's subprocesses: `python app.py` and `python -m simulator`.

Each runs in the project folder on a free port of 127.0.0.1, its stdout/stderr going to a log
file; `running_process` waits until the process answers 200 and always stops it afterwards.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
STARTUP_TIMEOUT = 90.0
LOG_TAIL_LINES = 40
SERVICE_KEY = "bench-key"  # the separate simulator accepts only this key


@dataclass(frozen=True)
class Config:
    name: str
    concurrency_limit: str | None  # the CONCURRENCY_LIMIT value; None = unset


CONFIGS = (Config("ours", None), Config("gradio default", "1"))


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
                f"{proc.args!r} exited with code {proc.returncode} before answering:\n"
                + log_tail(log_path)
            )
        try:
            with opener.open(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{proc.args!r} did not answer 200 on {url} in {STARTUP_TIMEOUT:.0f} s")


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
