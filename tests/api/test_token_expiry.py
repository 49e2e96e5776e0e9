"""A token lives until its `expires_at` (the README: `POST /v1/auth/tokens` gives "a
bearer token with expires_at"), then every route refuses it with 401 invalid_token."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.conftest import ADMIN_PASSWORD, InProcessZone, zone_settings

TTL = 3.0  # seconds; short, so the test waits for the real expiry (polled, bounded)


async def test_a_token_is_refused_from_its_expires_at_on(tmp_path: Path, database_url: str) -> None:
    settings = zone_settings(tmp_path, database_url, token_ttl=TTL)
    async with InProcessZone(settings) as zone, zone.raw() as http:
        before = datetime.now(UTC)
        login = await http.post(
            "/v1/auth/tokens", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        after = datetime.now(UTC)
        assert login.status_code == 201, login.text
        expires_at = datetime.fromisoformat(login.json()["expires_at"])
        ttl = timedelta(seconds=TTL)
        assert before + ttl - timedelta(milliseconds=1) <= expires_at <= after + ttl
        bearer = {"Authorization": f"Bearer {login.json()['token']}"}

        fresh = await http.get("/v1/auth/whoami", headers=bearer)
        assert (fresh.status_code, fresh.json()["username"]) == (200, "admin")
        # Used again and again (from the token cache too) until it is refused: bounded.
        answer = fresh
        for _ in range(300):
            answer = await http.get("/v1/zones", headers=bearer)
            if answer.status_code != 200:
                break
            await asyncio.sleep(0.1)
        refused_at = datetime.now(UTC)
        assert answer.status_code == 401, "the token still works long after its expires_at"
        assert answer.json()["error"]["code"] == "invalid_token", answer.text
        assert refused_at >= expires_at  # never refused before its time

        # Refused everywhere now, and logging in again gives a new one that works.
        for path in ("/v1/auth/whoami", "/v1/servers", "/v1/zone"):
            late = await http.get(path, headers=bearer)
            assert (late.status_code, late.json()["error"]["code"]) == (401, "invalid_token")
        again = await http.post(
            "/v1/auth/tokens", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        renewed = {"Authorization": f"Bearer {again.json()['token']}"}
        assert (await http.get("/v1/auth/whoami", headers=renewed)).status_code == 200
