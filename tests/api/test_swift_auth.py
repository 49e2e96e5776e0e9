"""Swift's v1 auth on a zone, backed by skyfed's identity, through python-swiftclient
(the tool users have) and by hand for what it must refuse."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from swiftclient.client import ClientException, get_auth

from skyfed.client import SkyfedClient
from tests.conftest import ServedZone, free_test_port, zone_settings

PASSWORD = "member-password-1"


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[ServedZone, str]]:
    settings = zone_settings(tmp_path, None, port=free_test_port(), login_max_failures_per_user=3)
    async with ServedZone(settings) as zone, zone.client() as admin:
        project = await admin.create_project("p1")
        await admin.create_project("p2")
        await admin.create_user("mia", PASSWORD, "p1", ["member"])
        yield zone, project.id


async def test_swiftclient_authenticates_as_a_project_member(
    served: tuple[ServedZone, str],
) -> None:
    zone, project_id = served
    url, token = await asyncio.to_thread(get_auth, f"{zone.url}/auth/v1.0", "p1:mia", PASSWORD)
    assert url == f"{zone.url}/v1/AUTH_{project_id}"
    # The token is skyfed's own: the zone's API knows who it is.
    async with SkyfedClient(zone.url) as client:
        client.token = token
        me = await client.whoami()
    assert (me.username, me.project_id) == ("mia", project_id)


async def test_wrong_credentials_are_refused(served: tuple[ServedZone, str]) -> None:
    zone, _ = served
    auth_url = f"{zone.url}/auth/v1.0"
    for user, key in (("p1:mia", "wrong"), ("p2:mia", PASSWORD), ("mia", PASSWORD)):
        with pytest.raises(ClientException) as caught:
            await asyncio.to_thread(get_auth, auth_url, user, key)
        assert caught.value.http_status == 401, (user, key)
    async with httpx.AsyncClient() as http:
        answer = await http.get(auth_url, headers={"X-Auth-User": "p2:mia", "X-Auth-Key": PASSWORD})
        # A right password for another account gives no token, and says nothing of why.
        assert answer.status_code == 401 and "x-auth-token" not in answer.headers
        assert answer.json()["error"]["code"] == "invalid_credentials"
        missing = await http.get(auth_url)
        assert missing.status_code == 401
        # The failed-login limits of POST /v1/auth/tokens hold here too (3 for a user).
        for _ in range(3):
            await http.get(auth_url, headers={"X-Auth-User": "p1:mia", "X-Auth-Key": "nope"})
        blocked = await http.get(
            auth_url, headers={"X-Auth-User": "p1:mia", "X-Auth-Key": PASSWORD}
        )
        assert blocked.status_code == 429
