"""Who may create process servers (metadata.process): the zone's `process_servers` setting.

A process server runs its command on a host. The setting is checked when the
server is created, by every zone it passes, against the caller's roles (for a
parent's request, the user's forwarded ones); a refusal is a 403 that changes
nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from skyfed.client import SkyfedClient, SkyfedError
from skyfed.client_models import ServersCreated
from skyfed.identity.principal import Principal
from skyfed.wire import forwarded_headers
from tests.conftest import AGENT_PASSWORD, SERVICE_PASSWORD, InProcessZone, zone_settings
from tests.fakes import ScriptedAgent

PROCESS = {"process": {"command": ["sleep", "60"]}}
HOST = {"vcpus": 8, "ram_mb": 16384, "disk_gb": 200}
Zone = Callable[[str], Any]


@pytest.fixture
def zone_with(tmp_path: Path, database_url: str) -> Zone:
    """`async with zone_with("members") as (zone, admin, member, as_member):` a zone with
    that setting, its admin, a member and the headers a parent forwards for the member."""

    @asynccontextmanager
    async def start(setting: str) -> AsyncIterator[tuple[Any, ...]]:
        settings = zone_settings(tmp_path, database_url, process_servers=setting)
        async with (
            InProcessZone(settings) as zone,
            zone.client() as admin,
            zone.client("agent", AGENT_PASSWORD) as agent,
        ):
            await ScriptedAgent(agent, "agent").beat({"h1": HOST})  # room for the servers
            await admin.create_project("acme")
            bob = await admin.create_user("bob", "bob-password", "acme", ["member"])
            as_bob = forwarded_headers(
                Principal(bob.id, "bob", bob.project_id, frozenset({"member"}))
            )
            async with zone.client("bob", "bob-password") as member:
                yield zone, admin, member, as_bob

    return start


async def create(client: SkyfedClient, **fields: Any) -> ServersCreated:
    return await client.create_servers("job", flavor="m1.tiny", **fields)


async def nothing_changed(admin: SkyfedClient) -> None:
    assert (await admin.list_servers()).servers == []
    assert (await admin.list_tasks()).tasks == []


async def test_the_default_lets_only_admins_create_process_servers(
    tmp_path: Path, database_url: str
) -> None:
    async with InProcessZone(zone_settings(tmp_path, database_url)) as zone:
        assert zone.settings.process_servers == "admins"


async def test_admins_setting_refuses_a_member_and_changes_nothing(zone_with: Zone) -> None:
    async with zone_with("admins") as (_, admin, member, _headers):
        with pytest.raises(SkyfedError) as exc:
            await create(member, metadata=PROCESS)
        assert (exc.value.status, exc.value.code) == (403, "process_servers_forbidden")
        assert "only admins may create process servers" in exc.value.message
        assert "process_servers setting is 'admins'" in exc.value.message
        await nothing_changed(admin)
        # Servers without a process, and an admin's process server, are taken.
        assert len((await create(member)).servers) == 1
        assert len((await create(admin, metadata=PROCESS)).servers) == 1


async def test_members_setting_takes_a_members_process_server(zone_with: Zone) -> None:
    async with zone_with("members") as (_, admin, member, _headers):
        [brief] = (await create(member, metadata=PROCESS)).servers
        shown = await admin.get_server(brief.id)
        assert shown.metadata == PROCESS


async def test_off_refuses_everyone_even_an_admin(zone_with: Zone) -> None:
    async with zone_with("off") as (_, admin, member, _headers):
        for client in (admin, member):
            with pytest.raises(SkyfedError) as exc:
                await create(client, metadata=PROCESS)
            assert (exc.value.status, exc.value.code) == (403, "process_servers_forbidden")
            assert "takes no process servers" in exc.value.message
        await nothing_changed(admin)


def delegated(**body: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "name": "job",
        "flavor": "m1.tiny",
        "created_at": "2026-11-21T10:00:00+00:00",
        **body,
    }


@pytest.mark.parametrize(("setting", "allowed"), [("admins", False), ("members", True)])
async def test_a_child_applies_its_own_setting_to_a_parents_forwarded_member(
    zone_with: Zone, setting: str, allowed: bool
) -> None:
    async with (
        zone_with(setting) as (zone, admin, _member, as_bob),
        zone.client("svc", SERVICE_PASSWORD) as parent,
    ):
        process, plain = delegated(metadata=PROCESS), delegated()
        answer = await parent.request(
            "POST", "/v1/servers/delegated", json={"servers": [process, plain]}, headers=as_bob
        )
        first, second = answer["results"]
        assert second["server"] is not None  # the other servers of a batch go on
        if allowed:
            assert first["server"] is not None and first["error"] is None
        else:
            assert first["server"] is None
            assert (first["error"]["status"], first["error"]["code"]) == (
                403,
                "process_servers_forbidden",
            )
        ids = {s.id for s in (await admin.list_servers()).servers}
        assert ids == ({process["id"], plain["id"]} if allowed else {plain["id"]})
        # One server passed down alone (POST /v1/servers with its id) is held to it too.
        single = delegated(metadata=PROCESS)
        if allowed:
            await parent.request("POST", "/v1/servers", json=single, headers=as_bob)
        else:
            with pytest.raises(SkyfedError) as exc:
                await parent.request("POST", "/v1/servers", json=single, headers=as_bob)
            assert (exc.value.status, exc.value.code) == (403, "process_servers_forbidden")
