"""Result checks that stay cheap, and downloads and saves that pass their gates.

The fetcher reads a result's format and size from its header and checks that the file is whole
without decoding its pixels; a PNG's checksums are walked in a worker thread, a bounded number
at once. Results come from a trusted origin (a MockTransport), so no address checks are needed.
"""

from __future__ import annotations

import asyncio
import base64
import io

import httpx
import pytest
from PIL import Image

from providers.types import GeneratedImage, TaskState, TaskStatus
from studio.downloads import DownloadError, FetchedImage, ResultFetcher
from studio.job_spec import JobSpec
from studio.keeper import ResultKeeper
from studio.ledger import Ledger, NewJob

ORIGIN = "https://svc.test"


def encoded(fmt: str, size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise(size, 40).convert("RGB").save(buffer, fmt)
    return buffer.getvalue()


def fetcher_for(handler, **options) -> tuple[ResultFetcher, httpx.AsyncClient]:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return ResultFetcher(trusted={ORIGIN: client}, **options), client


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
async def test_a_whole_result_passes_with_its_header_size(fmt: str) -> None:
    data = encoded(fmt, (300, 200))
    fetcher, client = fetcher_for(lambda request: httpx.Response(200, content=data))
    async with client:
        image = await fetcher.fetch(f"{ORIGIN}/result")
        await fetcher.aclose()
    assert (image.width, image.height, image.data) == (300, 200, data)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
@pytest.mark.parametrize("keep", [0.5, 0.97])
async def test_a_cut_off_result_is_refused(fmt: str, keep: float) -> None:
    whole = encoded(fmt, (300, 200))
    data = whole[: int(len(whole) * keep)]
    fetcher, client = fetcher_for(lambda request: httpx.Response(200, content=data))
    async with client:
        with pytest.raises(DownloadError) as caught:
            await fetcher.fetch(f"{ORIGIN}/result")
        await fetcher.aclose()
    assert "not an image" in caught.value.message


async def test_a_png_with_a_damaged_chunk_is_refused() -> None:
    data = bytearray(encoded("PNG", (300, 200)))
    data[len(data) // 2] ^= 0xFF  # inside the image data: its checksum no longer matches
    fetcher, client = fetcher_for(lambda request: httpx.Response(200, content=bytes(data)))
    async with client:
        with pytest.raises(DownloadError, match="damaged"):
            await fetcher.fetch(f"{ORIGIN}/result")
        await fetcher.aclose()


async def test_a_data_uri_gets_the_same_checks() -> None:
    whole = encoded("PNG")
    fetcher = ResultFetcher()
    image = await fetcher.fetch("data:image/png;base64," + base64.b64encode(whole).decode())
    assert (image.width, image.height) == (64, 48)
    cut = base64.b64encode(whole[: len(whole) // 2]).decode()
    with pytest.raises(DownloadError, match="not an image"):
        await fetcher.fetch("data:image/png;base64," + cut)
    await fetcher.aclose()


async def test_downloads_and_heavy_checks_are_bounded() -> None:
    data = encoded("PNG", (400, 300))
    release = asyncio.Event()
    inside = [0, 0]  # now, peak

    async def handler(request: httpx.Request) -> httpx.Response:
        inside[0] += 1
        inside[1] = max(inside)
        await release.wait()
        inside[0] -= 1
        return httpx.Response(200, content=data)

    fetcher, client = fetcher_for(handler, max_downloads=3, max_checks=2)
    async with client:
        fetches = [asyncio.create_task(fetcher.fetch(f"{ORIGIN}/r{n}")) for n in range(12)]
        await asyncio.sleep(0.05)
        assert inside[0] == 3  # the others wait on the fetcher's own gate
        assert fetcher.downloads.waiting == 9
        release.set()
        images = await asyncio.gather(*fetches)
        await fetcher.aclose()
    assert len(images) == 12
    assert inside[1] == 3
    assert fetcher.downloads.passed == 12
    assert fetcher.checks.passed == 12 and 1 <= fetcher.checks.peak_in_flight <= 2


class HeldFetcher:
    """Stands in for ResultFetcher: every fetch waits for `release`; counts fetches at once."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.release = asyncio.Event()
        self.inside = 0
        self.peak = 0

    async def fetch(self, location: str) -> FetchedImage:
        self.inside += 1
        self.peak = max(self.peak, self.inside)
        await self.release.wait()
        self.inside -= 1
        return FetchedImage(self.data, "image/png", "png", 64, 48, location)


async def test_results_being_kept_at_once_are_bounded(tmp_path) -> None:
    fetcher = HeldFetcher(encoded("PNG"))
    with Ledger(tmp_path / "jobs.sqlite3") as ledger:
        keeper = ResultKeeper(ledger, fetcher, tmp_path / "images", at_once=2)  # type: ignore[arg-type]
        jobs = [
            ledger.record_job(
                NewJob(owner="", service="gempix2", model="google/gempix2", prompt=f"fox {n}")
            )
            for n in range(6)
        ]
        spec = JobSpec(model="google/gempix2", prompt="fox")

        def status(n: int) -> TaskStatus:
            return TaskStatus(
                service="gempix2",
                task_id=f"task-{n}",
                state=TaskState.SUCCEEDED,
                provider_state="success",
                images=(GeneratedImage(f"{ORIGIN}/r{n}.png"),),
            )

        keeping = [
            asyncio.create_task(
                keeper.keep(
                    job.job_id,
                    owner="",
                    created_at=job.created_at,
                    spec=spec,
                    status=status(n),
                    links_expire_at=None,
                )
            )
            for n, job in enumerate(jobs)
        ]
        await asyncio.sleep(0.05)
        assert fetcher.inside == 2 and keeper.lane.waiting == 4  # the rest hold no bytes yet
        fetcher.release.set()
        kept = await asyncio.gather(*keeping)
        assert all(path.is_file() for paths in kept for path in paths)
        assert fetcher.peak == 2 and keeper.lane.passed == 6
