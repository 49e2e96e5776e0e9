"""The CLI takes its credentials from `SKYFED_TOKEN` as the README says ("The CLI reads
the zone and credentials from flags or SKYFED_URL, SKYFED_USERNAME, SKYFED_PASSWORD
(or SKYFED_TOKEN)"; `skyfed login` "prints a token"): commands run as the token's
user, and a dead token is refused, not replaced by a login.

The zone serves on a loopback socket in this process; commands run through Typer's
runner in a thread (each runs its own event loop), with an environment of their own."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from typer.testing import CliRunner

from skyfed.cli import common
from skyfed.cli.main import app
from tests.conftest import ADMIN_PASSWORD, ServedZone

pytestmark = pytest.mark.integration


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str


@pytest.fixture(autouse=True)
def wide_output() -> Iterator[None]:
    """Messages on one line, as wide as they are."""
    widths = common.console.width, common.err_console.width
    common.console.width = common.err_console.width = 400
    yield
    common.console.width, common.err_console.width = widths


async def skyfed(url: str, *args: str, **variables: str | None) -> Ran:
    """`skyfed ARGS` with SKYFED_URL=url and `variables` (None: unset) as its environment
    (any other SKYFED_* of the shell that runs the tests unset too)."""
    env: dict[str, str | None] = {
        "SKYFED_URL": url,
        "SKYFED_USERNAME": None,
        "SKYFED_PASSWORD": None,
        "SKYFED_TOKEN": None,
        **variables,
    }
    result = await asyncio.to_thread(
        CliRunner().invoke, app, list(args), env=env, catch_exceptions=False
    )
    return Ran(result.exit_code, result.stdout, result.stderr)


def as_json(ran: Ran) -> Any:
    assert ran.code == 0, ran.stdout + ran.stderr
    return json.loads(ran.stdout)


async def test_skyfed_token_carries_the_cli(child_zone: ServedZone) -> None:
    url = child_zone.url
    async with child_zone.client() as admin:
        await admin.create_project("alpha")
        await admin.create_user("alice", "alice-password", "alpha", ["member"])
        await admin.heartbeat("h1", resources={"vcpus": 4, "ram_mb": 8192, "disk_gb": 100})

    login = await skyfed(url, "login", SKYFED_USERNAME="admin", SKYFED_PASSWORD=ADMIN_PASSWORD)
    assert login.code == 0, login.stderr
    token = login.stdout.strip()
    assert len(token) >= 32 and "\n" not in token

    # The token alone: an admin's command runs as admin.
    zones = as_json(await skyfed(url, "zone", "list", "--json", SKYFED_TOKEN=token))
    assert zones == []
    users = as_json(await skyfed(url, "user", "list", "--json", SKYFED_TOKEN=token))
    assert {u["name"] for u in users} >= {"admin", "alice"}

    # A member's token: her servers, in her project; an admin's command refused.
    member = await skyfed(url, "login", SKYFED_USERNAME="alice", SKYFED_PASSWORD="alice-password")
    alice = member.stdout.strip()
    created = as_json(
        await skyfed(
            url, "server", "create", "web", "--flavor", "m1.tiny", "--json", SKYFED_TOKEN=alice
        )
    )
    [server] = created["servers"]
    listed = as_json(await skyfed(url, "server", "list", "--json", SKYFED_TOKEN=alice))
    assert [s["id"] for s in listed["servers"]] == [server["id"]]
    async with child_zone.client() as admin:
        held = await admin.get_server(server["id"])
    assert held.project_id == (await _project(child_zone, "alpha"))
    refused = await skyfed(url, "zone", "list", SKYFED_TOKEN=alice)
    assert refused.code == 1
    assert "forbidden" in refused.stderr, refused.stderr

    # The token wins over SKYFED_USERNAME/PASSWORD given beside it: alice, not admin.
    mixed = await skyfed(
        url,
        "user",
        "list",
        SKYFED_TOKEN=alice,
        SKYFED_USERNAME="admin",
        SKYFED_PASSWORD=ADMIN_PASSWORD,
    )
    assert mixed.code == 1
    assert "forbidden" in mixed.stderr, mixed.stderr

    # A token logged out is refused (exit 1, the zone's code), with no login instead.
    async with child_zone.client(None, None) as client:
        client.token = token
        await client.logout()
    dead = await skyfed(url, "zone", "list", SKYFED_TOKEN=token)
    assert dead.code == 1
    assert "invalid_token" in dead.stderr, dead.stderr

    # No token and no password: told what to give.
    bare = await skyfed(url, "zone", "list")
    assert bare.code == 2
    assert "--token" in bare.stderr and "SKYFED_" in bare.stderr


async def _project(zone: ServedZone, name: str) -> str:
    async with zone.client() as admin:
        projects = await admin.list_projects()
    [found] = [p.id for p in projects if p.name == name]
    return str(found)
