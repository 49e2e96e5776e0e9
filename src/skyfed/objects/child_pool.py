"""Sessions with the child zones for forwarding Swift requests down the tree: each
child's `/v1` base, a token of the service account this zone was given for it, and
one streaming HTTP pool per child.

The Swift data path goes over the child's API URL (HTTP) whatever carries the
link's own calls: object bodies are streamed, never put in a message.
"""

from __future__ import annotations

import asyncio

import httpx

from skyfed.identity.vault import Vault
from skyfed.objects.cluster_pool import ClusterSession
from skyfed.zones.models import ChildZone


class ChildLoginFailed(Exception):
    pass


class ChildPool:
    def __init__(self, vault: Vault, timeout: float) -> None:
        self.vault = vault
        self.timeout = timeout
        self._sessions: dict[str, ClusterSession] = {}
        self._lock = asyncio.Lock()

    async def session(self, child: ChildZone, *, fresh: bool = False) -> ClusterSession:
        """The child's session; `fresh`: log in again (the token was refused)."""
        known = self._sessions.get(child.id)
        if known is not None and not fresh:
            return known
        async with self._lock:
            base = child.api_url.rstrip("/")
            http = known.http if known is not None else httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout, read=None), follow_redirects=False
            )  # fmt: skip
            answer = await http.post(
                f"{base}/v1/auth/tokens",
                json={
                    "username": child.username,
                    "password": self.vault.decrypt(child.password_secret),
                },
                timeout=self.timeout,
            )
            if answer.status_code != 201 and answer.status_code != 200:
                raise ChildLoginFailed(f"its login answered {answer.status_code}")
            token = answer.json().get("token")
            if not isinstance(token, str):
                raise ChildLoginFailed("its login answered no token")
            self._sessions[child.id] = ClusterSession(f"{base}/v1", token, http)
            return self._sessions[child.id]

    def forget(self, child_id: str) -> None:
        self._sessions.pop(child_id, None)

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.http.aclose()
        self._sessions.clear()
