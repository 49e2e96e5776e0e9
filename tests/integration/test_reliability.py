"""Faults: a worker killed mid-task, and servers that are real local processes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from skyfed.client_models import Server
from skyfed.federation.process import ManagedProcess
from tests.conftest import _asyncpg_dsn
from tests.integration.conftest import hosts
from tests.integration.test_servers_tree import settle
from tests.sandboxed import PROCESS_SERVERS_GROUP, ROOT, passable_dir, server_python

pytestmark = pytest.mark.integration


async def wait_until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


async def test_a_worker_killed_mid_task_loses_nothing_and_doubles_nothing(
    federation, postgres_databases, tmp_path: Path
) -> None:
    """API without workers, two `skyfed worker` processes; one is SIGKILLed while it
    waits on the host for reboots. Its tasks finish elsewhere, each reboot once."""
    database = await postgres_databases()
    zone = {
        "name": "solo",
        "hosts": [hosts(4, "h")],
        "agent": {"boot_delay": 2.0, "jitter": 0.0},
        "settings": {
            "database_url": database,
            "workers": 0,
            "task_lease": 2.0,
            "task_sweep_interval": 0.3,
        },
    }
    async with federation([zone]) as fed:
        config = fed.zones["solo"].config
        workers = [
            ManagedProcess(
                f"worker-{i}",
                [sys.executable, "-m", "skyfed", "worker", "--config", str(config)],
                tmp_path / f"worker-{i}.log",
            )
            for i in range(2)
        ]
        for worker in workers:
            worker.start()
        worker_log = fed.state_dir / "solo" / "zone.worker.log"

        async def both_ready() -> bool:  # each has read the hosts and is claiming tasks
            return worker_log.exists() and worker_log.read_text().count("zone ready") == 2

        await wait_until(both_ready, 30, "both workers up")
        try:
            async with fed.admin_client("solo") as admin:
                created = await admin.create_servers("r", flavor="m1.tiny", count=6)
                ids = [s.id for s in created.servers]
                assert [s.status for s in await settle(admin, ids)] == ["ACTIVE"] * 6
                for server_id in ids:
                    await admin.server_action(server_id, "reboot")
                conn = await asyncpg.connect(_asyncpg_dsn(database))
                try:

                    async def owners() -> list[str]:
                        rows = await conn.fetch(
                            "SELECT lease_owner FROM tasks WHERE kind = 'action' "
                            "AND state = 'running'"
                        )
                        return [r["lease_owner"] for r in rows]

                    running = await wait_until(owners, 20, "reboots claimed")
                    victim = next(w for w in workers if f":{w.pid}:" in running[0])
                    victim.kill()  # SIGKILL, while its tasks wait for the host
                    servers = await settle(admin, ids, timeout=60)
                    assert [s.status for s in servers] == ["ACTIVE"] * 6

                    async def all_done() -> bool:
                        states = await conn.fetch("SELECT state FROM tasks WHERE kind = 'action'")
                        return {r["state"] for r in states} == {"succeeded"}

                    await wait_until(all_done, 60, "every reboot task done")
                    attempts = await conn.fetch("SELECT attempts FROM tasks WHERE kind = 'action'")
                    assert len(attempts) == 6
                    assert max(r["attempts"] for r in attempts) >= 2  # taken over
                    reboots = await conn.fetch(
                        "SELECT server_id, count(*) AS n FROM host_commands "
                        "WHERE action = 'reboot' GROUP BY server_id"
                    )
                    assert sorted(r["n"] for r in reboots) == [1] * 6  # once each
                finally:
                    await conn.close()
        finally:
            for worker in workers:
                worker.stop()


@pytest.mark.xdist_group(PROCESS_SERVERS_GROUP)
async def test_a_process_server_reports_its_exit_and_reboot_runs_it_again(federation) -> None:
    script = (
        "import sys, time\n"
        "print('hello from the server', flush=True)\n"
        "time.sleep(0.5)\n"
        "sys.exit(3)\n"
    )
    zone = {
        "name": "proc",
        "hosts": [{"count": 1, "prefix": "p", "vcpus": 4, "ram_mb": 8192, "disk_gb": 50}],
        "agent": {"driver": "process", "stop_grace": 2.0, "insecure_shared_user": not ROOT},
    }
    with passable_dir() as base:
        async with (
            federation([zone], state_dir=base / "fed") as fed,
            fed.admin_client("proc") as admin,
        ):
            created = await admin.create_servers(
                "job",
                flavor="m1.tiny",
                metadata={"process": {"command": [server_python(), "-c", script]}},
            )
            server_id = created.servers[0].id
            stdout = fed.state_dir / "proc" / "agent-state" / server_id / "stdout.log"

            async def status(wanted: str) -> Server | None:
                server = await admin.get_server(server_id)
                return server if server.status == wanted else None

            async def runs(n: int) -> bool:
                return stdout.exists() and stdout.read_text().count("hello") >= n

            await wait_until(lambda: status("ACTIVE"), 30, "ACTIVE")
            stopped = await wait_until(lambda: status("STOPPED"), 30, "the exit seen")
            assert stopped.exit_code == 3
            await admin.server_action(server_id, "reboot")
            await wait_until(lambda: runs(2), 30, "the process ran again after reboot")
            again = await wait_until(lambda: status("STOPPED"), 30, "the second exit seen")
            assert again.exit_code == 3
            home = fed.state_dir / "server-homes" / "proc" / server_id
            assert home.is_dir() and (not ROOT or home.stat().st_uid != 0)


async def test_place_tasks_born_running_on_a_killed_api_are_finished_by_a_worker(
    federation, postgres_databases, tmp_path: Path
) -> None:
    """New servers' place tasks start on the API process that took the creates,
    with no claim. Kill that process (-9) while they wait on the child zone: the
    leases lapse, a `skyfed worker` process finishes them, each server is placed
    once."""
    database = await postgres_databases()
    tree = [
        {
            "name": "top",
            "settings": {
                "database_url": database,
                "task_lease": 2.0,
                "task_sweep_interval": 0.3,
                "poll_failures": 30,  # the child's pause must not make it dead
            },
        },
        {"name": "dc", "parents": ["top"], "hosts": [hosts(4, "h")]},
    ]
    async with federation(tree) as fed:
        top, dc = fed.zones["top"], fed.zones["dc"]
        worker = ManagedProcess(
            "worker",
            [sys.executable, "-m", "skyfed", "worker", "--config", str(top.config)],
            tmp_path / "worker.log",
        )
        worker.start()
        conn = await asyncpg.connect(_asyncpg_dsn(database))
        try:
            worker_log = fed.state_dir / "top" / "zone.worker.log"

            async def worker_ready() -> bool:
                return worker_log.exists() and "zone ready" in worker_log.read_text()

            await wait_until(worker_ready, 30, "the worker is up")
            assert top.pid is not None and dc.pid is not None
            os.kill(dc.pid, signal.SIGSTOP)  # the child hangs: the place tasks wait on it
            try:
                async with fed.admin_client("top") as admin:
                    created = await admin.create_servers("b", flavor="m1.tiny", count=5)
                ids = {s.id for s in created.servers}

                async def born_running() -> list[Any]:
                    rows = await conn.fetch(
                        "SELECT lease_owner FROM tasks WHERE kind = 'place' AND state = 'running'"
                    )
                    return rows if len(rows) == 5 else []

                rows = await wait_until(born_running, 10, "place tasks running")
                assert all(f":{top.pid}:" in r["lease_owner"] for r in rows)  # on the API
                top.kill()
            finally:
                os.kill(dc.pid, signal.SIGCONT)

            async def all_done() -> bool:
                states = await conn.fetch("SELECT state FROM tasks WHERE kind = 'place'")
                return {r["state"] for r in states} == {"succeeded"}

            await wait_until(all_done, 60, "the worker finished every place task")
            attempts = await conn.fetch("SELECT attempts FROM tasks WHERE kind = 'place'")
            assert sorted(r["attempts"] for r in attempts) == [2] * 5  # each taken over once
            async with fed.admin_client("dc") as client:
                listed = await client.list_servers(limit=100)
            assert sorted(s.id for s in listed.servers) == sorted(ids)  # once each
        finally:
            await conn.close()
            worker.stop()
