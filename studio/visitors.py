"""Who a visitor is, for the limits on the owner's keys: a browser id and a network address.

A browser id is minted by the browser, so a script can mint a new one per request; a network
address cannot be minted that cheaply. A visitor's tasks are therefore counted under both, and
a limit holds when either count reaches it (`Visitor.ids`): new browser ids from one address
share the address's count, and one browser hopping between addresses keeps its browser's count.
An IPv6 address counts as its /64, the block one connection is usually given. With named
logins (APP_USERS) the login is the visitor: it cannot be minted, and colleagues behind one
office address are not counted together.

Behind a proxy the peer of the connection is the proxy, and the client's address is in
`X-Forwarded-For`, which anyone can also send. The header is read only from trusted proxies,
right to left (each proxy appends the address it saw): the first hop that is not a trusted
proxy is the client. A script sending its own `X-Forwarded-For` only adds entries to the left
of the one a trusted proxy appended, so it cannot choose its address. Which proxies are
trusted is the deployment's to say (`TRUSTED_PROXIES`); on a Hugging Face Space the peer is
always the Space's proxy, so it is trusted, and so are private addresses behind it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_ID_CHARS = 80  # a browser id or an address as kept in the ledger
MAX_HOPS = 20  # X-Forwarded-For entries read (a longer chain is someone's invention)


@dataclass(frozen=True)
class Visitor:
    """Who starts a task. Either part may be empty (unknown); `ids` are what limits count."""

    browser: str = ""
    address: str = ""

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(part for part in (self.browser, self.address) if part)


# Who a caller is when nothing is known (a script calling the runner directly): one shared
# count, so an unidentified caller never escapes the limits.
UNKNOWN_VISITOR = Visitor(address="unknown")


@dataclass(frozen=True)
class TrustedProxies:
    """The proxies whose `X-Forwarded-For` is believed: those in `networks`, and with `peer`
    the direct peer whatever its address (a Space's proxy)."""

    networks: tuple[IpNetwork, ...] = ()
    peer: bool = False

    def trusts(self, address: IpAddress) -> bool:
        return any(address in network for network in self.networks)


NO_PROXIES = TrustedProxies()
# A Space's own proxies: its peer, and hops on private, shared (carrier-grade NAT), loopback
# and link-local networks, where no visitor comes from.
_INTERNAL = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
)
SPACE_PROXIES = TrustedProxies(tuple(ipaddress.ip_network(n) for n in _INTERNAL), peer=True)


def parse_trusted_proxies(text: str | None, *, on_space: bool = False) -> TrustedProxies:
    """`TRUSTED_PROXIES`: addresses or networks, comma-separated ("10.0.0.0/8, 127.0.0.1").
    On a Space the Space's own proxies are trusted as well. Raises ValueError, a sentence."""
    networks = []
    for item in (text or "").replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(
                f"TRUSTED_PROXIES: {item[:60]!r} is not an address or a network; write "
                "addresses and networks separated by commas, e.g. 10.0.0.0/8, 127.0.0.1."
            ) from None
    base = SPACE_PROXIES if on_space else NO_PROXIES
    return TrustedProxies((*base.networks, *networks), peer=base.peer)


def _address(text: str) -> IpAddress | None:
    text = text.strip().strip('"')
    if text.startswith("[") and "]" in text:  # [2001:db8::1]:443
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # 203.0.113.7:51234
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def address_key(address: IpAddress) -> str:
    """What an address counts as: itself, an IPv6 address its /64 (an IPv4 one mapped into
    IPv6 is the IPv4 address)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def client_address(peer: str | None, forwarded: Sequence[str], trusted: TrustedProxies) -> str:
    """The client's address as this deployment can know it (see the module's docstring).

    `peer` is the connection's address, `forwarded` the values of every `X-Forwarded-For`
    header in order. An entry that is not an address ends the walk: a trusted proxy wrote it,
    so it stands for the client (bounded)."""
    peer_address = _address(peer or "")
    if peer_address is None:
        return (peer or "")[:MAX_ID_CHARS]
    if not (trusted.peer or trusted.trusts(peer_address)):
        return address_key(peer_address)
    hops = [hop for value in forwarded for hop in value.split(",") if hop.strip()]
    current = peer_address
    for hop in reversed(hops[-MAX_HOPS:]):
        parsed = _address(hop)
        if parsed is None:
            return hop.strip()[:MAX_ID_CHARS]
        current = parsed
        if not trusted.trusts(parsed):
            break
    return address_key(current)


@dataclass(frozen=True)
class VisitorPolicy:
    """How a request becomes a Visitor. `named_logins`: the app's logins are accounts
    (APP_USERS), so a logged-in name is the visitor."""

    proxies: TrustedProxies = NO_PROXIES
    named_logins: bool = False

    def visitor(
        self,
        browser: str | None,
        peer: str | None,
        forwarded: Sequence[str] = (),
        username: str | None = None,
    ) -> Visitor:
        if self.named_logins and username:
            return Visitor(browser=f"login:{username}"[:MAX_ID_CHARS])
        return Visitor(
            browser=(browser or "")[:MAX_ID_CHARS],
            address=client_address(peer, forwarded, self.proxies) or "unknown",
        )
