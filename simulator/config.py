"""Settings of one simulator instance."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class SimulatorConfig:
    """How the simulator behaves; everything a test or benchmark may want to vary up front.

    time_scale multiplies every simulated duration (0.01 turns a 25 s task into 0.25 s).
    api_keys None accepts any non-empty Bearer token; a set restricts to those tokens.
    public_url is the base of result URLs; None uses the base URL of the submitting request.
    reuse_renders draws one image per (model, resolution, aspect ratio, format) and serves it
    for every task with those settings and no references (benchmarks with thousands of tasks,
    where the drawing would otherwise be most of the simulator's work).
    """

    time_scale: float = 1.0
    seed: int | None = None
    api_keys: frozenset[str] | None = None
    public_url: str | None = None
    gempix2_data_uri: bool = False
    callback_attempts: int = 3
    reuse_renders: bool = False

    def __post_init__(self) -> None:
        if self.time_scale < 0:
            raise ValueError("time_scale must be >= 0")
        if self.callback_attempts < 1:
            raise ValueError("callback_attempts must be >= 1")
        if self.api_keys is not None and not isinstance(self.api_keys, frozenset):
            keys: Iterable[str] = self.api_keys
            object.__setattr__(self, "api_keys", frozenset(keys))
        if self.public_url is not None:
            object.__setattr__(self, "public_url", self.public_url.rstrip("/"))
