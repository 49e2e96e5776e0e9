"""The agent's command loop, events and heartbeats against a fake zone on a real socket.

The fake zone speaks the agent protocol of docs/compute.md: a long poll that
answers at once with the pending commands (and sends a pending command again on
every poll until its result arrives), result and event routes, token logins.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from skyfed.client import SkyfedClient, SkyfedError
from skyfed.client_models import Host
from skyfed.compute.agent.driver import Driver
from skyfed.compute.agent.process_driver import ProcessDriver
from skyfed.compute.agent.runner import AgentRunner
from skyfed.compute.agent.sim import SimHost
from skyfed.compute.agent.sim_driver import SimDriver
from tests.conftest import ServedApp
from tests.sandboxed import (
    PROCESS_SERVERS_GROUP,
    passable_dir,
    sandbox_options,
    server_python,
    start_agent,
)
from tests.waiting import until

pytestmark = pytest.mark.timeout(60)
AGENT = "z-agent"


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


class FakeZone:
    """The zone's half of the agent protocol, in memory; it outlives restarts of its server."""

    def __init__(self) -> None:
        self.pending: dict[str, dict[str, Any]] = {}
        self.deliveries: Counter[str] = Counter()
        self.results: dict[str, list[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self.heartbeats: list[dict[str, Any]] = []
        self.log: list[tuple[str, str]] = []  # ("result"|"event", server_id), in arrival order
        self.tokens: set[str] = set()
        self.logins = 0
        self.paths: set[str] = set()
        self.refuse_results = 0  # answer 503 to this many result posts
        self.lose_results = 0  # accept this many results but keep the command pending
        self.reject_server: str | None = None  # 400 every batch holding a result for it
        self.closing = False
        # Bodies not in the protocol's shape, kept for the test to assert on: an assert in a
        # route would only be a 500 to the agent, which retries, and the test would time out.
        self.malformed: list[tuple[str, dict[str, Any]]] = []
        self._changed = asyncio.Condition()

    # -- the test's side -------------------------------------------------------------

    async def send(
        self, action: str, server_id: str, server: dict[str, Any] | None = None, host: str = "h0"
    ) -> str:
        command_id = str(uuid.uuid4())
        self.pending[command_id] = {
            "id": command_id,
            "host": host,
            "server_id": server_id,
            "action": action,
            "server": server or {},
        }
        async with self._changed:
            self._changed.notify_all()
        return command_id

    async def result(self, command_id: str, timeout: float = 10.0) -> dict[str, Any]:
        await until(lambda: self.results.get(command_id), timeout, f"result of {command_id}")
        return self.results[command_id][0]

    async def close(self) -> None:
        self.closing = True
        async with self._changed:
            self._changed.notify_all()

    # -- the routes ---------------------------------------------------------------

    def _authorized(self, request: Request) -> bool:
        self.paths.add(request.url.path)
        auth = request.headers.get("authorization", "")
        return auth.removeprefix("Bearer ") in self.tokens

    async def login(self, request: Request) -> Response:
        body = await request.json()
        if body != {"username": "agent", "password": "pw"}:
            return error(401, "unauthorized", "bad credentials")
        token = uuid.uuid4().hex
        self.tokens.add(token)
        self.logins += 1
        return JSONResponse({"token": token, "expires_at": "2099-01-01T00:00:00Z"})

    async def hosts(self, request: Request) -> Response:
        if not self._authorized(request):
            return error(401, "unauthorized", "log in")
        body = await request.json()
        self.heartbeats.extend(body["hosts"])
        return JSONResponse({"accepted": len(body["hosts"]), "disabled": []})

    async def commands(self, request: Request) -> Response:
        if not self._authorized(request):
            return error(401, "unauthorized", "log in")
        wait = int(request.query_params["wait"])
        limit = int(request.query_params["limit"])
        try:
            async with self._changed:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: bool(self.pending) or self.closing), wait
                )
        except TimeoutError:
            pass
        batch = list(self.pending.values())[:limit]
        self.deliveries.update(c["id"] for c in batch)
        return JSONResponse({"commands": batch})

    async def command_results(self, request: Request) -> Response:
        if not self._authorized(request):
            return error(401, "unauthorized", "log in")
        if self.refuse_results:
            self.refuse_results -= 1
            return error(503, "unavailable", "database is down")
        results = (await request.json())["results"]
        servers = {(self.pending.get(r["id"]) or {}).get("server_id") for r in results}
        if self.reject_server is not None and self.reject_server in servers:
            return error(400, "bad_request", "one result of this batch is malformed")
        answers = []
        for body in results:
            command_id = body.pop("id")
            if set(body) != {"ok", "status", "message", "exit_code"}:
                self.malformed.append(("result", dict(body)))
            self.results.setdefault(command_id, []).append(body)
            command = self.pending.get(command_id)
            self.log.append(("result", command["server_id"] if command else "?"))
            if self.lose_results:
                self.lose_results -= 1
            else:
                self.pending.pop(command_id, None)
            answers.append({"id": command_id, "known": command is not None})
        return JSONResponse({"results": answers})

    async def post_events(self, request: Request) -> Response:
        if not self._authorized(request):
            return error(401, "unauthorized", "log in")
        body = await request.json()
        for event in body["events"]:
            if set(event) != {"server_id", "status", "exit_code", "message"}:
                self.malformed.append(("event", dict(event)))
            self.events.append(event)
            self.log.append(("event", event["server_id"]))
        return Response(status_code=204)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/auth/tokens", self.login, methods=["POST"]),
                Route("/v1/hosts", self.hosts, methods=["PUT"]),
                Route("/v1/agents/{agent}/commands", self.commands, methods=["GET"]),
                Route("/v1/agents/{agent}/results", self.command_results, methods=["POST"]),
                Route("/v1/agents/{agent}/events", self.post_events, methods=["POST"]),
            ]
        )


class GatedSimDriver(SimDriver):
    """A SimDriver whose boots wait for `gate`, counting how many wait at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = asyncio.Event()
        self.booting = 0
        self.most_booting = 0

    async def boot(self, host: str, server_id: str, server: Any) -> Any:
        self.booting += 1
        self.most_booting = max(self.most_booting, self.booting)
        try:
            await self.gate.wait()
            return await super().boot(host, server_id, server)
        finally:
            self.booting -= 1


def host(name: str = "h0", vcpus: int = 4, ram_mb: int = 8192) -> SimHost:
    resources = {"vcpus": vcpus, "ram_mb": ram_mb, "disk_gb": 100}
    return SimHost(name, {}, resources, {"vcpus": 1, "ram_mb": 0, "disk_gb": 0})


def small(vcpus: int = 1) -> dict[str, Any]:
    return {"name": "s", "vcpus": vcpus, "ram_mb": 512, "disk_gb": 1, "metadata": {}}


class Harness:
    """A fake zone on a socket and an agent (runner) talking to it."""

    def __init__(self, driver: Driver, port: int | None = None) -> None:
        self.zone = FakeZone()
        self.driver = driver
        self.served: ServedApp | None = None
        self.port = port
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.runner: AgentRunner | None = None
        self.client: SkyfedClient | None = None

    async def start_zone(self) -> None:
        self.zone.closing = False
        self.served = ServedApp(self.zone.app(), self.port)
        self.port = self.served.port
        await self.served.__aenter__()

    async def stop_zone(self) -> None:
        assert self.served is not None
        await self.zone.close()
        await asyncio.wait_for(self.served.__aexit__(None, None, None), 10)

    async def start_agent(self, **options: Any) -> AgentRunner:
        assert self.served is not None
        self.client = SkyfedClient(self.served.url, username="agent", password="pw", timeout=2.0)
        self.runner = AgentRunner(
            self.client, self.driver, AGENT, interval=0.2, poll_wait=1, **options
        )
        self.task = asyncio.create_task(self.runner.run(self.stop))
        return self.runner

    async def close(self) -> None:
        self.stop.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 20)
        if self.client is not None:
            await self.client.aclose()
        if self.served is not None and self.served.server.started:
            await self.stop_zone()


@pytest.fixture
async def harness() -> AsyncIterator[Callable[..., Any]]:
    made: list[Harness] = []

    async def make(driver: Driver, **options: Any) -> Harness:
        h = Harness(driver)
        made.append(h)
        await h.start_zone()
        await h.start_agent(**options)
        return h

    yield make
    for h in made:
        await h.close()
    for h in made:
        assert h.zone.malformed == [], "the agent posted bodies out of the protocol's shape"


async def test_commands_run_and_results_carry_the_status_after(harness: Any) -> None:
    h = await harness(SimDriver([host()], boot_delay=0.02))
    zone = h.zone
    ok = await zone.result(await zone.send("boot", "s1", small(2)))
    assert ok == {"ok": True, "status": "ACTIVE", "message": "", "exit_code": None}
    failed = await zone.result(await zone.send("boot", "s2", small(2)))
    assert failed["ok"] is False and failed["status"] == "ERROR"
    assert failed["message"].startswith("insufficient capacity on h0: need vcpus=2")
    for action, status in [
        ("stop", "STOPPED"),
        ("start", "ACTIVE"),
        ("reboot", "ACTIVE"),
        ("delete", "DELETED"),
    ]:
        result = await zone.result(await zone.send(action, "s1"))
        assert (result["ok"], result["status"]) == (True, status), action
    bad = await zone.result(await zone.send("resize", "s1"))
    assert bad["ok"] is False and "unknown action 'resize'" in bad["message"]
    unknown_host = await zone.result(await zone.send("boot", "s3", small(), host="nope"))
    assert "does not carry host 'nope'" in unknown_host["message"]
    assert f"/v1/agents/{AGENT}/commands" in zone.paths
    assert all(len(r) == 1 for r in zone.results.values())


async def test_many_commands_run_concurrently(harness: Any) -> None:
    hosts = [host(f"h{i}", vcpus=100, ram_mb=1 << 20) for i in range(4)]
    driver = GatedSimDriver(hosts, boot_delay=0.0)
    h = await harness(driver, concurrency=64)
    ids = [await h.zone.send("boot", f"s{i}", small(), host=f"h{i % 4}") for i in range(120)]
    assert h.runner is not None
    in_flight = h.runner.commands.in_flight
    # Boots held at the gate: once a poll's worth is taken (the zone sends the first 100
    # pending), as many run at once as the agent may (64), and no more.
    await until(lambda: len(in_flight) == 100 and driver.booting >= 64, 30, "100 taken")
    assert driver.booting == 64
    driver.gate.set()
    results = [await h.zone.result(cid, 30) for cid in ids]
    assert all(r["status"] == "ACTIVE" for r in results)
    assert driver.most_booting == 64
    assert sum(h.driver.used(f"h{i}")["vcpus"] for i in range(4)) == 120


async def test_a_command_delivered_again_while_running_runs_once(harness: Any) -> None:
    driver = GatedSimDriver([host()], boot_delay=0.0)
    h = await harness(driver)
    assert h.runner is not None
    command_id = await h.zone.send("boot", "s1", small())
    # The boot is held: the zone sends the command again on the agent's next poll.
    await until(lambda: h.zone.deliveries[command_id] >= 2, 15, "a second delivery")
    driver.gate.set()
    result = await h.zone.result(command_id)
    assert result["status"] == "ACTIVE"
    assert h.zone.deliveries[command_id] >= 2  # the zone sent it again while it ran
    assert h.zone.deliveries[command_id] <= 8  # ... and the agent did not spin on it
    assert h.runner.commands.executed == 1
    assert len(h.zone.results[command_id]) == 1
    assert h.driver.used("h0")["vcpus"] == 1


async def test_a_result_the_zone_lost_is_posted_again_without_running_again(
    harness: Any,
) -> None:
    h = await harness(SimDriver([host()]))
    assert h.runner is not None
    h.zone.lose_results = 1
    command_id = await h.zone.send("boot", "s1", small())
    await until(lambda: len(h.zone.results.get(command_id, [])) >= 2, what="a second post")
    assert h.zone.results[command_id][0] == h.zone.results[command_id][1]
    assert h.runner.commands.executed == 1
    assert command_id not in h.zone.pending


async def test_results_are_retried_while_the_zone_refuses_them(harness: Any) -> None:
    h = await harness(SimDriver([host()]))
    h.zone.refuse_results = 3
    result = await h.zone.result(await h.zone.send("boot", "s1", small()), timeout=15)
    assert result["status"] == "ACTIVE"
    assert h.zone.refuse_results == 0


async def test_a_batch_refused_whole_is_posted_result_by_result(harness: Any) -> None:
    h = await harness(SimDriver([host(vcpus=20)]))
    h.zone.reject_server = "s2"  # the zone cannot take the result for this one
    ids = [await h.zone.send("boot", f"s{i}", small()) for i in range(6)]
    for command_id in ids[:2] + ids[3:]:
        assert (await h.zone.result(command_id))["status"] == "ACTIVE"
    assert ids[2] not in h.zone.results  # refused, alone
    assert h.runner is not None and h.runner.commands.executed == 6


async def test_events_are_forwarded_in_batches(harness: Any) -> None:
    driver = SimDriver([host(vcpus=20)])
    h = await harness(driver)
    ids = [await h.zone.send("boot", f"s{i}", small()) for i in range(5)]
    for cid in ids:
        await h.zone.result(cid)
    for i in range(5):
        driver.crash(f"s{i}", f"crash {i}")
    await until(lambda: len(h.zone.events) == 5, what="5 events")
    assert h.zone.events[0] == {
        "server_id": "s0",
        "status": "STOPPED",
        "exit_code": None,
        "message": "crash 0",
    }
    assert f"/v1/agents/{AGENT}/events" in h.zone.paths


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory process servers (users of their own) can pass through to their homes."""
    with passable_dir() as path:
        yield path


@pytest.mark.xdist_group(PROCESS_SERVERS_GROUP)
async def test_an_event_waits_for_the_result_of_a_command_in_flight(
    harness: Any, base: Path
) -> None:
    driver = ProcessDriver([host()], base / "state", stop_grace=2.0, sandbox=sandbox_options())
    h = await harness(driver, stop_servers_on_exit=True)
    h.zone.refuse_results = 2  # the result arrives late: the exit event must wait for it
    server = {
        "name": "quick",
        "vcpus": 1,
        "metadata": {"process": {"command": [server_python(), "-c", "raise SystemExit(3)"]}},
    }
    result = await h.zone.result(await h.zone.send("boot", "s1", server))
    assert result["status"] == "ACTIVE"
    await until(lambda: h.zone.events, what="the exit event")
    assert h.zone.events[0]["exit_code"] == 3
    assert h.zone.log[:2] == [("result", "s1"), ("event", "s1")]


async def test_heartbeats_name_the_agent_and_report_only_other_work(harness: Any) -> None:
    """`used` is the host's baseline load: the zone counts its own servers from its claims."""
    h = await harness(SimDriver([host("h0"), host("h1")]))
    await h.zone.result(await h.zone.send("boot", "s1", small(2), host="h1"))
    count = len(h.zone.heartbeats)

    def latest(name: str) -> dict[str, Any] | None:
        beats = [b for b in h.zone.heartbeats[count:] if b["name"] == name]
        return beats[-1] if beats else None

    beat = await until(lambda: latest("h1"), what="a heartbeat after the boot")
    assert beat["agent"] == AGENT
    assert beat["used"] == {"vcpus": 1, "ram_mb": 0, "disk_gb": 0}  # the baseline, not the server
    assert (await until(lambda: latest("h0")))["used"]["vcpus"] == 1


async def test_long_driver_messages_are_clipped_for_the_zone(harness: Any) -> None:
    hosts = [host(f"h{i:03d}-{'x' * 40}") for i in range(20)]
    h = await harness(SimDriver(hosts))
    result = await h.zone.result(await h.zone.send("boot", "s1", small(), host="nope" * 30))
    assert result["ok"] is False
    assert len(result["message"]) == 255 and result["message"].endswith("\u2026")


async def test_the_agent_logs_in_again_when_its_token_is_refused(harness: Any) -> None:
    h = await harness(SimDriver([host()]))
    await h.zone.result(await h.zone.send("boot", "s1", small()))
    logins = h.zone.logins
    h.zone.tokens.clear()  # the zone restarted with new signing keys, say
    result = await h.zone.result(await h.zone.send("stop", "s1"))
    assert result["status"] == "STOPPED"
    assert h.zone.logins > logins


async def test_the_agent_reconnects_after_the_zone_restarts(harness: Any) -> None:
    driver = GatedSimDriver([host()], boot_delay=0.0)
    h = await harness(driver)
    # A boot in flight when the zone goes away: its result waits for the zone to return.
    in_flight = await h.zone.send("boot", "s1", small())
    await until(lambda: driver.booting, what="the boot under way")
    refused: list[SkyfedError] = []
    assert h.client is not None
    post = h.client.command_results

    async def counted(*args: Any, **kwargs: Any) -> Any:
        try:
            return await post(*args, **kwargs)
        except SkyfedError as exc:
            refused.append(exc)
            raise

    h.client.command_results = counted  # type: ignore[method-assign]
    await h.stop_zone()
    queued = await h.zone.send("boot", "s2", small())  # written while the zone is down
    driver.gate.set()  # the boot ends with the zone away: its result is tried, not taken
    await until(lambda: refused, 20, "a result post failing while the zone is down")
    assert refused[0].status == 0 and not h.zone.results
    beats = len(h.zone.heartbeats)
    await h.start_zone()
    assert (await h.zone.result(in_flight, 15))["status"] == "ACTIVE"
    assert (await h.zone.result(queued, 15))["status"] == "ACTIVE"
    await until(lambda: len(h.zone.heartbeats) > beats, what="heartbeats again")
    assert h.runner is not None and h.runner.commands.executed == 2


async def test_shutdown_is_bounded_with_the_zone_gone(harness: Any) -> None:
    # Short bounds for draining commands and flushing events; the wait below is far
    # longer, so only a shutdown that waits on the zone without a bound fails it.
    h = await harness(SimDriver([host()], boot_delay=0.2), drain_timeout=0.5, flush_timeout=0.5)
    await h.zone.result(await h.zone.send("boot", "s1", small()))
    await h.stop_zone()
    h.driver.crash("s1")  # an event that cannot be delivered
    h.stop.set()
    await asyncio.wait_for(h.task, 30)
    assert h.zone.events == []


@pytest.mark.xdist_group(PROCESS_SERVERS_GROUP)
async def test_skyfed_agent_process_driver_end_to_end(tmp_path: Path, base: Path) -> None:
    """The real CLI: a boot through it runs a process; Ctrl-C leaves nothing running."""
    zone = FakeZone()
    pid_file = base / "state" / "_homes" / "s1" / "server.pid"  # in the server's home (cwd)
    async with ServedApp(zone.app()) as served:
        agent = start_agent(served.url, base, tmp_path / "agent.log", prefix="pz")
        try:
            beat = await until(lambda: zone.heartbeats, 20, "the first heartbeat")
            # The agent's name is its user name.
            assert beat[0]["name"] == "pz-g0-00000" and beat[0]["agent"] == "agent"
            code = (
                "import os, time; open('server.pid', 'w').write(str(os.getpid())); time.sleep(60)"
            )
            server = {
                "vcpus": 1,
                "metadata": {"process": {"command": [server_python(), "-c", code]}},
            }
            result = await zone.result(
                await zone.send("boot", "s1", server, host="pz-g0-00000"), 20
            )
            assert result["status"] == "ACTIVE", result
            pid = int(await until(lambda: pid_file.exists() and pid_file.read_text(), 10))
            assert psutil.pid_exists(pid)
            agent.send_signal(signal.SIGINT)
            await until(lambda: agent.poll() is not None, 20, "the agent to exit")
            assert agent.returncode == 0, (tmp_path / "agent.log").read_text()
            await until(lambda: not _running(pid), 5, "the server process to go")
            await until(lambda: zone.events, 5, "the stop event")
            assert zone.events[0]["server_id"] == "s1"
            assert "agent stopped" in zone.events[0]["message"]
            assert zone.malformed == []
            assert (base / "state" / "s1" / "stdout.log").exists()
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait(10)
            await zone.close()
            text = pid_file.read_text() if pid_file.exists() else ""
            if text and _running(int(text)):
                os.kill(int(text), signal.SIGKILL)  # a failed test leaves nothing behind either


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def test_heartbeats_reach_a_real_zone(child_zone: Any) -> None:
    """The beats' shape is what a real zone takes: the host shows its agent and usage."""
    driver = SimDriver([host("rz-h0")])
    await driver.boot("rz-h0", "s1", small(2))
    stop = asyncio.Event()
    async with child_zone.client() as admin:
        await admin.create_agent("rz-agent", "rz-agent-password", ["rz-*"], max_hosts=1)
    async with SkyfedClient(
        child_zone.url, username="rz-agent", password="rz-agent-password"
    ) as client:
        runner = AgentRunner(client, driver, "rz-agent", interval=0.2, poll_wait=1)
        task = asyncio.create_task(runner.run(stop))
        try:
            async with child_zone.client() as admin:

                async def seen() -> Host | None:
                    try:
                        return await admin.get_host("rz-h0")
                    except SkyfedError as exc:  # 404 until the first beat lands
                        if (exc.status, exc.code) != (404, "not_found"):
                            raise  # anything else is the answer: no waiting it out
                        return None

                deadline = time.monotonic() + 10
                found = None
                while found is None and time.monotonic() < deadline:
                    found = await seen()
                    await asyncio.sleep(0.05)
                assert found is not None, "the zone never heard of the host"
                assert found.agent == "rz-agent"
                assert found.used.vcpus == 1  # the baseline; the zone counts its servers
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)
