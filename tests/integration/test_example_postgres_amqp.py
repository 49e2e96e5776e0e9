"""`./run skyfed up examples/federation-postgres-amqp.toml` (README, "Production layout"):
the example tree with every zone on its own PostgreSQL database and every link over
AMQP, run for real: every zone up on PostgreSQL, every parent calling its children
through their brokers, the root covering all 900 hosts, and a server created at the
root placed on a host three levels down.

The file is run as it is but for two names, so that the run meets no other: its
databases get a prefix of their own (the file names them skyfed_<zone>), and the
broker is the tests' one (SKYFED_TEST_AMQP_URL). Databases and broker accounts are
removed afterwards."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import subprocess
import tomllib
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import tomli_w
from sqlalchemy.engine import make_url

from skyfed.client import SkyfedClient
from skyfed.client_models import Server
from skyfed.federation.broker import rabbitmqctl_path, remove
from tests.conftest import (
    BROKER_GROUP,
    POSTGRES_URL,
    _asyncpg_dsn,
    _postgres_reachable,
    broker_url,
)
from tests.integration.test_up import skyfed_up
from tests.waiting import eventually

# On the shared broker without the amqp_url fixture: in its group by hand (conftest).
pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(600),
    pytest.mark.xdist_group(BROKER_GROUP),
]
EXAMPLE = Path(__file__).parents[2] / "examples" / "federation-postgres-amqp.toml"
ZONES = {"global", "eu", "us", "eu-dc1", "eu-dc2", "us-dc1"}
PARENTS = {"eu": "global", "us": "global", "eu-dc1": "eu", "eu-dc2": "eu", "us-dc1": "us"}


def test_the_example_puts_every_zone_on_postgres_and_every_link_on_amqp() -> None:
    example = tomllib.loads(EXAMPLE.read_text())
    defaults = example["defaults"]
    assert make_url(defaults["database_url"]).drivername == "postgresql+asyncpg"
    assert make_url(defaults["database_url"]).database == "skyfed_{zone}"  # one per zone
    assert defaults["bus_url"].startswith("amqp://")
    assert defaults["links"] == "amqp"
    zones = example["zones"]
    assert {z["name"] for z in zones} == ZONES
    for zone in zones:  # no zone goes back to SQLite or HTTP
        assert not {"database_url", "links", "link"} & set(zone.get("settings", {})), zone
        assert "link" not in zone and "links" not in zone, zone
    assert sum(g["count"] for z in zones for g in z.get("hosts", [])) == 900


async def _postgres() -> None:
    problem = await _postgres_reachable()
    if problem:
        from tests.conftest import IN_CI

        if IN_CI:
            pytest.fail(problem)
        pytest.skip(problem)


def _copy(tmp_path: Path, prefix: str, amqp_url: str) -> Path:
    example = tomllib.loads(EXAMPLE.read_text())
    # The server and credentials of the tests' PostgreSQL, the file's {zone} template
    # (put in as text: a URL object would escape its braces).
    server = make_url(POSTGRES_URL).set(database="DATABASE").render_as_string(hide_password=False)
    example["defaults"]["database_url"] = server.replace("DATABASE", f"{prefix}_{{zone}}")
    example["defaults"]["bus_url"] = amqp_url
    copy = tmp_path / EXAMPLE.name
    copy.write_text(tomli_w.dumps(example))
    return copy


async def _databases(prefix: str) -> dict[str, int]:
    """Each of the run's databases, with how many tables it holds."""
    admin = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL))
    try:
        names = [
            r["datname"]
            for r in await admin.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE $1", f"{prefix}\\_%"
            )
        ]
    finally:
        await admin.close()
    tables: dict[str, int] = {}
    for name in names:
        conn = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL, name))
        try:
            tables[name] = int(
                await conn.fetchval(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
                )
            )
        finally:
            await conn.close()
    return tables


async def _drop(prefix: str) -> None:
    admin = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL))
    try:
        for row in await admin.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1", f"{prefix}\\_%"
        ):
            await admin.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
    finally:
        await admin.close()


def _remove_broker_accounts(state: Path) -> None:
    """The vhosts and users `skyfed up` made for this state directory (it keeps them for
    a state directory it was given, to be run again)."""
    tag = hashlib.sha256(str(state.resolve()).encode()).hexdigest()[:8]
    names: dict[str, list[str]] = {}
    for kind in ("vhosts", "users"):
        listed = subprocess.run(
            [rabbitmqctl_path(), "-q", f"list_{kind}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        names[kind] = [
            line.split()[0]
            for line in listed.stdout.splitlines()
            if line.startswith(f"skyfed-{tag}-")
        ]
    remove(names["vhosts"], names["users"])


def _client(zone: dict[str, Any]) -> SkyfedClient:
    admin = zone["admin"]
    return SkyfedClient(
        zone["url"], username=admin["username"], password=admin["password"], timeout=30
    )


async def test_the_postgres_amqp_example_runs(tmp_path: Path) -> None:
    await _postgres()
    amqp_url = await broker_url()
    rabbitmqctl_path()  # skyfed up makes the broker accounts with it
    prefix = f"skyfed_t{uuid.uuid4().hex[:8]}"
    topology = _copy(tmp_path, prefix, amqp_url)
    state = tmp_path / "state"
    try:
        async with skyfed_up(tmp_path, topology) as up:
            zones = up.zones()
            assert set(zones) == ZONES
            assert "900 hosts" in up.output()

            # Every zone on its own PostgreSQL database, migrated.
            tables = await _databases(prefix)
            assert set(tables) == {f"{prefix}_{name}" for name in ZONES}
            assert all(count > 5 for count in tables.values()), tables
            assert not list(state.glob("*/*.db"))  # no SQLite anywhere

            # Every parent calls its children over AMQP, and they answer.
            for child, parent in PARENTS.items():
                async with _client(zones[parent]) as client:
                    link = await client.zone_detail(child)
                assert (link.transport, link.state) == ("amqp", "active"), link
                assert link.bus_url and "@" not in link.bus_url  # no credentials shown

            async with _client(zones["global"]) as root:
                me = await root.zone()
                assert me.summary["hosts"] == 900
                # A server created at the root goes down three levels, over the brokers.
                created = await root.create_servers(
                    name="web", flavor="m1.small", constraints={"gpu": ">= 8"}
                )
                [server] = created.servers

                async def active() -> Server | None:
                    found = await root.get_server(server.id)
                    return found if found.status == "ACTIVE" else None

                placed = await eventually(active, 120, "the server ACTIVE", every=0.5)
                assert placed.location.path == ["eu", "eu-dc1"]  # the GPU hosts
                assert str(placed.location.host).startswith("eu-dc1-gpu-")

            await up.stop(signal.SIGINT)
    finally:
        try:
            await asyncio.to_thread(_remove_broker_accounts, state)
        finally:
            await _drop(prefix)
