"""The client shape every service shares: submit once, read a status, read a callback.

Each service module subclasses `ServiceClient` with its paths, its `Envelope` (how an answer
says ok, and where its error text is) and its wire format (pure functions that build the submit
body and parse answers); the HTTP rules live in the transport.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx

from providers.errors import ServiceError
from providers.keys import KEYRING, KeyRing
from providers.transport import ServiceTransport, error_for_status, json_body, retry_after_of
from providers.types import GenerationRequest, SubmittedTask, TaskState, TaskStatus

# Text from a service is bounded before anything keeps it: a task id is a short token (it is
# stored, shown and sent back in every status query), a message a sentence or two.
MAX_TASK_ID_CHARS = 200
MAX_SERVICE_TEXT_CHARS = 500
MAX_FAIL_CODE_CHARS = 64
# One task makes one image (GemPix2 and apixo alike); more than this is not a real answer.
MAX_RESULT_IMAGES = 16
_TASK_ID = re.compile(rf"[\x21-\x7e]{{1,{MAX_TASK_ID_CHARS}}}")  # printable ASCII, no space
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


@dataclass(frozen=True)
class Envelope:
    """How a service wraps its answers: `{"code": ok_code, "data": {...}}` on success, an error
    text under the first of `message_keys` otherwise. The HTTP status is read first (as both
    seeds advise), then the body's `code`, which can be an error even when HTTP says 200."""

    provider: str
    ok_code: int
    message_keys: tuple[str, ...] = ("message",)

    def read(self, response: httpx.Response, *, task_id: str | None = None) -> dict[str, Any]:
        """The `data` object of a successful answer; otherwise the fitting error from the tree."""
        body = json_body(response)
        code = body.get("code") if body is not None else None
        if response.is_success and body is not None and code == self.ok_code:
            data = body.get("data")
            if isinstance(data, dict):
                return data
            raise ServiceError("answer without data", provider=self.provider, task_id=task_id)
        if body is None:
            message = f"unreadable answer (HTTP {response.status_code})"
            if response.is_success:
                raise ServiceError(
                    message,
                    provider=self.provider,
                    task_id=task_id,
                    status_code=response.status_code,
                )
        else:
            found = (service_text(body.get(key)) for key in self.message_keys)
            message = next((text for text in found if text), "no message")
        status = response.status_code
        if response.is_success:  # HTTP 200 with a failing body code
            status = code if isinstance(code, int) and code >= 400 else 400
        raise error_for_status(
            status,
            message,
            provider=self.provider,
            task_id=task_id,
            retry_after=retry_after_of(response),
        )


class ServiceClient:
    service: ClassVar[str]
    provider: ClassVar[str]
    envelope: ClassVar[Envelope]
    submit_path: ClassVar[str]
    status_path: ClassVar[str]
    task_param: ClassVar[str]  # the status query's task-id parameter

    def __init__(self, transport: ServiceTransport) -> None:
        self._transport = transport

    # The wire format, supplied by each service as plain functions.
    @staticmethod
    def build_submit_body(request: GenerationRequest) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def parse_submit(data: dict[str, Any]) -> SubmittedTask:
        raise NotImplementedError

    @staticmethod
    def parse_task(data: dict[str, Any]) -> TaskStatus:
        raise NotImplementedError

    async def submit(self, request: GenerationRequest) -> SubmittedTask:
        # Parsing happens inside post_once: a 200 without a usable task id is an outcome unknown.
        return await self._transport.post_once(
            self.submit_path,
            self.build_submit_body(request),
            lambda response: self.parse_submit(self.envelope.read(response)),
        )

    async def fetch_status(self, task_id: str) -> TaskStatus:
        data = await self._transport.get_with_retry(
            self.status_path,
            {self.task_param: task_id},
            lambda response: self.envelope.read(response, task_id=task_id),
            task_id=task_id,
        )
        return self.parse_task(data)

    @staticmethod
    def callback_data(payload: dict[str, Any]) -> dict[str, Any]:
        """Where a callback body keeps the task's data (the whole body unless a service says)."""
        return payload

    def parse_callback(self, payload: dict[str, Any]) -> TaskStatus:
        """A callback body as a status. It comes from outside like any answer: scrubbed first
        (by the transport's key ring; the process's one when the client has no transport)."""
        keys: KeyRing = getattr(self._transport, "keys", KEYRING)
        return self.parse_task(self.callback_data(keys.scrub_data(payload)))


# ---- reading answers: what every service's parser does the same way --------------------------


def service_text(value: Any, limit: int = MAX_SERVICE_TEXT_CHARS) -> str | None:
    """A service's free text (a message, a fail code) as one bounded line; None for none.

    Numbers become text; objects and lists are not text and count as none. Control characters
    become spaces, so a message cannot break a log line or the status line."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        return None
    text = _CONTROL.sub(" ", value[: limit * 2]).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text or None


def task_id_in(data: dict[str, Any], field: str, *, provider: str) -> str:
    """The task id an answer names under `field` ("" when it names none: absent, empty, or not
    a string at all).

    An id is printable ASCII without spaces and at most MAX_TASK_ID_CHARS long; any other
    string is a ServiceError rather than something to store and send back in every query."""
    task_id = data.get(field)
    if not isinstance(task_id, str) or task_id == "":
        return ""
    if not _TASK_ID.fullmatch(task_id):
        raise ServiceError(
            f"the answer's {field} is not a plain id of at most {MAX_TASK_ID_CHARS} characters",
            provider=provider,
        )
    return task_id


def submitted_task(
    data: dict[str, Any], field: str, *, service: str, provider: str
) -> SubmittedTask:
    """The task a submit answer names under `field`; a ServiceError when it names none."""
    task_id = task_id_in(data, field, provider=provider)
    if not task_id:
        raise ServiceError(f"submit answer has no {field}", provider=provider)
    return SubmittedTask(service=service, task_id=task_id)


def known_state(
    states: Mapping[str, TaskState], provider_state: str, *, provider: str, task_id: str
) -> TaskState:
    """The service's state word in our terms; a ServiceError for a word it never documented."""
    state = states.get(provider_state)
    if state is None:
        raise ServiceError(
            f"unknown task status {service_text(provider_state, 40)!r}",
            provider=provider,
            task_id=task_id,
        )
    return state


def success_needs_an_image(
    state: TaskState, images: tuple[object, ...], fail_message: str | None
) -> tuple[TaskState, str | None]:
    """A success without an image is no success to the user: say so rather than show nothing."""
    if state is TaskState.SUCCEEDED and not images:
        return TaskState.FAILED, fail_message or "the service returned no image"
    return state, fail_message


def optional_credits(value: Any) -> float | None:
    """A credit count as a number, whatever the service sent (`"0.500000"`, 0.5, junk)."""
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
