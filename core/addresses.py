"""Which network addresses the server may connect to on a user's behalf.

URL imports download what a user names and webhooks post where a user
says: neither may make the server reach its own network (server-side
request forgery). Every host is resolved first and refused unless all its
addresses are public (not loopback, private, link-local, shared, reserved,
multicast: that covers 169.254.169.254 and friends); the connection then
goes to the checked address itself (``pin``: the Host header and TLS
server name keep the original name), so a second DNS answer cannot swap
it. An installation may allow private addresses (``DSA_URL_IMPORT_ALLOW_PRIVATE``,
``DSA_WEBHOOK_ALLOW_PRIVATE``) to reach its own network.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# IPv6 ranges that carry an IPv4 address to wherever a translator or relay
# sends it (so possibly a private one), which ``is_global`` calls global:
# NAT64 (RFC 6052, RFC 8215), 6to4 (RFC 3056), IPv4-compatible (RFC 4291,
# deprecated). Refused whatever the embedded address (issue 15).
_TRANSLATED = tuple(
    ipaddress.ip_network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "::/96")
)


class Unresolvable(Exception):
    """The host has no address."""


class NotAllowed(Exception):
    """The host resolves to an address of a private or local network."""


def public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether the server may connect to ``ip`` for a user."""
    if ip.version == 6 and any(ip in net for net in _TRANSLATED):
        return False
    return ip.is_global


def check_address(host: str, port: int, *, allow_private: bool) -> str:
    """The first address ``host`` resolves to, once every address passed the rule."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise Unresolvable(f"cannot resolve {host!r}: {exc}") from None
    addresses = [str(info[4][0]) for info in infos]
    for addr in addresses:
        ip = ipaddress.ip_address(addr.split("%")[0])
        if not allow_private and not public(ip):
            raise NotAllowed(f"{host} resolves to an address of a private or local network")
    return addresses[0]


@dataclass(frozen=True)
class Pinned:
    """A request to ``url`` sent to the address its host was checked to have."""

    url: str  # the URL with the checked address in place of the host
    headers: dict[str, str]  # Host: the original name
    extensions: dict[str, Any]  # httpx: the TLS server name


def pin(url: str, addr: str) -> Pinned:
    """``url`` (http or https) sent to ``addr``, the address its host was
    checked to have (``check_address``)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = f"[{addr}]" if ":" in addr else addr
    target = urlunsplit((parts.scheme, f"{host}:{port}", parts.path or "/", parts.query, ""))
    return Pinned(
        target,
        {"Host": parts.netloc.rsplit("@", 1)[-1]},
        {"sni_hostname": parts.hostname},
    )


def redact(url: str) -> str:
    """The URL as others may see it (provenance, schedules, the audit log):
    no user name or password, and no query string (pre-signed URLs and
    webhook endpoints carry their credential there), nor fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None:
        host += f":{port}"
    return urlunsplit((parts.scheme, host, parts.path, "", "")) + (
        "?<redacted>" if parts.query else ""
    )
