"""SSRF guard for the fetcher: only http(s) URLs whose every resolved address is public are fetched.

A crawl's URLs are written by strangers: ``http://169.254.169.254/`` (cloud metadata), ``http://10.0.0.1/`` or a
public name that resolves to ``127.0.0.1`` must never be requested from a worker inside a VPC. The check runs on the
URL before any connection (scheme, then DNS, then every address), again on every redirect target, and once more on
the peer address of the socket actually connected (``check_connected_peer``), so a DNS answer that changes between
the check and the connection (rebinding) is refused too.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from pipeline.net.errors import FetchError
from pipeline.net.resolver import install_from_environment

ALLOWED_SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Target:
    """A checked URL: scheme, host, port and the addresses it resolved to (all allowed)."""

    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]

    @property
    def origin(self) -> str:
        """``scheme://host:port``: the unit robots.txt and per-host limits apply to (an IPv6 literal in brackets, as a
        URL needs it: ``http://[::1]:8080``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def is_public_address(address: IpAddress) -> bool:
    """Whether an address is globally routable unicast (not private, loopback, link-local, multicast, reserved)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is loopback, whatever its spelling
    return address.is_global and not (
        address.is_multicast
        or address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_reserved
        or address.is_unspecified
    )


class AddressPolicy:
    """Which addresses may be connected to: public ones, plus an explicit allow-list (or everything, if asked)."""

    def __init__(self, allow_private: bool = False, allowed_networks: Iterable[str] = ()) -> None:
        self.allow_private = allow_private
        self.allowed_networks: tuple[IpNetwork, ...] = tuple(
            ipaddress.ip_network(text.strip(), strict=False) for text in allowed_networks if text.strip()
        )

    def refusal(self, address_text: str) -> str | None:
        """Why an address is refused, or ``None`` when it may be connected to."""
        address = ipaddress.ip_address(address_text.split("%", 1)[0])  # drop an IPv6 zone id
        if self.allow_private or is_public_address(address):
            return None
        if any(address.version == network.version and address in network for network in self.allowed_networks):
            return None
        return f"{address} is not a public address"


def resolve(host: str, port: int) -> tuple[str, ...]:
    """Every address ``host`` resolves to (an IP literal resolves to itself); ``dns_error`` when none."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as error:
        raise FetchError("dns_error", f"cannot resolve {host!r}: {error}") from None
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise FetchError("dns_error", f"{host!r} resolved to no address")
    return addresses


def check_url(url: str, policy: AddressPolicy) -> Target:
    """Check a URL before connecting: http(s) only, resolvable, and every address allowed by ``policy``.

    Every address must pass (not just the first): the connection may use any of them.
    """
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        port = parts.port or DEFAULT_PORTS.get(scheme, 0)
    except ValueError as error:  # e.g. a non-numeric port
        raise FetchError("unsupported_scheme", f"unparseable URL {url!r}: {error}") from None
    if scheme not in ALLOWED_SCHEMES:
        raise FetchError("unsupported_scheme", f"scheme {scheme or '(none)'!r} is not http or https")
    if not host:
        raise FetchError("dns_error", f"URL {url!r} has no host")
    try:
        # An IP literal needs no DNS: refuse it before anything else happens.
        addresses: tuple[str, ...] = (str(ipaddress.ip_address(host.strip("[]"))),)
    except ValueError:
        addresses = resolve(host, port)
    for address in addresses:
        reason = policy.refusal(address)
        if reason is not None:
            raise FetchError("private_address", f"{host} -> {reason}")
    return Target(scheme=scheme, host=host, port=port, addresses=addresses)


def check_connected_peer(sock: socket.socket, policy: AddressPolicy) -> None:
    """Refuse a connected socket whose peer is not allowed (defends against DNS rebinding after ``check_url``)."""
    try:
        peer = sock.getpeername()[0]
    except OSError:
        return  # not connected: the request will fail on its own
    reason = policy.refusal(str(peer))
    if reason is not None:
        sock.close()
        raise FetchError("private_address", f"connected peer {reason}")


# Test-only *.test host names (the crawl simulator's), only when ALTCORPUS_TEST_HOSTS names them: see resolver.py.
install_from_environment()
