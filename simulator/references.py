"""Reading reference images the way the real services must: from data: URIs or over HTTP."""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import urllib.parse

import httpx
from PIL import Image

# apixo documents 10 MB per reference; the same cap keeps GemPix2 fetches bounded.
MAX_REFERENCE_BYTES = 10 * 1024 * 1024
THUMBNAIL_SIZE = (256, 256)


class ReferenceFetchError(Exception):
    """A reference could not be fetched or decoded; `url` names it."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{reason}: {url[:120]}")
        self.url = url
        self.reason = reason


def decode_data_uri(uri: str) -> bytes:
    header, sep, payload = uri.partition(",")
    if not sep or not header.lower().startswith("data:"):
        raise ReferenceFetchError(uri, "malformed data URI")
    if header.lower().endswith(";base64"):
        try:
            return base64.b64decode(payload, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise ReferenceFetchError(uri, "data URI is not valid base64") from exc
    return urllib.parse.unquote_to_bytes(payload)


def thumbnail_from_bytes(url: str, data: bytes) -> Image.Image:
    if len(data) > MAX_REFERENCE_BYTES:
        raise ReferenceFetchError(url, "image larger than 10 MB")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            thumb = image.convert("RGB")
    except Exception as exc:  # Pillow raises many types for undecodable input
        raise ReferenceFetchError(url, "not a readable image") from exc
    thumb.thumbnail(THUMBNAIL_SIZE)
    return thumb


async def _fetch(url: str, client: httpx.AsyncClient) -> bytes:
    try:
        async with client.stream("GET", url) as response:
            if response.status_code >= 400:
                raise ReferenceFetchError(url, f"HTTP {response.status_code}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_REFERENCE_BYTES:
                    raise ReferenceFetchError(url, "image larger than 10 MB")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as exc:
        raise ReferenceFetchError(url, f"fetch failed ({type(exc).__name__})") from exc


async def load_reference(url: str, client: httpx.AsyncClient) -> Image.Image:
    if url.lower().startswith("data:"):
        data = decode_data_uri(url)
    elif url.lower().startswith(("http://", "https://")):
        data = await _fetch(url, client)
    else:
        raise ReferenceFetchError(url, "unsupported URL scheme")
    return await asyncio.to_thread(thumbnail_from_bytes, url, data)


async def load_references(urls: list[str], client: httpx.AsyncClient) -> list[Image.Image]:
    """Thumbnails of all references, in order; the first failure (in list order) is raised."""
    results = await asyncio.gather(
        *(load_reference(url, client) for url in urls), return_exceptions=True
    )
    images: list[Image.Image] = []
    for url, result in zip(urls, results, strict=True):
        if isinstance(result, ReferenceFetchError):
            raise result
        if isinstance(result, BaseException):
            raise ReferenceFetchError(
                url, f"unexpected error ({type(result).__name__})"
            ) from result
        images.append(result)
    return images
