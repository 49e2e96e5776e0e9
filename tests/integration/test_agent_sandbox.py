"""Process servers are confined: each is a user of its own with a private home, held to
its flavor, and out of reach of the agent's state, the zone's secrets and each other.

Every attack here is one a server made when servers ran as the agent's user (root).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from skyfed.app import build_zone
from skyfed.compute.agent.driver import DriverError
from skyfed.compute.agent.process_driver import ProcessDriver
from skyfed.compute.agent.sandbox import Confinement, SandboxOptions
from skyfed.identity.vault import Vault
from skyfed.settings import Settings
from tests.sandboxed import (
    PROCESS_SERVERS_GROUP,
    ROOT,
    SLEEPER,
    host,
    needs_root,
    passable_dir,
    server_python,
)
from tests.waiting import running, until

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(not ROOT, reason=needs_root),
    pytest.mark.xdist_group(PROCESS_SERVERS_GROUP),
]


def shell(script: str, **flavor: int) -> dict[str, Any]:
    return server(["/bin/sh", "-c", script], **flavor)


def py(code: str, **flavor: int) -> dict[str, Any]:
    return server([server_python(), "-c", code], **flavor)


def server(command: list[str], *, cwd: str | None = None, **flavor: int) -> dict[str, Any]:
    process: dict[str, Any] = {"command": command}
    if cwd is not None:
        process["cwd"] = cwd
    return {
        "name": "srv",
        **{"vcpus": 1, "ram_mb": 512, "disk_gb": 1, **flavor},
        "metadata": {"process": process},
    }


async def exited(driver: ProcessDriver, server_id: str) -> tuple[int | None, str, str]:
    """(exit code, stdout, stderr) once the server's process has ended on its own."""
    event = await asyncio.wait_for(driver.events.get(), 30)
    assert event["server_id"] == server_id, event
    out, err = driver.log_paths(server_id)
    return event["exit_code"], out.read_text(), err.read_text()


@pytest.fixture
def base() -> Iterator[Path]:
    with passable_dir() as path:
        yield path


class ClosedOnce(ProcessDriver):
    """Closed by the test or at its end, not twice: a closed driver no longer watches its
    servers, so stopping one again would wait out the grace and the SIGKILL bound."""

    closed = False

    async def close(self, *, stop_servers: bool) -> None:
        if not self.closed:
            self.closed = True
            await super().close(stop_servers=stop_servers)


@pytest.fixture
async def drivers(base: Path) -> AsyncIterator[Callable[..., Any]]:
    """`await drivers(**options)`: opened drivers on `base/state`, all closed at the end."""
    made: list[ProcessDriver] = []

    async def make(**options: Any) -> ProcessDriver:
        homes = options.pop("homes", None)
        d = ClosedOnce(
            [host()], base / "state", stop_grace=2.0, sandbox=SandboxOptions(**options), homes=homes
        )
        await d.open()
        made.append(d)
        return d

    try:
        yield make
    finally:
        pids = [pid for d in made for pid in d.pids().values()]
        for d in made:
            await d.close(stop_servers=True)
        for pid in pids:
            if running(pid):
                os.killpg(pid, signal.SIGKILL)


async def test_each_server_runs_as_a_user_of_its_own_never_root(
    drivers: Callable[..., Any],
) -> None:
    driver = await drivers()
    report = "id -u; id -g; id -G; grep -E '^(NoNewPrivs|CapEff)' /proc/self/status; umask"
    await driver.boot("h0", "a", shell(report))
    await driver.boot("h0", "b", shell(report))
    seen = {}
    for _ in range(2):
        event = await asyncio.wait_for(driver.events.get(), 10)
        out = driver.log_paths(event["server_id"])[0].read_text().split("\n")
        seen[event["server_id"]] = out
    uid_a, uid_b = int(seen["a"][0]), int(seen["b"][0])
    assert 0 not in (uid_a, uid_b) and uid_a != uid_b
    assert (uid_a, uid_b) == (driver.uid_of("a"), driver.uid_of("b"))
    for uid, out in ((uid_a, seen["a"]), (uid_b, seen["b"])):
        assert out[1] == str(uid)  # its own group too
        assert out[2] == str(uid)  # and no other: nothing of root's supplementary groups
        assert out[3].split() == ["CapEff:", "0000000000000000"]
        assert out[4].split() == ["NoNewPrivs:", "1"]  # setuid programs give it nothing
        assert out[5] == "0077"


async def test_a_server_cannot_read_or_change_the_agents_state(
    drivers: Callable[..., Any], base: Path
) -> None:
    driver = await drivers()
    state = base / "state"
    await driver.boot("h0", "other", py(SLEEPER))
    attempts = [
        f"cat {state}/_uids.json",
        f"cat {state}/other/server.json",
        f"cat {state}/other/stdout.log",
        f"ls {state}",
        f"echo forged >> {state}/other/server.json",
        f"echo forged >> {state}/spy/stdout.log",
        f"mkdir {state}/planted",
    ]
    script = "; ".join(f"{a} >/dev/null 2>&1 && echo 'did: {a}'" for a in attempts)
    await driver.boot("h0", "spy", shell(script + "; echo done"))
    code, out, _ = await exited(driver, "spy")
    assert (code, out.strip()) == (0, "done"), out  # every attempt failed
    assert not (state / "planted").exists()
    assert "forged" not in (state / "other" / "server.json").read_text()
    for path in (state / "_uids.json", state / "spy" / "server.json", state / "spy" / "stdout.log"):
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert (state / "spy").stat().st_mode & 0o777 == 0o700
    assert state.stat().st_mode & 0o777 == 0o711  # passed through to the homes, not listable


@pytest.mark.parametrize("made_by", ["app", "mkdir-0755"])
async def test_a_server_cannot_read_a_zones_secret_key(
    drivers: Callable[..., Any], base: Path, made_by: str
) -> None:
    settings = Settings(name="z1", state_dir=base / "zone")
    if made_by == "app":  # as a zone makes its state directory
        build_zone(settings)
    else:  # a directory anyone may list: the key file alone (0600) holds
        settings.state_dir.mkdir(mode=0o755)
        Vault.from_key_file(settings.state_dir / "secret.key")
    key = settings.state_dir / "secret.key"
    assert key.stat().st_mode & 0o777 == 0o600
    driver = await drivers()
    await driver.boot("h0", "spy", shell(f"cat {key}"))
    code, out, err = await exited(driver, "spy")
    assert code != 0 and out == "" and "Permission denied" in err


async def test_a_server_cannot_reach_another_servers_home(drivers: Callable[..., Any]) -> None:
    driver = await drivers()
    await driver.boot("h0", "victim", shell("echo s3cret > note; chmod 600 note; sleep 60"))
    note = driver.home("victim") / "note"
    await until(lambda: note.exists() and note.read_text(), what="the victim's note")
    assert note.stat().st_uid == driver.uid_of("victim")
    script = f"cat {note}; ls {driver.homes}; echo x > {driver.home('victim')}/planted"
    await driver.boot("h0", "spy", shell(script))
    code, out, err = await exited(driver, "spy")
    assert code != 0 and "s3cret" not in out
    assert err.count("Permission denied") == 3, err
    assert not (driver.home("victim") / "planted").exists()
    assert driver.home("victim").stat().st_mode & 0o777 == 0o700


async def test_a_working_directory_the_server_cannot_enter_is_refused(
    drivers: Callable[..., Any], base: Path
) -> None:
    driver = await drivers()
    closed = base / "closed"
    (closed / "open").mkdir(parents=True)
    closed.chmod(0o700)  # root's: entered as root, "open" would be reachable from inside
    (closed / "open").chmod(0o777)
    with pytest.raises(DriverError, match=r"entering its working directory .*: Permission denied"):
        await driver.boot("h0", "s1", shell("pwd", cwd=str(closed / "open")))
    assert driver.status("s1") is None and driver.pids() == {}
    assert driver.used("h0") == {"vcpus": 0, "ram_mb": 0, "disk_gb": 0}
    assert driver.uids.get("s1") is None and not driver.home("s1").exists()
    # One it may enter works; a relative cwd is taken from its home.
    await driver.boot("h0", "s2", shell("pwd", cwd="/"))
    assert (await exited(driver, "s2"))[1] == "/\n"
    await driver.boot("h0", "s3", shell("pwd; ls", cwd=".."))
    code, out, err = await exited(driver, "s3")
    assert out == f"{driver.homes}\n"  # in (relative to its home), but not listing:
    assert code != 0 and "Permission denied" in err


async def test_a_boot_refused_for_a_home_it_does_not_own_leaves_that_home_alone(
    drivers: Callable[..., Any],
) -> None:
    """A home left under another uid refuses the boot, and the refusal removes nothing."""
    driver = await drivers()
    home = driver.home("s1")
    home.mkdir(parents=True)
    (home / "kept").write_text("someone's data")
    os.chown(home, 123456, 123456)
    with pytest.raises(DriverError, match="does not belong to its uid"):
        await driver.boot("h0", "s1", py(SLEEPER))
    assert (home / "kept").read_text() == "someone's data"
    assert driver.uids.get("s1") is None  # the uid this attempt took is free again
    assert driver.status("s1") is None and driver.used("h0") == {
        "vcpus": 0,
        "ram_mb": 0,
        "disk_gb": 0,
    }


@pytest.mark.parametrize("cgroups", [True, False], ids=["cgroups", "rlimits"])
async def test_memory_is_held_to_the_flavor(drivers: Callable[..., Any], cgroups: bool) -> None:
    driver = await drivers(cgroups=cgroups)
    if cgroups and "memory" not in driver.cgroups.controllers:
        pytest.skip("no memory cgroup this agent can make here")
    grab = "b = bytearray({mb} * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); print('got it')"
    await driver.boot("h0", "greedy", py(grab.format(mb=400), ram_mb=128))
    code, out, _ = await exited(driver, "greedy")
    assert code != 0 and "got it" not in out
    await driver.boot("h0", "modest", py(grab.format(mb=32), ram_mb=128))
    code, out, _ = await exited(driver, "modest")
    assert (code, out) == (0, "got it\n")


async def test_limits_follow_the_flavor_and_the_agents_options(
    drivers: Callable[..., Any],
) -> None:
    driver = await drivers(max_processes=40, max_open_files=64)
    await driver.boot("h0", "s1", py(SLEEPER, vcpus=2, ram_mb=256, disk_gb=3))
    pid = driver.pids()["s1"]
    limits = {
        line[:26].strip(): line[26:].split()[:2]
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]
    }
    assert limits["Max open files"] == ["64", "64"]
    assert limits["Max processes"] == ["40", "40"]
    assert limits["Max file size"] == [str(3 * 1024**3)] * 2
    assert limits["Max core file size"] == ["0", "0"]
    groups = driver.servers["s1"].group
    if "cpu" in driver.cgroups.controllers:
        assert groups is not None
        quota = [d / "cpu.cfs_quota_us" for d in groups.dirs if (d / "cpu.cfs_quota_us").exists()]
        quota += [d / "cpu.max" for d in groups.dirs if (d / "cpu.max").exists()]
        assert quota[0].read_text().split()[0] == "200000"  # 2 CPUs of 100 ms each 100 ms
    if "memory" in driver.cgroups.controllers:
        assert groups is not None
        assert str(pid) in " ".join(p.read_text() for p in map(Path, groups.procs_files))
        assert limits["Max address space"] == ["unlimited", "unlimited"]  # the cgroup counts
    else:
        assert limits["Max address space"] == [str(256 * 1024 * 1024)] * 2
    await driver.stop("h0", "s1", {})
    assert driver.servers["s1"].group is None  # removed with its last process
    assert groups is None or not any(d.exists() for d in groups.dirs)


async def test_a_server_cannot_start_more_processes_than_allowed(
    drivers: Callable[..., Any],
) -> None:
    driver = await drivers(max_processes=8)
    fork = (
        "import subprocess, sys\n"
        "kids = []\n"
        "try:\n"
        "    for _ in range(30):\n"
        "        kids.append(subprocess.Popen(['sleep', '30']))\n"
        "except OSError as exc:\n"
        "    print('refused after', len(kids), exc.errno, flush=True)\n"
        "    sys.exit(7)\n"
    )
    await driver.boot("h0", "bomb", py(fork))
    code, out, _ = await exited(driver, "bomb")
    assert code == 7 and out.startswith("refused after"), out
    assert int(out.split()[2]) < 8


async def test_what_a_server_started_outside_its_group_goes_with_it(
    drivers: Callable[..., Any],
) -> None:
    driver = await drivers()
    # A daemon in a session of its own escapes a process group's signal.
    await driver.boot("h0", "s1", shell("setsid sleep 60 & echo $! > daemon.pid; sleep 60"))
    pid_file = driver.home("s1") / "daemon.pid"
    daemon = int(await until(lambda: pid_file.exists() and pid_file.read_text().strip()))
    leader = driver.pids()["s1"]
    await until(lambda: running(daemon) and os.getpgid(daemon) != leader, what="the daemon")
    await driver.stop("h0", "s1", {})
    await until(lambda: not running(daemon), 5, "the daemon to go with its server")


async def test_uids_survive_an_agent_restart_and_are_freed_on_delete(
    drivers: Callable[..., Any], base: Path
) -> None:
    first = await drivers()
    await first.boot("h0", "kept", py(SLEEPER))
    uid = first.uid_of("kept")
    pid = first.pids()["kept"]
    await first.close(stop_servers=False)
    second = await drivers()
    assert second.status("kept") == "ACTIVE" and second.pids() == {"kept": pid}  # adopted
    assert second.uid_of("kept") == uid
    await second.boot("h0", "new", py(SLEEPER))
    assert second.uid_of("new") not in (uid, 0, None)
    ledger = json.loads((base / "state" / "_uids.json").read_text())["uids"]
    assert ledger == {"kept": uid, "new": second.uid_of("new")}
    await second.delete("h0", "kept", {})
    assert not running(pid) and not second.home("kept").exists()
    assert json.loads((base / "state" / "_uids.json").read_text())["uids"] == {
        "new": second.uid_of("new")
    }
    await second.boot("h0", "later", py(SLEEPER))
    assert second.uid_of("later") != uid  # a freed uid comes back last


async def test_a_process_running_as_another_user_is_stopped_not_adopted(
    drivers: Callable[..., Any], base: Path
) -> None:
    # What an agent before this change left: a server running as root.
    state = base / "state"
    (state / "old").mkdir(parents=True)
    legacy = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        stat = Path(f"/proc/{legacy.pid}/stat").read_text()
        start_time = int(stat[stat.rfind(")") + 2 :].split()[19])
        record = {
            "host": "h0",
            "name": "old",
            "need": {"vcpus": 1, "ram_mb": 64, "disk_gb": 0},
            "process": {"command": ["sleep", "60"], "env": {}, "cwd": None},
            "status": "ACTIVE",
            "exit_code": None,
            "pid": legacy.pid,
            "start_time": start_time,
        }
        (state / "old" / "server.json").write_text(json.dumps(record))
        driver = await drivers()
        assert legacy.wait(10) == -signal.SIGKILL
        assert driver.status("old") == "STOPPED"
        event = driver.events.get_nowait()
        assert event["server_id"] == "old" and "another user" in event["message"]
        assert (await driver.start("h0", "old", {})).status == "ACTIVE"
        assert psutil.Process(driver.pids()["old"]).uids().real == driver.uid_of("old") != 0
    finally:
        if legacy.poll() is None:
            legacy.kill()
            legacy.wait()


async def test_the_child_refuses_to_run_as_root(base: Path) -> None:
    """The last check between fork and exec, whatever the agent got wrong before it."""
    unswitched = Confinement(uid=None, gid=None, cwd="/", tmp=str(base / "tmp"), rlimits=())
    report, report_w = os.pipe()
    try:
        with pytest.raises(subprocess.SubprocessError):
            subprocess.Popen(["id", "-u"], preexec_fn=unswitched.preexec(report_w))
        told = os.read(report, 1024).decode()
    finally:
        os.close(report)
        os.close(report_w)
    assert told == "refusing to run as root: a server never runs as root"


async def test_homes_elsewhere_leave_the_state_directory_closed(
    drivers: Callable[..., Any], base: Path
) -> None:
    driver = await drivers(homes=base / "homes")
    await driver.boot("h0", "s1", shell("echo $HOME"))
    _, out, _ = await exited(driver, "s1")
    assert out == f"{base / 'homes' / 's1'}\n"
    assert (base / "state").stat().st_mode & 0o777 == 0o700


async def test_an_agent_refuses_homes_its_servers_could_not_reach(base: Path) -> None:
    closed = base / "closed"
    closed.mkdir(mode=0o700)
    driver = ProcessDriver([host()], closed / "state")
    with pytest.raises(DriverError, match=r"lets no other user through \(it needs o\+x\)"):
        await driver.open()
