"""Refuse URLs that would make us (or a service acting for us) reach a private network.

Two steps, because they belong to different moments:

* `check_public_url` is synchronous and offline: scheme, credentials, host, and hosts that are
  literal IP addresses or `localhost`. Run it as soon as a URL is typed or received.
* `resolve_public_addresses` resolves a host name and refuses it if *any* address is not public,
  so a name with one public and one internal record cannot be used to reach the internal one.
  A lookup that fails raises `HostLookupError`, which says whether trying again may help.

A caller that then connects must connect to the addresses returned here (not resolve the name a
second time), otherwise a DNS answer that changes between check and use defeats the check
(DNS rebinding). `studio.downloads` does so.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

# NAT64 (RFC 6052) carries an IPv4 address in its low 32 bits; judge that address instead.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class UnsafeUrlError(ValueError):
    """The URL points somewhere we must not fetch from; the message says why."""


class HostLookupError(UnsafeUrlError):
    """The host name could not be resolved, so its addresses could not be checked.

    It is an `UnsafeUrlError` so that callers which only refuse keep refusing. Callers that retry
    read `temporary`: True when the resolver could not answer right now (EAI_AGAIN, a timeout),
    False when the answer is final (no such name).
    """

    def __init__(self, message: str, *, temporary: bool) -> None:
        super().__init__(message)
        self.temporary = temporary


def is_public_address(ip: IPAddress) -> bool:
    """True only for addresses routable on the public internet.

    `is_global` alone is not enough on Python 3.11: it calls multicast, IPv6 site-local
    (fec0::/10) and IPv6 forms that embed a private IPv4 address (6to4, NAT64) "global".
    """
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_public_address(embedded)
        if ip.is_site_local:
            return False
    return ip.is_global and not ip.is_multicast and not ip.is_reserved


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def _literal_address(host: str) -> IPAddress | None:
    """The address a host string denotes without DNS, or None if it is a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        # inet_aton accepts legacy forms such as "127.1", "2130706433" or "0x7f.0.0.1" that
        # resolvers (and curl) turn into an address, so they must be judged as addresses too.
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _is_local_name(host: str) -> bool:
    # RFC 6761: "localhost" and anything under it always mean this machine.
    return host == "localhost" or host.endswith(".localhost")


def check_host(host: str) -> None:
    """Refuse `localhost` names and literal addresses that are not public (no DNS)."""
    name = host.lower().rstrip(".")
    if _is_local_name(name):
        raise UnsafeUrlError(f"{host} is this machine, not a public address")
    ip = _literal_address(name)
    if ip is not None and not is_public_address(ip):
        raise UnsafeUrlError(f"{host} is a private or reserved address, not a public one")


def check_public_url(url: str, *, allow_http: bool = False) -> str:
    """Return `url` (stripped) if it is an http(s) URL to a public host, else raise."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port  # parsing the port raises on "host:abc" or out-of-range ports
    except ValueError as exc:
        raise UnsafeUrlError(f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        shown = f"{scheme}:" if scheme else "a URL without a scheme"
        accepted = "http:// or https://" if allow_http else "https://"
        raise UnsafeUrlError(f"only {accepted} links can be used, not {shown}")
    if scheme == "http" and not allow_http:
        raise UnsafeUrlError("only https:// links can be used here, not http://")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UnsafeUrlError("links with a user name or password in them are not accepted")
    host = parts.hostname
    if not host:
        raise UnsafeUrlError("the link has no host name")
    if port == 0:
        raise UnsafeUrlError("the link's port is 0")
    check_host(host)
    return url


async def _default_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def resolve_public_addresses(
    host: str, port: int, *, resolver: Resolver | None = None
) -> list[IPAddress]:
    """Resolve `host` and return its addresses, refusing if any of them is not public.

    Literal addresses are judged without DNS. `resolver` maps (host, port) to address strings;
    it exists so tests (and callers with their own DNS) need not touch the event loop.
    """
    check_host(host)
    literal = _literal_address(host.lower().rstrip("."))
    if literal is not None:
        return [literal]
    try:
        raw = await (resolver or _default_resolver)(host, port)
    except OSError as exc:
        raise _lookup_error(host, exc) from None
    addresses: list[IPAddress] = []
    for text in raw:
        # getaddrinfo appends "%scope" to link-local IPv6 answers; ipaddress keeps it.
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise UnsafeUrlError(f"{host} resolved to something that is not an address") from None
        if not is_public_address(ip):
            raise UnsafeUrlError(f"{host} resolves to {ip}, a private or reserved address")
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise UnsafeUrlError(f"{host} has no address")
    return addresses


def _lookup_error(host: str, exc: OSError) -> HostLookupError:
    """Tell a resolver that could not answer now (worth a retry) from a final answer."""
    if isinstance(exc, TimeoutError) or exc.errno == socket.EAI_AGAIN:
        return HostLookupError(
            f"could not look up {host} (a temporary DNS failure)", temporary=True
        )
    if exc.errno == socket.EAI_NONAME:
        return HostLookupError(f"could not look up {host}: no such host name", temporary=False)
    return HostLookupError(f"could not look up {host}: {exc.strerror or exc}", temporary=False)
