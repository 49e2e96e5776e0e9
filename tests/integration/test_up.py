"""`skyfed up` run for real: the README's main command, and zones killed under it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import tomli_w
from prometheus_client.parser import text_string_to_metric_families
from swiftclient.client import Connection

from skyfed.client import SkyfedClient, SkyfedError, ZoneUnreachable
from skyfed.federation.topology import load_topology
from tests.integration.conftest import FAST, hosts
from tests.waiting import eventually, running

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).parents[2] / "examples" / "federation.toml"
READY = "Ctrl-C stops everything"


class Up:
    """`skyfed up` in a subprocess, its output in a file."""

    def __init__(self, tmp_path: Path, topology: Path, *options: str) -> None:
        self.state = tmp_path / "state"
        self.log_path = tmp_path / "up.log"
        self.log = self.log_path.open("wb")
        command = ["up", str(topology), "--state-dir", str(self.state), *options]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "skyfed", *command],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "200"},
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def zones(self) -> dict[str, dict[str, Any]]:
        manifest = json.loads((self.state / "federation.json").read_text())
        return {z["name"]: z for z in manifest["zones"]}

    def pids(self) -> list[int]:
        zones = self.zones().values()
        return [p for z in zones for p in (z["pid"], z["agent_pid"]) if p is not None]

    async def said(self, text: str, timeout: float) -> None:
        """Wait until `text` is in its output; fail at once if it exits meanwhile."""

        async def check() -> bool:
            assert self.process.poll() is None, self.output()
            return text in self.output()

        await eventually(check, timeout, f"{text!r} in:\n{self.output()}", every=0.1)

    async def stop(self, sig: signal.Signals, also: tuple[int, ...] = ()) -> None:
        """Stop it with `sig`: it exits 0 and leaves no zone or agent behind."""
        pids = [*self.pids(), *also]
        self.process.send_signal(sig)
        assert self.process.wait(timeout=60) == 0, self.output()

        async def all_gone() -> bool:
            return not any(running(p) for p in pids)

        await eventually(all_gone, 10, "processes left behind", every=0.1)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.log.close()


@asynccontextmanager
async def skyfed_up(tmp_path: Path, topology: Path, *options: str) -> AsyncIterator[Up]:
    """`skyfed up` started and ready (its tree printed); killed at the end if still running."""
    up = Up(tmp_path, topology, *options)
    try:
        await up.said(READY, 150)
        yield up
    finally:
        up.close()


async def test_up_runs_the_example_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    async with skyfed_up(tmp_path, EXAMPLE) as up:
        output = up.output()
        manifest = json.loads((up.state / "federation.json").read_text())
        zones = up.zones()
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
            assert me.summary["hosts"] == 900
            assert sorted(c.name for c in me.children) == ["eu", "us"]
            arch = me.summary["strings"]["arch"]
            assert arch == {"x86_64": 620, "arm64": 280}
        await _every_zone_is_scraped(up.state, zones)
        await _storage_clusters_run_and_are_registered(manifest, zones)
        pids = up.pids()
        assert len(pids) == 9  # six zones, three agents
        assert all(psutil.pid_exists(p) for p in pids)
        for name in zones:
            assert (up.state / name / f"{name}.db").exists()
            assert (up.state / name / "zone.log").exists()

        await up.stop(signal.SIGINT)
        # Nothing it started is left: zones, agents, Swift servers and daemons.
        left = [
            p.pid
            for p in psutil.process_iter(["cmdline"])
            if str(up.state) in " ".join(p.info["cmdline"] or [])
        ]
        assert left == []


async def _storage_clusters_run_and_are_registered(manifest: dict, zones: dict) -> None:
    """Each data centre's Swift cluster answers its own reseller admin, is registered
    and up at its zone, and the root's summary holds every cluster's room."""
    clusters = {c["name"]: c for c in manifest["object_store"]["clusters"]}
    assert {name: c["zone"] for name, c in clusters.items()} == {
        "eu-dc1-swift": "eu-dc1",
        "eu-dc2-swift": "eu-dc2",
        "us-dc1-swift": "us-dc1",
    }
    async with httpx.AsyncClient(timeout=10) as http:
        for cluster in clusters.values():
            answer = await http.get(
                cluster["auth_url"],
                headers={"X-Auth-User": cluster["username"], "X-Auth-Key": cluster["password"]},
            )
            assert answer.status_code == 200 and answer.headers["x-storage-url"]
    for cluster in clusters.values():
        admin = zones[cluster["zone"]]["admin"]
        async with SkyfedClient(
            zones[cluster["zone"]]["url"], username=admin["username"], password=admin["password"]
        ) as client:
            [registered] = await client.list_storage_clusters()
            assert registered.name == cluster["name"] and registered.state == "up"
            assert sorted(registered.tiers) == sorted(cluster["tiers"])
    admin = zones["global"]["admin"]
    async with SkyfedClient(
        zones["global"]["url"], username=admin["username"], password=admin["password"]
    ) as client:

        async def merged() -> dict | None:  # the regions poll the data centres, then global
            sections = (await client.zone()).summary.get("sections", {})
            storage = sections.get("storage", {}).get("sum", {})
            return storage if storage.get("clusters_up") == 3 else None

        storage = await eventually(merged, 30, "the three clusters in the root's summary")
    gib = 1 << 30
    assert storage["free_bytes:gold"] == (200 + 100) * gib
    assert storage["free_bytes:silver"] == (200 + 500 + 100) * gib

    # The demo account logs in at the root; its containers land in the data centres.
    store = manifest["object_store"]
    assert store["auth_url"] == f"{zones['global']['url']}/auth/v1.0"
    demo = Connection(
        authurl=store["auth_url"],
        user=f"{store['project']}:{store['username']}",
        key=store["password"],
        retries=0,
    )
    await asyncio.to_thread(demo.put_container, "photos")
    await asyncio.to_thread(demo.put_container, "archive", headers={"X-Storage-Policy": "silver"})
    await asyncio.to_thread(demo.put_object, "archive", "a.txt", b"kept")
    _, body = await asyncio.to_thread(demo.get_object, "archive", "a.txt")
    assert body == b"kept"
    _, listing = await asyncio.to_thread(demo.get_account)
    assert [c["name"] for c in listing] == ["archive", "photos"]


async def _every_zone_is_scraped(state: Path, zones: dict) -> None:
    """Each zone's metrics_url answers without a token, and prometheus.yml lists it with
    its zone label."""
    scrape_config = (state / "prometheus.yml").read_text()
    async with httpx.AsyncClient(timeout=10) as http:
        for name, zone in zones.items():
            url = zone["metrics_url"]
            target = url.removeprefix("http://").removesuffix("/metrics")
            assert f'- targets: ["{target}"]' in scrape_config
            assert f'labels: {{zone: "{name}", process: api}}' in scrape_config
            answer = await http.get(url)
            assert answer.status_code == 200
            families = {f.name: f for f in text_string_to_metric_families(answer.text)}
            assert families["skyfed_summary_zones"].samples[0].value >= 1
    hosts = families["skyfed_summary_hosts"].samples[0].value  # the last zone's: a leaf
    assert hosts == zones[name]["hosts"]


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
        assert not [u for u in await client.list_users() if "service" in u.roles]
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


def test_up_rejects_a_bad_topology(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[zones]]\nname = "a"\nparents = ["nowhere"]\n')
    result = subprocess.run(
        [sys.executable, "-m", "skyfed", "up", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "unknown parent 'nowhere'" in result.stdout + result.stderr


# A root over two data centres, each with a host agent; polls fast (offline in ~3 s).
SMALL = {
    "defaults": FAST,
    "zones": [
        {"name": "root"},
        {"name": "eu", "parents": ["root"], "hosts": [hosts(3, "std")]},
        {"name": "us", "parents": ["root"], "hosts": [hosts(2, "std")]},
    ],
}


def _small(tmp_path: Path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(tomli_w.dumps(SMALL))
    return path


def _client(zone: dict[str, Any]) -> SkyfedClient:
    admin = zone["admin"]
    return SkyfedClient(
        zone["url"], username=admin["username"], password=admin["password"], timeout=5
    )


async def _children(root: SkyfedClient) -> tuple[dict[str, str], int]:
    """The root's children by state, and how many hosts its summary counts."""
    me = await root.zone()
    return {c.name: c.state for c in me.children}, me.summary["hosts"]


async def _answers(zone: dict[str, Any]) -> bool:
    async with _client(zone) as client:
        return (await client.zone()).name == zone["name"]


async def test_a_killed_zone_and_agent_are_restarted_while_the_rest_runs(tmp_path: Path) -> None:
    async with skyfed_up(tmp_path, _small(tmp_path)) as up:
        before = up.zones()
        eu, us = before["eu"], before["us"]
        os.kill(eu["pid"], signal.SIGKILL)
        os.kill(us["agent_pid"], signal.SIGKILL)
        await up.said(f"zone eu (pid {eu['pid']}) was killed by SIGKILL after", 30)
        await up.said(f"host agent us-agent (pid {us['agent_pid']}) was killed by SIGKILL", 30)
        assert "starting it again in 1 s" in up.output()

        # The others keep answering: `skyfed up` stopped nothing.
        assert await _answers(before["root"]) and await _answers(us)
        async with _client(before["root"]) as root:
            # Whether its parent marks it offline meanwhile depends on how soon it is back;
            # the test below, where it stays down, shows the offline zone and its hosts
            # leaving the summary.

            # The zone restarted: a new pid in federation.json, at its old URL and state.
            await up.said("zone eu is back", 60)
            after = up.zones()
            assert after["eu"]["pid"] not in (None, eu["pid"]) and running(after["eu"]["pid"])
            assert after["eu"]["url"] == eu["url"]
            async with SkyfedClient(eu["url"]) as fresh:
                assert await fresh.healthz() == {"status": "ok", "zone": "eu"}
            async with _client(eu) as same_admin:  # same credentials, same database

                async def its_hosts() -> bool:  # beating again (its agent's next beats)
                    return len(await same_admin.all_hosts()) == 3

                await eventually(its_hosts, 30, "eu's 3 hosts back")

            # The parent sees it online again, with its hosts.
            async def active_again() -> bool:
                states, counted = await _children(root)
                return states == {"eu": "active", "us": "active"} and counted == 5

            await eventually(active_again, 60, "eu active at root with its 3 hosts")
            detail = await root.zone_detail("eu")
            assert (detail.failures, detail.last_error) == (0, "")

        # The agent too, with its own new pid; the other processes are the ones from before.
        await up.said("host agent us-agent is back", 30)
        after = up.zones()
        assert after["us"]["agent_pid"] not in (None, us["agent_pid"])
        assert running(after["us"]["agent_pid"])
        for name, kind in (("root", "pid"), ("us", "pid"), ("eu", "agent_pid")):
            assert after[name][kind] == before[name][kind] and running(after[name][kind])
        await up.stop(signal.SIGINT, also=(eu["pid"], us["agent_pid"]))


async def test_no_restart_leaves_a_killed_zone_down_while_the_rest_runs(tmp_path: Path) -> None:
    async with skyfed_up(tmp_path, _small(tmp_path), "--no-restart") as up:
        before = up.zones()
        eu = before["eu"]
        os.kill(eu["pid"], signal.SIGKILL)
        await up.said(f"zone eu (pid {eu['pid']}) was killed by SIGKILL after", 30)
        assert "; left down (--no-restart)" in up.output()

        async with _client(before["root"]) as root:

            async def offline() -> bool:
                return await _children(root) == ({"eu": "offline", "us": "active"}, 2)

            # Marked offline takes three failed polls: longer than a restart's first wait.
            await eventually(offline, 60, "eu offline at root")
        assert up.zones()["eu"]["pid"] is None
        processes = psutil.process_iter(["cmdline"])
        serving_eu = [p for p in processes if eu["config"] in (p.info["cmdline"] or ())]
        assert not serving_eu
        async with SkyfedClient(eu["url"], timeout=5) as gone:
            with pytest.raises(ZoneUnreachable) as refused:
                await gone.healthz()
            assert not refused.value.timed_out  # nothing listens there: refused at once
        assert "zone eu is back" not in up.output()
        # The rest runs: the root, the other zone, both agents.
        assert await _answers(before["root"]) and await _answers(before["us"])
        assert up.process.poll() is None
        assert all(running(p) for p in up.pids())
        await up.stop(signal.SIGTERM)


async def test_without_swift_the_clusters_are_skipped_with_a_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`skyfed up` on a machine without the swift extra runs the rest and says how to get
    it: the clusters are planned, none is started, none is in federation.json as running."""
    from skyfed.federation import launcher

    monkeypatch.setattr(launcher, "swift_available", lambda: False)
    federation = launcher.Federation(load_topology(EXAMPLE), tmp_path)
    federation.prepare()
    assert len(federation.swifts) == 3
    await federation.start_storage()
    assert federation.storage_note is not None and "pip install" in federation.storage_note
    clusters = federation.manifest()["object_store"]["clusters"]
    assert [c["running"] for c in clusters] == [False] * 3
    assert all("password" not in c for c in clusters)
