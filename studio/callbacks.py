"""Service callbacks: a hint to read the task's status now, never proof of its outcome.

Neither service signs its callbacks, so a callback only wakes the job's watcher, which then
reads the status from the service itself. Each job's callback URL carries a secret token of
its own; a request without the right token is ignored.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from providers.types import TaskStatus
from studio.ledger import JobRow

CALLBACK_PATH = "/callbacks/{job_id}/{token}"


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
