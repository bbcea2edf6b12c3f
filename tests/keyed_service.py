"""The owner's keys, on a simulator: what the limits on the owner's keys are tested against.

Both services are "keyed" in the environment (the owner's keys below), and their base URL is a
simulator reached in-process (httpx.ASGITransport), so a task on the owner's keys goes through
the real client to a service that counts what it receives: `sim.submission_count`, and in
`sim.requests` each request's token fingerprint, which tells the owner's key from a visitor's.
The offline preview, when one is needed (VISITOR_KEYS_ONLY), is another simulator, built by
Backends itself, so nothing it receives is counted here.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
from app_server import BASE_ENV, RunningApp, close_app, free_port, stray_event_loops_closed

from app import build_app, launch
from providers.services import CATALOG
from simulator import Simulator, SimulatorConfig
from simulator.core import token_fingerprint
from studio.backends import Backend, Backends
from studio.config import AppConfig, load_config

SERVICE_ORIGIN = "http://owner-service.test"
OWNER_DEFAPI_KEY = "dk-OWNER-0123456789abcdef"
OWNER_APIXO_KEY = "apixo-OWNER-0123456789abcdef"
VISITOR_DEFAPI_KEY = "dk-VISITOR-0123456789abcdef"
VISITOR_APIXO_KEY = "apixo-VISITOR-0123456789abcdef"
OWNER_ENV = {
    "DEFAPI_API_KEY": OWNER_DEFAPI_KEY,
    "APIXO_API_KEY": OWNER_APIXO_KEY,
    "DEFAPI_BASE_URL": SERVICE_ORIGIN,
    "APIXO_BASE_URL": SERVICE_ORIGIN,
}
OWNER_FINGERPRINTS = {token_fingerprint(OWNER_DEFAPI_KEY), token_fingerprint(OWNER_APIXO_KEY)}


class ScaledBackends(Backends):
    """The app's backends, told that the keyed service runs `time_scale` times the documented
    durations (as the offline preview is told of its simulator's speed), so poll schedules
    shrink to match and a test does not wait out real-time windows."""

    def __init__(self, *args: Any, time_scale: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.time_scale = time_scale

    def for_service(self, service: str, visitor_key: str | None = None) -> Backend:
        backend = super().for_service(service, visitor_key)
        return backend if backend.offline else replace(backend, time_scale=self.time_scale)


def keyed_backends(config: AppConfig, sim: Simulator) -> ScaledBackends:
    """Backends whose keyed services are `sim`; closes the HTTP client in `aclose()`."""
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url=SERVICE_ORIGIN)
    return ScaledBackends(
        config.catalog,
        config.services,
        http=http,
        simulator_time_scale=config.simulator_time_scale,
        visitor_keys_only=config.spending.visitor_keys_only,
        time_scale=sim.config.time_scale,
    )


def owner_submits(sim: Simulator) -> int:
    """Submits the service received carrying the owner's keys."""
    return sum(
        1 for kind, _, token in sim.requests if kind == "submit" and token in OWNER_FINGERPRINTS
    )


def submits_with(sim: Simulator, key: str) -> int:
    fingerprint = token_fingerprint(key)
    return sum(1 for kind, _, token in sim.requests if kind == "submit" and token == fingerprint)


@dataclass(frozen=True)
class KeyedApp:
    server: RunningApp
    sim: Simulator

    @property
    def url(self) -> str:
        return self.server.url


@contextlib.contextmanager
def running_keyed_app(
    env: Mapping[str, str] | None = None,
    data_dir: Path | None = None,
    *,
    time_scale: float = 0.01,
) -> Iterator[KeyedApp]:
    """The whole app on a loopback port with the owner's keys on a simulator, `env` over it."""
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="keyed-")))
        sim = Simulator(SimulatorConfig(time_scale=time_scale, seed=5))
        port = free_port()
        with stray_event_loops_closed():
            environ = {**BASE_ENV, **OWNER_ENV, **(env or {}), "DATA_DIR": str(data_dir)}
            config = load_config(environ, CATALOG)
            app = build_app(config, backends=keyed_backends(config, sim))
            launch(app, server_name="127.0.0.1", server_port=port, quiet=True)
        stack.callback(close_app, app)
        url = f"http://127.0.0.1:{port}/"
        httpx.get(url, timeout=10)  # up (a login page counts: the server answers)
        yield KeyedApp(RunningApp(url=url, app=app, data_dir=data_dir), sim)
