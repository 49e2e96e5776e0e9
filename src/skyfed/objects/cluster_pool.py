"""Sessions with the zone's storage clusters for forwarding: each cluster's reseller
admin token and its `/v1` base, and one streaming HTTP pool per cluster.

Unlike `SwiftBackend` (polls: small, bounded answers), bodies here are objects of any
size: they are streamed through, never held whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

import httpx

from skyfed.identity.vault import Vault
from skyfed.objects.models import StorageCluster
from skyfed.objects.swift_backend import SwiftBackend
from skyfed.transport.httpx_pool import checked_transport
from skyfed.zones.reach_policy import forbidden_address


@dataclass
class ClusterSession:
    base: str  # the cluster's …/v1
    token: str
    http: httpx.AsyncClient

    def url(self, account: str, *path: str) -> str:
        parts = [quote(account, safe="")] + [quote(p, safe="/") for p in path]
        return "/".join([self.base, *parts])


# (http client it may use) -> (the `/v1` base, a token)
Login = Callable[[httpx.AsyncClient], Awaitable[tuple[str, str]]]


class SessionPool:
    """Sessions by key (a cluster's or a child zone's id), each with its own streaming
    HTTP pool. Requests that find no session (or a refused token) at once share one
    login: the first logs in, those waiting behind it take the session it made."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._sessions: dict[str, ClusterSession] = {}
        self._lock = asyncio.Lock()

    async def _session(self, key: str, login: Login, fresh: bool) -> ClusterSession:
        known = self._sessions.get(key)
        if known is not None and not fresh:
            return known
        async with self._lock:
            current = self._sessions.get(key)
            if current is not None and current is not known:
                return current  # made, or renewed, while this request waited
            http = known.http if known is not None else self._client()
            try:
                base, token = await login(http)
            except BaseException:
                if known is None:
                    await http.aclose()
                raise
            self._sessions[key] = ClusterSession(base, token, http)
            return self._sessions[key]

    def _client(self) -> httpx.AsyncClient:
        # Every address a cluster's or child's name resolves to is checked at connect
        # (their URLs were checked when registered; DNS may answer differently later).
        return httpx.AsyncClient(
            transport=checked_transport(forbidden_address),
            timeout=httpx.Timeout(self.timeout, read=None),
            follow_redirects=False,
        )

    async def forget(self, key: str) -> None:
        gone = self._sessions.pop(key, None)
        if gone is not None:
            await gone.http.aclose()

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.http.aclose()
        self._sessions.clear()


class ClusterPool(SessionPool):
    """Sessions with the zone's storage clusters, as each one's reseller admin."""

    def __init__(self, vault: Vault, timeout: float) -> None:
        super().__init__(timeout)
        self.vault = vault

    async def session(self, cluster: StorageCluster, *, fresh: bool = False) -> ClusterSession:
        """The cluster's session; `fresh`: log in again (the token was refused)."""

        async def login(_: httpx.AsyncClient) -> tuple[str, str]:
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
            return storage_url.rstrip("/").rsplit("/", 1)[0], token

        return await self._session(cluster.id, login, fresh)
