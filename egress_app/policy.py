"""Which destinations a sandbox may reach through the egress proxy. Pure decisions plus one seam,
:func:`resolve_host`, the only place a name is looked up.

The rules, in order:

1. ``VIBECODE_EGRESS=off`` refuses everything.
2. The port must be in ``VIBECODE_EGRESS_PORTS`` (443 and 80 by default).
3. In ``allowlist`` mode the host name must match ``VIBECODE_EGRESS_ALLOW``: an exact name,
   or ``*.suffix`` for any name *under* the suffix (not the suffix itself). ``open`` mode skips
   this rule, never the next one.
4. The name is resolved here, by the backend, and refused if **any** of its addresses lies in
   :data:`REFUSED_NETWORKS` (unless it lies in ``VIBECODE_EGRESS_ALLOW_ADDRESSES``). The proxy then
   connects to exactly the addresses checked, never resolving again, so a name whose DNS answer
   changes between check and use (DNS rebinding) cannot reach Redis, PostgreSQL, the Docker
   host or a cloud metadata service.

Why an explicit list rather than ``ipaddress``'s ``is_private``/``is_global``: those also flag the
documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) and a few more, and some
networks put real services there: on this project's CI machines the package registries resolve
to 203.0.113.80, a TLS-inspecting proxy. What we refuse is what can reach *our* side of the wall:
this host, its private networks, the Docker bridges, link-local (the metadata service) and the
carrier-grade NAT range, plus addresses that are never a remote peer (unspecified, multicast,
reserved, broadcast). IPv6 addresses that embed an IPv4 one (v4-mapped ``::ffff:a.b.c.d``,
NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``) are judged by the embedded address as well.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass

from django.conf import settings

from core_app.errors import DomainError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

REFUSED_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(network)
    for network in (
        # IPv4
        "0.0.0.0/8",  # "this network", unspecified
        "10.0.0.0/8",  # RFC 1918
        "100.64.0.0/10",  # carrier-grade NAT (RFC 6598)
        "127.0.0.0/8",  # loopback: this backend, Redis and PostgreSQL in a one-host install
        "169.254.0.0/16",  # link-local, with the cloud metadata service at 169.254.169.254
        "172.16.0.0/12",  # RFC 1918, and Docker's default bridges (172.17-31.x.x)
        "192.0.0.0/24",  # IETF protocol assignments
        "192.168.0.0/16",  # RFC 1918, and Docker's later default address pools
        "198.18.0.0/15",  # benchmarking
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the broadcast address 255.255.255.255
        # IPv6
        "::/128",  # unspecified
        "::1/128",  # loopback
        "100::/64",  # discard-only
        "2001::/32",  # Teredo: tunnels to anywhere
        "fc00::/7",  # unique local (and AWS's metadata service at fd00:ec2::254)
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated, still routed by some)
        "ff00::/8",  # multicast
    )
)

NAT64 = ipaddress.ip_network("64:ff9b::/96")
SIXTOFOUR = ipaddress.ip_network("2002::/16")

# A DNS name (letters, digits, hyphens, underscores in labels, dots), without a trailing dot.
_NAME = re.compile(
    r"(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*"
)


class EgressRefused(DomainError):
    """The policy says no: the proxy answers 403 with ``reason`` in its status line."""

    status_code = 403
    code = "egress_refused"
    default_detail = "egress refused"

    def __init__(self, reason: str, detail: str, *, outcome: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.outcome = outcome


class EgressUnresolvable(DomainError):
    status_code = 502
    code = "egress_unresolvable"
    default_detail = "The host name could not be resolved."


@dataclass(frozen=True)
class Destination:
    """Where a connection may go: the name asked for and the addresses it was checked at."""

    host: str
    port: int
    addresses: tuple[IPAddress, ...]


def normalize_host(raw: str) -> str | None:
    """A host as the policy compares it: lower case, no trailing dot, IPv6 without brackets;
    None when it is neither a DNS name nor an IP address."""
    host = raw.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host.endswith("."):
        host = host[:-1]
    if not host:
        return None
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    return host if _NAME.fullmatch(host) else None


def host_allowed(host: str, *, patterns: list[str] | None = None) -> bool:
    """Does ``host`` (normalized) match the allowlist? ``*.suffix`` matches names under suffix."""
    for pattern in settings.VIBECODE_EGRESS_ALLOW if patterns is None else patterns:
        pattern = pattern.strip().lower().rstrip(".")
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


def port_allowed(port: int) -> bool:
    return port in settings.VIBECODE_EGRESS_PORTS


def _embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    embedded = []
    if address.ipv4_mapped is not None:
        embedded.append(address.ipv4_mapped)
    if address in NAT64:
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address.sixtofour is not None:
        embedded.append(address.sixtofour)
    return embedded


def address_refused(address: IPAddress) -> bool:
    """True when ``address`` (or an IPv4 address it embeds) is in a refused network and not in
    ``VIBECODE_EGRESS_ALLOW_ADDRESSES``."""
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        address = ipaddress.IPv6Address(str(address).split("%", 1)[0])
    allowed = settings.VIBECODE_EGRESS_ALLOW_ADDRESSES
    for candidate in [address, *_embedded_ipv4(address)]:
        if any(candidate.version == net.version and candidate in net for net in allowed):
            continue
        if any(candidate.version == net.version and candidate in net for net in REFUSED_NETWORKS):
            return True
    return False


def resolve_host(host: str, port: int) -> list[IPAddress]:
    """The addresses of ``host``, in the resolver's order (the seam tests replace). Raises
    ``EgressUnresolvable``."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise EgressUnresolvable(f"{host} could not be resolved ({exc}).") from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise EgressUnresolvable(f"{host} has no address.")
    return addresses


def egress_destination(*, host: str, port: int) -> Destination:
    """Check ``host:port`` against the policy and resolve it once. Raises ``EgressRefused``
    (reason ``egress is off``, ``port not allowed``, ``host not allowed``, ``address refused``)
    or ``EgressUnresolvable``."""
    mode = settings.VIBECODE_EGRESS
    if mode == "off":
        raise EgressRefused(
            "egress is off", "Package egress is turned off on this server.", outcome="refused_off"
        )
    name = normalize_host(host)
    if name is None:
        raise EgressRefused("host not allowed", f"{host[:100]!r} is not a host name.", outcome="refused_host")
    if not port_allowed(port):
        ports = ", ".join(str(p) for p in settings.VIBECODE_EGRESS_PORTS)
        raise EgressRefused(
            "port not allowed", f"Port {port} is not allowed (allowed: {ports}).", outcome="refused_port"
        )
    if mode == "allowlist" and not host_allowed(name):
        raise EgressRefused(
            "host not allowed",
            f"{name} is not on this server's egress allowlist (VIBECODE_EGRESS_ALLOW).",
            outcome="refused_host",
        )
    addresses = resolve_host(name, port)
    refused = [address for address in addresses if address_refused(address)]
    if refused:
        raise EgressRefused(
            "address refused",
            f"{name} resolves to {refused[0]}, an address sandboxes may not reach.",
            outcome="refused_address",
        )
    return Destination(host=name, port=port, addresses=tuple(addresses))
