"""Immutable values that cross the boundary between the service clients and everything else."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from providers.capabilities import NO_SETTINGS, ImageSettings


class TaskState(StrEnum):
    """The services' states, normalised. The provider's own word is kept in `provider_state`."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in (TaskState.SUCCEEDED, TaskState.FAILED)


@dataclass(frozen=True)
class GenerationRequest:
    """One generation as the user asked for it; each client maps it onto its wire format."""

    model: str
    prompt: str
    reference_urls: tuple[str, ...] = ()
    settings: ImageSettings = NO_SETTINGS
    callback_url: str | None = None


@dataclass(frozen=True)
class SubmittedTask:
    """What a successful submit gives back."""

    service: str  # the service's id
    task_id: str


@dataclass(frozen=True)
class GeneratedImage:
    """One result: an `https` URL (expires at the provider) or a `data:` URI."""

    location: str

    @property
    def is_data_uri(self) -> bool:
        return self.location.startswith("data:")


@dataclass(frozen=True)
class TaskStatus:
    """One reading of a task's status, from a poll or a callback."""

    service: str  # the service's id
    task_id: str
    state: TaskState
    provider_state: str
    images: tuple[GeneratedImage, ...] = ()
    credits: float | None = None
    fail_code: str | None = None
    fail_message: str | None = None
    created_at: datetime | None = None
    completed_at: datetime | None = None
    cost_seconds: float | None = None

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal
