"""Where a transport may connect: a host name resolved, every address it has checked,
and the checked address the one connected to (no second lookup that DNS could answer
differently). The check itself is the caller's (zones/reach_policy.py for children)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

# Says why no connection may be made to an IP address, or None when one may.
AddressCheck = Callable[[str], str | None]


class RefusedAddress(OSError):
    """The name resolves to an address the check refuses (or to none)."""


async def checked_addresses(name: str, port: int, check: AddressCheck) -> list[str]:
    """The addresses to try, in the resolver's order, for `name`; RefusedAddress when
    any it resolves to is refused (socket.gaierror, an OSError too, when it does not
    resolve)."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        name.strip("[]"), port, type=socket.SOCK_STREAM
    )
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for address in addresses:
        why = check(address)
        if why is not None:
            raise RefusedAddress(f"{name} resolves to a refused address: {why}")
    if not addresses:
        raise RefusedAddress(f"{name} resolves to no address")
    return addresses


async def checked_address(name: str, port: int, check: AddressCheck) -> str:
    """The first of `checked_addresses`."""
    return (await checked_addresses(name, port, check))[0]
