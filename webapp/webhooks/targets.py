"""Where a webhook may send: its URL's parts, and every address its host resolves to checked.

A target that resolves to a private, loopback, link-local, shared, reserved or documentation address
is refused unless private targets are allowed (WEBHOOK_ALLOW_PRIVATE); multicast and unspecified
addresses are refused always. Addresses that carry an IPv4 address inside an IPv6 one (IPv4-mapped,
6to4, NAT64, Teredo) are judged by the IPv4 address too. The check runs when a URL is saved and again
before every attempt, and the attempt connects to the address checked (transport.py): the host is
never looked up a second time between the check and the connection.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., list[tuple[Any, ...]]]

MAX_URL_LENGTH = 2048
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class TargetRefused(ValueError):
    """A URL a webhook may not use (or no longer may): the message says why."""


@dataclass(frozen=True)
class Target:
    """A webhook URL taken apart: what the request line, the Host header and TLS need."""

    scheme: str
    host: str  # ASCII (IDNA), without brackets
    port: int
    path: str  # path and query, as the request line sends them

    @property
    def host_header(self) -> str:
        """The Host header: the host (an IPv6 literal in brackets), and the port unless the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == _DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def parse_url(url: str) -> Target:
    """The parts of an absolute http(s) URL without credentials; TargetRefused says what is wrong."""
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise TargetRefused("the URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"the URL cannot be read: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise TargetRefused("the URL must start with http:// or https://")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("the URL may not carry credentials (user:password@); put a token in its path")
    if not parts.hostname:
        raise TargetRefused("the URL has no host")
    if port == 0:
        raise TargetRefused("the URL's port must be 1 to 65535")
    try:
        host = (
            parts.hostname.encode("idna").decode("ascii")
            if not _is_literal(parts.hostname)
            else parts.hostname
        )
    except UnicodeError as exc:
        raise TargetRefused(f"the host {parts.hostname!r} is not a valid host name") from exc
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(scheme, host, port if port is not None else _DEFAULT_PORTS[scheme], path)


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, NAT64, Teredo client), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


# The limited broadcast address: refused like multicast, whatever WEBHOOK_ALLOW_PRIVATE says.
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def refusal(address: IPAddress, *, allow_private: bool) -> str | None:
    """What `address` is that a webhook may not connect to it ("a multicast ... address"; None: it may)."""
    for candidate in filter(None, (address, _embedded_ipv4(address))):
        if candidate.is_multicast or candidate.is_unspecified or candidate == _BROADCAST:
            return "a multicast, broadcast or unspecified address"
        if allow_private:
            continue
        mapped = isinstance(candidate, ipaddress.IPv6Address) and candidate.ipv4_mapped is not None
        # An IPv4-mapped address is judged by its IPv4 address alone (the ::ffff:0:0/96 block itself
        # counts as reserved).
        if mapped:
            continue
        if not candidate.is_global or candidate.is_reserved:
            return (
                "a private, loopback, link-local or reserved address "
                "(set WEBHOOK_ALLOW_PRIVATE to allow such targets)"
            )
    return None


def resolve(target: Target, resolver: Resolver = socket.getaddrinfo) -> list[IPAddress]:
    """Every address the target's host stands for (an IP literal stands for itself), in resolver order."""
    try:
        found = resolver(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"the host {target.host!r} does not resolve") from exc
    addresses: list[IPAddress] = []
    for *_, sockaddr in found:
        # A scope (fe80::1%eth0) is dropped: it only ever names a link-local address, refused anyway.
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise TargetRefused(f"the host {target.host!r} does not resolve")
    return addresses


def checked_addresses(
    target: Target, *, allow_private: bool, resolver: Resolver = socket.getaddrinfo
) -> list[IPAddress]:
    """The target's addresses, each allowed; TargetRefused when any is not (a name that resolves to
    one public and one private address is refused as a whole)."""
    addresses = resolve(target, resolver)
    for address in addresses:
        reason = refusal(address, allow_private=allow_private)
        if reason is not None:
            raise TargetRefused(f"the host {target.host!r} resolves to {address}, {reason}")
    return addresses


def check_url(url: str, *, allow_private: bool, resolver: Resolver = socket.getaddrinfo) -> Target:
    """The target of `url` when it may be used now; TargetRefused otherwise."""
    target = parse_url(url)
    checked_addresses(target, allow_private=allow_private, resolver=resolver)
    return target
