"""The process driver with real processes: logs, exit events, signals, no orphans.

What confines a server (its own user, its home, its limits) is in test_agent_sandbox.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from skyfed.compute.agent.driver import DriverError
from skyfed.compute.agent.process_driver import ProcessDriver
from tests.sandboxed import (
    PROCESS_SERVERS_GROUP,
    SLEEPER,
    host,
    passable_dir,
    sandbox_options,
    server_python,
)
from tests.waiting import running, until

pytestmark = [pytest.mark.timeout(60), pytest.mark.xdist_group(PROCESS_SERVERS_GROUP)]


def py(code: str, **extra: Any) -> dict[str, Any]:
    """A server whose process runs `code` in Python."""
    return {
        "name": "srv",
        "vcpus": 1,
        "ram_mb": 512,
        "disk_gb": 1,
        "metadata": {"process": {"command": [server_python(), "-c", code], **extra}},
    }


def log_has(path: Path, text: str) -> Callable[[], bool]:
    return lambda: path.exists() and text in path.read_text()


def make(state: Path, **kwargs: Any) -> ProcessDriver:
    return ProcessDriver([kwargs.pop("host", host())], state, sandbox=sandbox_options(), **kwargs)


@pytest.fixture
def state() -> Iterator[Path]:
    """The agent's state directory, where servers (other users) can reach their homes."""
    with passable_dir() as base:
        yield base / "state"


@pytest.fixture
async def driver(state: Path) -> AsyncIterator[ProcessDriver]:
    d = make(state, stop_grace=5.0)
    await d.open()
    pids = set()
    try:
        yield d
    finally:
        pids.update(d.pids().values())
        await d.close(stop_servers=True)
        for pid in pids:  # a failed test must not leave processes behind either
            if running(pid):
                os.killpg(pid, signal.SIGKILL)
        assert not [p for p in pids if running(p)], "the driver left processes running"


async def test_boot_runs_the_command_and_captures_its_output(
    driver: ProcessDriver, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_SECRET", "hunter2")  # the agent's environment stays its own
    code = (
        "import os, sys, time; print('hello', os.environ.get('GREETING'), flush=True); "
        "print('oops', file=sys.stderr, flush=True); "
        "open('seen.tmp', 'w').write(__import__('json').dumps(dict(os.environ))); "
        "os.replace('seen.tmp', 'seen.json'); "
        "time.sleep(60)"
    )
    outcome = await driver.boot("h0", "s1", py(code, env={"GREETING": "world"}))
    assert outcome.status == "ACTIVE"
    stdout, stderr = driver.log_paths("s1")
    assert stdout == state / "s1" / "stdout.log"
    await until(log_has(stdout, "hello world"), what="stdout")
    await until(log_has(stderr, "oops"), what="stderr")
    home = driver.home("s1")  # the default working directory
    await until((home / "seen.json").exists, what="the env dump in cwd")
    env = json.loads((home / "seen.json").read_text())
    assert env["SKYFED_SERVER_ID"] == "s1" and env["SKYFED_SERVER_NAME"] == "srv"
    assert env["HOME"] == str(home) and env["TMPDIR"] == str(home / "tmp")
    assert "AGENT_SECRET" not in env
    assert running(driver.pids()["s1"])
    assert driver.used("h0") == {"vcpus": 1, "ram_mb": 512, "disk_gb": 1}
    saved = json.loads((state / "s1" / "server.json").read_text())
    assert saved["status"] == "ACTIVE" and saved["pid"] == driver.pids()["s1"]


async def test_boot_twice_keeps_one_process(driver: ProcessDriver) -> None:
    code = f"{SLEEPER}  # {uuid.uuid4().hex}"  # this test's processes, told by their command
    outcomes = await asyncio.gather(
        driver.boot("h0", "s1", py(code)), driver.boot("h0", "s1", py(code))
    )
    assert [o.status for o in outcomes] == ["ACTIVE", "ACTIVE"]
    pid = driver.pids()["s1"]
    assert (await driver.boot("h0", "s1", py(code))).status == "ACTIVE"
    assert driver.pids() == {"s1": pid}
    assert driver.used("h0")["vcpus"] == 1
    stdout, _ = driver.log_paths("s1")
    await until(log_has(stdout, "up"))
    # The machine's processes running it: exactly the one (not "no second 'up' printed
    # within a sleep").
    copies = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if code in (p.info["cmdline"] or ()) and p.status() != psutil.STATUS_ZOMBIE
    ]
    assert copies == [pid]
    assert stdout.read_text().count("up") == 1


async def test_an_exit_is_an_event_with_its_code_and_start_runs_it_again(
    driver: ProcessDriver,
) -> None:
    code = "import sys; print('ran', flush=True); sys.exit(3)"
    await driver.boot("h0", "s1", py(code))
    event = await asyncio.wait_for(driver.events.get(), 10)
    assert event == {
        "server_id": "s1",
        "status": "STOPPED",
        "exit_code": 3,
        "message": "process exited with code 3",
    }
    assert driver.status("s1") == "STOPPED"
    assert driver.used("h0")["vcpus"] == 1  # a stopped server keeps its place
    stop = await driver.stop("h0", "s1", {})
    assert (stop.status, stop.exit_code) == ("STOPPED", 3)
    assert (await driver.start("h0", "s1", {})).status == "ACTIVE"
    event = await asyncio.wait_for(driver.events.get(), 10)
    assert event["exit_code"] == 3
    stdout, _ = driver.log_paths("s1")
    assert stdout.read_text().count("ran") == 2  # appended across starts


async def test_stop_start_reboot_by_signal_and_respawn(driver: ProcessDriver) -> None:
    await driver.boot("h0", "s1", py(SLEEPER))
    first = driver.pids()["s1"]
    stop = await driver.stop("h0", "s1", {})
    assert (stop.status, stop.exit_code) == ("STOPPED", 128 + signal.SIGTERM)
    assert not running(first)
    assert driver.pids() == {}
    assert (await driver.stop("h0", "s1", {})).status == "STOPPED"
    assert (await driver.start("h0", "s1", {})).status == "ACTIVE"
    second = driver.pids()["s1"]
    assert second != first and running(second)
    assert (await driver.start("h0", "s1", {})).status == "ACTIVE"
    assert driver.pids()["s1"] == second  # already running: no second copy
    assert (await driver.reboot("h0", "s1", {})).status == "ACTIVE"
    third = driver.pids()["s1"]
    assert third != second and running(third) and not running(second)
    # Exits the driver caused are results, not events: the first event is a later exit of
    # another server (not "none seen during a sleep").
    await driver.boot("h0", "s2", py("raise SystemExit(7)"))
    event = await asyncio.wait_for(driver.events.get(), 10)
    assert (event["server_id"], event["exit_code"]) == ("s2", 7)
    assert driver.events.empty()


async def test_sigkill_after_the_grace_period_for_a_process_ignoring_sigterm(
    state: Path,
) -> None:
    driver = make(state, stop_grace=0.5)
    await driver.open()
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    try:
        await driver.boot("h0", "s1", py(code))
        pid = driver.pids()["s1"]
        await until(log_has(driver.log_paths("s1")[0], "ready"))
        began = time.monotonic()
        stop = await asyncio.wait_for(driver.stop("h0", "s1", {}), 10)  # bounded, not hung
        took = time.monotonic() - began
        assert (stop.status, stop.exit_code) == ("STOPPED", 128 + signal.SIGKILL)
        assert took >= 0.5  # the grace period was given (no upper bound: a loaded machine)
        assert not running(pid)
    finally:
        await driver.close(stop_servers=True)


async def test_stop_takes_the_whole_process_group(driver: ProcessDriver) -> None:
    code = (
        "import subprocess, sys, time; "
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "open('child.pid', 'w').write(str(c.pid)); time.sleep(60)"
    )
    await driver.boot("h0", "s1", py(code))
    child_pid_file = driver.home("s1") / "child.pid"
    await until(lambda: child_pid_file.exists() and child_pid_file.read_text(), what="child")
    child = int(child_pid_file.read_text())
    assert running(child)
    await driver.stop("h0", "s1", {})
    await until(lambda: not running(child), what="the grandchild to go")


async def test_an_exit_takes_what_the_process_left_behind(driver: ProcessDriver) -> None:
    code = (
        "import subprocess, sys; "
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "open('child.pid', 'w').write(str(c.pid)); sys.exit(0)"
    )
    await driver.boot("h0", "s1", py(code))
    event = await asyncio.wait_for(driver.events.get(), 10)
    assert event["exit_code"] == 0
    child = int((driver.home("s1") / "child.pid").read_text())
    await until(lambda: not running(child), what="the orphan to go")


async def test_delete_stops_and_keeps_the_logs(driver: ProcessDriver, state: Path) -> None:
    await driver.boot("h0", "s1", py(SLEEPER))
    pid = driver.pids()["s1"]
    stdout, _ = driver.log_paths("s1")
    await until(log_has(stdout, "up"))
    assert (await driver.delete("h0", "s1", {})).status == "DELETED"
    assert not running(pid)
    assert driver.status("s1") is None
    assert driver.used("h0") == {"vcpus": 0, "ram_mb": 0, "disk_gb": 0}
    assert "up" in stdout.read_text()
    assert not (state / "s1" / "server.json").exists()
    assert not driver.home("s1").exists()  # its files go with it; the logs are the agent's
    assert (await driver.delete("h0", "s1", {})).status == "DELETED"
    assert (await driver.delete("h0", "never", {})).status == "DELETED"


async def test_bad_process_specs_are_clear_errors(driver: ProcessDriver) -> None:
    with pytest.raises(DriverError, match=r"has no metadata\.process"):
        await driver.boot("h0", "s1", {"vcpus": 1, "metadata": {}})
    with pytest.raises(DriverError, match="command must be a non-empty list of strings"):
        await driver.boot("h0", "s1", {"metadata": {"process": {"command": "sleep 5"}}})
    with pytest.raises(DriverError, match="cannot start server s1: '/no/such/program'"):
        await driver.boot("h0", "s1", {"metadata": {"process": {"command": ["/no/such/program"]}}})
    with pytest.raises(DriverError, match="working directory /no/such/dir: No such file"):
        await driver.boot("h0", "s1", py(SLEEPER, cwd="/no/such/dir"))
    with pytest.raises(DriverError, match="cannot name a directory"):
        await driver.boot("h0", "../escape", py(SLEEPER))
    with pytest.raises(DriverError, match="is not on h0; nothing to stop"):
        await driver.stop("h0", "s1", {})
    assert driver.used("h0") == {"vcpus": 0, "ram_mb": 0, "disk_gb": 0}  # failures hold nothing
    assert driver.status("s1") is None


async def test_capacity_is_accounted(state: Path) -> None:
    driver = make(state, host=host(vcpus=1))
    await driver.open()
    try:
        await driver.boot("h0", "s1", py(SLEEPER))
        with pytest.raises(DriverError, match="insufficient capacity on h0: need vcpus=1"):
            await driver.boot("h0", "s2", py(SLEEPER))
        assert set(driver.pids()) == {"s1"}
    finally:
        await driver.close(stop_servers=True)


async def test_close_stops_every_server_and_says_so(state: Path) -> None:
    driver = make(state, stop_grace=2.0)
    await driver.open()
    await asyncio.gather(*(driver.boot("h0", f"s{i}", py(SLEEPER)) for i in range(3)))
    pids = list(driver.pids().values())
    assert len(pids) == 3 and all(running(p) for p in pids)
    await asyncio.wait_for(driver.close(stop_servers=True), 15)
    assert not [p for p in pids if running(p)]
    events = [driver.events.get_nowait() for _ in range(3)]
    assert {e["server_id"] for e in events} == {"s0", "s1", "s2"}
    assert all(e["status"] == "STOPPED" and "agent stopped" in e["message"] for e in events)


async def test_a_new_agent_adopts_servers_left_running(state: Path) -> None:
    first = make(state, stop_grace=2.0)
    await first.open()
    await first.boot("h0", "kept", py(SLEEPER))
    await first.boot("h0", "ended", py("print('bye')"))
    await asyncio.wait_for(first.events.get(), 10)  # "ended" exited
    pid = first.pids()["kept"]
    await first.close(stop_servers=False)
    assert running(pid)
    second = make(state, stop_grace=2.0)
    try:
        await second.open()
        assert second.status("kept") == "ACTIVE"
        assert second.status("ended") == "STOPPED"
        assert second.used("h0")["vcpus"] == 2
        assert (await second.boot("h0", "kept", py(SLEEPER))).status == "ACTIVE"
        assert second.pids() == {"kept": pid}  # no second copy
        assert second.events.empty()
        stop = await asyncio.wait_for(second.stop("h0", "kept", {}), 10)
        assert stop.status == "STOPPED"
        await until(lambda: not running(pid), what="the adopted process to stop")
    finally:
        await second.close(stop_servers=True)
        if running(pid):
            os.killpg(pid, signal.SIGKILL)


async def test_a_server_found_stopped_at_start_is_announced(state: Path) -> None:
    first = make(state)
    await first.open()
    await first.boot("h0", "s1", py(SLEEPER))
    pid = first.pids()["s1"]
    await first.close(stop_servers=False)
    os.killpg(pid, signal.SIGKILL)  # it dies while no agent watches
    await until(lambda: not running(pid))
    second = make(state)
    await second.open()
    event = second.events.get_nowait()
    assert event["server_id"] == "s1" and event["status"] == "STOPPED"
    assert "found stopped" in event["message"]
    assert (await second.start("h0", "s1", {})).status == "ACTIVE"  # from its saved spec
    await second.close(stop_servers=True)
