"""A tree of zone processes on PostgreSQL whose parents call their children over RabbitMQ.

Each zone gets its own broker virtual host and users, as `skyfed up` makes them
(named for the test's state directory, removed when it stops), so its queues
meet no other test's, and each test its own PostgreSQL databases (dropped
after). The restart test stops and starts the broker's application mid-burst,
as an operator's upgrade would.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import asyncpg
import pytest
from sqlalchemy.engine import make_url

from skyfed.federation.broker import ctl, zone_permissions
from skyfed.federation.process import ManagedProcess
from skyfed.transport.names import queue_for
from tests.conftest import IN_CI, POSTGRES_URL, _asyncpg_dsn, _postgres_reachable
from tests.integration.conftest import hosts
from tests.integration.test_servers_tree import settle

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("rabbitmqctl") is None and not IN_CI, reason="rabbitmqctl is not installed"
    ),
]


@pytest.fixture
async def production(amqp_url: str) -> AsyncIterator[dict[str, Any]]:
    """Defaults putting every zone on its own PostgreSQL database and its own queue."""
    problem = await _postgres_reachable()
    if problem:
        pytest.fail(problem) if IN_CI else pytest.skip(problem)
    tag = uuid.uuid4().hex[:10]
    server = make_url(POSTGRES_URL).set(database="").render_as_string(hide_password=False)
    yield {
        "database_url": f"{server.rstrip('/')}/skyfed_t{tag}_{{zone}}",
        "bus_url": amqp_url,  # the broker; each zone gets its own vhost and user on it
        "links": "amqp",
    }
    admin = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL))
    try:
        names = await admin.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1", f"skyfed_t{tag}_%"
        )
        for row in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
    finally:
        await admin.close()


TREE = [
    {"name": "top"},
    {"name": "eu", "parents": ["top"], "capabilities": {"region": "eu"}},
    {"name": "us", "parents": ["top"], "capabilities": {"region": "us"}},
    {"name": "eu-dc", "parents": ["eu"], "hosts": [hosts(8, "e", capabilities={"arch": "x86_64"})]},
    {"name": "us-dc", "parents": ["us"], "hosts": [hosts(8, "u", capabilities={"arch": "arm64"})]},
]


@pytest.mark.restarts_broker
async def test_creates_survive_a_broker_restart_none_stuck_none_twice(
    federation, production: dict[str, Any]
) -> None:
    # The fast polls of these tests would call a child dead after 3 x 0.75 s, shorter than
    # the restart; like production's 3 x 10 s, the blip must stay within the tolerance.
    # Hosts too, as production's 30 s TTL: the broker's restart takes both cores for
    # seconds, and agents silent past the tests' 5 s would be gone (no host anywhere).
    async with (
        federation(TREE, **production, poll_failures=10, host_ttl=30.0) as fed,
        fed.admin_client("top") as top,
    ):
        slots = asyncio.Semaphore(20)

        async def create(i: int) -> str:
            async with slots:
                answer = await top.request(
                    "POST", "/v1/servers", json={"name": f"s{i}", "flavor": "m1.tiny"}
                )
                return str(answer["servers"][0]["id"])

        burst = asyncio.gather(*(create(i) for i in range(200)))
        await asyncio.sleep(0.3)  # the burst is under way
        await asyncio.to_thread(ctl, "stop_app")
        await asyncio.sleep(1.0)
        await asyncio.to_thread(ctl, "start_app")
        ids = await burst
        assert len(set(ids)) == 200

        servers = await settle(top, ids, timeout=180)
        stuck = [s for s in servers if s.status not in ("ACTIVE", "ERROR")]
        assert not stuck
        assert all(s.fault for s in servers if s.status == "ERROR")
        assert sum(s.status == "ACTIVE" for s in servers) >= 190, [
            s.fault for s in servers if s.status == "ERROR"
        ]

        # None created twice: each data centre holds each of its servers once, and its
        # hosts account for exactly the servers placed on them.
        placed: list[str] = []
        for dc in ("eu-dc", "us-dc"):
            async with fed.admin_client(dc) as client:
                listed = await client.request("GET", "/v1/servers", params={"limit": 1000})
                mine = [s for s in listed["servers"] if s["status"] == "ACTIVE"]
                placed += [s["id"] for s in mine]
                used = sum(h.allocated.vcpus for h in await client.all_hosts())
                assert used == len(mine)  # m1.tiny: 1 vCPU each
        assert len(placed) == len(set(placed))
        assert sorted(placed) == sorted(s.id for s in servers if s.status == "ACTIVE")


async def test_task_wake_ups_reach_a_worker_process_over_the_bus(
    federation, production: dict[str, Any], tmp_path: Path
) -> None:
    """The API runs no workers and polls for tasks every 60 s; a `skyfed worker` process
    still takes each server's task at once, because the API's wake-up reaches it."""
    zone = {
        "name": "solo",
        "hosts": [hosts(2, "h")],
        "agent": {"boot_delay": 0.1, "jitter": 0.0},
        "settings": {"workers": 0, "task_poll_interval": 60.0, "task_sweep_interval": 60.0},
    }
    async with federation([zone], **production) as fed:
        worker = ManagedProcess(
            "worker",
            [sys.executable, "-m", "skyfed", "worker", "--config", str(fed.zones["solo"].config)],
            tmp_path / "worker.log",
        )
        worker.start()
        try:
            async with fed.admin_client("solo") as solo:
                await asyncio.sleep(3.0)  # the worker connected and made its first poll
                started = time.monotonic()
                made = await solo.request(
                    "POST", "/v1/servers", json={"name": "w", "flavor": "m1.tiny", "count": 3}
                )
                servers = await settle(solo, [s["id"] for s in made["servers"]], timeout=30)
                assert [s.status for s in servers] == ["ACTIVE"] * 3
                assert time.monotonic() - started < 30  # far inside one 60 s poll
        finally:
            worker.stop()


async def test_each_zone_gets_its_own_broker_site_removed_at_the_end(
    federation, amqp_url: str
) -> None:
    """`skyfed up` on AMQP: per zone a vhost, a zone user, a user per parent link and one
    for the agent, each with exactly its permissions; the agent's cannot consume the
    zone's queue, and heartbeats still reach the root; all gone once it stops."""
    tree = [{"name": "top"}, {"name": "dc", "parents": ["top"], "hosts": [hosts(4, "d")]}]
    async with federation(tree, bus_url=amqp_url, links="amqp") as fed:
        plan = fed.broker
        site = plan.zones["dc"]
        listed = await asyncio.to_thread(listing, "list_permissions", "-p", site.vhost)
        rows = {(r["user"], r["configure"], r["write"], r["read"]) for r in listed}
        expected = {
            (user.name, user.permissions.configure, user.permissions.write, user.permissions.read)
            for user in site.users
        }
        assert rows == expected
        assert [u.name for u in site.users] == [
            site.vhost, f"{site.vhost}-link-top", f"{site.vhost}-dc-agent"
        ]  # fmt: skip
        assert zone_permissions("dc") == site.zone.permissions
        agent_url = plan.agent_url("dc")
        assert agent_url is not None
        connection = await aio_pika.connect(agent_url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(queue_for("dc"), passive=True)
            with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
                await queue.consume(_ignore)
        made = (plan.vhosts, plan.user_names)
    vhosts = {r["name"] for r in await asyncio.to_thread(listing, "list_vhosts")}
    users = {r["user"] for r in await asyncio.to_thread(listing, "list_users")}
    assert made[0] and not set(made[0]) & vhosts
    assert made[1] and not set(made[1]) & users


def listing(*args: str) -> list[dict[str, Any]]:
    return list(json.loads(ctl(*args, "--formatter", "json")))


async def _ignore(message: Any) -> None:
    return None
