"""Where each service lives and which key it takes, read from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from providers.catalog import Catalog
from providers.keys import MAX_KEY_CHARS, is_header_safe


@dataclass(frozen=True)
class ServiceConfig:
    service: str
    base_url: str
    api_key: str | None = field(default=None, repr=False)  # never printed

    @property
    def has_key(self) -> bool:
        return bool(self.api_key)


def service_configs(
    catalog: Catalog, environ: Mapping[str, str] | None = None
) -> dict[str, ServiceConfig]:
    """Each service's base URL and key by service id; a blank key counts as none.

    A key no HTTP header can carry is refused here, at start-up, with a ValueError naming its
    variable (never its value): otherwise every generation would fail with a confusing error."""
    env = os.environ if environ is None else environ
    configs = {}
    for service in catalog.services:
        key = (env.get(service.key_env) or "").strip() or None
        if key is not None and not is_header_safe(key):
            raise ValueError(
                f"{service.key_env} must be printable ASCII without spaces or line breaks, "
                f"at most {MAX_KEY_CHARS} characters: set it to the key alone."
            )
        base_url = (env.get(service.base_url_env) or "").strip().rstrip("/")
        configs[service.id] = ServiceConfig(
            service=service.id, base_url=base_url or service.default_base_url, api_key=key
        )
    return configs
