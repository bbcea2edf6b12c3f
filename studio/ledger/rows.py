"""The values the ledger takes and gives back, and how they are read from stored rows.

All are frozen: a row read from the ledger is a snapshot, and changing a job means asking the
ledger to, so its state rules and its events see every change.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from studio.lifecycle import JobState


@dataclass(frozen=True)
class NewJob:
    """A job as recorded before anything is sent."""

    owner: str  # browser id; "" in single-user mode
    service: str  # the service's id, e.g. "gempix2"
    model: str
    prompt: str
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)
    reference_hashes: Sequence[str] = ()
    callback_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass(frozen=True)
class ResultRow:
    """One output image: kept (`path` + `sha256`) or not (`error`, with URL and expiry)."""

    idx: int
    path: str | None
    sha256: str | None
    source_url: str
    expires_at: float | None
    error: str | None

    @property
    def is_kept(self) -> bool:
        return self.path is not None


@dataclass(frozen=True)
class JobRow:
    job_id: str
    owner: str
    service: str
    model: str
    prompt: str
    params: dict[str, Any] = field(hash=False)
    reference_hashes: tuple[str, ...]
    callback_token: str
    task_id: str | None
    state: JobState
    provider_state: str
    credits: float | None
    error_kind: str | None
    error_message: str | None
    created_at: float
    updated_at: float
    submitted_at: float | None
    finished_at: float | None
    results: tuple[ResultRow, ...] = ()
    starred: bool = False
    parent: str | None = None  # the job whose result this one edits (an edit chain's link)

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal


@dataclass(frozen=True)
class RunTime:
    """How long one task ran: from its submit to the moment its success was first seen.

    `params` are the job's stored params (the resolution, whether it ran offline, ...), so a
    reader can tell kinds of tasks apart without the ledger knowing them."""

    model: str
    params: Mapping[str, Any] = field(hash=False)
    seconds: float


@dataclass(frozen=True)
class JobEvent:
    id: int
    job_id: str
    at: float
    state: JobState
    provider_state: str
    detail: str | None


def job_from_row(row: sqlite3.Row, results: tuple[ResultRow, ...] = ()) -> JobRow:
    return JobRow(
        job_id=row["job_id"],
        owner=row["owner"],
        service=row["service"],
        model=row["model"],
        prompt=row["prompt"],
        params=json.loads(row["params"]),
        reference_hashes=tuple(json.loads(row["reference_hashes"])),
        callback_token=row["callback_token"],
        task_id=row["task_id"],
        state=JobState(row["state"]),
        provider_state=row["provider_state"],
        credits=row["credits"],
        error_kind=row["error_kind"],
        error_message=row["error_message"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        submitted_at=row["submitted_at"],
        finished_at=row["finished_at"],
        results=results,
        starred=bool(row["starred"]),
        parent=row["parent"],
    )


def result_from_row(row: sqlite3.Row) -> ResultRow:
    return ResultRow(
        idx=row["idx"],
        path=row["path"],
        sha256=row["sha256"],
        source_url=row["source_url"],
        expires_at=row["expires_at"],
        error=row["error"],
    )


def event_from_row(row: sqlite3.Row) -> JobEvent:
    return JobEvent(
        id=row["id"],
        job_id=row["job_id"],
        at=row["at"],
        state=JobState(row["state"]),
        provider_state=row["provider_state"],
        detail=row["detail"],
    )


def stored_source(source_url: str) -> str:
    """The source URL as stored for a kept result.

    Once a data: URI result is saved, its bytes live in `path` (checked by sha256); keeping
    megabytes of base64 in every history read would only slow the gallery down.
    """
    if source_url.startswith("data:") and len(source_url) > 256:
        head, _, _ = source_url.partition(",")
        return head + ",…"
    return source_url
