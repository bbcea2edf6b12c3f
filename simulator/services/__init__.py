"""The simulated services: one line per twin, in the order of `providers.services.SERVICES`."""

from simulator.services import gempix2, nano_banana_pro
from simulator.twin import Twin

TWINS: tuple[Twin, ...] = (
    gempix2.TWIN,
    nano_banana_pro.TWIN,
)

__all__ = ["TWINS"]
