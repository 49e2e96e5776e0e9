"""PostgreSQL gone from under a zone: 503s with the error shape, then everything resumes.

The zone reaches its database through a proxy the test cuts, which to the zone is
a stopped server (connections reset, new ones refused), without stopping the
PostgreSQL that other tests share.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from skyfed.client import SkyfedError
from tests.api.test_servers import HOST, create, wait_for
from tests.conftest import AGENT_PASSWORD, InProcessZone, zone_settings
from tests.fakes import ScriptedAgent
from tests.proxy import CuttableProxy


@pytest.fixture
async def proxied(
    tmp_path: Path, postgres_database: str
) -> AsyncIterator[tuple[InProcessZone, CuttableProxy]]:
    url = make_url(postgres_database)
    async with CuttableProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        through = url.set(host="127.0.0.1", port=proxy.port)
        settings = zone_settings(
            tmp_path, through.render_as_string(hide_password=False), task_poll_interval=0.2
        )
        async with InProcessZone(settings) as zone:
            yield zone, proxy


async def _status(call: Any) -> tuple[int, str]:
    try:
        await call
    except SkyfedError as exc:
        return exc.status, exc.code
    return 200, ""


async def test_a_zone_without_its_database_says_503_and_loses_no_task(
    proxied: tuple[InProcessZone, CuttableProxy],
) -> None:
    zone, proxy = proxied
    async with zone.client() as admin, zone.client("agent", AGENT_PASSWORD) as agent_client:
        agent = ScriptedAgent(agent_client)
        await agent.beat({"h1": HOST, "h2": HOST}, arch="x86_64")
        made = await create(admin, name="before", count=4)
        ids = [s.id for s in made.servers]
        await wait_for(agent.commands, "boot commands queued")  # tasks ran up to the host

        await proxy.cut()
        for call in (
            admin.request("GET", "/v1/servers"),
            admin.request("POST", "/v1/servers", json={"name": "during", "flavor": "m1.tiny"}),
            admin.request("GET", f"/v1/servers/{ids[0]}"),
        ):
            assert await _status(call) == (503, "database_unavailable")
        async with zone.raw() as raw:
            ready = await raw.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["error"]["code"] == "database_unavailable"
            refused = await raw.post("/v1/auth/tokens", json={"username": "admin", "password": "x"})
            assert refused.status_code == 503 and set(refused.json()) == {"error"}
        await asyncio.sleep(1.0)  # the workers and housekeeping keep failing meanwhile

        await proxy.restore()

        async def all_active() -> bool:
            await agent.answer_all()
            servers = [await admin.get_server(i) for i in ids]
            return all(s.status == "ACTIVE" for s in servers)

        await wait_for(all_active, "the servers made before the outage ACTIVE", timeout=30)
        listed = await admin.list_servers(limit=100)
        assert sorted(s.id for s in listed.servers) == sorted(ids)  # "during": none
        after = await create(admin, name="after")
        assert after.servers[0].status == "BUILDING"
