"""Result downloads: fake servers behind httpx.MockTransport, DNS from an injected resolver."""

from __future__ import annotations

import asyncio
import base64
import io
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from PIL import Image

from providers.retry import RetryPolicy
from studio.downloads import (
    DownloadError,
    FetchedImage,
    ResultFetcher,
    display_url,
)

PUBLIC_IP = "93.184.216.34"
DNS = {
    "cdn.example.com": [PUBLIC_IP],
    "other.example.net": ["2606:2800:220:1:248:1893:25c8:1946"],
    "internal.example.com": ["10.0.0.5"],
    "mixed.example.com": [PUBLIC_IP, "192.168.1.10"],
}


def image_bytes(fmt: str, size: tuple[int, int] = (24, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 90)).save(buffer, fmt)
    return buffer.getvalue()


PNG = image_bytes("PNG")
JPEG = image_bytes("JPEG", (32, 20))


class Resolver:
    """Answers from a table; records every lookup; unknown names fail like getaddrinfo."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host not in self.table:
            raise OSError(f"Name or service not known: {host}")
        return self.table[host]


class Server:
    """A MockTransport handler from a route table; `requests` lists what reached it.

    Routes are keyed by the URL the request is *for*: its Host header names the site, as on a
    real server, while `request.url` holds the address actually connected to. Addresses in
    `refuse` fail to connect.
    """

    def __init__(self, routes: dict[str, Any], refuse: tuple[str, ...] = ()) -> None:
        self.routes = routes
        self.refuse = refuse
        self.requests: list[httpx.Request] = []
        self.sites: list[str] = []  # the URL each request was for

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host in self.refuse:
            raise httpx.ConnectError(f"{request.url.host} refused the connection")
        site = str(request.url.copy_with(netloc=request.headers["Host"].encode("ascii")))
        self.requests.append(request)
        self.sites.append(site)
        route = self.routes.get(site)
        if route is None:
            return httpx.Response(404, text="no such thing")
        if callable(route):
            return route(request)
        if isinstance(route, list):  # a script: one step per request, the last repeats
            step = route.pop(0) if len(route) > 1 else route[0]
            return step(request) if callable(step) else step
        return route


def png_response(request: httpx.Request | None = None) -> httpx.Response:
    return httpx.Response(200, headers={"Content-Type": "image/png"}, content=PNG)


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
async def make_fetcher():
    """`make(routes, **options)` → (fetcher, server, resolver, sleeps); clients closed after."""
    opened: list[httpx.AsyncClient] = []

    def make(
        routes: dict[str, Any],
        *,
        trusted_routes: dict[str, dict[str, Any]] | None = None,
        refuse: tuple[str, ...] = (),
        **kw,
    ) -> tuple[ResultFetcher, Server, Resolver, Sleeps]:
        server = Server(routes, refuse)
        public = httpx.AsyncClient(transport=httpx.MockTransport(server))
        opened.append(public)
        trusted = {}
        for origin, origin_routes in (trusted_routes or {}).items():
            client = httpx.AsyncClient(transport=httpx.MockTransport(Server(origin_routes)))
            opened.append(client)
            trusted[origin] = client
        resolver, sleeps = Resolver(DNS), Sleeps()
        options: dict[str, Any] = {"resolver": resolver, "sleep": sleeps, **kw}
        return ResultFetcher(public, trusted=trusted, **options), server, resolver, sleeps

    yield make
    for client in opened:
        await client.aclose()


# ---- the good paths ---------------------------------------------------------------------------


async def test_fetches_a_png_over_https(make_fetcher):
    url = "https://cdn.example.com/results/a.png?sig=SECRET"
    fetcher, server, resolver, _ = make_fetcher({url: png_response})

    image = await fetcher.fetch(url)

    assert image == FetchedImage(PNG, "image/png", "png", 24, 16, url)
    assert resolver.lookups == ["cdn.example.com"]
    assert len(server.requests) == 1


async def test_fetches_a_jpeg_and_trusts_the_bytes_not_the_content_type(make_fetcher):
    url = "https://other.example.net/b"
    response = httpx.Response(
        200, headers={"Content-Type": "application/octet-stream"}, content=JPEG
    )
    fetcher, *_ = make_fetcher({url: response})

    image = await fetcher.fetch(url)

    assert (image.mime, image.extension, image.width, image.height) == ("image/jpeg", "jpg", 32, 20)
    assert image.data == JPEG


async def test_fetches_a_data_uri_without_any_request(make_fetcher):
    fetcher, server, resolver, _ = make_fetcher({})
    uri = "data:image/png;base64," + base64.b64encode(PNG).decode()

    image = await fetcher.fetch(uri)

    assert (image.data, image.mime, image.source) == (PNG, "image/png", "data:")
    assert server.requests == [] and resolver.lookups == []


async def test_data_uri_with_line_breaks_is_accepted(make_fetcher):
    fetcher, *_ = make_fetcher({})
    encoded = base64.encodebytes(JPEG).decode()  # 76-character lines
    assert "\n" in encoded

    image = await fetcher.fetch("data:image/jpeg;base64," + encoded)

    assert image.data == JPEG


async def test_data_uri_over_the_cap_is_refused_by_its_encoded_length(make_fetcher):
    fetcher, *_ = make_fetcher({}, max_bytes=1000)
    # Not valid base64 at all: only the length check can refuse it with "too large".
    uri = "data:image/png;base64," + "!" * 2000

    with pytest.raises(DownloadError) as caught:
        await fetcher.fetch(uri)

    assert "too large" in caught.value.message
    assert caught.value.url == "data:"


async def test_data_uri_with_bad_base64_or_no_image_is_refused(make_fetcher):
    fetcher, *_ = make_fetcher({})
    for uri in (
        "data:image/png;base64,@@@@",
        "data:image/png;base64," + base64.b64encode(b"hi").decode(),
    ):
        with pytest.raises(DownloadError) as caught:
            await fetcher.fetch(uri)
        assert "not an image" in caught.value.message
        assert not caught.value.retryable


# ---- addresses ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/a.png",
        "https://10.1.2.3/a.png",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/a.png",
        "https://localhost/a.png",
    ],
)
async def test_private_literal_addresses_are_refused_before_connecting(make_fetcher, url):
    fetcher, server, _, sleeps = make_fetcher({url: png_response})

    with pytest.raises(DownloadError) as caught:
        await fetcher.fetch(url)

    assert "unsafe" in caught.value.message
    assert not caught.value.retryable
    assert server.requests == [] and sleeps.calls == []


@pytest.mark.parametrize("host", ["internal.example.com", "mixed.example.com"])
async def test_a_name_resolving_to_a_private_address_is_refused(make_fetcher, host):
    url = f"https://{host}/a.png"
    fetcher, server, resolver, _ = make_fetcher({url: png_response})

    with pytest.raises(DownloadError) as caught:
        await fetcher.fetch(url)

    assert "192.168.1.10" in caught.value.message or "10.0.0.5" in caught.value.message
    assert resolver.lookups == [host]
    assert server.requests == []


async def test_a_redirect_to_a_private_address_is_refused(make_fetcher):
    first = "https://cdn.example.com/a.png"
    internal = "https://internal.example.com/admin.png"
    fetcher, server, _, _ = make_fetcher(
        {first: httpx.Response(302, headers={"Location": internal}), internal: png_response}
    )

    with pytest.raises(DownloadError) as caught:
        await fetcher.fetch(first)

    assert "unsafe" in caught.value.message
    assert server.sites == [first]


async def test_a_relative_redirect_to_the_metadata_address_is_refused(make_fetcher):
    first = "https://cdn.example.com/a.png"
    fetcher, server, _, _ = make_fetcher(
        {first: httpx.Response(301, headers={"Location": "http://169.254.169.254/x"})}
    )

    with pytest.raises(DownloadError):
        await fetcher.fetch(first)

    assert len(server.requests) == 1


async def test_a_redirect_to_a_public_host_is_followed_with_both_hosts_checked(make_fetcher):
    first = "https://cdn.example.com/a.png"
    second = "https://other.example.net/real.png"
    fetcher, server, resolver, _ = make_fetcher(
        {first: httpx.Response(307, headers={"Location": second}), second: png_response}
    )

    image = await fetcher.fetch(first)

    assert image.data == PNG and image.source == first
    assert resolver.lookups == ["cdn.example.com", "other.example.net"]
    assert server.sites == [first, second]


async def test_more_than_five_redirects_are_refused(make_fetcher):
    routes = {
        f"https://cdn.example.com/{n}": httpx.Response(
            302, headers={"Location": f"https://cdn.example.com/{n + 1}"}
        )
        for n in range(10)
    }
    fetcher, server, _, _ = make_fetcher(routes)

    with pytest.raises(DownloadError) as caught:
        await fetcher.fetch("https://cdn.example.com/0")

    assert "redirects" in caught.value.message
    assert len(server.requests) == 6  # the first request and five redirects


async def test_plain_http_is_refused_for_untrusted_hosts(make_fetcher):
    url = "http://cdn.example.com/a.png"
    fetcher, server, _, _ = make_fetcher({url: png_response})

    with pytest.raises(DownloadError) as caught:
        await fetcher.fetch(url)

    assert "https" in caught.value.message
    assert server.requests == []


async def test_a_trusted_origin_is_fetched_over_http_with_its_own_client(make_fetcher):
    url = "http://simulator.test/results/task_1/0.png"
    fetcher, public_server, resolver, _ = make_fetcher(
        {}, trusted_routes={"http://simulator.test": {url: png_response}}
    )

    image = await fetcher.fetch(url)

    assert image.data == PNG
    assert public_server.requests == []  # the public client was not used
    assert resolver.lookups == []  # and its name was not checked: it is the service itself


async def test_the_trusted_origin_does_not_extend_to_other_ports_or_schemes(make_fetcher):
    fetcher, *_ = make_fetcher({}, trusted_routes={"http://simulator.test": {}})

    for url in ("http://simulator.test:8080/a.png", "http://127.0.0.1/a.png"):
        with pytest.raises(DownloadError) as caught:
            await fetcher.fetch(url)
        assert "unsafe" in caught.value.message


# ---- the connection goes to the checked address ----------------------------------------------


async def test_the_request_goes_to_the_checked_address_with_the_name_for_host_and_tls(
    make_fetcher,
):
    url = "https://cdn.example.com/results/a.png?sig=SECRET"
    fetcher, server, resolver, _ = make_fetcher({url: png_response})

    await fetcher.fetch(url)

    [request] = server.requests
    assert str(request.url) == f"https://{PUBLIC_IP}/results/a.png?sig=SECRET"
    assert request.headers["Host"] == "cdn.example.com"
    assert request.extensions["sni_hostname"] == "cdn.example.com"  # SNI and certificate check
    assert resolver.lookups == ["cdn.example.com"]  # one lookup: nothing resolves it again


async def test_an_ipv6_address_a_port_and_an_idn_name_are_carried_faithfully(make_fetcher):
    url = "https://bücher.example:8443/a.png"
    resolver = ScriptedResolver({"bücher.example": [["2606:2800:220:1:248:1893:25c8:1946"]]})
    site = "https://xn--bcher-kva.example:8443/a.png"  # the name as it goes on the wire
    fetcher, server, _, _ = make_fetcher({site: png_response}, resolver=resolver)

    await fetcher.fetch(url)

    [request] = server.requests
    assert str(request.url) == "https://[2606:2800:220:1:248:1893:25c8:1946]:8443/a.png"
    assert request.headers["Host"] == "xn--bcher-kva.example:8443"
    assert request.extensions["sni_hostname"] == "xn--bcher-kva.example"


async def test_a_dns_answer_that_changes_after_the_check_is_never_asked_for():
    url = "https://cdn.example.com/a.png"
    resolver = ScriptedResolver({"cdn.example.com": [[PUBLIC_IP], ["127.0.0.1"]]})
    server = Server({url: png_response})
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as client:
        fetcher = ResultFetcher(client, resolver=resolver, sleep=Sleeps())

        assert (await fetcher.fetch(url)).data == PNG

    assert [request.url.host for request in server.requests] == [PUBLIC_IP]
    assert resolver.lookups == ["cdn.example.com"]


async def test_each_checked_address_is_tried_until_one_answers(make_fetcher):
    url = "https://twice.example.com/a.png"
    second = "93.184.216.35"
    resolver = ScriptedResolver({"twice.example.com": [[PUBLIC_IP, second]]})
    fetcher, server, _, sleeps = make_fetcher(
        {url: png_response}, refuse=(PUBLIC_IP,), resolver=resolver
    )

    assert (await fetcher.fetch(url)).data == PNG
    assert [request.url.host for request in server.requests] == [second]
    assert sleeps.calls == []  # another address, not a retry


async def test_when_no_checked_address_answers_it_is_a_retryable_network_error(make_fetcher):
    fetcher, _, _, sleeps = make_fetcher({}, refuse=(PUBLIC_IP,), retry=RetryPolicy(max_attempts=2))

    with pytest.raises(DownloadError) as caught:
        await fetcher.fetch("https://cdn.example.com/a.png")

    assert caught.value.message == "network error (ConnectError)"
    assert caught.value.retryable and len(sleeps.calls) == 1


async def test_the_fetcher_makes_its_own_client_without_proxies_and_closes_it(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.net:3128")
    fetcher = ResultFetcher()

    assert fetcher.public_http.trust_env is False  # a proxy would resolve the name itself
    await fetcher.aclose()
    assert fetcher.public_http.is_closed


async def test_an_injected_client_is_left_open_for_its_owner(make_fetcher):
    fetcher, *_ = make_fetcher({})

    await fetcher.aclose()

    assert not fetcher.public_http.is_closed


class ScriptedResolver:
    """Answers each host from a script, one step per lookup (the last repeats). A step is a list
    of addresses or an exception to raise; every lookup is recorded."""

    def __init__(self, script: dict[str, list[Any]]) -> None:
        self.script = {host: list(steps) for host, steps in script.items()}
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        steps = self.script[host]
        step = steps.pop(0) if len(steps) > 1 else steps[0]
        if isinstance(step, BaseException):
            raise step
        return step


# ---- DNS failures ---------------------------------------------------------------------------

TEMPORARY = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
NO_SUCH_NAME = socket.gaierror(socket.EAI_NONAME, "Name or service not known")


async def test_a_temporary_dns_failure_is_retried(make_fetcher):
    url = "https://cdn.example.com/a.png"
    resolver = ScriptedResolver({"cdn.example.com": [TEMPORARY, [PUBLIC_IP]]})
    fetcher, server, _, sleeps = make_fetcher({url: png_response}, resolver=resolver)

    image = await fetcher.fetch(url)

    assert image.data == PNG
    assert len(sleeps.calls) == 1 and len(server.requests) == 1


async def test_a_temporary_dns_failure_that_lasts_ends_as_retryable(make_fetcher):
    url = "https://cdn.example.com/a.png"
    resolver = ScriptedResolver({"cdn.example.com": [TEMPORARY]})
    fetcher, server, _, sleeps = make_fetcher(
        {url: png_response}, retry=RetryPolicy(max_attempts=3), resolver=resolver
    )

    with pytest.raises(DownloadError) as caught:
        await fetcher.fetch(url)

    assert caught.value.retryable
    assert "temporary DNS failure" in caught.value.message
    assert len(sleeps.calls) == 2 and server.requests == []


async def test_a_name_that_does_not_exist_is_final(make_fetcher):
    url = "https://nowhere.example.com/a.png"
    resolver = ScriptedResolver({"nowhere.example.com": [NO_SUCH_NAME]})
    fetcher, server, _, sleeps = make_fetcher({url: png_response}, resolver=resolver)

    with pytest.raises(DownloadError) as caught:
        await fetcher.fetch(url)

    assert caught.value.message == "could not look up nowhere.example.com: no such host name"
    assert not caught.value.retryable
    assert sleeps.calls == [] and server.requests == []


# ---- size, content, time --------------------------------------------------------------------


class CountingStream(httpx.AsyncByteStream):
    """A body that counts how many chunks were pulled from it."""

    def __init__(self, chunk: bytes, count: int) -> None:
        self.chunk, self.count, self.pulled = chunk, count, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.count):
            self.pulled += 1
            yield self.chunk


async def test_a_content_length_over_the_cap_is_refused_without_reading(make_fetcher):
    url = "https://cdn.example.com/huge.png"
    body = CountingStream(b"x" * 1000, 50)
    response = httpx.Response(200, headers={"Content-Length": "50000"}, stream=body)
    fetcher, *_ = make_fetcher({url: response}, max_bytes=10_000)

    with pytest.raises(DownloadError) as caught:
        await fetcher.fetch(url)

    assert "too large" in caught.value.message and "50000" in caught.value.message
    assert not caught.value.retryable
    assert body.pulled == 0


async def test_a_body_streaming_past_the_cap_is_aborted(make_fetcher):
    url = "https://cdn.example.com/endless.png"
    body = CountingStream(b"x" * 1000, 1000)  # no Content-Length: a 1 MB stream
    fetcher, server, _, _ = make_fetcher(
        {url: lambda request: httpx.Response(200, stream=body)}, max_bytes=10_000
    )

    with pytest.raises(DownloadError) as caught:
        await fetcher.fetch(url)

    assert "too large" in caught.value.message
    assert body.pulled == 11  # stopped at the first chunk past 10 000 bytes
    assert len(server.requests) == 1  # and not retried


async def test_html_labelled_as_png_is_not_an_image(make_fetcher):
    url = "https://cdn.example.com/a.png"
    html = b"<!doctype html><html><body>Access denied</body></html>"
    response = httpx.Response(200, headers={"Content-Type": "image/png"}, content=html)
    fetcher, server, _, _ = make_fetcher({url: response})

    with pytest.raises(DownloadError) as caught:
        await fetcher.fetch(url)

    assert "not an image" in caught.value.message
    assert len(server.requests) == 1


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])  # a cut JPEG still opens: its end is missing
async def test_a_truncated_image_is_not_an_image(make_fetcher, fmt):
    url = "https://cdn.example.com/a.img"
    noise = Image.effect_noise((300, 300), 60).convert("RGB")
    buffer = io.BytesIO()
    noise.save(buffer, fmt)
    big = buffer.getvalue()
    fetcher, *_ = make_fetcher({url: httpx.Response(200, content=big[: len(big) // 2])})

    with pytest.raises(DownloadError) as caught:
        await fetcher.fetch(url)

    assert "not an image" in caught.value.message


async def test_a_gif_is_not_accepted(make_fetcher):
    url = "https://cdn.example.com/a.gif"
    fetcher, *_ = make_fetcher({url: httpx.Response(200, content=image_bytes("GIF"))})

    with pytest.raises(DownloadError) as caught:
        await fetcher.fetch(url)

    assert "not an image" in caught.value.message


async def test_a_slow_drip_is_cut_off_by_the_deadline(make_fetcher):
    url = "https://cdn.example.com/slow.png"

    async def drip() -> AsyncIterator[bytes]:
        for byte in PNG:
            yield bytes([byte])
            await asyncio.sleep(0.05)  # the whole image would take seconds

    fetcher, *_ = make_fetcher(
        {url: lambda request: httpx.Response(200, content=drip())},
        deadline=0.2,
        retry=RetryPolicy(max_attempts=1),
    )

    started = time.monotonic()
    with pytest.raises(DownloadError) as caught:
        await fetcher.fetch(url)

    assert "timed out" in caught.value.message
    assert caught.value.retryable
    assert time.monotonic() - started < 1.0


# ---- retries ------------------------------------------------------------------------------------


async def test_a_503_then_200_succeeds_after_one_retry(make_fetcher):
    url = "https://cdn.example.com/a.png"
    fetcher, server, _, sleeps = make_fetcher(
        {url: [httpx.Response(503, text="busy"), png_response]}
    )

    image = await fetcher.fetch(url)

    assert image.data == PNG
    assert len(server.requests) == 2
    assert len(sleeps.calls) == 1 and sleeps.calls[0] > 0


async def test_a_429_waits_as_long_as_retry_after_says(make_fetcher):
    url = "https://cdn.example.com/a.png"
    slow_down = httpx.Response(429, headers={"Retry-After": "3"})
    fetcher, _, _, sleeps = make_fetcher({url: [slow_down, png_response]})

    await fetcher.fetch(url)

    assert sleeps.calls == [3.0]


async def test_a_retry_after_beyond_the_total_wait_ends_the_tries_at_once(make_fetcher):
    url = "https://cdn.example.com/a.png"
    slow_down = httpx.Response(429, headers={"Retry-After": "3600"})
    fetcher, server, _, sleeps = make_fetcher({url: [slow_down, png_response]})

    with pytest.raises(DownloadError) as caught:
        await fetcher.fetch(url)

    assert caught.value.retryable and sleeps.calls == [] and len(server.requests) == 1


async def test_network_errors_are_retried_until_attempts_run_out(make_fetcher):
    url = "https://cdn.example.com/a.png"

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    fetcher, server, _, sleeps = make_fetcher({url: refuse}, retry=RetryPolicy(max_attempts=3))

    with pytest.raises(DownloadError) as caught:
        await fetcher.fetch(url)

    assert caught.value.retryable
    assert "network error" in caught.value.message
    assert len(server.requests) == 3 and len(sleeps.calls) == 2


@pytest.mark.parametrize("status", [404, 403, 410])
async def test_a_4xx_is_not_retried(make_fetcher, status):
    url = "https://cdn.example.com/gone.png"
    fetcher, server, _, sleeps = make_fetcher({url: httpx.Response(status)})

    with pytest.raises(DownloadError) as caught:
        await fetcher.fetch(url)

    assert f"HTTP {status}" in caught.value.message
    assert not caught.value.retryable
    assert len(server.requests) == 1 and sleeps.calls == []


# ---- display --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "check"),
    [
        (
            "https://cdn.example.com/a.png?X-Amz-Signature=SECRET",
            lambda shown: shown == "https://cdn.example.com/a.png?…",
        ),
        ("data:image/png;base64," + "A" * 5000, lambda shown: shown == "data:"),
        ("https://cdn.example.com/" + "p" * 500, lambda shown: len(shown) == 80),
    ],
)
def test_display_url_hides_tokens_and_payloads(location: str, check: Callable[[str], bool]):
    assert check(display_url(location))


async def test_error_messages_never_contain_the_query_string(make_fetcher):
    url = "https://internal.example.com/a.png?token=SECRET"
    fetcher, *_ = make_fetcher({})

    with pytest.raises(DownloadError) as caught:
        await fetcher.fetch(url)

    assert "SECRET" not in str(caught.value)
    assert caught.value.url == "https://internal.example.com/a.png?…"
