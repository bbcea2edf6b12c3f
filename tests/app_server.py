"""Run the whole app in-process on a free loopback port, for API and browser tests.

    with running_app(tmp_path) as server:
        Client(server.url, ...)

or, in a test module:

    server = app_server_fixture(scope="module")   # a fixture named `server`
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app import App, build_app, launch
from providers.catalog import Catalog
from providers.services import CATALOG
from studio.config import load_config

BASE_ENV = {
    "SIMULATOR_TIME_SCALE": "0.01",  # simulated tasks take a fraction of a second
    "WATCH_DEADLINE": "60",
}


@dataclass(frozen=True)
class RunningApp:
    url: str  # ends with "/"
    app: App
    data_dir: Path


@contextlib.contextmanager
def stray_event_loops_closed() -> Iterator[None]:
    """Close the event loops Gradio makes in this thread and drops.

    Building, launching or closing Blocks outside a running loop calls `new_event_loop()` and
    `set_event_loop()` several times (gradio.utils.safe_get_lock) and never closes those loops.
    Each one dropped warns "unclosed event loop" (a ResourceWarning; an error in this suite)
    in whatever test is running then. Inside this block that warning is off, and on leaving it
    the dropped loops are collected and the one still set is closed and unset."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            yield
        finally:
            gc.collect()
            with contextlib.suppress(RuntimeError):  # no loop set in this thread
                loop = asyncio.get_event_loop_policy().get_event_loop()
                if not loop.is_running() and not loop.is_closed():
                    loop.close()
                asyncio.set_event_loop(None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_app(
    data_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    catalog: Catalog = CATALOG,
) -> Iterator[RunningApp]:
    """Build the app on `data_dir` (a fresh temp dir if None) with `env` over BASE_ENV and the
    services of `catalog`, launch it on 127.0.0.1, yield where it runs, and close it."""
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="studio-")))
        port = free_port()
        with stray_event_loops_closed():
            environ = {**BASE_ENV, **(env or {}), "DATA_DIR": str(data_dir)}
            app = build_app(load_config(environ, catalog))
            launch(app, server_name="127.0.0.1", server_port=port, quiet=True)
        stack.callback(close_app, app)
        url = f"http://127.0.0.1:{port}/"
        httpx.get(url, timeout=10).raise_for_status()  # up and serving the page
        yield RunningApp(url=url, app=app, data_dir=data_dir)


def close_app(app: App) -> None:
    with stray_event_loops_closed():
        app.page.demo.close()


def app_server_fixture(env: Mapping[str, str] | None = None, *, scope: str = "module"):
    """A pytest fixture yielding a RunningApp built with `env`, in a temp dir of its own."""

    @pytest.fixture(scope=scope)
    def _server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
        with running_app(tmp_path_factory.mktemp("studio"), env) as server:
            yield server

    return _server
