"""What a simulated service is made of: the contract each twin in `simulator/services/` meets.

A twin holds only what differs between services, as data and small pure functions: its paths,
its submit check (returning the common `Submission`), its answer bodies and error shape, the
phases a task passes through, its task-id shape. The routes, the fault ladder, the task clock
and the rendering are shared (`simulator.routes`, `simulator.tasks`, `simulator.core`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from providers.capabilities import ModelSpec

Endpoint = Literal["submit", "status"]


@dataclass(frozen=True)
class Submission:
    """A submit body the twin accepted, in the simulator's own terms."""

    model: str
    prompt: str
    params: dict[str, Any]  # settings as the service named them (aspect_ratio, resolution, ...)
    references: tuple[str, ...]
    callback_url: str | None  # only when the service will call back


@dataclass(frozen=True)
class PhasePlan:
    """How a running task reads on the wire: (share of its duration, word) in order, then the
    final words. The last running word lasts until the end."""

    running: tuple[tuple[float, str], ...]
    success: str = "success"
    failed: str = "failed"

    def word_at(self, fraction: float) -> str:
        for until, word in self.running:
            if fraction < until:
                return word
        return self.running[-1][1]

    @property
    def queued_word(self) -> str:
        return self.running[0][1]


@dataclass(frozen=True)
class Twin:
    """One simulated service."""

    service: str  # the service id, as in providers.services
    models: Mapping[str, ModelSpec]
    submit_path: str
    status_path: str
    task_param: str  # the status query's task-id parameter
    parse_submit: Callable[[Any], Submission]  # raises wire.ValidationError with the 400 text
    submit_data: Callable[[str], dict[str, Any]]  # the `data` of a submit answer
    # The task's data (status answer's `data`); images are URLs or data: URIs on success.
    task_data: Callable[[Any, Any, list[str]], dict[str, Any]]
    # The body of an answer: ok=True wraps data, else an error (status, message, endpoint).
    ok_body: Callable[[dict[str, Any]], dict[str, Any]]
    error_body: Callable[[int, str, Endpoint], dict[str, Any]]
    phases: PhasePlan
    new_task_id: Callable[[], str]
    # A callback posts the task data (GemPix2's CallbackPayload) or the whole status answer.
    callback_is_full_answer: bool = False
    can_return_data_uri: bool = False
    # The texts and statuses of the fault ladder where this service differs from the default.
    bad_request_text: str = "Invalid parameters"
    credits_http_status: int = 400  # apixo answers HTTP 200 with code 400
    error_prefix: str = field(default="")  # unknown paths under it answer in this twin's shape

    def callback_body(self, data: dict[str, Any]) -> dict[str, Any]:
        return self.ok_body(data) if self.callback_is_full_answer else data
