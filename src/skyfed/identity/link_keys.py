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

import asyncio
import hashlib
import time
from dataclasses import dataclass

from sqlalchemy import select

from skyfed.db.engine import Database
from skyfed.identity.models import User
from skyfed.identity.principal import AGENT, SERVICE, Principal
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


@dataclass(frozen=True, slots=True)
class LinkAccount:
    """An account that may call over a bus: its key, and who it is at the zone."""

    key: bytes
    principal: Principal

    @property
    def name(self) -> str:
        return self.principal.username


def needs_link_key(roles: list[str] | frozenset[str]) -> bool:
    return bool(BUS_ROLES & set(roles))


def sealed_link_key(vault: Vault, username: str, password: str) -> bytes:
    """The account's key as the zone stores it (encrypted)."""
    return vault.encrypt(derive_link_key(username, password).hex())


class LinkKeys:
    """The zone's side: each bus account's key and identity by user name, read from the
    database and kept for `ttl` seconds (a deleted or disabled account's key stops
    working within that, and so does a changed role)."""

    def __init__(self, db: Database, vault: Vault, ttl: float = 5.0) -> None:
        self.db = db
        self.vault = vault
        self.ttl = ttl
        self._accounts: dict[str, tuple[LinkAccount | None, float]] = {}
        self._reading: dict[str, asyncio.Task[LinkAccount | None]] = {}

    async def account(self, username: str) -> LinkAccount | None:
        """The account's key and who it is (the bus server's `AccountResolver`)."""
        hit = self._accounts.get(username)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        # The calls in flight for one account share one read when its entry runs out.
        reading = self._reading.get(username)
        if reading is None:
            reading = self._reading[username] = asyncio.create_task(self._read(username, hit))
            reading.add_done_callback(lambda _: self._reading.pop(username, None))
        return await asyncio.shield(reading)

    async def _read(
        self, username: str, hit: tuple[LinkAccount | None, float] | None
    ) -> LinkAccount | None:
        try:
            async with self.db.session() as session:
                row = (
                    await session.execute(
                        select(
                            User.id,
                            User.project_id,
                            User.roles,
                            User.link_key_secret,
                            User.enabled,
                        ).where(User.name == username)
                    )
                ).first()
        except Exception:
            if hit is not None:  # the database is away: what it said last still holds
                return hit[0]
            raise
        account = None
        if row is not None and row.enabled and row.link_key_secret is not None:
            try:
                key = bytes.fromhex(self.vault.decrypt(row.link_key_secret))
            except (VaultError, ValueError):
                key = None
            if key is not None:
                principal = Principal(row.id, username, row.project_id, frozenset(row.roles))
                account = LinkAccount(key, principal)
        if len(self._accounts) > 10_000:
            self._accounts.clear()
        self._accounts[username] = (account, time.monotonic() + self.ttl)
        return account
