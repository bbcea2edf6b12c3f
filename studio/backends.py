"""Which client serves a generation: the real service with a key, or the built-in simulator.

With no key for a service (neither in the environment nor from the visitor), that service runs
on the in-process simulator: the same client code, the same wire format, placeholder images.
This is the one place the product reaches the simulator; with every service keyed in the
environment it is never built (unless VISITOR_KEYS_ONLY: visitors without a key get it).

The simulator runs inside this process and draws the references it reads into the picture the
visitor gets back, so it must not fetch a link the way a remote service would: it is given the
app's own guarded fetcher (`studio.downloads.ResultFetcher`: https only, public addresses only,
the connection pinned to the checked address, every redirect checked, 10 MB, a deadline), the
same one results are fetched with. We chose that over refusing links outright so the preview
keeps showing a pasted https reference; `data:` URIs are decoded without any network.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from providers.catalog import Catalog
from providers.errors import InvalidRequestError
from providers.keys import KEYRING, KeyRing, key_problem
from providers.lanes import DEFAULT_LIMITS, Lanes, pool_limits
from providers.registry import ImageClient, build_client
from providers.settings import ServiceConfig
from simulator import Simulator, SimulatorConfig
from simulator.references import MAX_REFERENCE_BYTES
from studio.downloads import ResultFetcher

SIMULATOR_ORIGIN = "http://simulator.invalid"
SIMULATOR_KEY = "offline-preview"  # the simulator accepts any key; this one is no secret


@dataclass(frozen=True)
class Backend:
    """A client ready to use, and what the page should say about it."""

    service: str
    client: ImageClient
    offline: bool
    time_scale: float = 1.0  # the simulator's speed-up; schedules shrink to match


class Backends:
    """Builds the client for each generation. Owns the HTTP clients; close with `aclose()`."""

    def __init__(
        self,
        catalog: Catalog,
        configs: dict[str, ServiceConfig],
        *,
        simulator_time_scale: float = 0.25,
        http: httpx.AsyncClient | None = None,
        simulator: Simulator | None = None,
        keys: KeyRing = KEYRING,
        reference_fetcher: ResultFetcher | None = None,
        visitor_keys_only: bool = False,
    ) -> None:
        self.catalog = catalog
        self.configs = configs
        # VISITOR_KEYS_ONLY: the owner's keys never serve a visitor's new task (without a key
        # of their own, the offline preview runs); they still watch tasks sent on them before
        # (for_resumed).
        self.visitor_keys_only = visitor_keys_only
        # The owner's keys are scrubbed from every service's text for as long as we exist, even
        # from a service that never received them; a visitor's key while its client exists.
        for config in configs.values():
            if config.api_key:
                keys.hold_while(self, config.api_key)
        # Results fetched from the services' own origins go through `http`, at most the
        # fetcher's downloads lane at once; submits and status reads through their lanes.
        timeout = httpx.Timeout(30.0, connect=10.0)
        self.http = http or httpx.AsyncClient(
            timeout=timeout, limits=pool_limits(DEFAULT_LIMITS.downloads)
        )
        # One gate per service, shared by its clients whoever's key they carry, each lane with
        # connections of its own (an injected client carries everything instead); the simulator
        # (in-process, no pool) has gates of its own so a preview never slows a real service.
        self.lanes = {s.id: Lanes(pools=None if http else timeout) for s in catalog.services}
        self.simulator_lanes = {s.id: Lanes() for s in catalog.services}
        self.simulator: Simulator | None = simulator
        self.simulator_http: httpx.AsyncClient | None = None
        self._reference_fetcher: ResultFetcher | None = None
        if simulator is None and (
            visitor_keys_only or not all(c.has_key for c in configs.values())
        ):
            self._reference_fetcher = reference_fetcher or ResultFetcher(
                max_bytes=MAX_REFERENCE_BYTES
            )
            self.simulator = Simulator(
                SimulatorConfig(time_scale=simulator_time_scale),
                fetch_reference=self._fetch_reference,
            )
        self.simulator_time_scale = (
            self.simulator.config.time_scale if self.simulator else simulator_time_scale
        )
        if self.simulator is not None:
            self.simulator_http = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=self.simulator.app), base_url=SIMULATOR_ORIGIN
            )

    async def _fetch_reference(self, url: str) -> bytes:
        """How the built-in simulator reads a reference link: through the guarded fetcher."""
        assert self._reference_fetcher is not None  # made together with the simulator
        return (await self._reference_fetcher.fetch(url)).data

    def has_key(self, service: str) -> bool:
        """Whether the environment's key serves visitors' tasks on `service`."""
        return self.configs[service].has_key and not self.visitor_keys_only

    def uses_owner_key(self, service: str, visitor_key: str | None) -> bool:
        """Whether `for_service` would send a new task on the environment's key."""
        return not (visitor_key or "").strip() and self.has_key(service)

    @property
    def owner_keys(self) -> bool:
        """Whether the owner configured a key for any service."""
        return any(config.has_key for config in self.configs.values())

    def offline_services(self) -> list[str]:
        """The services that run on the simulator unless a visitor brings a key."""
        return [s.id for s in self.catalog.services if not self.has_key(s.id)]

    def for_service(self, service: str, visitor_key: str | None = None) -> Backend:
        """The visitor's key wins over the environment's; with neither, the simulator (also
        with `visitor_keys_only`: the environment's key then serves no visitor's task).

        A visitor's key that no HTTP header could carry (a line break, a space, an accented
        letter) or of an absurd length is refused with InvalidRequestError, before anything
        is recorded or sent."""
        self.check_visitor_key(service, visitor_key)
        owner_key = None if self.visitor_keys_only else self.configs[service].api_key
        return self._backend(service, (visitor_key or "").strip() or owner_key)

    def for_resumed(self, service: str, visitor_key: str | None, key_source: object) -> Backend:
        """`for_service` for a job taken up again; one sent on the environment's key
        (`key_source` "server") is watched with that key even with `visitor_keys_only`."""
        if key_source == "server" and self.visitor_keys_only and not visitor_key:
            return self._backend(service, self.configs[service].api_key)
        return self.for_service(service, visitor_key)

    def _backend(self, service: str, key: str | None) -> Backend:
        config = self.configs[service]
        descriptor = self.catalog.service(service)
        if key:
            client = build_client(
                descriptor,
                self.http,
                base_url=config.base_url,
                api_key=key,
                lanes=self.lanes[service],
            )
            return Backend(service, client, offline=False)
        assert self.simulator_http is not None  # built whenever a service has no key
        client = build_client(
            descriptor,
            self.simulator_http,
            base_url=SIMULATOR_ORIGIN,
            api_key=SIMULATOR_KEY,
            lanes=self.simulator_lanes[service],
        )
        return Backend(service, client, offline=True, time_scale=self.simulator_time_scale)

    def check_visitor_key(self, service: str, visitor_key: str | None) -> None:
        """Raise InvalidRequestError with a sentence if a visitor's key cannot be used."""
        key = (visitor_key or "").strip()
        if key:
            problem = key_problem(key, self.catalog.service(service).label)
            if problem is not None:
                raise InvalidRequestError(problem)

    def trusted_origins(self) -> dict[str, httpx.AsyncClient]:
        """Result URLs on a service's own origin are fetched as the service itself."""
        origins = {}
        if self.simulator_http is not None:
            origins[SIMULATOR_ORIGIN] = self.simulator_http
        for config in self.configs.values():
            origins[config.base_url] = self.http  # the fetcher compares scheme, host and port
        return origins

    async def aclose(self) -> None:
        await self.http.aclose()
        for lanes in self.lanes.values():
            await lanes.aclose()
        if self.simulator_http is not None:
            await self.simulator_http.aclose()
        if self._reference_fetcher is not None:
            await self._reference_fetcher.aclose()
