"""Keeping a finished task's results: fetch each image once, tag it, write it atomically.

Provider result links expire (Nano Banana Pro's after a day, GemPix2's sooner), so results are
fetched as soon as a task succeeds and the ledger records each kept file. A job resumed after a
restart never fetches twice a result it already kept.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from pathlib import Path

from providers.lanes import DEFAULT_LIMITS, Lane
from providers.types import GeneratedImage, TaskStatus
from studio.downloads import DownloadError, ResultFetcher
from studio.files import result_filename, write_atomically
from studio.job_spec import JobSpec
from studio.ledger import Ledger
from studio.metadata import embed_parameters


class ResultKeeper:
    """Writes results under `outputs_dir/<owner folder>/<day>/` and records them.

    At most `at_once` results are between their download and their ledger record at any time
    (a lane, `providers.lanes`): when thousands of tasks end together, the images waiting for a
    worker thread to write them would otherwise pile up in memory (5,000 tasks: 820 MB)."""

    def __init__(
        self,
        ledger: Ledger,
        fetcher: ResultFetcher,
        outputs_dir: Path,
        at_once: int = DEFAULT_LIMITS.downloads,
    ) -> None:
        self.ledger = ledger
        self.fetcher = fetcher
        self.outputs_dir = outputs_dir
        self.lane = Lane("results being kept", at_once)

    async def keep(
        self,
        job_id: str,
        *,
        owner: str,
        created_at: float,
        spec: JobSpec,
        status: TaskStatus,
        links_expire_at: float | None,
    ) -> tuple[Path, ...]:
        """Every result of `status`, kept; DownloadError (recorded) when one cannot be."""
        kept = await asyncio.to_thread(self._kept_results, job_id)
        files = []
        created = datetime.fromtimestamp(created_at, UTC)
        folder = self.outputs_dir / owner_folder(owner) / created.strftime("%Y-%m-%d")
        for index, image in enumerate(status.images, start=1):
            if index in kept:
                files.append(kept[index])
                continue
            async with self.lane:
                files.append(
                    await self._keep_one(
                        job_id, index, image, folder, created, spec, status, links_expire_at
                    )
                )
        return tuple(files)

    async def _keep_one(
        self,
        job_id: str,
        index: int,
        image: GeneratedImage,
        folder: Path,
        created: datetime,
        spec: JobSpec,
        status: TaskStatus,
        links_expire_at: float | None,
    ) -> Path:
        """Fetch, tag, write and record one result."""
        source_url = "data:" if image.is_data_uri else image.location
        try:
            fetched = await self.fetcher.fetch(image.location)
        except DownloadError as exc:
            await asyncio.to_thread(
                self.ledger.record_download_failure,
                job_id,
                index,
                source_url=source_url,
                expires_at=links_expire_at,
                message=exc.message,
            )
            raise
        params = {
            "model": spec.model,
            "prompt": spec.prompt,
            **spec.params(),
            "task_id": status.task_id,
            "reference_hashes": list(spec.reference_hashes),
            "credits": status.credits,
        }
        data = embed_parameters(fetched.data, fetched.mime, params)
        name = result_filename(
            created, spec.model, spec.prompt, status.task_id, index, fetched.extension
        )
        path = await asyncio.to_thread(write_atomically, folder, name, data)
        await asyncio.to_thread(
            self.ledger.record_result,
            job_id,
            index,
            path=str(path),
            sha256=hashlib.sha256(data).hexdigest(),
            source_url=source_url,
        )
        return path

    def _kept_results(self, job_id: str) -> dict[int, Path]:
        row = self.ledger.job(job_id)
        results = row.results if row else ()
        return {r.idx: Path(r.path) for r in results if r.path and Path(r.path).is_file()}


def owner_folder(owner: str) -> str:
    """Each visitor's results live under a folder named by a hash of their secret browser id,
    so a file's path cannot be guessed without that id."""
    return hashlib.sha256(owner.encode()).hexdigest()[:32] if owner else "local"
