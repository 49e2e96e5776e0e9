"""Where a parent may send its calls: the operator's list of child hosts, and addresses
no child ever has.

A child's `api_url` (and broker URL) comes from an admin, and the parent sends it
the child's credentials and then follows what it answers: a URL that points at a
cloud's metadata service or at an internal host would turn the parent into a
proxy (server-side request forgery). So a URL is used only when its host is one
the operator listed in `allowed_child_hosts`, matched exactly (no globbing: with
fnmatch `10.0.*` also matched `10.0.0.5.attacker.example`):

- `zone1.example.net` or `10.0.0.5`: that host only;
- `*.example.net`: any name under example.net (label by label), not example.net;
- `10.0.0.0/16`, `fd00::/8`: an IP address written in the URL within that network.

And whatever the list says, a name that resolves to a link-local, unspecified,
multicast or metadata-service address is refused at connect time (when the
connection is made, so a DNS answer that changes after the check cannot slip
through).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from skyfed.errors import BadRequest

# The largest answer a parent takes from a child, by default (max_child_answer_bytes).
MAX_CHILD_ANSWER = 64 * 1024 * 1024

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud metadata services outside the link-local ranges (169.254.169.254 is inside).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("fd00:ec2::254", "100.100.100.200", "169.254.169.254")
)
_LABEL = r"(?!-)[a-z0-9_-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")


class PatternError(ValueError):
    """An `allowed_child_hosts` entry that is none of the forms understood."""


@dataclass(frozen=True, slots=True)
class HostPattern:
    text: str
    exact: str | None = None
    suffix: str | None = None  # ".example.net" for "*.example.net"
    network: IPNetwork | None = None

    @classmethod
    def parse(cls, text: str) -> HostPattern:
        value = text.strip().lower().rstrip(".")
        if "/" in value:
            try:
                return cls(text, network=ipaddress.ip_network(value, strict=False))
            except ValueError as exc:
                raise PatternError(f"{text!r} is not a network (10.0.0.0/16)") from exc
        if value.startswith("*."):
            domain = value[2:]
            if not _HOSTNAME.match(domain) or "." not in domain:
                raise PatternError(
                    f"{text!r}: a wildcard names a domain of at least two labels "
                    "(*.example.net); '*' alone would allow any host"
                )
            return cls(text, suffix="." + domain)
        if "*" in value or "?" in value or "[" in value:
            raise PatternError(
                f"{text!r}: only a leading '*.' is understood (*.example.net), or a "
                "network (10.0.0.0/16); list hosts exactly"
            )
        address = _address(value)
        if address is not None:
            return cls(text, exact=str(address))
        if not _HOSTNAME.match(value):
            raise PatternError(f"{text!r} is not a host name, an address or a network")
        return cls(text, exact=value)

    def allows(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        address = _address(host)
        if self.network is not None:
            return address is not None and address in self.network
        if self.suffix is not None:
            return address is None and host.endswith(self.suffix)
        return (str(address) if address is not None else host) == self.exact


def parse_patterns(values: list[str]) -> tuple[HostPattern, ...]:
    return tuple(HostPattern.parse(v) for v in values)


def host_allowed(host: str, patterns: tuple[HostPattern, ...]) -> bool:
    return bool(host) and any(p.allows(host) for p in patterns)


def forbidden_address(address: str) -> str | None:
    """Why no child may live at `address` (an IP), or None when it may."""
    ip = _address(address)
    if ip is None:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata service"
    if ip.is_link_local:
        return f"{ip} is link-local"
    if ip.is_unspecified:
        return f"{ip} is unspecified"
    if ip.is_multicast:
        return f"{ip} is multicast"
    if isinstance(ip, ipaddress.IPv4Address) and ip == ipaddress.IPv4Address("255.255.255.255"):
        return f"{ip} is broadcast"
    return None


def _address(value: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return None


async def check_reach(
    url: str, allowed: tuple[HostPattern, ...], *, setting: str, code: str, what: str
) -> None:
    """`url`'s host is one the operator allows in `setting`, and none of its addresses
    is one nothing skyfed calls may have (checked again at every connect, against DNS
    changes). BadRequest(`code`) otherwise; `what` names the thing in messages."""
    host = (urlsplit(url).hostname or "").lower()
    if not allowed:
        raise BadRequest(f"no {what} host is allowed yet: list them in {setting}", code=code)
    if not host_allowed(host, allowed):
        raise BadRequest(f"{what} URLs may not point at '{host}' (not in {setting})", code=code)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return  # unresolvable now: the probe that follows says it is unreachable
    for info in infos:
        why = forbidden_address(str(info[4][0]))
        if why is not None:
            raise BadRequest(f"{what} URLs may not point at '{host}': {why}", code=code)
