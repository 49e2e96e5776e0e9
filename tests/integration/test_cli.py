"""The `skyfed` CLI against real zone processes, as an operator would use it.

Commands run through Typer's runner in this process (a command is a few milliseconds
there, a `python -m skyfed` process about 1.5 s); `entry_point` runs the real
program where that is the point: the login, and a command without credentials."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from skyfed.cli import common
from skyfed.cli.main import app
from skyfed.federation.launcher import Federation
from tests.integration.conftest import hosts

pytestmark = pytest.mark.integration


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(autouse=True)
def wide_tables() -> Iterator[None]:
    """Tables as wide as a 200-column terminal: ids are not cut short."""
    widths = common.console.width, common.err_console.width
    common.console.width = common.err_console.width = 200
    yield
    common.console.width, common.err_console.width = widths


def credentials(fed: Federation, zone: str) -> dict[str, str]:
    return {
        "SKYFED_URL": fed.zones[zone].url,
        "SKYFED_USERNAME": "admin",
        "SKYFED_PASSWORD": fed.admin_passwords[zone],
    }


async def cli(fed: Federation, zone: str, *args: str, ok: bool = True) -> Ran:
    """`skyfed ARGS` as an operator of `zone` (credentials from SKYFED_*), in-process.

    In a thread: each command runs its own event loop (asyncio.run)."""
    result = await asyncio.to_thread(
        CliRunner().invoke, app, list(args), env=credentials(fed, zone), catch_exceptions=False
    )
    ran = Ran(result.exit_code, result.stdout, result.stderr)
    if ok:
        assert ran.returncode == 0, ran.stdout + ran.stderr
    return ran


async def cli_json(fed: Federation, zone: str, *args: str) -> Any:
    return json.loads((await cli(fed, zone, *args, "--json")).stdout)


def entry_point(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The real program: `python -m skyfed ARGS`, without our SKYFED_* variables."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("SKYFED_")}
    return subprocess.run(
        [sys.executable, "-m", "skyfed", *args],
        capture_output=True,
        text=True,
        env={**inherited, **env, "COLUMNS": "200"},
        timeout=60,
    )


async def test_zone_and_host_commands(federation) -> None:
    zones = [{"name": "parent"}, {"name": "child", "hosts": [hosts(12, "h")]}]
    async with federation(zones) as fed:
        child_url = fed.zones["child"].url
        link_user, link_password = await fed.link_account("parent", "child")
        # The real program, as an operator starts it, with credentials in SKYFED_*.
        login = entry_point("login", env=credentials(fed, "parent"))
        assert login.returncode == 0, login.stderr
        token = login.stdout.strip()
        assert len(token) > 30
        assert (await cli(fed, "parent", "login")).stdout.strip() != token  # a new one

        added = await cli_json(
            fed,
            "parent",
            "zone",
            "add",
            "child",
            "--api-url",
            child_url,
            "--child-username",
            link_user,
            "--child-password",
            link_password,
            "--label",
            "tier=gold",
            "--weight-offset",
            "2",
        )
        assert (added["name"], added["state"], added["labels"]) == (
            "child",
            "active",
            {"tier": "gold"},
        )

        refused = await cli(
            fed,
            "parent",
            "zone",
            "add",
            "again",
            "--api-url",
            child_url,
            "--child-username",
            link_user,
            "--child-password",
            "wrong",
            ok=False,
        )
        assert refused.returncode == 1
        assert "child_auth_failed" in refused.stderr

        assert [z["name"] for z in await cli_json(fed, "parent", "zone", "list")] == ["child"]
        table = (await cli(fed, "parent", "zone", "list")).stdout
        assert "child" in table and "active" in table
        detail = await cli_json(fed, "parent", "zone", "show", "child")
        assert detail["summary"]["hosts"] == 12
        updated = await cli_json(fed, "parent", "zone", "update", "child", "--weight-scale", "3")
        assert updated["weight_scale"] == 3.0

        listed = await cli_json(fed, "child", "host", "list")
        assert len(listed) == 12
        name = listed[0]["name"]
        disabled = await cli_json(fed, "child", "host", "disable", name, "--reason", "bad DIMM")
        assert (disabled["disabled"], disabled["disabled_reason"]) == (True, "bad DIMM")
        assert (await cli_json(fed, "child", "host", "enable", name))["disabled"] is False

        missing = await cli(fed, "child", "host", "disable", "no-such-host", ok=False)
        assert missing.returncode == 1 and "not_found" in missing.stderr

        # The launcher provisioned the child's agent through the API, with its hosts.
        agents = await cli_json(fed, "child", "agent-account", "list")
        assert [(a["name"], a["hosts"], a["max_hosts"]) for a in agents] == [
            ("child-agent", ["h-*"], 12)
        ]
        made = await cli_json(
            fed,
            "child",
            "agent-account",
            "create",
            "spare",
            "--new-password",
            "spare-password",
            "--host",
            name,
            "--max-hosts",
            "1",
        )
        assert (made["hosts"], made["max_hosts"], made["carried"]) == ([name], 1, 0)
        updated = await cli_json(
            fed, "child", "agent-account", "update", "spare", "--max-hosts", "2"
        )
        assert updated["max_hosts"] == 2
        assert (await cli_json(fed, "child", "agent-account", "show", "spare"))["name"] == "spare"
        released = await cli_json(fed, "child", "host", "release", name)
        assert released == {"name": name, "released_from": "child-agent"}
        await cli(fed, "child", "agent-account", "delete", "spare")
        gone = await cli(fed, "child", "agent-account", "show", "spare", ok=False)
        assert gone.returncode == 1 and "not_found" in gone.stderr
        assert "child-agent" in (await cli(fed, "child", "agent-account", "list")).stdout

        await cli(fed, "parent", "zone", "delete", "child")
        assert await cli_json(fed, "parent", "zone", "list") == []


def test_commands_start_without_the_zone() -> None:
    """Only serve and worker load the zone (FastAPI, SQLAlchemy...): an agent or a client
    command starts in a fraction of the time."""
    code = "import sys, skyfed.cli.main; print(sorted(m for m in sys.modules if m == 'skyfed.app'))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_an_agent_that_traces_nothing_never_loads_opentelemetry() -> None:
    """OpenTelemetry is loaded only with --otlp-endpoint or --trace-console."""
    code = (
        "import sys, skyfed.cli.agent, skyfed.compute.agent.runner;"
        " print([m for m in sys.modules if m.startswith('opentelemetry')])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_serve_refuses_bad_settings_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "zone.toml"
    path.write_text("poll_interval = 1.0\npoll_timeout = 5.0\n")
    result = entry_point("serve", "--config", str(path), env={})
    assert result.returncode == 2
    assert "poll_timeout must not exceed poll_interval" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_without_credentials_says_what_is_missing() -> None:
    result = entry_point("zone", "list", "--url", "http://127.0.0.1:9", env={})
    assert result.returncode == 2
    assert "--username" in result.stderr


async def test_server_and_flavor_commands(federation) -> None:
    """An operator creates, lists, stops and deletes servers through a parent with the CLI."""
    zones = [
        {"name": "top"},
        {
            "name": "dc",
            "parents": ["top"],
            "hosts": [hosts(4, "h", capabilities={"arch": "arm64"})],
        },
    ]
    async with federation(zones) as fed:
        flavor = await cli_json(
            fed, "top", "flavor", "create", "c2", "--vcpus", "2", "--ram-mb", "2048"
        )
        assert (flavor["name"], flavor["vcpus"]) == ("c2", 2)
        assert "c2" in [f["name"] for f in await cli_json(fed, "top", "flavor", "list")]

        bad = await cli(
            fed, "top", "server", "create", "x", "--flavor", "m1.tiny", "--where", "arch", ok=False
        )
        assert bad.returncode == 2 and "KEY=EXPRESSION" in bad.stderr
        unknown = await cli(fed, "top", "server", "create", "x", "--flavor", "nope", ok=False)
        assert unknown.returncode == 1 and "nope" in unknown.stderr

        created = await cli_json(
            fed,
            "top",
            "server",
            "create",
            "web",
            "--flavor",
            "m1.tiny",
            "--count",
            "2",
            "--where",
            "arch=arm64",
        )
        ids = [s["id"] for s in created["servers"]]
        assert [s["status"] for s in created["servers"]] == ["BUILDING", "BUILDING"]

        deadline = time.monotonic() + 60
        while True:
            shown = [await cli_json(fed, "top", "server", "show", i) for i in ids]
            if all(s["status"] == "ACTIVE" for s in shown):
                break
            assert time.monotonic() < deadline, [s["status"] for s in shown]
            await asyncio.sleep(0.2)
        assert {tuple(s["location"]["path"]) for s in shown} == {("dc",)}

        listed = await cli_json(fed, "top", "server", "list", "--status", "ACTIVE")
        assert sorted(s["id"] for s in listed["servers"]) == sorted(ids)
        assert listed["unavailable_zones"] == []
        table = (await cli(fed, "top", "server", "list")).stdout
        assert "2 servers" in table and ids[0] in table

        stopped = await cli_json(fed, "top", "server", "stop", ids[0])
        assert stopped["id"] == ids[0]
        refused = await cli(
            fed, "top", "server", "start", ids[1], ok=False
        )  # ACTIVE: start is refused
        assert refused.returncode == 1 and "ACTIVE" in refused.stderr

        await cli_json(fed, "top", "server", "delete", ids[1])
        deadline = time.monotonic() + 60
        while ids[1] in [
            s["id"] for s in (await cli_json(fed, "top", "server", "list"))["servers"]
        ]:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)


async def test_storage_cluster_commands(federation) -> None:
    """`skyfed storage-cluster` against a zone whose Swift cluster `skyfed up` registered:
    list, show, update, delete, and add it back with its reseller admin's key."""
    zones = [{"name": "dc", "storage": [{"name": "s1", "tiers": ["gold"], "capacity_gb": 1}]}]
    async with federation(zones) as fed:
        [listed] = await cli_json(fed, "dc", "storage-cluster", "list")
        assert (listed["name"], listed["state"], listed["tiers"]) == ("s1", "up", {"gold": "gold"})
        assert "password" not in listed
        table = (await cli(fed, "dc", "storage-cluster", "list")).stdout
        assert "s1" in table and "gold=gold" in table
        shown = await cli_json(fed, "dc", "storage-cluster", "show", "s1")
        assert shown["capacity_bytes"] == 1 << 30
        changed = await cli_json(
            fed, "dc", "storage-cluster", "update", "s1", "--capacity-bytes", str(2 << 30)
        )
        assert changed["capacity_bytes"] == 2 << 30
        explained = await cli_json(fed, "dc", "storage-cluster", "explain", "--tier", "gold")
        assert explained["ranked"] == [f"cluster:{listed['id']}"]
        table = (await cli(fed, "dc", "storage-cluster", "explain", "--tier", "gold")).stdout
        assert "s1" in table and "cluster" in table
        nothing = (await cli(fed, "dc", "storage-cluster", "explain", "--tier", "tin")).stdout
        assert "Invalid X-Storage-Policy 'tin'" in nothing
        await cli(fed, "dc", "storage-cluster", "delete", "s1")
        assert await cli_json(fed, "dc", "storage-cluster", "list") == []

        _, swift = fed.swifts["s1"]
        admin = swift.reseller_admin
        args = ["--auth-url", swift.auth_url, "--cluster-username", admin.user]
        bad = await cli(
            fed, "dc", "storage-cluster", "add", "s1", *args, "--cluster-password", "wrong",
            "--tier", "gold=gold", "--capacity-bytes", "1", ok=False,
        )  # fmt: skip
        assert bad.returncode != 0 and "cluster_auth_failed" in bad.stdout + bad.stderr
        no_tier = await cli(
            fed, "dc", "storage-cluster", "add", "s1", *args, "--cluster-password", admin.key,
            "--tier", "gold", "--capacity-bytes", "1", ok=False,
        )  # fmt: skip
        assert no_tier.returncode == 2 and "tier=policy" in no_tier.stdout + no_tier.stderr
        added = await cli_json(
            fed, "dc", "storage-cluster", "add", "s1", *args, "--cluster-password", admin.key,
            "--tier", "gold=gold", "--capacity-bytes", "1",
        )  # fmt: skip
        assert added["state"] == "up"
