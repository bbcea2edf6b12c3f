"""Where each service lives and which key it takes, read from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from providers.capabilities import Service

_ENV = {
    Service.GEMPIX2: ("DEFAPI_API_KEY", "DEFAPI_BASE_URL", "https://api.defapi.org"),
    Service.NANO_BANANA_PRO: ("APIXO_API_KEY", "APIXO_BASE_URL", "https://api.apixo.ai"),
}


@dataclass(frozen=True)
class ServiceConfig:
    service: Service
    base_url: str
    api_key: str | None = field(default=None, repr=False)  # never printed

    @property
    def has_key(self) -> bool:
        return bool(self.api_key)


def service_configs(environ: Mapping[str, str] | None = None) -> dict[Service, ServiceConfig]:
    """Each service's base URL and key; a blank key counts as none."""
    env = os.environ if environ is None else environ
    configs = {}
    for service, (key_var, url_var, default_url) in _ENV.items():
        key = (env.get(key_var) or "").strip() or None
        base_url = (env.get(url_var) or "").strip().rstrip("/") or default_url
        configs[service] = ServiceConfig(service=service, base_url=base_url, api_key=key)
    return configs
