"""`skyfed agent --driver process --leave-servers-on-exit` (README, "Host agents"):
when the agent stops, its servers keep running, "for the next agent to adopt"; the
next agent on the same state directory carries them without starting a second copy,
and (stopping servers on exit, the default) stops them when it stops.

Real `skyfed agent` processes against the fake zone of test_agent_commands.py."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import ServedApp
from tests.integration.test_agent_commands import FakeZone
from tests.sandboxed import PROCESS_SERVERS_GROUP, passable_dir, server_python, start_agent
from tests.waiting import running, until

# Process servers: kept apart from every other test with them on the machine (conftest).
pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(120),
    pytest.mark.xdist_group(PROCESS_SERVERS_GROUP),
]
HOST = "lz-g0-00000"  # the one host of the spec below


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory process servers (users of their own) can pass through to their homes."""
    with passable_dir() as path:
        yield path


async def stop_agent(agent: subprocess.Popen[bytes], log: Path) -> None:
    agent.send_signal(signal.SIGINT)
    await until(lambda: agent.poll() is not None, 30, "the agent to exit")
    assert agent.returncode == 0, log.read_text(errors="replace")


def copies(marker: str) -> list[int]:
    """Live processes whose command holds `marker`."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            mine = any(marker in part for part in process.info["cmdline"] or ())
            if mine and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process.pid)
        except psutil.NoSuchProcess:
            continue
    return found


async def test_servers_left_running_are_adopted_by_the_next_agent(
    tmp_path: Path, base: Path
) -> None:
    zone = FakeZone()
    log = tmp_path / "agent.log"
    marker = f"leave-servers-{os.getpid()}-{id(zone)}"
    code = f"import time; print('up', flush=True); time.sleep(120)  # {marker}"
    server = {"vcpus": 1, "metadata": {"process": {"command": [server_python(), "-c", code]}}}
    agents: list[subprocess.Popen[bytes]] = []
    try:
        async with ServedApp(zone.app()) as served:
            first = start_agent(served.url, base, log, "--leave-servers-on-exit")
            agents.append(first)
            await until(lambda: zone.heartbeats, 30, "the first agent's heartbeat")
            booted = await zone.result(await zone.send("boot", "s1", server, host=HOST), 30)
            assert booted["status"] == "ACTIVE", booted
            [pid] = await until(lambda: copies(marker), 10, "the server's process")

            await stop_agent(first, log)
            # Gone, and its events sent (an agent flushes them before it exits): the
            # server runs on, and no event said it stopped.
            assert running(pid) and copies(marker) == [pid]
            assert zone.events == []

            second = start_agent(served.url, base, log)  # default: --stop-servers-on-exit
            agents.append(second)
            beats = len(zone.heartbeats)
            await until(lambda: len(zone.heartbeats) > beats, 30, "the second agent's heartbeat")
            # Booting it again finds it running: adopted, not started twice.
            again = await zone.result(await zone.send("boot", "s1", server, host=HOST), 30)
            assert again["status"] == "ACTIVE", again
            assert copies(marker) == [pid]
            assert zone.events == []

            await stop_agent(second, log)  # this one stops its servers
            await until(lambda: not running(pid), 10, "the adopted server to stop")
            assert [(e["server_id"], e["status"]) for e in zone.events] == [("s1", "STOPPED")]
            assert "agent stopped" in zone.events[0]["message"]
            assert zone.malformed == []
    finally:
        for agent in agents:
            if agent.poll() is None:
                agent.kill()
                agent.wait(10)
        await zone.close()
        for left in copies(marker):  # a failed test leaves nothing running either
            os.kill(left, signal.SIGKILL)
