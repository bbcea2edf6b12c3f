"""URL safety: every refusal is checked offline; DNS answers come from an injected resolver."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import pytest

from studio.netguard import (
    HostLookupError,
    Resolver,
    UnsafeUrlError,
    check_public_url,
    is_public_address,
    resolve_public_addresses,
)

PRIVATE_HOSTS = [
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata service
    "[::1]",
    "[fc00::1]",
    "[fd12:3456::1]",
    "[fe80::1]",
    "[fec0::1]",  # IPv6 site-local, which Python 3.11 calls "global"
    "[::ffff:127.0.0.1]",
    "[::ffff:10.0.0.1]",
    "[::7f00:1]",  # IPv4-compatible form of 127.0.0.1
    "[2002:7f00:1::]",  # 6to4 wrapping 127.0.0.1
    "[64:ff9b::a9fe:a9fe]",  # NAT64 wrapping 169.254.169.254
    "100.64.0.1",
    "0.0.0.0",
    "[::]",
    "224.0.0.1",  # multicast, which Python 3.11 calls "global"
    "[ff02::1]",
    "240.0.0.1",
    "255.255.255.255",
    "127.1",  # legacy short form a resolver expands to 127.0.0.1
    "2130706433",  # 127.0.0.1 as one decimal number
    "0x7f.0.0.1",
    "localhost",
    "LOCALHOST.",
    "app.localhost",
]


@pytest.mark.parametrize("host", PRIVATE_HOSTS)
def test_private_and_local_hosts_are_refused(host: str) -> None:
    with pytest.raises(UnsafeUrlError, match=r"private|reserved|this machine"):
        check_public_url(f"https://{host}/image.png")


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("file:///etc/passwd", "file:"),
        ("ftp://example.com/a.png", "ftp:"),
        ("data:image/png;base64,AAAA", "data:"),
        ("javascript:alert(1)", "javascript:"),
        ("gopher://example.com/", "gopher:"),
        ("example.com/a.png", "without a scheme"),
    ],
)
def test_non_http_schemes_are_refused(url: str, said: str) -> None:
    with pytest.raises(UnsafeUrlError, match=said):
        check_public_url(url, allow_http=True)


def test_http_needs_permission() -> None:
    with pytest.raises(UnsafeUrlError, match="https"):
        check_public_url("http://example.com/a.png")
    assert check_public_url("http://example.com/a.png", allow_http=True) == (
        "http://example.com/a.png"
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://user:pass@example.com/a.png",
        "https://user@example.com/a.png",
        "https://:pass@example.com/a.png",
        "https://@example.com/a.png",
    ],
)
def test_credentials_in_url_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrlError, match="user name or password"):
        check_public_url(url)


@pytest.mark.parametrize("url", ["https://", "https:///a.png", "https://:443/a.png"])
def test_missing_host_is_refused(url: str) -> None:
    with pytest.raises(UnsafeUrlError, match="no host"):
        check_public_url(url)


@pytest.mark.parametrize("url", ["https://example.com:abc/", "https://example.com:99999/"])
def test_bad_port_is_refused(url: str) -> None:
    with pytest.raises(UnsafeUrlError, match="not a valid URL"):
        check_public_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://93.184.216.34/a.png",
        "https://[2606:4700::1111]/a.png",
        "https://example.com:8443/path/a.png?x=1",
    ],
)
def test_public_urls_are_returned(url: str) -> None:
    assert check_public_url(f"  {url} ") == url


def test_unsafe_url_error_is_a_value_error() -> None:
    assert issubclass(UnsafeUrlError, ValueError)


@pytest.mark.parametrize(
    "address",
    ["93.184.216.34", "::ffff:93.184.216.34", "64:ff9b::5db8:d822", "2002:5db8:d822::1"],
)
def test_public_addresses_including_wrapped_ipv4(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


def _resolver(answers: dict[str, list[str]], calls: list[str] | None = None) -> Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        return answers[host]

    return resolve


async def test_literal_addresses_need_no_dns() -> None:
    calls: list[str] = []
    result = await resolve_public_addresses("93.184.216.34", 443, resolver=_resolver({}, calls))
    assert result == [ipaddress.ip_address("93.184.216.34")]
    with pytest.raises(UnsafeUrlError, match="private"):
        await resolve_public_addresses("169.254.169.254", 80, resolver=_resolver({}, calls))
    with pytest.raises(UnsafeUrlError, match="this machine"):
        await resolve_public_addresses("localhost", 80, resolver=_resolver({}, calls))
    assert calls == []


async def test_public_name_resolves_to_unique_addresses() -> None:
    resolver = _resolver({"cdn.example": ["93.184.216.34", "2606:4700::1111", "93.184.216.34"]})
    assert await resolve_public_addresses("cdn.example", 443, resolver=resolver) == [
        ipaddress.ip_address("93.184.216.34"),
        ipaddress.ip_address("2606:4700::1111"),
    ]


@pytest.mark.parametrize("private", ["10.0.0.5", "169.254.169.254", "fc00::1", "::ffff:127.0.0.1"])
async def test_one_private_answer_refuses_the_name(private: str) -> None:
    resolver = _resolver({"rebind.example": ["93.184.216.34", private]})
    with pytest.raises(UnsafeUrlError, match=r"rebind\.example resolves to"):
        await resolve_public_addresses("rebind.example", 443, resolver=resolver)


async def test_lookup_failure_and_empty_answer_are_refused() -> None:
    async def failing(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(UnsafeUrlError, match=r"could not look up nowhere\.example"):
        await resolve_public_addresses("nowhere.example", 443, resolver=failing)
    with pytest.raises(UnsafeUrlError, match="no address"):
        await resolve_public_addresses(
            "empty.example", 443, resolver=_resolver({"empty.example": []})
        )


async def test_default_resolver_uses_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, int]] = []

    async def fake_getaddrinfo(host: str, port: int, **kwargs: object) -> list[tuple]:
        seen.append((host, port))
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fe80::1%eth0", port, 0, 2)),
        ]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(UnsafeUrlError, match="fe80::1"):
        await resolve_public_addresses("mixed.example", 8443)
    assert seen == [("mixed.example", 8443)]


@pytest.mark.parametrize(
    ("error", "temporary", "said"),
    [
        (socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"), True, "temp"),
        (TimeoutError("timed out"), True, "temporary"),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), False, "no such host"),
        (socket.gaierror(socket.EAI_FAIL, "Non-recoverable failure"), False, "Non-recoverable"),
    ],
)
async def test_lookup_failures_say_whether_a_retry_may_help(
    error: OSError, temporary: bool, said: str
) -> None:
    async def failing(host: str, port: int) -> list[str]:
        raise error

    with pytest.raises(HostLookupError, match=said) as caught:
        await resolve_public_addresses("flaky.example", 443, resolver=failing)

    assert caught.value.temporary is temporary
    assert "could not look up flaky.example" in str(caught.value)
    assert isinstance(caught.value, UnsafeUrlError)  # callers that only refuse still refuse
