"""The services this studio runs with: one line per service.

Adding a service = its module here (wire format, client class, `SERVICE` descriptor), its twin
in `simulator/services/`, one line in each registry, and seed fixtures for its tests.
"""

from providers.catalog import Catalog, ServiceDescriptor
from providers.services import gempix2, nano_banana_pro

SERVICES: tuple[ServiceDescriptor, ...] = (
    gempix2.SERVICE,
    nano_banana_pro.SERVICE,
)

CATALOG = Catalog(SERVICES, default_model="nano-banana-pro")

__all__ = ["CATALOG", "SERVICES"]
