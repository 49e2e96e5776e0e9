"""Keys that sign calls and answers on a message bus, one per account that uses one.

A parent zone (a service account of the child) or a host agent (an agent account)
calling over the child's broker signs each call with a key derived from its
account's password, and the zone signs its answers with the same key: whoever
else can publish on that broker can neither forge a call nor an answer. Both ends
derive the key themselves; it never travels. The zone keeps no password, so it
derives the key when the password is set and keeps it encrypted with its vault.

The derivation is memory-hard (scrypt), so a captured signature does not make a
weak password cheap to guess; passwords of bus accounts should still be long and
random (`skyfed up` makes them so).
"""

from __future__ import annotations

import hashlib
import time

from sqlalchemy import select

from skyfed.db.engine import Database
from skyfed.identity.models import User
from skyfed.identity.principal import AGENT, SERVICE
from skyfed.identity.vault import Vault, VaultError

# Roles whose accounts call over a bus, and so get a link key.
BUS_ROLES = frozenset({SERVICE, AGENT})


def derive_link_key(username: str, password: str) -> bytes:
    """The 32-byte key an account signs bus calls with (same on both ends)."""
    return hashlib.scrypt(
        password.encode(),
        salt=b"skyfed-link-key-v1:" + username.encode(),
        n=2**14,
        r=8,
        p=1,
        dklen=32,
    )


def needs_link_key(roles: list[str] | frozenset[str]) -> bool:
    return bool(BUS_ROLES & set(roles))


def sealed_link_key(vault: Vault, username: str, password: str) -> bytes:
    """The account's key as the zone stores it (encrypted)."""
    return vault.encrypt(derive_link_key(username, password).hex())


class LinkKeys:
    """The zone's side: each bus account's key by user name, read from the database
    and kept for `ttl` seconds (a deleted account's key stops working within that)."""

    def __init__(self, db: Database, vault: Vault, ttl: float = 5.0) -> None:
        self.db = db
        self.vault = vault
        self.ttl = ttl
        self._keys: dict[str, tuple[bytes | None, float]] = {}

    async def get(self, username: str) -> bytes | None:
        """The account's key; None when no enabled account of that name has one."""
        hit = self._keys.get(username)
        now = time.monotonic()
        if hit is not None and hit[1] > now:
            return hit[0]
        async with self.db.session() as session:
            row = (
                await session.execute(
                    select(User.link_key_secret, User.enabled).where(User.name == username)
                )
            ).first()
        key = None
        if row is not None and row.enabled and row.link_key_secret is not None:
            try:
                key = bytes.fromhex(self.vault.decrypt(row.link_key_secret))
            except (VaultError, ValueError):
                key = None
        if len(self._keys) > 10_000:
            self._keys.clear()
        self._keys[username] = (key, now + self.ttl)
        return key

    def forget(self, username: str) -> None:
        self._keys.pop(username, None)
