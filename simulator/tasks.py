"""Task records and their timeline: the state is a pure function of the clock at query time."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from PIL import Image

from simulator.twin import PhasePlan

# Early failures (moderation, unreachable references) surface this long after submission.
EARLY_FAILURE_SECONDS = 1.5


class Outcome(StrEnum):
    SUCCESS = "success"
    CONTENT_VIOLATION = "content_violation"
    INVALID_IMAGE_URL = "invalid_image_url"
    FAIL = "fail"
    NEVER_FINISH = "never_finish"


class Phase(StrEnum):
    """Where a task is; its service's own word for it comes from the twin's PhasePlan."""

    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (Phase.SUCCESS, Phase.FAILED)


class FailCode(StrEnum):
    CONTENT_VIOLATION = "CONTENT_VIOLATION"
    INVALID_IMAGE_URL = "INVALID_IMAGE_URL"
    INTERNAL_ERROR = "INTERNAL_ERROR"


FAIL_MESSAGES: dict[FailCode, str] = {
    FailCode.CONTENT_VIOLATION: "Content does not meet safety guidelines",
    FailCode.INVALID_IMAGE_URL: "Cannot access provided image URL",
    FailCode.INTERNAL_ERROR: "Internal error during image generation",
}


def shorten_url(url: str, limit: int = 80) -> str:
    """Keep messages readable when a reference is a long signed URL or a data URI."""
    if len(url) <= limit:
        return url
    head = limit - 21
    return f"{url[:head]}…{url[-20:]}"


@dataclass(frozen=True)
class Snapshot:
    phase: Phase
    final_at: float | None = None  # clock time the final state was reached
    fail_code: FailCode | None = None
    fail_message: str | None = None


@dataclass(eq=False)
class TaskRecord:
    """Everything known about one task. `created`/`duration` are clock seconds (scaled)."""

    id: str
    service: str
    phases: PhasePlan
    model: str
    prompt: str
    text: str  # prompt without [sim:...] tags
    params: dict[str, Any]
    references: list[str]
    callback_url: str | None
    created: float
    created_wall: float
    duration: float
    early_failure_delay: float
    outcome: Outcome
    data_uri: bool
    base_url: str
    file_name: str
    clock: Callable[[], float] = field(repr=False)
    reference_images: list[Image.Image] = field(default_factory=list, repr=False)
    refs_done_at: float | None = None
    refs_error_url: str | None = None
    refs_done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    callback_attempts: int = 0
    callback_delivered: bool | None = None

    @property
    def output_format(self) -> str:
        return str(self.params.get("output_format") or "png")

    @property
    def state(self) -> str:
        """The state as the task's own service names it right now."""
        snapshot = self.snapshot()
        return self.wire_state(snapshot.phase, self.clock())

    def wire_state(self, phase: Phase, now: float | None = None) -> str:
        if phase is Phase.SUCCESS:
            return self.phases.success
        if phase is Phase.FAILED:
            return self.phases.failed
        now = self.clock() if now is None else now
        fraction = (now - self.created) / self.duration if self.duration > 0 else math.inf
        return self.phases.word_at(fraction)

    def snapshot(self, now: float | None = None) -> Snapshot:
        now = self.clock() if now is None else now
        final_at = self.final_at()
        if final_at is None or now < final_at:
            return Snapshot(Phase.RUNNING)
        code = self._fail_code()
        if code is None:
            return Snapshot(Phase.SUCCESS, final_at)
        message = FAIL_MESSAGES[code]
        if code is FailCode.INVALID_IMAGE_URL:
            url = self.refs_error_url or (self.references[0] if self.references else "(none)")
            message = f"{message}: {shorten_url(url)}"
        return Snapshot(Phase.FAILED, final_at, code, message)

    def final_at(self) -> float | None:
        """When the task reaches its final state; None while unknown or never."""
        early = self.created + self.early_failure_delay
        if self.outcome in (Outcome.CONTENT_VIOLATION, Outcome.INVALID_IMAGE_URL):
            return early
        if self.refs_done_at is None:
            # The result cannot exist before the references have been read.
            return None
        if self.refs_error_url is not None:
            return max(early, self.refs_done_at)
        if self.outcome is Outcome.NEVER_FINISH:
            return None
        return max(self.created + self.duration, self.refs_done_at)

    def _fail_code(self) -> FailCode | None:
        if self.outcome is Outcome.CONTENT_VIOLATION:
            return FailCode.CONTENT_VIOLATION
        if self.outcome is Outcome.INVALID_IMAGE_URL or self.refs_error_url is not None:
            return FailCode.INVALID_IMAGE_URL
        if self.outcome is Outcome.FAIL:
            return FailCode.INTERNAL_ERROR
        return None
