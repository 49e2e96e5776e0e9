"""Sessions with the zone's storage clusters for forwarding: each cluster's reseller
admin token and its `/v1` base, and one streaming HTTP pool per cluster.

Unlike `SwiftBackend` (polls: small, bounded answers), bodies here are objects of any
size: they are streamed through, never held whole.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import quote

import httpx

from skyfed.identity.vault import Vault
from skyfed.objects.models import StorageCluster
from skyfed.objects.swift_backend import SwiftBackend


@dataclass
class ClusterSession:
    base: str  # the cluster's …/v1
    token: str
    http: httpx.AsyncClient

    def url(self, account: str, *path: str) -> str:
        parts = [quote(account, safe="")] + [quote(p, safe="/") for p in path]
        return "/".join([self.base, *parts])


class ClusterPool:
    def __init__(self, vault: Vault, timeout: float) -> None:
        self.vault = vault
        self.timeout = timeout
        self._sessions: dict[str, ClusterSession] = {}
        self._lock = asyncio.Lock()

    async def session(self, cluster: StorageCluster, *, fresh: bool = False) -> ClusterSession:
        """The cluster's session; `fresh`: log in again (the token was refused).

        Requests that find no session (or a refused token) at once share one login:
        the first logs in, those waiting behind it take the session it made."""
        known = self._sessions.get(cluster.id)
        if known is not None and not fresh:
            return known
        async with self._lock:
            current = self._sessions.get(cluster.id)
            if current is not None and current is not known:
                return current  # made, or renewed, while this request waited
            backend = SwiftBackend(
                cluster.auth_url,
                cluster.username,
                self.vault.decrypt(cluster.password_secret),
                timeout=self.timeout,
            )
            try:
                token, storage_url = await backend.authenticate()
            finally:
                await backend.aclose()
            base = storage_url.rstrip("/").rsplit("/", 1)[0]
            http = (
                known.http
                if known is not None
                else httpx.AsyncClient(
                    timeout=httpx.Timeout(self.timeout, read=None), follow_redirects=False
                )
            )
            self._sessions[cluster.id] = ClusterSession(base, token, http)
            return self._sessions[cluster.id]

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.http.aclose()
        self._sessions.clear()
