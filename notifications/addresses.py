"""Where a webhook may point: the guard against server-side request forgery.

A webhook URL is chosen by a partner, but the request is made by the service, from inside the
network it runs in. So a URL may only reach a public address, or an address (or host name, or
network) an administrator has allowed with ``BACKBONE_WEBHOOK_ALLOW_HOSTS``. Loopback,
link-local (cloud metadata at 169.254.169.254), private, shared, multicast, unspecified and
reserved addresses, and the service's own addresses, are refused at registration and again at
every delivery, after the name is resolved; the delivery then connects to the address that was
checked (never resolving again), so a name that resolves differently the second time (DNS
rebinding) reaches nothing new. Plain http is accepted only for allowed hosts.

Written here rather than taken from a library: the check is a few lines over :mod:`ipaddress`
and :func:`socket.getaddrinfo`, and the libraries that exist wrap ``requests``, not httpx.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from notifications.errors import WebhookUrlRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]
MAX_URL_LENGTH = 2048


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (TCP), in the resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in out:
            out.append(address)
    return out


def _own_addresses() -> frozenset[IPAddress]:
    """The addresses of this machine's name: the service's own, refused unless allowed."""
    found: set[IPAddress] = set()
    try:
        for address in resolve(socket.gethostname(), 0):
            found.add(ipaddress.ip_address(address.split("%", 1)[0]))
    except (OSError, ValueError):
        pass
    return frozenset(found)


@dataclass(frozen=True)
class AddressPolicy:
    """The administrator's allowance: host names, addresses and networks a webhook may reach
    even though they are not public (and over plain http)."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()
    own: frozenset[IPAddress] = frozenset()

    @classmethod
    def parse(cls, text: str, own: Iterable[IPAddress] | None = None) -> AddressPolicy:
        """Read ``BACKBONE_WEBHOOK_ALLOW_HOSTS``: comma-separated host names, addresses or
        networks (``hooks.internal, 127.0.0.1, 10.1.0.0/16, ::1``)."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item.strip("[]"), strict=False))
            except ValueError:
                hosts.add(item.lower().rstrip("."))
        return cls(
            frozenset(hosts),
            tuple(networks),
            frozenset(own) if own is not None else _own_addresses(),
        )

    def allows_host(self, host: str) -> bool:
        """Whether ``host`` (a name or an address) was allowed by name, address or network."""
        if host in self.hosts:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return self.allows_address(address)

    def allows_address(self, address: IPAddress) -> bool:
        """Whether ``address`` lies in an allowed network."""
        return any(address in network for network in self.networks)


def _plain(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def refused_reason(address: IPAddress, policy: AddressPolicy) -> str | None:
    """Why ``address`` may not be reached, or None when it may."""
    if policy.allows_address(address) or policy.allows_address(_plain(address)):
        return None
    plain = _plain(address)
    if plain in policy.own or address in policy.own:
        return "one of the service's own addresses"
    if plain.is_loopback:
        return "a loopback address"
    if plain.is_link_local:
        return "a link-local address"
    if plain.is_multicast:
        return "a multicast address"
    if plain.is_unspecified:
        return "the unspecified address"
    if plain.is_private:
        return "a private address"
    if not plain.is_global:
        return "a reserved address"
    return None


@dataclass(frozen=True)
class Destination:
    """A checked URL and the addresses it may be reached at."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


def check_url(url: str, policy: AddressPolicy, resolver: Resolver = resolve) -> Destination:
    """Parse, resolve and check ``url``; raise :class:`WebhookUrlRefused` saying why not."""
    if len(url) > MAX_URL_LENGTH:
        raise WebhookUrlRefused(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookUrlRefused("The URL cannot be parsed.") from None
    if parts.scheme not in ("https", "http"):
        raise WebhookUrlRefused("The URL must be https.")
    if parts.username is not None or parts.password is not None:
        raise WebhookUrlRefused("The URL may not carry credentials; the payload is signed.")
    if parts.fragment:
        raise WebhookUrlRefused("The URL may not have a fragment.")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise WebhookUrlRefused("The URL names no host.")
    allowed_host = policy.allows_host(host)
    if parts.scheme == "http" and not allowed_host:
        raise WebhookUrlRefused("The URL must be https (plain http only to an allowed host).")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = resolver(host, port)
    except (OSError, UnicodeError):
        raise WebhookUrlRefused("The URL's host name does not resolve.") from None
    if not addresses:
        raise WebhookUrlRefused("The URL's host name does not resolve.")
    for text in addresses:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            raise WebhookUrlRefused("The URL's host resolves to an unusable address.") from None
        reason = None if host in policy.hosts else refused_reason(address, policy)
        if reason is not None:
            raise WebhookUrlRefused(
                f"The URL reaches {reason}, which an administrator has not allowed "
                "(BACKBONE_WEBHOOK_ALLOW_HOSTS)."
            )
    return Destination(url, parts.scheme, host, port, tuple(addresses))
