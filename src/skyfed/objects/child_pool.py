"""Sessions with the child zones for forwarding Swift requests down the tree: each
child's `/v1` base, a token of the service account this zone was given for it, and
one streaming HTTP pool per child.

The Swift data path goes over the child's API URL (HTTP) whatever carries the
link's own calls: object bodies are streamed, never put in a message.
"""

from __future__ import annotations

import httpx

from skyfed.identity.vault import Vault
from skyfed.objects.cluster_pool import ClusterSession, SessionPool
from skyfed.zones.models import ChildZone


class ChildLoginFailed(Exception):
    pass


class ChildPool(SessionPool):
    """Sessions with the child zones, as the service account each was registered with."""

    def __init__(self, vault: Vault, timeout: float) -> None:
        super().__init__(timeout)
        self.vault = vault

    async def session(self, child: ChildZone, *, fresh: bool = False) -> ClusterSession:
        """The child's session; `fresh`: log in again (the token was refused)."""
        base = child.api_url.rstrip("/")

        async def login(http: httpx.AsyncClient) -> tuple[str, str]:
            answer = await http.post(
                f"{base}/v1/auth/tokens",
                json={
                    "username": child.username,
                    "password": self.vault.decrypt(child.password_secret),
                },
                timeout=self.timeout,
            )
            if answer.status_code not in (200, 201):
                raise ChildLoginFailed(f"its login answered {answer.status_code}")
            token = answer.json().get("token")
            if not isinstance(token, str):
                raise ChildLoginFailed("its login answered no token")
            return f"{base}/v1", token

        return await self._session(child.id, login, fresh)
