"""The HTTP exchange both clients share: auth header, send-once POST, retried GET.

Each service client passes a `read` function that turns a response into its payload or raises
from `providers.errors`; this module decides only what may be sent again.

Every request is bounded twice, because a service is a stranger on the wire:

* one deadline (`deadline`, 60 s) covers connect, upload, headers and body together. httpx's
  own timeouts are per read, so a server that sends its headers and then a byte every 20 s
  never trips them; `asyncio.timeout` around the whole exchange does. A submit that runs past
  it may have reached the service: it is `SubmissionOutcomeUnknown`, like any lost answer.
* the answer is streamed and read up to a cap (64 KB for a submit answer, 16 MB for a status
  answer, which may carry a GemPix2 result inline as a data URI); a longer answer is refused
  before it is held, whatever its Content-Length says.

Whatever the service says (the data read from its answer, the text of an error made from it)
leaves this module scrubbed of every key the process holds (`providers.keys`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from providers.errors import (
    AuthenticationError,
    BadRequestError,
    ImageServiceError,
    InsufficientCreditsError,
    RateLimitedError,
    ServiceError,
    ServiceUnreachableError,
    SubmissionOutcomeUnknown,
    TaskNotFoundError,
)
from providers.keys import KEYRING, KeyRing
from providers.lanes import Lanes
from providers.retry import RetryPolicy, parse_retry_after

log = logging.getLogger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
# One deadline for a whole request (connect, upload, headers, body), in seconds.
REQUEST_DEADLINE = 60.0
# A submit answer is a task id in a small envelope.
MAX_SUBMIT_ANSWER_BYTES = 64 * 1024
# A status answer may carry GemPix2's result image inline (a base64 data URI of a 1K image).
MAX_STATUS_ANSWER_BYTES = 16 * 1024 * 1024
# Headers that describe the body as it came over the wire, not as it is held after reading.
_WIRE_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})

# Exceptions raised before any byte of the request left this machine: resending is safe.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def error_for_status(
    status: int,
    message: str,
    *,
    provider: str,
    task_id: str | None = None,
    retry_after: float | None = None,
) -> ImageServiceError:
    """The error from the tree for an HTTP-like status code (HTTP status or a body `code`)."""
    context: dict[str, Any] = {"provider": provider, "task_id": task_id, "status_code": status}
    if "credit" in message.lower():
        return InsufficientCreditsError(message, **context)
    if status == 401 or status == 403:
        return AuthenticationError(message, **context)
    if status == 402:
        return InsufficientCreditsError(message, **context)
    if status == 404:
        return TaskNotFoundError(message, **context)
    if status == 429:
        return RateLimitedError(message, retry_after=retry_after, **context)
    if 400 <= status < 500:
        return BadRequestError(message, **context)
    return ServiceError(message, retry_after=retry_after, **context)


class AnswerTooLarge(Exception):
    """The service's answer went past the byte cap; nothing beyond the cap was held."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"the answer was larger than {cap} bytes")
        self.cap = cap


def json_body(response: httpx.Response) -> dict[str, Any] | None:
    """The response's JSON object, or None when the body is not one."""
    try:
        body = response.json()
    except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
        return None
    return body if isinstance(body, dict) else None


def retry_after_of(response: httpx.Response) -> float | None:
    return parse_retry_after(response.headers.get("Retry-After"))


class ServiceTransport:
    """Sends requests to one service with its key. Owns no client: the caller injects it."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        api_key: str,
        provider: str,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        deadline: float = REQUEST_DEADLINE,
        max_submit_answer: int = MAX_SUBMIT_ANSWER_BYTES,
        max_status_answer: int = MAX_STATUS_ANSWER_BYTES,
        lanes: Lanes | None = None,
        keys: KeyRing = KEYRING,
    ) -> None:
        if deadline <= 0 or max_submit_answer <= 0 or max_status_answer <= 0:
            raise ValueError("deadline and answer caps must be positive")
        self.base_url = base_url.rstrip("/")
        self.provider = provider
        self.deadline = deadline
        self.max_submit_answer = max_submit_answer
        self.max_status_answer = max_status_answer
        self._client = client
        # The gate every request passes first (providers.lanes); shared by a service's clients.
        self.lanes = lanes or Lanes()
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        self.keys = keys
        keys.hold_while(self, api_key)
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = rng

    def __repr__(self) -> str:  # never show the key
        return f"ServiceTransport(provider={self.provider!r}, base_url={self.base_url!r})"

    def scrub(self, value: T) -> T:
        """`value` (text, or data read from an answer) without any key the process holds."""
        return self.keys.scrub_data(value)

    def _read_clean(self, read: Callable[[httpx.Response], T], response: httpx.Response) -> T:
        """`read(response)`, its result and any error it raises scrubbed of every key."""
        try:
            return self.keys.scrub_data(read(response))
        except ImageServiceError as exc:
            self.keys.scrub_error(exc)
            raise

    async def _exchange(self, method: str, path: str, cap: int, **options: Any) -> httpx.Response:
        """One request under one deadline, its answer read into memory up to `cap` bytes.

        Raises TimeoutError past the deadline, AnswerTooLarge past the cap, and httpx's errors.
        The response returned holds the decoded body (its wire headers dropped). The request
        first waits for its lane, outside the deadline: nothing is sent while it waits, and
        goes out on the lane's own connections when it has some."""
        lane = self.lanes.for_method(method)
        async with (
            lane,
            asyncio.timeout(self.deadline),
            (lane.http or self._client).stream(
                method, self.base_url + path, headers=self._headers, **options
            ) as response,
        ):
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > cap:
                raise AnswerTooLarge(cap)
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > cap:
                    raise AnswerTooLarge(cap)
        headers = [
            (name, value)
            for name, value in response.headers.multi_items()
            if name.lower() not in _WIRE_HEADERS
        ]
        return httpx.Response(
            response.status_code, headers=headers, content=bytes(body), request=response.request
        )

    async def post_once(
        self, path: str, body: dict[str, Any], read: Callable[[httpx.Response], T]
    ) -> T:
        """POST `body`; resend only if the request provably never left (a failed connect).

        Once the request may have reached the service, a lost answer or a server error becomes
        `SubmissionOutcomeUnknown`, because a resend could start and bill a second task.
        """
        attempt = 0
        waited = 0.0
        while True:
            attempt += 1
            try:
                response = await self._exchange("POST", path, self.max_submit_answer, json=body)
            except _NEVER_SENT as exc:
                delay = self._retry.delay(attempt, rng=self._rng)
                if not self._retry.allows(attempt, waited, delay):
                    raise ServiceUnreachableError(
                        f"could not connect ({type(exc).__name__})", provider=self.provider
                    ) from exc
                log.warning("%s: connect failed before sending; retrying", self.provider)
                await self._sleep(delay)
                waited += delay
                continue
            except httpx.TransportError as exc:
                raise SubmissionOutcomeUnknown(
                    f"the connection broke after sending ({type(exc).__name__})",
                    provider=self.provider,
                ) from exc
            except TimeoutError as exc:
                raise SubmissionOutcomeUnknown(
                    f"no complete answer within {self.deadline:g} seconds",
                    provider=self.provider,
                ) from exc
            except AnswerTooLarge as exc:
                raise SubmissionOutcomeUnknown(str(exc), provider=self.provider) from exc
            try:
                return self._read_clean(read, response)
            except ServiceError as exc:
                raise SubmissionOutcomeUnknown(
                    f"the service answered HTTP {response.status_code}",
                    provider=self.provider,
                    status_code=response.status_code,
                ) from exc

    async def get_with_retry(
        self,
        path: str,
        params: dict[str, str],
        read: Callable[[httpx.Response], T],
        *,
        task_id: str | None = None,
    ) -> T:
        """GET with retries on 429, 5xx and connection errors, honouring `Retry-After`."""
        attempt = 0
        waited = 0.0
        while True:
            attempt += 1
            error: ImageServiceError
            try:
                response = await self._exchange("GET", path, self.max_status_answer, params=params)
                return self._read_clean(read, response)
            except TimeoutError as exc:
                error = ServiceUnreachableError(
                    f"no complete answer within {self.deadline:g} seconds",
                    provider=self.provider,
                    task_id=task_id,
                )
                error.__cause__ = exc
                retry_after = None
            except AnswerTooLarge as exc:
                error = ServiceError(str(exc), provider=self.provider, task_id=task_id)
                error.__cause__ = exc
                retry_after = None
            except httpx.TransportError as exc:
                error = ServiceUnreachableError(
                    f"connection failed ({type(exc).__name__})",
                    provider=self.provider,
                    task_id=task_id,
                )
                error.__cause__ = exc
                retry_after = None
            except (RateLimitedError, ServiceError) as exc:
                error = exc
                retry_after = exc.retry_after
            if retry_after is not None and retry_after > self._retry.max_total_wait:
                # Asking again before the service allows it is pointless: hand the wait back.
                raise error
            delay = self._retry.delay(attempt, retry_after, self._rng)
            if not self._retry.allows(attempt, waited, delay):
                raise error
            log.info("%s: status read failed (%s); retry in %.1fs", self.provider, error, delay)
            await self._sleep(delay)
            waited += delay
