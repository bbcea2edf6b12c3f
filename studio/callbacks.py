"""Service callbacks: a hint to read the task's status now, never proof of its outcome.

Neither service signs its callbacks, so a callback only wakes the job's watcher, which then
reads the status from the service itself. Each job's callback URL carries a secret token of
its own; a request without the right token is ignored.

The route exists only when the app has a public address (callbacks are on), and its body is
read as it streams, refused past `MAX_CALLBACK_BYTES` before any byte is parsed: a callback is a
task id and a state, and anyone who can reach the app can post to the route.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from providers.types import TaskStatus
from studio.ledger import JobRow

CALLBACK_PATH = "/callbacks/{job_id}/{token}"
# A callback body needs only the task's id and state (a result link or two): 16 KB is plenty.
# A GemPix2 callback carrying its image inline as a data URI is refused; the watcher then reads
# the status on its own schedule, as it does without callbacks.
MAX_CALLBACK_BYTES = 16 * 1024


class CallbackTooLarge(ValueError):
    """The callback body is longer than the cap; nothing past the cap was read."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"a callback body may be at most {cap:,} bytes")


async def read_callback_body(
    headers: Mapping[str, str], chunks: AsyncIterator[bytes], cap: int = MAX_CALLBACK_BYTES
) -> Any:
    """The callback's JSON value (None when the body is not JSON), read as it streams.

    Raises CallbackTooLarge when the declared length or the bytes received pass `cap`."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise CallbackTooLarge(cap)
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > cap:
            raise CallbackTooLarge(cap)
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def callback_url(public_url: str, job_id: str, token: str) -> str:
    return public_url.rstrip("/") + CALLBACK_PATH.format(job_id=job_id, token=token)


def accepts_callback(
    row: JobRow | None,
    token: str,
    payload: Any,
    parse: Callable[[dict[str, Any]], TaskStatus],
) -> bool:
    """Whether a callback for `row` should wake its watcher: the token matches (compared in
    constant time) and the body parses as a status of the job's own task."""
    status = _genuine_status(row, token, payload, parse)
    if row is None or status is None:
        return False
    return row.task_id is None or status.task_id in ("", row.task_id)


def revealed_task_id(
    row: JobRow | None,
    token: str,
    payload: Any,
    parse: Callable[[dict[str, Any]], TaskStatus],
) -> str | None:
    """The task id a genuine callback for `row` carries (token matched, body parsed), or None.

    For a job whose submit outcome was unknown this is the one way to learn its task: the
    token was only ever sent in that job's POST, so a call bearing it comes from the task the
    POST started. The id is then only watched, never trusted for the outcome.
    """
    status = _genuine_status(row, token, payload, parse)
    return (status.task_id or None) if status is not None else None


def _genuine_status(
    row: JobRow | None,
    token: str,
    payload: Any,
    parse: Callable[[dict[str, Any]], TaskStatus],
) -> TaskStatus | None:
    if row is None or not secrets.compare_digest(row.callback_token, token):
        return None
    if not isinstance(payload, dict):
        return None
    try:
        return parse(payload)
    except Exception:  # a body we cannot read is no reason to read the status early
        return None
