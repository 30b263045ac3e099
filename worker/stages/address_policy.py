"""Which URLs and network addresses the worker may fetch from (SSRF protection).

Pure functions and small policies, no I/O: the fetcher resolves the host itself, passes every resolved
address through `AddressPolicy.check`, and then connects to the checked address (so a second DNS answer
cannot point the connection somewhere else).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from worker.failures import ForbiddenAddress, UrlNotAllowed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Ranges that `ipaddress`' flags do not all cover on every Python version; checked explicitly.
_EXTRA_FORBIDDEN: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
    ipaddress.ip_network("0.0.0.0/8"),  # "this network"
    ipaddress.ip_network("100.64.0.0/10"),  # carrier-grade NAT (RFC 6598)
    ipaddress.ip_network("169.254.0.0/16"),  # link-local, incl. 169.254.169.254 cloud metadata
    ipaddress.ip_network("192.0.0.0/24"),  # IETF protocol assignments
    ipaddress.ip_network("198.18.0.0/15"),  # benchmarking
    ipaddress.ip_network("224.0.0.0/4"),  # multicast
    ipaddress.ip_network("240.0.0.0/4"),  # reserved, incl. broadcast
    ipaddress.ip_network("fc00::/7"),  # unique local addresses
    ipaddress.ip_network("fe80::/10"),  # link-local
    ipaddress.ip_network("fec0::/10"),  # deprecated site-local
    ipaddress.ip_network("ff00::/8"),  # multicast
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS IPv6 metadata endpoint
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Never an image host, even when private networks are allowed: link-local ranges hold the cloud
# metadata services (169.254.169.254, 169.254.170.2, fd00:ec2::254), which hand out credentials.
_ALWAYS_FORBIDDEN: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("fd00:ec2::254/128"),
)


def metadata_reason(address: IPAddress) -> str | None:
    """Why `address` is forbidden even when private networks are allowed (link-local / metadata), or None."""
    candidates = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    for candidate in candidates:
        for network in _ALWAYS_FORBIDDEN:
            if candidate.version == network.version and candidate in network:
                return f"link-local / cloud metadata range {network}"
    return None


def forbidden_reason(address: IPAddress) -> str | None:
    """Why `address` must not be fetched from, or None when it is a public unicast address.

    IPv6 addresses that embed an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`,
    6to4, Teredo) are judged by the embedded address as well.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded: list[ipaddress.IPv4Address] = []
        if address.ipv4_mapped is not None:
            embedded.append(address.ipv4_mapped)
        if address in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address.sixtofour is not None:
            embedded.append(address.sixtofour)
        if address.teredo is not None:
            embedded.append(address.teredo[1])
        for inner in embedded:
            reason = forbidden_reason(inner)
            if reason is not None:
                return f"embeds {inner} ({reason})"
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    )
    for name, flagged in checks:
        if flagged:
            return name
    for network in _EXTRA_FORBIDDEN:
        if address.version == network.version and address in network:
            return f"in {network}"
    if not address.is_global:
        return "not globally routable"
    return None


@dataclass(frozen=True)
class AddressPolicy:
    """Decides whether the worker may connect to a resolved address."""

    allow_private_networks: bool = False

    def check_all(self, host: str, addresses: Iterable[IPAddress]) -> None:
        """Raise `ForbiddenAddress` if ANY of the host's addresses is not allowed.

        Checking all of them (not just the one we will use) refuses hosts that mix public and internal
        answers, a common rebinding trick. With `allow_private_networks`, loopback and private ranges
        pass but link-local / cloud metadata addresses are still refused.
        """
        for address in addresses:
            reason = metadata_reason(address) if self.allow_private_networks else forbidden_reason(address)
            if reason is not None:
                raise ForbiddenAddress(f"host {host!r} resolves to a forbidden address ({reason})")


@dataclass(frozen=True)
class HostPolicy:
    """An optional allow-list of host names; empty = any host."""

    allowed_hosts: tuple[str, ...] = ()

    def check(self, host: str) -> None:
        """Raise `UrlNotAllowed` if the list is set and `host` is not on it.

        An entry `example.com` matches only that host; `.example.com` matches its subdomains too.
        """
        if not self.allowed_hosts:
            return
        name = host.lower().rstrip(".")
        for allowed in self.allowed_hosts:
            entry = allowed.lower().rstrip(".")
            if entry.startswith("."):
                if name == entry[1:] or name.endswith(entry):
                    return
            elif name == entry:
                return
        raise UrlNotAllowed(f"host {name!r} is not in the allowed host list")


def parse_ip(host: str) -> IPAddress | None:
    """The address if `host` is an IP literal (brackets allowed), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
