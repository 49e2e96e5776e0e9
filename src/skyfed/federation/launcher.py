"""`skyfed up`: every zone of a topology as its own process, linked, with simulated hosts.

Writes each zone's config and log under the state directory, registers every
child with its parents, starts one host agent per zone that lists hosts, and
records it all in `federation.json` (mode 0600: it holds every credential).

No two zones share a credential: each zone has its own admin password, each
parent/child link its own service account, made on the child for that parent
alone (`link-<parent>`), so a child that learns its link's password learns
nothing it could use at its parent, its siblings or the root; and each zone's
agent its own agent account (`<zone>-agent`), made through the zone's admin API
with a grant covering exactly its hosts' names and their number.

Zones on RabbitMQ get a broker site each (`broker.py`): a vhost, a user for the
zone's processes, one per parent link and one for the host agent, each allowed
only its part; removed again on stop when the state directory was temporary.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import tomli_w

from skyfed.client import SkyfedClient
from skyfed.compute.agent.sim import host_patterns
from skyfed.federation.broker import BrokerPlan
from skyfed.federation.process import (
    ManagedProcess,
    ProcessFailed,
    ZoneProcess,
    free_port,
    stop_all,
)
from skyfed.federation.topology import Topology, ZoneSpec
from skyfed.identity.secret_files import write_private
from skyfed.objects.local_swift import (
    INSTALL_HINT,
    LocalSwift,
    LocalSwiftSet,
    free_base_port,
    swift_available,
)
from skyfed.settings import Settings

ADMIN_USER = "admin"
LINK_PROJECT = "service"  # where a child keeps its parents' link accounts


DEMO = "demo"


def agent_username(zone: str) -> str:
    """The agent account of a zone's host agent (the agent's name too)."""
    return _within_name_limit(f"{zone}-agent", "agent", zone)


def link_username(parent: str) -> str:
    """The service account a child keeps for one parent."""
    return _within_name_limit(f"link-{parent}", "link", parent)


def _within_name_limit(name: str, kind: str, zone: str) -> str:
    """`name`, or (past the 63 characters a name may have) one made from the zone's hash."""
    return name if len(name) <= 63 else f"{kind}-{hashlib.sha256(zone.encode()).hexdigest()[:32]}"


class Federation:
    def __init__(self, topology: Topology, state_dir: Path, *, temporary: bool = False) -> None:
        self.topology = topology
        self.state_dir = state_dir.resolve()
        self.temporary = temporary  # the state goes when it stops: so do its broker accounts
        self.broker = BrokerPlan(hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:8])
        # A state directory used before keeps its credentials: the zones' databases hold them.
        previous = self._previous_manifest()
        before = {z.get("name"): z for z in previous.get("zones", []) if isinstance(z, dict)}
        self.admin_passwords = {
            name: _password(before.get(name, {}), "admin", 16) for name in topology.zones
        }
        self.agent_passwords = {
            name: _password(before.get(name) or {}, "agent", 24)
            for name, spec in topology.zones.items()
            if spec.host_groups
        }
        # "parent>child" -> the password of the child's account for that parent.
        self.link_passwords: dict[str, str] = {
            k: str(v) for k, v in dict(previous.get("links") or {}).items() if isinstance(v, str)
        }
        self.zones: dict[str, ZoneProcess] = {}
        self.agents: dict[str, ManagedProcess] = {}
        self.settings: dict[str, dict[str, Any]] = {}  # each zone's, as written to its config
        # Swift clusters by name, with the zone each is registered with.
        self.swifts: dict[str, tuple[str, LocalSwift]] = {}
        # Why the clusters were not started (the swift extra missing), for the operator.
        self.storage_note: str | None = None
        # The object store's demo account at the root: a project with one member.
        store = previous.get("object_store") or {}
        self.demo_password = str(store.get("password") or secrets.token_urlsafe(16))
        self.demo_ready = False

    def _previous_manifest(self) -> dict[str, Any]:
        try:
            return dict(json.loads((self.state_dir / "federation.json").read_text()))
        except (OSError, ValueError):
            return {}

    # -- configuration -----------------------------------------------------------

    def zone_settings(self, name: str, port: int) -> dict[str, Any]:
        spec = self.topology.zones[name]
        values: dict[str, Any] = {
            # Prometheus scrapes each zone here, without a token (prometheus.yml).
            "metrics_port": free_port(),
            **self.topology.defaults,
            **spec.settings,
            "name": name,
            "host": "127.0.0.1",
            "port": port,
            "state_dir": ".",
            "log_file": "zone.log",
            "admin_username": ADMIN_USER,
            "admin_password": self.admin_passwords[name],
            "allowed_child_hosts": ["127.0.0.1", "localhost"],
        }
        if spec.capabilities:
            values["capabilities"] = spec.capabilities
        if spec.storage:  # its clusters run on loopback beside it
            values.setdefault("allowed_storage_hosts", ["127.0.0.1"])
        if isinstance(values.get("database_url"), str):
            values["database_url"] = values["database_url"].replace("{zone}", name)
        settings = Settings(**{**values, "state_dir": self.state_dir / name})  # fail early
        if spec.link == "amqp" and settings.bus_url == "memory://":
            raise ValueError(f"zone '{name}' is linked over amqp but has no amqp:// bus_url")
        return values

    def prepare(self) -> None:
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Process servers run as users of their own and pass through here to their homes
        # (server-homes/<zone>): then it is 0711, listing nothing (federation.json is 0600)
        # and entering no zone's directory (each 0700).
        processes = any(
            spec.agent.get("driver") == "process" for spec in self.topology.zones.values()
        )
        self.state_dir.chmod(0o711 if processes else 0o700)
        for name, spec in self.topology.zones.items():
            port = spec.port or free_port()
            zone_dir = self.state_dir / name
            zone_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(zone_dir, 0o700)  # the zone's database, logs and its agent's state
            config = zone_dir / "zone.toml"
            values = self.zone_settings(name, port)
            self._broker_accounts(name, values)
            self.settings[name] = values
            write_private(config, tomli_w.dumps(values))
            self.zones[name] = ZoneProcess(name, config, port, zone_dir / "process.log")
            for cluster in spec.storage:
                base = free_base_port([s.port for _, s in self.swifts.values()])
                swift = LocalSwift(
                    zone_dir / "swift" / cluster.name, base, cluster.name, cluster.tiers
                )
                self.swifts[cluster.name] = (name, swift)
            if spec.host_groups:
                hosts_file = zone_dir / "hosts.json"
                hosts_file.write_text(json.dumps({"groups": spec.host_groups, "prefix": name}))
                self.agents[name] = ManagedProcess(
                    f"{name}-agent",
                    [
                        sys.executable,
                        "-m",
                        "skyfed",
                        "agent",
                        "--url",
                        f"http://127.0.0.1:{port}",
                        "--username",
                        agent_username(name),
                        "--spec",
                        str(hosts_file),
                        "--state-dir",
                        str(zone_dir / "agent-state"),
                        "--interval",
                        str(self.topology.heartbeat_interval),
                        *agent_options(
                            {"driver": "sim", "boot_delay": 0.2, **_tracing(values), **spec.agent}
                        ),
                        *self._server_homes(name, spec),
                    ],
                    zone_dir / "agent.log",
                    env={"SKYFED_PASSWORD": self.agent_passwords[name], **self._agent_bus(name)},
                    kind="host agent",
                )

    def _broker_accounts(self, name: str, values: dict[str, Any]) -> None:
        """A zone on a bus gets its own site on the broker, and its own user there; its
        parents and its agent get theirs (given in `link` and `_agent_bus`)."""
        bus_url = str(values.get("bus_url", "memory://"))
        if not bus_url.startswith("amqp"):
            return
        spec = self.topology.zones[name]
        parents = spec.parents if spec.link == "amqp" else []
        self.broker.add_zone(
            name,
            bus_url,
            link_accounts={parent: link_username(parent) for parent in parents},
            agent_account=agent_username(name) if spec.host_groups else None,
        )
        values["bus_url"] = self.broker.zone_url(name)

    def _server_homes(self, name: str, spec: ZoneSpec) -> list[str]:
        """Process servers' homes, outside the zone's own directory (0700)."""
        if spec.agent.get("driver") != "process":
            return []
        return ["--server-homes", str(self.state_dir / "server-homes" / name)]

    def _agent_bus(self, name: str) -> dict[str, str]:
        """A zone on a bus hears its agent's heartbeats there."""
        bus_url = self.broker.agent_url(name)
        return {"SKYFED_BUS_URL": bus_url} if bus_url else {}

    # -- lifecycle ---------------------------------------------------------------

    async def start(self, progress: Callable[[str], None] = lambda _: None) -> None:
        self.prepare()
        await asyncio.to_thread(self.broker.apply)
        await create_databases(
            [v["database_url"] for v in self.settings.values() if v.get("database_url")]
        )
        progress(f"starting {len(self.zones)} zones")
        for zone in self.zones.values():
            zone.start()
        self.write_manifest()
        await asyncio.gather(*(z.wait_ready() for z in self.zones.values()))
        progress("linking children to parents")
        await self.link()
        await self.provision_agents()
        progress(f"starting {len(self.agents)} host agents")
        for agent in self.agents.values():
            agent.start()
        self.write_manifest()
        await self.start_storage(progress)

    async def start_storage(self, progress: Callable[[str], None] = lambda _: None) -> None:
        """The zones' Swift clusters, started at once and registered with their zones;
        without the swift extra, the rest runs and `storage_note` says how to get it."""
        if not self.swifts:
            return
        if not swift_available():
            self.storage_note = f"{len(self.swifts)} storage clusters not started: {INSTALL_HINT}"
            return
        progress(f"starting {len(self.swifts)} Swift clusters")
        await LocalSwiftSet([swift for _, swift in self.swifts.values()]).start()
        for zone, swift in self.swifts.values():
            spec = next(c for c in self.topology.zones[zone].storage if c.name == swift.name)
            admin = swift.reseller_admin
            fields = {
                "tiers": {tier: tier for tier in spec.tiers},
                "capacity_bytes": int(spec.capacity_gb * (1 << 30)),
            }
            async with self.admin_client(zone) as client:
                if swift.name in {c.name for c in await client.list_storage_clusters()}:
                    await client.update_storage_cluster(  # a rerun: new ports
                        swift.name,
                        auth_url=swift.auth_url,
                        username=admin.user,
                        password=admin.key,
                        **fields,
                    )
                else:
                    await client.add_storage_cluster(
                        swift.name, swift.auth_url, admin.user, admin.key, **fields
                    )
        await self.provision_demo()
        self.write_manifest()
        progress("waiting for the root to offer the clusters' tiers")
        await self.wait_storage_offered()

    async def provision_demo(self) -> None:
        """A project and a member at the first root, for Swift clients to log in with
        (`demo:demo` and the password in federation.json); made again on a rerun."""
        async with self.admin_client(self.topology.roots()[0]) as client:
            if DEMO not in {p.name for p in await client.list_projects()}:
                await client.create_project(DEMO, "the object store's demo account (skyfed up)")
            if DEMO in {u.name for u in await client.list_users()}:
                await client.delete_user(DEMO)  # its password is the one written down
            await client.create_user(DEMO, self.demo_password, DEMO, ["member"])
        self.demo_ready = True

    async def wait_storage_offered(self, timeout: float = 60.0) -> None:
        """Until the root's Swift API offers every tier of the clusters (its children's
        summaries carry them up), at most `timeout` seconds."""
        wanted = {tier for _, swift in self.swifts.values() for tier in swift.policies}
        url = f"{self.zones[self.topology.roots()[0]].url}/info"
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=5.0) as http:
            for _ in range(int(timeout * 2) + 1):
                try:
                    info = (await http.get(url)).json()
                    offered = {p["name"] for p in info["swift"]["policies"]}
                except (httpx.HTTPError, ValueError, KeyError, TypeError):
                    offered = set()
                if wanted <= offered or time.monotonic() > deadline:
                    return
                await asyncio.sleep(0.5)

    async def link(self) -> None:
        for name in self.topology.order_children_first():
            child = self.zones[name]
            spec = self.topology.zones[name]
            via: dict[str, Any] = {"transport": spec.link}
            for parent in spec.parents:
                if spec.link == "amqp":  # the child's broker, as this parent's link user
                    via["bus_url"] = self.broker.link_url(name, parent)
                username, password = await self.link_account(parent, name)
                async with self.admin_client(parent) as client:
                    known = {z.name for z in await client.list_zones()}
                    if name in known:  # a rerun on the same state: the port may have changed
                        await client.update_zone(
                            name,
                            api_url=child.url,
                            username=username,
                            password=password,
                            **via,
                        )
                    else:
                        await client.add_zone(name, child.url, username, password, **via)

    async def link_account(self, parent: str, child: str) -> tuple[str, str]:
        """The service account `child` keeps for `parent` alone, made when missing (and
        made again, with a new password, when the one it had is not known here)."""
        username = link_username(parent)
        key = f"{parent}>{child}"
        async with self.admin_client(child) as client:
            existing = {u.name for u in await client.list_users()}
            password = self.link_passwords.get(key)
            if username in existing and password is None:
                await client.delete_user(username)
                existing.discard(username)
            if username not in existing:
                password = secrets.token_urlsafe(24)
                await client.create_user(username, password, LINK_PROJECT, ["service"])
            assert password is not None
        self.link_passwords[key] = password
        self.write_manifest()
        return username, password

    async def provision_agents(self) -> None:
        """Each zone's agent account, made (or brought back to this topology) through the
        zone's admin API: its own password, a grant covering its hosts and their number."""
        for name in self.agents:
            spec = self.topology.zones[name]
            username, password = agent_username(name), self.agent_passwords[name]
            grant = {
                "hosts": host_patterns(spec.host_groups, prefix=name),
                "max_hosts": self.topology.host_count(name),
            }
            async with self.admin_client(name) as client:
                if username in {a.name for a in await client.list_agents()}:
                    await client.update_agent(username, password=password, **grant)
                else:
                    await client.create_agent(username, password, **grant)

    def admin_client(self, name: str) -> SkyfedClient:
        return SkyfedClient(
            self.zones[name].url, username=ADMIN_USER, password=self.admin_passwords[name]
        )

    async def wait_covered(
        self, timeout: float = 120.0, progress: Callable[[str], None] = lambda _: None
    ) -> dict[str, int]:
        """Wait until every root's summary covers every host of its subtree."""
        expected = {root: self.topology.subtree_hosts(root) for root in self.topology.roots()}
        seen: dict[str, int] = {}
        deadline = time.monotonic() + timeout
        while True:
            for root in expected:
                async with self.admin_client(root) as client:
                    seen[root] = (await client.zone()).summary["hosts"]
            progress(", ".join(f"{r}: {seen[r]}/{expected[r]} hosts" for r in expected))
            if all(seen[r] >= expected[r] for r in expected):
                return seen
            self.check_alive()
            if time.monotonic() > deadline:
                raise ProcessFailed(f"roots cover {seen} hosts, expected {expected}")
            await asyncio.sleep(0.5)

    def processes(self) -> list[ManagedProcess]:
        """Every zone and host agent: what `skyfed up` keeps running."""
        return [*self.zones.values(), *self.agents.values()]

    def check_alive(self) -> None:
        for proc in self.processes():
            if proc.process is not None and not proc.running:
                raise ProcessFailed(f"{proc.name} exited:\n{proc.log_tail()}")

    def stop(self) -> None:
        stop_all(list(self.agents.values()))
        # Parents are told first, so none of them logs its children going away.
        order = reversed(self.topology.order_children_first())
        # (A failed start may not have made them all.)
        stop_all([self.zones[name] for name in order if name in self.zones])
        for _, swift in self.swifts.values():
            swift.end_now()
            if self.temporary:  # the state goes: so does the clusters' data, on tmpfs
                swift.drop_data()
        if self.temporary:
            left = self.broker.remove()
            if left:
                print(f"could not remove from the broker: {', '.join(left)}", file=sys.stderr)

    def manifest(self) -> dict[str, Any]:
        return {
            "state_dir": str(self.state_dir),
            "roots": self.topology.roots(),
            "links": dict(self.link_passwords),
            # What `skyfed up` made on the broker (passwords: in each zone's config).
            "broker": {"vhosts": self.broker.vhosts, "users": self.broker.user_names},
            "object_store": self._object_store(),
            "zones": [
                {
                    "name": name,
                    "url": zone.url,
                    "metrics_url": self.metrics_url(name),
                    "pid": _pid(zone),
                    "parents": self.topology.zones[name].parents,
                    "config": str(zone.config),
                    "log": str(zone.config.parent / "zone.log"),
                    "hosts": self.topology.host_count(name),
                    "agent_pid": _pid(self.agents[name]) if name in self.agents else None,
                    "admin": {"username": ADMIN_USER, "password": self.admin_passwords[name]},
                    "agent": (
                        {"username": agent_username(name), "password": self.agent_passwords[name]}
                        if name in self.agent_passwords
                        else None
                    ),
                }
                for name, zone in self.zones.items()
            ],
        }

    def _object_store(self) -> dict[str, Any]:
        """The root's Swift API, its demo account, and the clusters behind it."""
        store: dict[str, Any] = {"clusters": self._clusters()}
        roots = self.topology.roots()
        if roots and roots[0] in self.zones:
            store["auth_url"] = f"{self.zones[roots[0]].url}/auth/v1.0"
        if self.demo_ready:
            store |= {"project": DEMO, "username": DEMO, "password": self.demo_password}
        return store

    def _clusters(self) -> list[dict[str, Any]]:
        """Each Swift cluster with its own direct credentials (a reseller admin), so an
        operator or a benchmark can compare skyfed with the backend itself."""
        clusters = []
        for name, (zone, swift) in self.swifts.items():
            entry: dict[str, Any] = {
                "name": name,
                "zone": zone,
                "tiers": list(swift.policies),
                "auth_url": swift.auth_url,
                "running": swift.running,
            }
            if swift.running:
                admin = swift.reseller_admin
                entry |= {"username": admin.user, "password": admin.key}
            clusters.append(entry)
        return clusters

    def metrics_url(self, name: str) -> str | None:
        port = self.settings[name].get("metrics_port")
        return f"http://127.0.0.1:{port}/metrics" if port is not None else None

    def write_manifest(self) -> Path:
        path = self.state_dir / "federation.json"
        write_private(path, json.dumps(self.manifest(), indent=2))
        write_private(self.state_dir / "prometheus.yml", self.scrape_config())
        return path

    def scrape_config(self) -> str:
        """A Prometheus configuration scraping every zone, labelled by zone and process
        (docs/observability.md): `prometheus --config.file=<state_dir>/prometheus.yml`."""
        lines = [
            "# Written by `skyfed up`: every zone's API process, on its metrics_port.",
            "global:",
            "  scrape_interval: 15s",
            "scrape_configs:",
            "  - job_name: skyfed",
            "    static_configs:",
        ]
        for name in self.zones:
            url = self.metrics_url(name)
            if url is None:
                continue
            target = url.removeprefix("http://").removesuffix("/metrics")
            lines += [
                f"      - targets: [{json.dumps(target)}]",
                f"        labels: {{zone: {json.dumps(name)}, process: api}}",
            ]
        return "\n".join(lines) + "\n"


async def create_databases(urls: list[str]) -> None:
    """Create each PostgreSQL database named in `urls` that does not exist yet."""
    import asyncpg
    from sqlalchemy.engine import make_url

    for url in urls:
        parsed = make_url(url)
        if not parsed.drivername.startswith("postgresql") or not parsed.database:
            continue
        server = parsed.set(drivername="postgresql", database="postgres")
        conn = await asyncpg.connect(server.render_as_string(hide_password=False), timeout=10)
        try:
            exists = await conn.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", parsed.database
            )
            if not exists:
                name = parsed.database.replace('"', '""')
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()


def agent_options(options: dict[str, Any]) -> list[str]:
    """`{"boot_delay": 0.2, "cgroups": False}` -> `["--boot-delay", "0.2", "--no-cgroups"]`."""
    args: list[str] = []
    for key, value in options.items():
        flag = key.replace("_", "-")
        if isinstance(value, bool):
            args.append(f"--{flag}" if value else f"--no-{flag}")
        else:
            args += [f"--{flag}", str(value)]
    return args


def _tracing(settings: dict[str, Any]) -> dict[str, Any]:
    """The agent traces as its zone does, so its spans join the zone's traces."""
    options: dict[str, Any] = {}
    if settings.get("otlp_endpoint"):
        options["otlp_endpoint"] = settings["otlp_endpoint"]
    if settings.get("trace_console"):
        options["trace_console"] = True
    return options


def _pid(process: ManagedProcess) -> int | None:
    """Its process id while it runs; None while it is down (between a death and its restart)."""
    return process.pid if process.running else None


def _password(previous: dict[str, Any], account: str, length: int) -> str:
    known = (previous.get(account) or {}).get("password")
    return str(known) if known else secrets.token_urlsafe(length)
