"""Reading reference images the way the real services must: from data: URIs or over HTTP.

A `data:` URI is decoded here, without any network. An http(s) URL goes to a `FetchReference`
function that the simulator is given:

* inside the app (the offline preview, built by `studio.backends`), the app's own guarded
  fetcher: https only, a host only if every address it resolves to is public, the connection
  pinned to the checked address, every redirect checked the same way, a size cap and a deadline.
  The preview runs inside the app's process and draws what it fetched into the picture the
  visitor receives, so a plain client (which follows redirects and resolves names again) would
  let a visitor's link reach loopback or a cloud metadata address and see the answer;
* standalone (`python -m simulator`) and in tests, `client_fetch(client)`: a plain httpx client
  that does not follow redirects. That simulator is a developer's stand-in for a remote
  service, run on loopback; it is not exposed to visitors.

Memory stays bounded: a reference is at most 10 MB and 25 megapixels (both checked before
decoding), it is decoded one at a time per process, and only a 256 px thumbnail is kept.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import threading
import urllib.parse
from collections.abc import Awaitable, Callable

import httpx
from PIL import Image

# apixo documents 10 MB per reference; the same cap keeps GemPix2 fetches bounded.
MAX_REFERENCE_BYTES = 10 * 1024 * 1024
# Pixels decoded per reference (checked from the header first): 25 MP is a large phone photo.
MAX_REFERENCE_PIXELS = 25_000_000
THUMBNAIL_SIZE = (256, 256)
# Base64 is 4 characters per 3 bytes; a payload longer than this cannot fit the byte cap.
_MAX_ENCODED_CHARS = (MAX_REFERENCE_BYTES + 2) // 3 * 4 + MAX_REFERENCE_BYTES // 16 + 4
_decoding = threading.BoundedSemaphore(2)  # full decodes at once, across all tasks

FetchReference = Callable[[str], Awaitable[bytes]]


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
    if len(payload) > _MAX_ENCODED_CHARS:
        raise ReferenceFetchError(uri, "image larger than 10 MB")
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
            width, height = image.size
            if width * height > MAX_REFERENCE_PIXELS:
                raise ReferenceFetchError(
                    url, f"image larger than {MAX_REFERENCE_PIXELS // 1_000_000} megapixels"
                )
            image.draft("RGB", THUMBNAIL_SIZE)  # JPEG: decode at a reduced scale
            with _decoding:
                image.load()
                thumb = image.convert("RGB")
    except ReferenceFetchError:
        raise
    except Exception as exc:  # Pillow raises many types for undecodable input
        raise ReferenceFetchError(url, "not a readable image") from exc
    thumb.thumbnail(THUMBNAIL_SIZE)
    return thumb


async def _fetch(url: str, client: httpx.AsyncClient) -> bytes:
    try:
        async with client.stream("GET", url, follow_redirects=False) as response:
            if response.status_code >= 300:
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


def client_fetch(client: httpx.AsyncClient) -> FetchReference:
    """Fetch with a plain client, never following a redirect (a 3xx is a failed fetch)."""

    async def fetch(url: str) -> bytes:
        return await _fetch(url, client)

    return fetch


async def load_reference(url: str, fetch: FetchReference) -> Image.Image:
    if url[:5].lower() == "data:":
        data = decode_data_uri(url)
    elif url.lower().startswith(("http://", "https://")):
        try:
            data = await fetch(url)
        except ReferenceFetchError:
            raise
        except Exception as exc:  # the injected fetcher's refusal (unsafe address, too large)
            raise ReferenceFetchError(url, f"fetch refused ({str(exc)[:200]})") from exc
    else:
        raise ReferenceFetchError(url, "unsupported URL scheme")
    return await asyncio.to_thread(thumbnail_from_bytes, url, data)


async def load_references(urls: list[str], fetch: FetchReference) -> list[Image.Image]:
    """Thumbnails of all references, in order; the first failure (in list order) is raised."""
    results = await asyncio.gather(
        *(load_reference(url, fetch) for url in urls), return_exceptions=True
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
