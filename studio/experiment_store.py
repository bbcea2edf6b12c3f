"""An experiment's persisted state: its plan, whose it is, and what became of each cell.

One JSON file per experiment, `<data dir>/experiments/<owner folder>/<id>.json`, written
atomically (`studio.files.write_atomically`) before the first cell is sent and after every change
to a cell, so a restart knows which cells were sent (their job ids), which were being sent (the
ledger has their jobs, found by the experiment id and the cell's coordinates in their params),
and which remain. The files hold no key: only which services a visitor's own key was used for.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from providers.catalog import Catalog
from studio.experiments import Plan
from studio.files import write_atomically
from studio.keeper import owner_folder
from studio.visitors import UNKNOWN_VISITOR, Visitor

log = logging.getLogger(__name__)

_ID = re.compile(r"[0-9a-f]{32}")
FORMAT = 1


class CellStatus(StrEnum):
    PENDING = "pending"  # nothing sent
    STARTING = "starting"  # being recorded and sent: the ledger knows whether it was
    STARTED = "started"  # its jobs are in the ledger (job_ids)
    NOT_SENT = "not_sent"  # never will be (stopped, refused, no key after a restart): `note`


class RunState(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    FINISHED = "finished"


@dataclass
class CellRun:
    status: CellStatus = CellStatus.PENDING
    job_ids: list[str] = field(default_factory=list)
    note: str = ""  # why a cell was not sent, in a plain sentence


@dataclass
class ExperimentRun:
    """A planned experiment and how far it got. Mutated only by the experiment runner."""

    plan: Plan
    owner: str
    created_at: float
    # Services the visitor's own key was used for (never the key): after a restart, cells of
    # these services cannot be sent unless the app has a key of its own.
    keyed_services: tuple[str, ...] = ()
    # Who started it, for the limits on the owner's keys when a restart sends the rest.
    visitor: Visitor = UNKNOWN_VISITOR
    state: RunState = RunState.RUNNING
    finished_at: float | None = None
    cells: dict[str, CellRun] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for cell in self.plan.cells:
            self.cells.setdefault(cell.key, CellRun())

    @property
    def id(self) -> str:
        return self.plan.experiment_id

    @property
    def job_ids(self) -> list[str]:
        return [job_id for cell in self.cells.values() for job_id in cell.job_ids]

    def refuse_keyed_cells(self, catalog: Catalog, has_key: Callable[[str], bool]) -> None:
        """After a restart: the cells that needed the visitor's own key (never stored) are not
        sent, unless the app has a key of its own for that service (`has_key`)."""
        for cell in self.plan.cells:
            state = self.cells[cell.key]
            service = catalog.model(cell.model).service
            if (
                state.status is CellStatus.PENDING
                and service in self.keyed_services
                and not has_key(service)
            ):
                label = catalog.service(service).label
                state.status = CellStatus.NOT_SENT
                state.note = (
                    f"Not sent: the app restarted, and this experiment used your own {label} "
                    "key, which is never stored. Run the experiment again to send it."
                )

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "plan": self.plan.as_dict(),
            "owner": self.owner,
            "created_at": self.created_at,
            "keyed_services": list(self.keyed_services),
            "visitor": {"browser": self.visitor.browser, "address": self.visitor.address},
            "state": str(self.state),
            "finished_at": self.finished_at,
            "cells": {
                key: {"status": str(c.status), "job_ids": c.job_ids, "note": c.note}
                for key, c in self.cells.items()
            },
        }

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> ExperimentRun:
        cells = {
            str(key): CellRun(CellStatus(c["status"]), [str(j) for j in c["job_ids"]], c["note"])
            for key, c in value["cells"].items()
        }
        return cls(
            plan=Plan.from_dict(value["plan"]),
            owner=str(value["owner"]),
            created_at=float(value["created_at"]),
            keyed_services=tuple(value.get("keyed_services", ())),
            visitor=Visitor(**value["visitor"]) if value.get("visitor") else UNKNOWN_VISITOR,
            state=RunState(value["state"]),
            finished_at=value.get("finished_at"),
            cells=cells,
        )


class ExperimentStore:
    """The experiment files under `folder`, one folder per owner (as results are)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._lock = threading.Lock()
        self._written: dict[str, int] = {}  # experiment id → version on disk
        self._versions = itertools.count(1)

    def snapshot(self, run: ExperimentRun) -> tuple[int, dict[str, Any]]:
        """The run as it is now, numbered: take it on the event loop, write it off it."""
        return next(self._versions), run.as_dict()

    def save(self, run: ExperimentRun) -> None:
        self.write(*self.snapshot(run))

    def write(self, version: int, value: dict[str, Any]) -> None:
        """Write a snapshot unless a newer one of the same experiment is already on disk (two
        writes racing in threads never leave the older one last)."""
        experiment_id = str(value["plan"]["experiment_id"])
        data = json.dumps(value, ensure_ascii=False, indent=1).encode()
        folder = self.folder / owner_folder(str(value["owner"]))
        with self._lock:
            if self._written.get(experiment_id, 0) > version:
                return
            write_atomically(folder, f"{experiment_id}.json", data)
            self._written[experiment_id] = version

    def load(self, experiment_id: str, owner: str | None) -> ExperimentRun | None:
        """The experiment, if it exists and (with `owner`) is that owner's."""
        if not _ID.fullmatch(experiment_id or ""):
            return None
        folders = [self.folder / owner_folder(owner)] if owner is not None else self._folders()
        for folder in folders:
            run = self._read(folder / f"{experiment_id}.json")
            if run is not None and (owner is None or run.owner == owner):
                return run
        return None

    def latest(self, owner: str | None) -> ExperimentRun | None:
        """The owner's newest experiment (everyone's, with None)."""
        found = self.recent(owner, 1)
        return found[0] if found else None

    def recent(self, owner: str | None, limit: int) -> list[ExperimentRun]:
        """The owner's (everyone's, with None) `limit` latest written experiments, newest
        started first: only those files are read."""
        folders = [self.folder / owner_folder(owner)] if owner is not None else self._folders()
        paths = [p for folder in folders for p in self._files(folder)]
        runs: list[ExperimentRun] = []
        for path in sorted(paths, key=_mtime, reverse=True):
            if len(runs) >= limit:
                break
            run = self._read(path)
            if run is not None and (owner is None or run.owner == owner):
                runs.append(run)
        return sorted(runs, key=lambda r: r.created_at, reverse=True)

    def unfinished(self) -> Iterator[ExperimentRun]:
        """Every experiment still running when the app stopped."""
        for folder in self._folders():
            for path in self._files(folder):
                run = self._read(path)
                if run is not None and run.state is RunState.RUNNING:
                    yield run

    def _folders(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return [p for p in self.folder.iterdir() if p.is_dir()]

    @staticmethod
    def _files(folder: Path) -> list[Path]:
        if not folder.is_dir():
            return []
        return [p for p in folder.glob("*.json") if _ID.fullmatch(p.stem)]

    @staticmethod
    def _read(path: Path) -> ExperimentRun | None:
        try:
            return ExperimentRun.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("experiment file %s cannot be read: %s", path.name, exc)
            return None


def _mtime(path: Path) -> float:
    with contextlib.suppress(OSError):
        return path.stat().st_mtime
    return 0.0
