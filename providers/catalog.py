"""What the product knows about a service, and the catalog of services it runs with.

A service module (see `providers/services/`) declares one `ServiceDescriptor`; the product reads
everything service-specific from it: the model table, the key's environment variable and page
field, the base URL, how long result links live, the client class. A `Catalog` is a tuple of
descriptors with the look-ups the rest of the product needs. The default catalog is
`providers.services.CATALOG`; tests build their own to add a service without touching ours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from providers.capabilities import ImageSettings, ModelSpec

# A prompt describes a picture; a few thousand characters is plenty. The cap also bounds what
# is sent, stored in the ledger and embedded in every result file's metadata. Neither service
# documents a limit of its own.
MAX_PROMPT_CHARS = 4000

if TYPE_CHECKING:
    from providers.registry import ImageClient
    from providers.transport import ServiceTransport


@dataclass(frozen=True)
class ServiceDescriptor:
    """One image service as the product sees it."""

    id: str  # stable: stored in the ledger and in the simulator's routes
    label: str  # the provider's name as people know it, used in messages
    vendor: str  # who runs the API, shown next to the key box
    models: tuple[ModelSpec, ...]
    key_env: str  # environment variable holding the owner's key
    base_url_env: str
    default_base_url: str
    client: Callable[[ServiceTransport], ImageClient] = field(repr=False)
    key_field: str  # the `/generate` keyword and page field for a visitor's own key
    key_hint: str = ""  # placeholder text in the key box, e.g. the key's prefix
    result_lifetime: float | None = None  # seconds result URLs stay valid; None: not documented

    def __post_init__(self) -> None:
        strangers = [m.id for m in self.models if m.service != self.id]
        if strangers:
            raise ValueError(f"models {strangers} do not name service {self.id!r}")


class Catalog:
    """The services a studio runs with, and their models by id (in the services' order)."""

    def __init__(self, services: Iterable[ServiceDescriptor], default_model: str | None = None):
        self.services: tuple[ServiceDescriptor, ...] = tuple(services)
        if not self.services:
            raise ValueError("a catalog needs at least one service")
        self._by_id = {s.id: s for s in self.services}
        self.models: Mapping[str, ModelSpec] = {m.id: m for s in self.services for m in s.models}
        if len(self._by_id) != len(self.services):
            raise ValueError("two services share an id")
        if len({s.key_field for s in self.services}) != len(self.services):
            raise ValueError("two services share a key field")
        self.default_model = default_model or next(iter(self.models))
        self.model(self.default_model)

    def __iter__(self) -> Iterable[ServiceDescriptor]:
        return iter(self.services)

    def model(self, model_id: str) -> ModelSpec:
        """The spec of `model_id`; KeyError names the known models."""
        try:
            return self.models[model_id]
        except KeyError:
            known = ", ".join(self.models)
            raise KeyError(f"unknown model {model_id!r}; known models: {known}") from None

    def service(self, service_id: str) -> ServiceDescriptor:
        return self._by_id[service_id]

    def service_of(self, model_id: str) -> ServiceDescriptor:
        return self._by_id[self.model(model_id).service]

    @property
    def key_fields(self) -> tuple[str, ...]:
        return tuple(s.key_field for s in self.services)

    def keys_from(self, fields: Mapping[str, str | None]) -> dict[str, str]:
        """Visitor keys by service id from values keyed by each service's key field."""
        keys = {}
        for service in self.services:
            value = (fields.get(service.key_field) or "").strip()
            if value:
                keys[service.id] = value
        return keys

    def unknown_model_sentence(self, model_id: str) -> str:
        return f"Unknown model {model_id!r}; choose one of: {', '.join(self.models)}."

    def request_problems(
        self, model_id: str, *, prompt: str, reference_count: int, settings: ImageSettings
    ) -> list[str]:
        """Plain sentences saying what `model_id` cannot take; empty when the request fits."""
        if model_id not in self.models:
            return [self.unknown_model_sentence(model_id)]
        spec = self.models[model_id]
        problems = []
        if not prompt.strip():
            problems.append("Write a prompt first.")
        elif len(prompt) > MAX_PROMPT_CHARS:
            problems.append(
                f"The prompt is {len(prompt):,} characters long; the limit is "
                f"{MAX_PROMPT_CHARS:,} characters."
            )
        if reference_count > spec.max_references:
            problems.append(
                f"{spec.label} takes at most {spec.max_references} reference images "
                f"({reference_count} given)."
            )
        return problems + spec.setting_problems(settings)
