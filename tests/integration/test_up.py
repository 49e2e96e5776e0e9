"""`skyfed up` on the shipped example: the README's main command, run for real."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from skyfed.client import SkyfedClient, SkyfedError

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).parents[2] / "examples" / "federation.toml"


async def test_up_runs_the_example_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    state = tmp_path / "state"
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen(
        [sys.executable, "-m", "skyfed", "up", str(EXAMPLE), "--state-dir", str(state)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        deadline = time.monotonic() + 150
        while b"Ctrl-C stops everything" not in (tmp_path / "up.log").read_bytes():
            assert up.poll() is None, (tmp_path / "up.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "up.log").read_text()
            await asyncio.sleep(0.25)
        output = (tmp_path / "up.log").read_text()
        manifest = json.loads((state / "federation.json").read_text())
        zones = {z["name"]: z for z in manifest["zones"]}
        assert set(zones) == {"global", "eu", "us", "eu-dc1", "eu-dc2", "us-dc1"}
        assert zones["eu-dc1"]["parents"] == ["eu"]
        assert manifest["roots"] == ["global"]
        for name in zones:
            assert f"{name}  {zones[name]['url']}" in output
        assert "900 hosts" in output
        admin = zones["global"]["admin"]
        await _no_shared_credentials(manifest, zones)
        await _agents_carry_only_their_own_hosts(zones)
        async with SkyfedClient(
            zones["global"]["url"], username=admin["username"], password=admin["password"]
        ) as client:
            me = await client.zone()
            assert me["summary"]["hosts"] == 900
            assert sorted(c["name"] for c in me["children"]) == ["eu", "us"]
            arch = me["summary"]["strings"]["arch"]
            assert arch == {"x86_64": 620, "arm64": 280}
        pids = [z["pid"] for z in manifest["zones"]] + [
            z["agent_pid"] for z in manifest["zones"] if z["agent_pid"]
        ]
        assert all(psutil.pid_exists(p) for p in pids)
        for name in zones:
            assert (state / name / f"{name}.db").exists()
            assert (state / name / "zone.log").exists()

        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0
        gone = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < gone:
            await asyncio.sleep(0.1)
        assert not [p for p in pids if _alive(p)], "processes left behind"
    finally:
        if up.poll() is None:
            up.kill()
        log.close()


async def _no_shared_credentials(manifest: dict, zones: dict) -> None:
    """The attack: every zone had the same admin, service and agent passwords, so a child
    that learnt its parent's service password could log in anywhere, the root included."""
    admins = [z["admin"]["password"] for z in zones.values()]
    agents = [z["agent"]["password"] for z in zones.values() if z["agent"]]
    assert sorted(z["agent"]["username"] for z in zones.values() if z["agent"]) == [
        "eu-dc1-agent",
        "eu-dc2-agent",
        "us-dc1-agent",
    ]
    links = manifest["links"]
    assert sorted(links) == sorted(f"{p}>{name}" for name, z in zones.items() for p in z["parents"])
    everything = admins + agents + list(links.values())
    assert len(set(everything)) == len(everything)
    # The root keeps no service account: nobody's child, nobody logs in to it as one.
    root = zones["global"]
    async with SkyfedClient(
        root["url"], username="admin", password=root["admin"]["password"]
    ) as client:
        assert not [u for u in await client.list_users() if "service" in u["roles"]]
    # eu-dc1's link password (which eu sends it at each login) opens nothing else.
    stolen = links["eu>eu-dc1"]
    for name in ("global", "eu", "us", "eu-dc2"):
        async with SkyfedClient(zones[name]["url"]) as client:
            with pytest.raises(SkyfedError) as refused:
                await client.login("link-eu", stolen)
            assert refused.value.status == 401, name


async def _agents_carry_only_their_own_hosts(zones: dict) -> None:
    """Each zone's agent beats for its own hosts, as many as it has, and no others."""
    dc1 = zones["eu-dc1"]
    agent = dc1["agent"]
    huge = {"vcpus": 1_000_000, "ram_mb": 1 << 30}
    async with SkyfedClient(
        dc1["url"], username=agent["username"], password=agent["password"]
    ) as client:
        for name, resources, status in (
            ("eu-dc2-arm-00000", {"vcpus": 8}, 403),  # another zone's host
            ("eu-dc1-std-99999", {"vcpus": 8}, 409),  # its prefix, but past its 300
            ("eu-dc1-std-00000", huge, 422),  # its own host, lying
        ):
            with pytest.raises(SkyfedError) as refused:
                await client.heartbeat(name, resources=resources)
            assert refused.value.status == status, (name, refused.value)
        with pytest.raises(SkyfedError) as refused:
            await client.agent_commands("eu-dc2-agent", wait=0)
        assert refused.value.status == 403


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_up_rejects_a_bad_topology(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[zones]]\nname = "a"\nparents = ["nowhere"]\n')
    result = subprocess.run(
        [sys.executable, "-m", "skyfed", "up", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "unknown parent 'nowhere'" in result.stdout + result.stderr
