"""Fetch a finished task's result image, safely, the moment the task succeeds.

A result arrives as an `https` URL (apixo's expire after 15 days) or a `data:` URI (GemPix2 may
send either). A result URL comes from a remote service, so it is treated like any untrusted link:

* only `https`, only to hosts whose every DNS answer is a public address (`studio.netguard`);
  redirects are followed by hand, each hop checked the same way;
* the request goes to an address that was just checked, never to the name: the URL carries the
  address, the name travels in the `Host` header and, through httpx's `sni_hostname` extension,
  in TLS (SNI and the certificate check), so a DNS answer that changes after the check (DNS
  rebinding) cannot point the request at an internal address. The addresses are tried in the
  resolver's order until one accepts the connection. The public client ignores the
  environment's proxy settings, since a proxy would resolve the name itself;
* the size is bounded twice (Content-Length up front, then the bytes as they stream), and each
  attempt has one deadline, so a server dripping a byte a second cannot hold a job forever;
* the bytes must open with Pillow as PNG, JPEG or WebP, within a pixel budget, and be whole.
  That check is cheap on purpose (a 4K result decoded in full costs about 110 ms of CPU and
  64 MB): the format and the size come from the header; a JPEG must end with its end-of-image
  marker; a WebP must demux whole (Pillow's opener reads its container); a PNG's chunks are
  walked and their checksums verified (`verify()`, no pixel is decoded) in a worker thread, at
  most `max_checks` at once. Downloads themselves pass one gate, at most `max_downloads` in
  flight (`providers.lanes`), so a burst of finished tasks never queues on a connection pool.

URLs on a configured service's own origin (`trusted`) are fetched with that service's client and
without the address checks: that is the service itself (or the simulator on loopback, over http).

Network errors, timeouts, a temporary DNS failure, 429 and 5xx are retried; refusals (unsafe
address, a name that does not exist, too large, not an image, other 4xx) are final. Everything
ends as a `DownloadError` with a plain reason.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import io
import logging
import re
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import httpx
from PIL import Image

from providers.lanes import DEFAULT_LIMITS, Lane
from providers.retry import RetryPolicy, parse_retry_after
from studio import netguard

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

DEFAULT_MAX_BYTES = 40 * 1024 * 1024
# The service clients' policy, shorter: a result link either works in a few tries or has expired.
# A `Retry-After` longer than the total wait ends the tries with the service's own message.
DOWNLOAD_RETRY = RetryPolicy(max_attempts=3, max_total_wait=20.0)
MAX_REDIRECTS = 5
# 4K results are about 17 megapixels; this leaves room and stops a decompression bomb early.
MAX_PIXELS = 64 * 1024 * 1024
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_FORMATS = {
    "PNG": ("image/png", "png"),
    "JPEG": ("image/jpeg", "jpg"),
    "WEBP": ("image/webp", "webp"),
}
_ACCEPT = "image/png,image/jpeg,image/webp;q=0.9,*/*;q=0.1"
_NO_TRUSTED: Mapping[str, httpx.AsyncClient] = MappingProxyType({})
_PUBLIC_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
# Checks that read a whole file (a PNG's checksums) running at once, in worker threads.
HEAVY_CHECKS = 2
_JPEG_END = b"\xff\xd9"


@dataclass(frozen=True)
class FetchedImage:
    """A downloaded result that Pillow has decoded; `source` is the URL, or "data:"."""

    data: bytes
    mime: str
    extension: str
    width: int
    height: int
    source: str


class DownloadError(Exception):
    """A result could not be fetched. `message` says why in plain words; `url` is for display."""

    def __init__(
        self,
        message: str,
        *,
        url: str,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{message} ({url})")
        self.message = message
        self.url = url
        self.retryable = retryable
        self.retry_after = retry_after


def display_url(location: str, limit: int = 80) -> str:
    """A short form of a URL for messages and logs: no query (signed URLs carry tokens there),
    no user info, and never the payload of a data URI."""
    location = location.strip()
    if location[:5].lower() == "data:":
        return "data:"
    try:
        url = httpx.URL(location)
        shown = f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}{url.path}"
        if url.query:
            shown += "?…"
    except Exception:
        shown = re.sub(r"[\x00-\x20\x7f]", "", location.split("?", 1)[0])
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme))


def public_client() -> httpx.AsyncClient:
    """A client for links from outside. It ignores the environment's proxy settings: the fetcher
    connects to addresses it has just checked, and through a proxy the proxy would look the name
    up again and connect wherever its answer points. The caller closes it."""
    return httpx.AsyncClient(timeout=_PUBLIC_TIMEOUT, trust_env=False)


class ResultFetcher:
    """Downloads result images.

    Without `public_http` it makes its own client with `public_client` and closes it in
    `aclose`. An injected client stays its owner's to close; it must not go through a proxy.
    """

    def __init__(
        self,
        public_http: httpx.AsyncClient | None = None,
        *,
        trusted: Mapping[str, httpx.AsyncClient] = _NO_TRUSTED,
        max_bytes: int = DEFAULT_MAX_BYTES,
        deadline: float = 60.0,
        retry: RetryPolicy = DOWNLOAD_RETRY,
        resolver: netguard.Resolver | None = None,
        sleep: Sleep = asyncio.sleep,
        max_downloads: int = DEFAULT_LIMITS.downloads,
        max_checks: int = HEAVY_CHECKS,
    ) -> None:
        if max_bytes <= 0 or deadline <= 0:
            raise ValueError("max_bytes and deadline must be positive")
        self.downloads = Lane("downloads", max_downloads)
        self.checks = Lane("image checks", max_checks)
        self._owns_public_http = public_http is None
        self.public_http = public_client() if public_http is None else public_http
        self.trusted = {_origin(httpx.URL(origin)): client for origin, client in trusted.items()}
        self.max_bytes = max_bytes
        self.deadline = deadline
        self.retry = retry
        self.resolver = resolver
        self.sleep = sleep

    async def aclose(self) -> None:
        """Close the public client if this fetcher made it."""
        if self._owns_public_http:
            await self.public_http.aclose()

    async def fetch(self, location: str) -> FetchedImage:
        """The image at `location` (an https URL or a data URI), or DownloadError."""
        location = location.strip()
        if location[:5].lower() == "data:":
            data = await asyncio.to_thread(self._decode_data_uri, location)
            return await self._inspect(data, "data:", "data:")
        shown = display_url(location)
        waited = 0.0
        for attempt in range(1, self.retry.max_attempts + 1):
            try:
                try:
                    async with self.downloads, asyncio.timeout(self.deadline):
                        data = await self._download(location, shown)
                except TimeoutError:
                    raise DownloadError(
                        f"timed out after {self.deadline:g} seconds", url=shown, retryable=True
                    ) from None
                return await self._inspect(data, location, shown)
            except DownloadError as exc:
                delay = self.retry.delay(attempt, exc.retry_after)
                if not exc.retryable or not self.retry.allows(attempt, waited, delay):
                    raise
                waited += delay
                log.warning(
                    "download of %s failed (%s); retry %d in %.1f s",
                    shown,
                    exc.message,
                    attempt,
                    delay,
                )
            await self.sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises

    # ---- one attempt ----------------------------------------------------------------------------

    async def _download(self, location: str, shown: str) -> bytes:
        """The body at `location` after following redirects; every hop checked before use."""
        try:
            url = httpx.URL(location)
            for _hop in range(MAX_REDIRECTS + 1):
                async with self._get(url) as response:
                    if response.status_code in _REDIRECT_STATUSES:
                        target = response.headers.get("Location")
                        if not target:
                            raise DownloadError("a redirect without a target", url=shown)
                        url = url.join(target)
                        continue
                    _check_status(response, shown)
                    return await self._read_body(response, shown)
            raise DownloadError(f"more than {MAX_REDIRECTS} redirects", url=shown)
        except netguard.HostLookupError as exc:
            raise DownloadError(str(exc), url=shown, retryable=exc.temporary) from None
        except netguard.UnsafeUrlError as exc:
            raise DownloadError(f"refused an unsafe link: {exc}", url=shown) from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise DownloadError(f"not a valid link: {exc}", url=shown) from None
        except httpx.TimeoutException:
            raise DownloadError("the server timed out", url=shown, retryable=True) from None
        except httpx.DecodingError:
            raise DownloadError("the server sent a corrupt response", url=shown) from None
        except httpx.HTTPError as exc:
            raise DownloadError(
                f"network error ({type(exc).__name__})", url=shown, retryable=True
            ) from None

    @contextlib.asynccontextmanager
    async def _get(self, url: httpx.URL) -> AsyncIterator[httpx.Response]:
        """GET `url` without following redirects: a trusted origin by name with its own client,
        any other host only at an address checked just now."""
        client = self.trusted.get(_origin(url))
        if client is not None:
            async with client.stream(
                "GET", url, headers={"Accept": _ACCEPT}, follow_redirects=False
            ) as response:
                yield response
            return
        addresses = await self._check_public(url)
        async with contextlib.AsyncExitStack() as stack:
            yield await self._first_answer(stack, url, addresses)

    async def _first_answer(
        self, stack: contextlib.AsyncExitStack, url: httpx.URL, addresses: list[netguard.IPAddress]
    ) -> httpx.Response:
        """The response from the first of `addresses` that accepts a connection."""
        *others, last = addresses
        for address in others:
            try:
                return await stack.enter_async_context(self._get_at(url, address))
            except (httpx.ConnectError, httpx.ConnectTimeout):
                continue  # the name has other checked addresses; one of them may answer
        return await stack.enter_async_context(self._get_at(url, last))

    def _get_at(
        self, url: httpx.URL, address: netguard.IPAddress
    ) -> contextlib.AbstractAsyncContextManager[httpx.Response]:
        """GET `url` from `address`, with no DNS lookup of its own. The name goes in the Host
        header and in `sni_hostname`, which httpx uses for SNI and to verify the certificate."""
        return self.public_http.stream(
            "GET",
            url.copy_with(host=str(address)),
            headers={"Accept": _ACCEPT, "Host": url.netloc.decode("ascii")},
            extensions={"sni_hostname": url.raw_host.decode("ascii")},
            follow_redirects=False,
        )

    async def _check_public(self, url: httpx.URL) -> list[netguard.IPAddress]:
        """The addresses of `url`'s host, refused unless `url` is https and every address is
        public."""
        netguard.check_public_url(str(url))
        # Judge the host httpx will connect to (its own parse), not only urllib's reading.
        if url.scheme != "https" or url.userinfo:
            raise netguard.UnsafeUrlError("only https:// links can be used")
        return await netguard.resolve_public_addresses(
            url.host, url.port or 443, resolver=self.resolver
        )

    async def _read_body(self, response: httpx.Response, shown: str) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise DownloadError(
                f"too large ({int(declared)} bytes; the limit is {self.max_bytes})", url=shown
            )
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > self.max_bytes:
                raise DownloadError(f"too large (more than {self.max_bytes} bytes)", url=shown)
        return bytes(body)

    async def _inspect(self, data: bytes, source: str, shown: str) -> FetchedImage:
        """The image's format and size from its header, and its integrity checked cheaply:
        a PNG's checksums in a worker thread (at most `max_checks` at once)."""
        image = _inspect_header(data, source, shown)
        if image.mime == "image/png":
            async with self.checks:
                await asyncio.to_thread(_verify_png, data, shown)
        return image

    # ---- data URIs ------------------------------------------------------------------------------

    def _decode_data_uri(self, location: str) -> bytes:
        header, comma, payload = location.partition(",")
        if not comma:
            raise DownloadError("not a valid data URI", url="data:")
        # Base64 is 4 characters per 3 bytes; allow line breaks on top. Checked before decoding.
        encoded_limit = (self.max_bytes + 2) // 3 * 4 + self.max_bytes // 16 + 4
        if len(payload) > encoded_limit:
            raise DownloadError(f"too large (more than {self.max_bytes} bytes)", url="data:")
        try:
            if header.lower().replace(" ", "").endswith(";base64"):
                compact = re.sub(r"\s+", "", urllib.parse.unquote(payload))
                data = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
            else:
                data = urllib.parse.unquote_to_bytes(payload)
        except (binascii.Error, ValueError):
            raise DownloadError("not an image (bad base64 in the data URI)", url="data:") from None
        if len(data) > self.max_bytes:
            raise DownloadError(f"too large (more than {self.max_bytes} bytes)", url="data:")
        return data


def _check_status(response: httpx.Response, shown: str) -> None:
    status = response.status_code
    if status == 200:
        return
    if status == 429 or status >= 500:
        raise DownloadError(
            f"the server answered HTTP {status}",
            url=shown,
            retryable=True,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    raise DownloadError(f"the server answered HTTP {status}", url=shown)


def _inspect_header(data: bytes, source: str, shown: str) -> FetchedImage:
    """Format, size and pixel budget from the header; a JPEG's and a WebP's completeness from
    their framing. Nothing is decoded, so it is cheap enough for the event loop."""
    try:
        with Image.open(io.BytesIO(data), formats=list(_FORMATS)) as image:
            fmt, (width, height) = str(image.format), image.size
    except Image.DecompressionBombError:
        raise DownloadError("too large (too many pixels)", url=shown) from None
    except Exception:
        raise DownloadError("not an image (PNG, JPEG or WebP expected)", url=shown) from None
    if width * height > MAX_PIXELS:
        raise DownloadError(f"too large ({width}×{height} pixels)", url=shown)
    # A cut-off JPEG lacks its end-of-image marker (its entropy-coded data never holds FF D9).
    # (A WebP is demuxed whole by Pillow's opener, which refuses a cut one; a PNG is verified.)
    if fmt == "JPEG" and _JPEG_END not in data[-64:]:
        raise DownloadError("not an image (the JPEG file is cut off)", url=shown)
    mime, extension = _FORMATS[fmt]
    return FetchedImage(data, mime, extension, width, height, source)


def _verify_png(data: bytes, shown: str) -> None:
    """Walk a PNG's chunks to its end and check their checksums (no pixel is decoded)."""
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            image.verify()
    except Exception:
        raise DownloadError(
            "not an image (the PNG file is damaged or cut off)", url=shown
        ) from None
