"""Fault injection: queued HTTP faults, queued task outcomes and prompt tags."""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

from simulator.twin import Endpoint

ENDPOINTS: tuple[str, ...] = ("submit", "status")

HTTP_FAULTS: tuple[str, ...] = (
    "unauthorized",
    "bad_request",
    "not_found",
    "rate_limited",
    "server_error",
    "insufficient_credits",
    "hang",
)

# Task outcomes, usable in `Faults.next_task_outcome` and (except "success") as prompt tags.
OUTCOMES: tuple[str, ...] = (
    "success",
    "content_violation",
    "invalid_image_url",
    "fail",
    "never_finish",
)

PROMPT_TAGS: tuple[str, ...] = (*OUTCOMES[1:], "data_uri")

_TAG_RE = re.compile(r"\[sim:([a-z_]+)\]", re.IGNORECASE)


@dataclass(frozen=True)
class HttpFault:
    """One queued HTTP fault; `service` None means whichever service asks first."""

    kind: str
    service: str | None = None  # a service id
    retry_after: float | None = None
    hang_seconds: float = 30.0


class Faults:
    """Mutable fault switchboard; tests change it between requests.

    latency: seconds (real, not scaled) added before every API response.
    next_task_outcome: outcomes for the next created tasks, consumed one per task
    (a prompt tag overrides it and leaves the queue untouched).
    """

    def __init__(self) -> None:
        self.latency: float = 0.0
        self.next_task_outcome: deque[str] = deque()
        self._queues: dict[str, deque[HttpFault]] = {name: deque() for name in ENDPOINTS}

    def push(
        self,
        endpoint: Endpoint,
        kind: str,
        *,
        retry_after: float | None = None,
        hang_seconds: float = 30.0,
        service: str | None = None,
        times: int = 1,
    ) -> None:
        """Queue `times` copies of a one-shot fault for the next requests to `endpoint`."""
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {ENDPOINTS}, not {endpoint!r}")
        if kind not in HTTP_FAULTS:
            raise ValueError(f"fault kind must be one of {HTTP_FAULTS}, not {kind!r}")
        if kind == "hang" and endpoint != "submit":
            raise ValueError("the hang fault exists for the submit endpoint only")
        fault = HttpFault(kind, service, retry_after, hang_seconds)
        self._queues[endpoint].extend([fault] * times)

    def take(self, endpoint: Endpoint, service: str) -> HttpFault | None:
        """Remove and return the first queued fault that applies to this request."""
        queue = self._queues[endpoint]
        for index, fault in enumerate(queue):
            if fault.service is None or fault.service == service:
                del queue[index]
                return fault
        return None

    def pending(self, endpoint: Endpoint) -> list[HttpFault]:
        return list(self._queues[endpoint])

    def push_outcome(self, outcome: str, times: int = 1) -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, not {outcome!r}")
        self.next_task_outcome.extend([outcome] * times)

    def take_outcome(self) -> str | None:
        if not self.next_task_outcome:
            return None
        outcome = self.next_task_outcome.popleft()
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown queued task outcome {outcome!r}; known: {OUTCOMES}")
        return outcome

    def clear(self) -> None:
        self.latency = 0.0
        self.next_task_outcome.clear()
        for queue in self._queues.values():
            queue.clear()


@dataclass(frozen=True)
class PromptTags:
    text: str  # the prompt without tags, as rendered into the image
    outcome: str | None
    data_uri: bool


def parse_prompt(prompt: str) -> PromptTags:
    """Split `[sim:...]` tags off a prompt; the first outcome tag wins, unknown tags are dropped."""
    outcome: str | None = None
    data_uri = False
    for match in _TAG_RE.finditer(prompt):
        tag = match.group(1).lower()
        if tag == "data_uri":
            data_uri = True
        elif tag in OUTCOMES and outcome is None:
            outcome = tag
    text = " ".join(_TAG_RE.sub(" ", prompt).split())
    return PromptTags(text=text, outcome=outcome, data_uri=data_uri)
