"""Forwarding's sessions with storage clusters: one login for requests that arrive together."""

from __future__ import annotations

import asyncio

import pytest
from cryptography.fernet import Fernet

from skyfed.identity.vault import Vault
from skyfed.objects import cluster_pool
from skyfed.objects.cluster_pool import ClusterPool
from skyfed.objects.models import StorageCluster


class FakeBackend:
    """SwiftBackend's login, counted, answering after a pause (as a cluster over a network)."""

    logins = 0

    def __init__(self, auth_url: str, username: str, password: str, *, timeout: float) -> None:
        assert password == "key"

    async def authenticate(self) -> tuple[str, str]:
        FakeBackend.logins += 1
        await asyncio.sleep(0.01)
        return f"token-{FakeBackend.logins}", "http://127.0.0.1:1/v1/AUTH_admin"

    async def aclose(self) -> None:
        return None


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch) -> ClusterPool:
    FakeBackend.logins = 0
    monkeypatch.setattr(cluster_pool, "SwiftBackend", FakeBackend)
    return ClusterPool(Vault(Fernet.generate_key()), timeout=5.0)


def cluster(pool: ClusterPool, cluster_id: str) -> StorageCluster:
    return StorageCluster(
        id=cluster_id,
        name=cluster_id,
        auth_url="http://127.0.0.1:1/auth/v1.0",
        username="admin:admin",
        password_secret=pool.vault.encrypt("key"),
    )


async def test_requests_arriving_together_share_one_login_and_one_http_pool(
    pool: ClusterPool,
) -> None:
    east = cluster(pool, "east")
    try:
        sessions = await asyncio.gather(*(pool.session(east) for _ in range(32)))
        assert FakeBackend.logins == 1
        assert len({id(s) for s in sessions}) == 1
        # A token refused by many requests at once: one login again, the same pool.
        renewed = await asyncio.gather(*(pool.session(east, fresh=True) for _ in range(32)))
        assert FakeBackend.logins == 2
        assert {s.token for s in renewed} == {"token-2"}
        assert {id(s.http) for s in renewed} == {id(sessions[0].http)}
        # Another cluster has a session of its own.
        west = await pool.session(cluster(pool, "west"))
        assert FakeBackend.logins == 3 and west.http is not sessions[0].http
    finally:
        await pool.close()
