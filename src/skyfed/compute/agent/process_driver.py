"""The `process` driver: each server is a real local process, confined to what is its own.

A server's `metadata.process` says what to run: `{"command": [...], "env":
{...}, "cwd": "..."}`.

Who it runs as (sandbox.py, uid_ledger.py, cgroups.py). An agent running as
root runs each server as a user of its own: a uid from `--server-uid-base` /
`--server-uid-count` (gid the same number, no supplementary groups,
no_new_privs), kept in `_uids.json` while the server exists (so a restarted
agent gives it the same one) and freed when it is deleted; never uid 0. The
server's home `<homes>/<server id>` (0700, its own; `<state>/_homes` unless
`--server-homes` says otherwise) is its HOME and default working directory,
`home/tmp` its TMPDIR; a relative `cwd` is taken from the home, and the working
directory is entered as the server, so one it cannot reach is a boot error.
Memory, CPU and the number of processes are held to its flavor by cgroups
where the host lets the agent make them, else by rlimits (memory as address
space; CPU then has no limit); open files, file size (disk_gb) and core files
always by rlimits. An agent that is not root cannot switch users and refuses
to start, unless `--insecure-shared-user`: then servers run as its own user.

What is the agent's stays out of their reach: the state directory is 0711
(servers pass through it to their homes, and cannot list it; 0700 when the
homes are elsewhere), and everything else in it is 0700 directories and 0600
files: `_uids.json`, and per server `<state>/<server id>/` with `server.json`
(what the driver knows of it, so an agent that restarts finds its servers
again and adopts the processes still running as their users) and the
process's stdout and stderr (`stdout.log`, `stderr.log`, opened by the agent
before the fork, appended across starts, kept after delete). A process found
running as another user than the one its server has now (started by an
earlier agent before servers had users of their own) is stopped, not adopted.

Each process leads its own process group, and the group is what gets signalled:
`stop` is SIGTERM, then SIGKILL after `stop_grace` seconds; `start` spawns the
command again; `reboot` is both; `delete` is a stop that also removes the
server's home and frees its uid, and keeps the logs. When the process ends,
whatever it left behind is killed too (its group, its cgroups, and every
process of its uid), so a server leaves no orphans. A process that exits on its
own is announced as an event `{"status": "STOPPED", "exit_code": N}` (128 + the
signal number when a signal killed it, as a shell reports it).

Servers get a small environment of their own, never the agent's (which holds its
password): PATH, LANG, LC_ALL, TZ when the agent has them, HOME, TMPDIR,
SKYFED_SERVER_ID, SKYFED_SERVER_NAME, then the server's `env`.

On `close(stop_servers=True)` (the agent's `--stop-servers-on-exit`, the
default) every running server is stopped; with False they keep running, as
guests do when a hypervisor's agent restarts, and the next agent adopts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyfed.compute.agent.cgroups import Cgroups, ServerGroup
from skyfed.compute.agent.driver import (
    DriverError,
    KeyedLocks,
    Ledger,
    Outcome,
    ServerEvent,
    need_of,
    publish,
)
from skyfed.compute.agent.sandbox import (
    Confinement,
    SandboxOptions,
    blocked_ancestor,
    capped,
    kill_uid,
    live_uids,
    open_private,
    private_dir,
    proc_uid,
    rlimits_for,
    server_home,
    user_mode,
)
from skyfed.compute.agent.sim import SimHost
from skyfed.compute.agent.uid_ledger import UidLedger, check_range
from skyfed.compute.process_spec import ProcessSpec, ProcessSpecError
from skyfed.identity.secret_files import write_private

log = logging.getLogger(__name__)

# A server id names its directories; '_' cannot start one, so the agent's own names do.
SERVER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ")
POLL_INTERVAL = 0.1  # where pidfds are unavailable, or for adopted processes without one
LOG_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT


@dataclass(slots=True)
class ProcServer:
    server_id: str
    host: str
    name: str
    spec: ProcessSpec
    status: str = "STOPPED"  # ACTIVE while its process runs
    exit_code: int | None = None
    popen: subprocess.Popen[bytes] | None = None
    pid: int | None = None
    start_time: int | None = None  # the kernel's start time of pid: a reused pid is not ours
    uid: int | None = None  # the user its process runs as
    group: ServerGroup | None = None  # its cgroups while it runs
    stopping: bool = False  # an exit we asked for is not an event
    watcher: asyncio.Task[None] | None = None
    exited: asyncio.Event = field(default_factory=asyncio.Event)


def exit_code_of(returncode: int | None) -> int | None:
    if returncode is None or returncode >= 0:
        return returncode
    return 128 - returncode


def describe_exit(exit_code: int | None) -> str:
    if exit_code is None:
        return "process ended (exit code unknown: it was adopted from an earlier agent)"
    if exit_code > 128:
        try:
            return f"process killed by {signal.Signals(exit_code - 128).name}"
        except ValueError:
            pass
    return f"process exited with code {exit_code}"


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time) of a live process from /proc, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[0], int(fields[19])


def _alive(pid: int, start_time: int | None) -> bool:
    stat = _proc_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    return start_time is None or stat[1] == start_time


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class ProcessDriver:
    name = "process"

    def __init__(
        self,
        hosts: Sequence[SimHost],
        state_dir: Path,
        *,
        stop_grace: float = 10.0,
        sandbox: SandboxOptions | None = None,
        homes: Path | None = None,
    ) -> None:
        if not hosts:
            raise ValueError("the process driver needs at least one host in its spec")
        self._hosts = list(hosts)
        self.state_dir = state_dir.resolve()
        self.stop_grace = stop_grace
        self.sandbox = sandbox or SandboxOptions()
        self.sandbox.check()
        # Decided before anything runs: a non-root agent without the operator's consent stops here.
        mode = user_mode(os.geteuid(), insecure_shared_user=self.sandbox.insecure_shared_user)
        self.own_users = mode == "own-users"
        if self.own_users:
            check_range(self.sandbox.uid_base, self.sandbox.uid_count)
        self.homes = (homes or self.state_dir / "_homes").resolve()
        self.uids = UidLedger(
            self.state_dir / "_uids.json", self.sandbox.uid_base, self.sandbox.uid_count
        )
        self.cgroups = Cgroups({})
        self.ledger = Ledger(self._hosts)
        self.servers: dict[str, ProcServer] = {}
        self.events: asyncio.Queue[ServerEvent] = asyncio.Queue()
        self._locks = KeyedLocks()
        self._opened = False

    @property
    def hosts(self) -> Sequence[SimHost]:
        return self._hosts

    # -- state on disk -----------------------------------------------------------

    def _dir(self, server_id: str) -> Path:
        if not SERVER_ID.match(server_id):
            raise DriverError(f"server id {server_id!r} cannot name a directory")
        return self.state_dir / server_id

    def log_paths(self, server_id: str) -> tuple[Path, Path]:
        d = self._dir(server_id)
        return d / "stdout.log", d / "stderr.log"

    def home(self, server_id: str) -> Path:
        """The server's home (its own user's, 0700): HOME, TMPDIR's parent, default cwd."""
        self._dir(server_id)
        return self.homes / server_id

    def _save(self, rec: ProcServer) -> None:
        path = private_dir(self._dir(rec.server_id)) / "server.json"
        body = {
            "host": rec.host,
            "name": rec.name,
            "need": self.ledger.claimed(rec.server_id),
            "process": rec.spec.as_json(),
            "status": rec.status,
            "exit_code": rec.exit_code,
            "pid": rec.pid,
            "start_time": rec.start_time,
            "uid": rec.uid,
            "cgroups": [str(d) for d in rec.group.dirs] if rec.group else [],
            "memory_cgroup": rec.group.memory_version if rec.group else None,
        }
        write_private(path, json.dumps(body))

    async def open(self) -> None:
        """Make the state directory private, find what the host offers, and find the
        servers an earlier agent left (adopting live ones that run as their own users)."""
        if self._opened:
            return
        self._opened = True
        homes_inside = self.homes.is_relative_to(self.state_dir)
        try:
            private_dir(self.state_dir, 0o711 if homes_inside else 0o700)
            private_dir(self.homes, 0o711)
        except OSError as exc:
            raise DriverError(f"cannot use state directory {self.state_dir}: {exc}") from exc
        if self.own_users:
            blocked = blocked_ancestor(self.homes)
            if blocked is not None:
                raise DriverError(
                    f"servers run as users of their own and could not reach their homes in "
                    f"{self.homes}: {blocked} lets no other user through (it needs o+x); "
                    "choose a --state-dir (or --server-homes) below directories others may "
                    "pass through"
                )
            self.uids.load()
        else:
            log.warning(
                "servers run as this agent's own user (--insecure-shared-user): they can "
                "read and change the agent's state and each other's files",
                extra={"uid": os.getuid(), "state_dir": str(self.state_dir)},
            )
        if self.sandbox.cgroups:
            tag = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:12]
            self.cgroups, unusable = Cgroups.probe(tag, parent=self.sandbox.cgroup_parent)
            log.info(
                "cgroups for servers",
                extra={"controllers": self.cgroups.controllers, "not_used": unusable},
            )
        await self._load_servers()

    def _expected_uid(self, server_id: str) -> int | None:
        return self.uids.get(server_id) if self.own_users else os.getuid()

    async def _load_servers(self) -> None:
        strays = live_uids() if self.own_users else set()
        for path in sorted(self.state_dir.glob("*/server.json")):
            server_id = path.parent.name
            try:
                body = json.loads(path.read_text())
                spec = ProcessSpec.parse(server_id, {"metadata": {"process": body["process"]}})
                host = str(body["host"])
                self.ledger.claim(host, server_id, need_of(body.get("need") or {}))
            except (OSError, ValueError, KeyError, TypeError, DriverError) as exc:
                log.warning(
                    "ignoring a server left in the state directory",
                    extra={"server_id": server_id, "error": str(exc)},
                )
                continue
            rec = ProcServer(server_id, host, str(body.get("name", "")), spec)
            rec.exit_code = body.get("exit_code")
            saved = body.get("cgroups") or []
            if saved:
                rec.group = ServerGroup(tuple(Path(d) for d in saved), body.get("memory_cgroup"))
            uid = self._expected_uid(server_id)
            pid, start_time = body.get("pid"), body.get("start_time")
            self.servers[server_id] = rec
            live = isinstance(pid, int) and isinstance(start_time, int) and _alive(pid, start_time)
            if live and uid is not None and body.get("uid") == uid and proc_uid(pid) == uid:
                rec.pid, rec.start_time, rec.uid, rec.status = pid, start_time, uid, "ACTIVE"
                rec.watcher = asyncio.create_task(self._watch(rec))
                log.info("adopted a running server", extra={"server_id": server_id, "pid": pid})
                continue
            was, message = body.get("status"), "found stopped when the agent started"
            if live:
                assert isinstance(pid, int)
                _signal_group(pid, signal.SIGKILL)
                message = (
                    "stopped when the agent started: its process ran as another user than "
                    "its own; start it again to run it as its own user"
                )
                log.error(
                    "stopped a server running as another user",
                    extra={"server_id": server_id, "pid": pid, "uid": proc_uid(pid)},
                )
            rec.status, rec.pid = "STOPPED", None
            if uid is not None and uid in strays:
                await kill_uid(uid)  # what it left behind when it stopped unwatched
            await self._drop_group(rec)
            rec.exited.set()
            if was == "ACTIVE":
                self._save(rec)
                publish(self.events, server_id, "STOPPED", rec.exit_code, message)

    # -- processes ---------------------------------------------------------------

    def _env(self, rec: ProcServer, home: Path) -> dict[str, str]:
        env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        env["HOME"] = str(home)
        env["TMPDIR"] = str(home / "tmp")
        env["SKYFED_SERVER_ID"] = rec.server_id
        env["SKYFED_SERVER_NAME"] = rec.name
        env.update(rec.spec.env)
        return env

    def _user(self, server_id: str) -> tuple[int, int]:
        """(uid, gid) the server runs as; never root."""
        if self.own_users:
            uid = self.uids.allocate(server_id)
            gid = uid
        else:
            uid, gid = os.getuid(), os.getgid()
        if uid == 0 or gid == 0:
            raise DriverError(f"refusing to run server {server_id} as root")
        return uid, gid

    async def _spawn(self, rec: ProcServer) -> None:
        server_id = rec.server_id
        uid, gid = self._user(server_id)
        try:
            private_dir(self._dir(server_id))
            home = server_home(self.homes, server_id, uid, gid)
        except OSError as exc:
            raise DriverError(f"cannot prepare server {server_id}: {exc}") from exc
        need = self.ledger.claimed(server_id)
        group = None
        if self.cgroups.bases:
            try:
                group = self.cgroups.create(
                    server_id,
                    vcpus=need["vcpus"],
                    ram_mb=need["ram_mb"],
                    max_processes=self.sandbox.max_processes,
                )
            except OSError as exc:
                raise DriverError(f"cannot make server {server_id}'s cgroup: {exc}") from exc
        limits = rlimits_for(
            need,
            self.sandbox,
            memory_in_cgroup="memory" in self.cgroups.bases,
            own_user=self.own_users,
        )
        confinement = Confinement(
            uid=uid if self.own_users else None,
            gid=gid if self.own_users else None,
            cwd=str(home / rec.spec.cwd) if rec.spec.cwd else str(home),
            tmp=str(home / "tmp"),
            rlimits=capped(limits, can_raise=self.own_users),
            join=group.procs_files if group else (),
        )
        popen, reason = self._popen(rec, confinement, home)
        if popen is None:
            if group is not None:
                await group.remove()
            raise DriverError(f"cannot start server {server_id}: {reason}")
        log.info(
            "server process started",
            extra={"server_id": server_id, "pid": popen.pid, "uid": uid},
        )
        stat = _proc_stat(popen.pid)
        rec.popen, rec.pid, rec.uid, rec.group = popen, popen.pid, uid, group
        rec.start_time = stat[1] if stat else None
        rec.status, rec.exit_code, rec.stopping = "ACTIVE", None, False
        rec.exited = asyncio.Event()
        rec.watcher = asyncio.create_task(self._watch(rec))
        try:
            self._save(rec)
        except OSError as exc:  # the process runs; only its adoption by a later agent suffers
            log.warning("cannot record a server", extra={"server_id": server_id, "error": str(exc)})

    def _popen(
        self, rec: ProcServer, confinement: Confinement, home: Path
    ) -> tuple[subprocess.Popen[bytes] | None, str]:
        """The started process, or None and why not (its setup's own report, or the exec's)."""
        stdout, stderr = self.log_paths(rec.server_id)
        program = rec.spec.command[0]
        with contextlib.ExitStack() as fds:
            report, report_w = os.pipe()  # the child writes what failed in its setup here
            for fd in (report, report_w):
                fds.callback(os.close, fd)
            try:
                out = open_private(stdout, LOG_FLAGS)
                fds.callback(os.close, out)
                err = open_private(stderr, LOG_FLAGS)
                fds.callback(os.close, err)
                popen = subprocess.Popen(
                    rec.spec.command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    env=self._env(rec, home),
                    start_new_session=True,  # its own process group: signalled as a whole
                    close_fds=True,
                    preexec_fn=confinement.preexec(report_w),
                )
            except subprocess.SubprocessError:
                os.set_blocking(report, False)
                try:
                    told = os.read(report, 1024).decode(errors="replace")
                except OSError:
                    told = ""
                return None, told or "its setup between fork and exec failed"
            except OSError as exc:
                what = program if exc.filename in (None, program) else exc.filename
                return None, f"{what!r}: {exc.strerror or exc}"
        return popen, ""

    async def _wait_exit(self, rec: ProcServer) -> int | None:
        """Until the process ends; its exit code (None for an adopted process)."""
        assert rec.pid is not None
        popen = rec.popen

        def ended() -> bool:
            if popen is not None:
                return popen.poll() is not None
            return not _alive(rec.pid or 0, rec.start_time)

        fd = None
        with contextlib.suppress(OSError, AttributeError):
            fd = os.pidfd_open(rec.pid)
        if fd is None:
            while True:
                if ended():
                    break
                await asyncio.sleep(POLL_INTERVAL)
        else:
            loop = asyncio.get_running_loop()
            readable = loop.create_future()
            try:
                loop.add_reader(fd, lambda: readable.done() or readable.set_result(None))
                if not ended():
                    await readable
                while True:  # readable means gone; reaping can lag by a moment
                    if ended():
                        break
                    await asyncio.sleep(0.01)
            finally:
                loop.remove_reader(fd)
                os.close(fd)
        return exit_code_of(popen.returncode) if popen is not None else None

    async def _drop_group(self, rec: ProcServer) -> int:
        """Empty and remove the server's cgroups; how many OOM kills they saw."""
        group, rec.group = rec.group, None
        if group is None:
            return 0
        oom_kills = group.oom_kills()
        try:
            await group.kill()
            if not await group.remove():
                log.warning("a server's cgroup is still busy", extra={"server_id": rec.server_id})
        except OSError as exc:
            log.warning(
                "cannot remove a server's cgroup",
                extra={"server_id": rec.server_id, "error": str(exc)},
            )
        return oom_kills

    async def _watch(self, rec: ProcServer) -> None:
        exit_code = await self._wait_exit(rec)
        if rec.pid is not None:
            _signal_group(rec.pid, signal.SIGKILL)  # whatever it left behind goes too
        if self.own_users and rec.uid is not None:
            await kill_uid(rec.uid)  # and what left its group: the uid is this server's alone
        oom_kills = await self._drop_group(rec)
        rec.status, rec.exit_code, rec.popen = "STOPPED", exit_code, None
        rec.exited.set()
        with contextlib.suppress(OSError, DriverError):
            self._save(rec)
        if not rec.stopping:
            message = describe_exit(exit_code)
            if oom_kills and exit_code == 128 + signal.SIGKILL:
                ram_mb = self.ledger.claimed(rec.server_id)["ram_mb"]
                message = f"process killed: out of memory (its flavor has ram_mb {ram_mb})"
            log.info(
                "server process exited",
                extra={"server_id": rec.server_id, "exit_code": exit_code},
            )
            publish(self.events, rec.server_id, "STOPPED", exit_code, message)

    async def _stop(self, rec: ProcServer) -> Outcome:
        if rec.status != "ACTIVE" or rec.pid is None:
            return Outcome("STOPPED", rec.exit_code)
        rec.stopping = True
        _signal_group(rec.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(rec.exited.wait(), timeout=self.stop_grace)
        except TimeoutError:
            _signal_group(rec.pid, signal.SIGKILL)
            try:
                await asyncio.wait_for(rec.exited.wait(), timeout=10.0)
            except TimeoutError as exc:
                raise DriverError(
                    f"server {rec.server_id}: process {rec.pid} survived SIGKILL for 10 s "
                    "(stuck in the kernel?); try again"
                ) from exc
        return Outcome("STOPPED", rec.exit_code)

    async def _forget(self, server_id: str) -> None:
        """After its last process: remove the server's home and free its uid.

        A home that cannot be removed keeps its uid taken: a new server with that
        uid would own what is left.
        """
        home = self.home(server_id)
        uid = self.uids.get(server_id) if self.own_users else None
        if uid is not None:
            await kill_uid(uid)
        try:
            if home.is_symlink() or home.exists():
                await asyncio.to_thread(shutil.rmtree, home)
        except OSError as exc:
            log.error(
                "cannot remove a deleted server's home; its uid stays taken",
                extra={"server_id": server_id, "home": str(home), "error": str(exc)},
            )
            return
        if uid is not None:
            self.uids.release(server_id)

    # -- actions -----------------------------------------------------------------

    def _held(self, host: str, server_id: str) -> ProcServer | None:
        rec = self.servers.get(server_id)
        if rec is not None and rec.host != host:
            raise DriverError(f"server {server_id} runs on {rec.host}, not {host}")
        return rec

    async def _create(self, host: str, server_id: str, server: Mapping[str, Any]) -> ProcServer:
        try:
            spec = ProcessSpec.parse(server_id, server)
        except ProcessSpecError as exc:
            raise DriverError(str(exc)) from exc
        self._dir(server_id)  # a bad id fails before anything is claimed
        home = self.home(server_id)
        home_found = home.is_symlink() or home.exists()
        uid_held = self.own_users and self.uids.get(server_id) is not None
        self.ledger.claim(host, server_id, need_of(server))
        rec = ProcServer(server_id, host, str(server.get("name", "")), spec)
        try:
            await self._spawn(rec)
        except BaseException:
            self.ledger.release(server_id)
            if not home_found:
                with contextlib.suppress(OSError, DriverError):
                    await self._forget(server_id)  # it never ran: no home, no uid kept
            elif self.own_users and not uid_held:
                self.uids.release(server_id)  # what was there is left as it was
            raise
        self.servers[server_id] = rec
        return rec

    async def boot(self, host: str, server_id: str, server: Mapping[str, Any]) -> Outcome:
        async with self._locks.hold(server_id):
            rec = self._held(host, server_id)
            if rec is not None:  # booted already: no second copy
                return Outcome(rec.status, rec.exit_code)
            await self._create(host, server_id, server)
            return Outcome("ACTIVE")

    async def stop(self, host: str, server_id: str, server: Mapping[str, Any]) -> Outcome:
        async with self._locks.hold(server_id):
            rec = self._held(host, server_id)
            if rec is None:
                raise DriverError(f"server {server_id} is not on {host}; nothing to stop")
            return await self._stop(rec)

    async def start(self, host: str, server_id: str, server: Mapping[str, Any]) -> Outcome:
        async with self._locks.hold(server_id):
            rec = self._held(host, server_id)
            if rec is None:  # lost (a wiped state directory): the command says what to run
                await self._create(host, server_id, server)
                return Outcome("ACTIVE")
            if rec.status != "ACTIVE":
                await self._spawn(rec)
            return Outcome("ACTIVE")

    async def reboot(self, host: str, server_id: str, server: Mapping[str, Any]) -> Outcome:
        async with self._locks.hold(server_id):
            rec = self._held(host, server_id)
            if rec is None:
                await self._create(host, server_id, server)
                return Outcome("ACTIVE")
            await self._stop(rec)
            await self._spawn(rec)
            return Outcome("ACTIVE")

    async def delete(self, host: str, server_id: str, server: Mapping[str, Any]) -> Outcome:
        async with self._locks.hold(server_id):
            rec = self._held(host, server_id)
            if rec is None:
                if SERVER_ID.match(server_id):  # what a lost record left: home, uid
                    await self._forget(server_id)
                return Outcome("DELETED")
            outcome = await self._stop(rec)
            self.servers.pop(server_id, None)
            self.ledger.release(server_id)
            with contextlib.suppress(OSError):
                (self._dir(server_id) / "server.json").unlink()
            await self._forget(server_id)
            return Outcome("DELETED", outcome.exit_code)

    def used(self, host: str) -> dict[str, int]:
        return self.ledger.used(host)

    def status(self, server_id: str) -> str | None:
        rec = self.servers.get(server_id)
        return rec.status if rec else None

    def pids(self) -> dict[str, int]:
        """The process id of every running server."""
        return {
            sid: rec.pid
            for sid, rec in self.servers.items()
            if rec.status == "ACTIVE" and rec.pid is not None
        }

    def uid_of(self, server_id: str) -> int | None:
        """The user the server runs as (or ran as last)."""
        rec = self.servers.get(server_id)
        return rec.uid if rec else None

    async def close(self, *, stop_servers: bool) -> None:
        """Stop every server (or leave them running for the next agent), bounded in time."""
        running = [rec for rec in self.servers.values() if rec.status == "ACTIVE"]
        if stop_servers:

            async def stop_one(rec: ProcServer) -> None:
                async with self._locks.hold(rec.server_id):
                    if rec.status != "ACTIVE":
                        return
                    try:
                        outcome = await self._stop(rec)
                    except DriverError as exc:
                        log.error("could not stop a server", extra={"error": str(exc)})
                        return
                    publish(
                        self.events,
                        rec.server_id,
                        "STOPPED",
                        outcome.exit_code,
                        "stopped because its agent stopped (--stop-servers-on-exit)",
                    )

            await asyncio.gather(*(stop_one(rec) for rec in running))
        watchers = [rec.watcher for rec in self.servers.values() if rec.watcher]
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        self.cgroups.close()  # the agent's own groups, once no server's is left in them
