"""The `process` driver: each server is a real local process.

A server's `metadata.process` says what to run: `{"command": [...], "env":
{...}, "cwd": "..."}`. Its stdout and stderr go to `<state>/<server id>/stdout.log`
and `stderr.log` (appended across starts, kept after delete), and what the
driver knows of it to `server.json` beside them, so an agent that restarts finds
its servers again (and adopts the processes still running).

Each process leads its own process group, and the group is what gets signalled:
`stop` is SIGTERM, then SIGKILL after `stop_grace` seconds; `start` spawns the
command again; `reboot` is both; `delete` is a stop that keeps the logs. When
the process ends, whatever it left in its group is killed too, so a server
leaves no orphans. A process that exits on its own is announced as an event
`{"status": "STOPPED", "exit_code": N}` (128 + the signal number when a signal
killed it, as a shell reports it).

Servers get a small environment of their own, never the agent's (which holds its
password): PATH, HOME, LANG, LC_ALL, TZ, TMPDIR when the agent has them,
SKYFED_SERVER_ID, SKYFED_SERVER_NAME, then the server's `env`.

On `close(stop_servers=True)` (the agent's `--stop-servers-on-exit`, the
default) every running server is stopped; with False they keep running, as
guests do when a hypervisor's agent restarts, and the next agent adopts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyfed.compute.agent.driver import (
    DriverError,
    KeyedLocks,
    Ledger,
    Outcome,
    ServerEvent,
    need_of,
    publish,
)
from skyfed.compute.agent.sim import SimHost
from skyfed.compute.process_spec import ProcessSpec, ProcessSpecError

log = logging.getLogger(__name__)

SERVER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
POLL_INTERVAL = 0.1  # where pidfds are unavailable, or for adopted processes without one


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
    ) -> None:
        if not hosts:
            raise ValueError("the process driver needs at least one host in its spec")
        self._hosts = list(hosts)
        self.state_dir = state_dir.resolve()
        self.stop_grace = stop_grace
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

    def _save(self, rec: ProcServer) -> None:
        path = self._dir(rec.server_id) / "server.json"
        body = {
            "host": rec.host,
            "name": rec.name,
            "need": self.ledger.claimed(rec.server_id),
            "process": rec.spec.as_json(),
            "status": rec.status,
            "exit_code": rec.exit_code,
            "pid": rec.pid,
            "start_time": rec.start_time,
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body))
        tmp.replace(path)

    async def open(self) -> None:
        """Find the servers an earlier agent left in the state directory; adopt live ones."""
        if self._opened:
            return
        self._opened = True
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DriverError(f"cannot use state directory {self.state_dir}: {exc}") from exc
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
            pid, start_time = body.get("pid"), body.get("start_time")
            self.servers[server_id] = rec
            if isinstance(pid, int) and isinstance(start_time, int) and _alive(pid, start_time):
                rec.pid, rec.start_time, rec.status = pid, start_time, "ACTIVE"
                rec.watcher = asyncio.create_task(self._watch(rec))
                log.info("adopted a running server", extra={"server_id": server_id, "pid": pid})
            else:
                was = body.get("status")
                rec.status = "STOPPED"
                rec.exited.set()
                if was == "ACTIVE":
                    self._save(rec)
                    publish(
                        self.events,
                        server_id,
                        "STOPPED",
                        rec.exit_code,
                        "found stopped when the agent started",
                    )

    # -- processes ---------------------------------------------------------------

    def _env(self, rec: ProcServer) -> dict[str, str]:
        env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        env["SKYFED_SERVER_ID"] = rec.server_id
        env["SKYFED_SERVER_NAME"] = rec.name
        env.update(rec.spec.env)
        return env

    def _spawn(self, rec: ProcServer) -> None:
        d = self._dir(rec.server_id)
        d.mkdir(parents=True, exist_ok=True)
        cwd = rec.spec.cwd or str(d)
        if not Path(cwd).is_dir():
            raise DriverError(
                f"cannot start server {rec.server_id}: working directory {cwd} does not exist"
            )
        stdout, stderr = self.log_paths(rec.server_id)
        try:
            with stdout.open("ab") as out, stderr.open("ab") as err:
                popen = subprocess.Popen(
                    rec.spec.command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    cwd=cwd,
                    env=self._env(rec),
                    start_new_session=True,  # its own process group: signalled as a whole
                    close_fds=True,
                )
        except OSError as exc:
            raise DriverError(
                f"cannot start server {rec.server_id}: {rec.spec.command[0]!r}: "
                f"{exc.strerror or exc}"
            ) from exc
        log.info("server process started", extra={"server_id": rec.server_id, "pid": popen.pid})
        stat = _proc_stat(popen.pid)
        rec.popen, rec.pid = popen, popen.pid
        rec.start_time = stat[1] if stat else None
        rec.status, rec.exit_code, rec.stopping = "ACTIVE", None, False
        rec.exited = asyncio.Event()
        rec.watcher = asyncio.create_task(self._watch(rec))
        try:
            self._save(rec)
        except OSError as exc:  # the process runs; only its adoption by a later agent suffers
            log.warning(
                "cannot record a server", extra={"server_id": rec.server_id, "error": str(exc)}
            )

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

    async def _watch(self, rec: ProcServer) -> None:
        exit_code = await self._wait_exit(rec)
        if rec.pid is not None:
            _signal_group(rec.pid, signal.SIGKILL)  # whatever it left behind goes too
        rec.status, rec.exit_code, rec.popen = "STOPPED", exit_code, None
        rec.exited.set()
        with contextlib.suppress(OSError, DriverError):
            self._save(rec)
        if not rec.stopping:
            log.info(
                "server process exited",
                extra={"server_id": rec.server_id, "exit_code": exit_code},
            )
            publish(self.events, rec.server_id, "STOPPED", exit_code, describe_exit(exit_code))

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

    # -- actions -----------------------------------------------------------------

    def _held(self, host: str, server_id: str) -> ProcServer | None:
        rec = self.servers.get(server_id)
        if rec is not None and rec.host != host:
            raise DriverError(f"server {server_id} runs on {rec.host}, not {host}")
        return rec

    def _create(self, host: str, server_id: str, server: Mapping[str, Any]) -> ProcServer:
        try:
            spec = ProcessSpec.parse(server_id, server)
        except ProcessSpecError as exc:
            raise DriverError(str(exc)) from exc
        self._dir(server_id)  # a bad id fails before anything is claimed
        self.ledger.claim(host, server_id, need_of(server))
        rec = ProcServer(server_id, host, str(server.get("name", "")), spec)
        try:
            self._spawn(rec)
        except BaseException:
            self.ledger.release(server_id)
            raise
        self.servers[server_id] = rec
        return rec

    async def boot(self, host: str, server_id: str, server: Mapping[str, Any]) -> Outcome:
        async with self._locks.hold(server_id):
            rec = self._held(host, server_id)
            if rec is not None:  # booted already: no second copy
                return Outcome(rec.status, rec.exit_code)
            self._create(host, server_id, server)
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
                self._create(host, server_id, server)
                return Outcome("ACTIVE")
            if rec.status != "ACTIVE":
                self._spawn(rec)
            return Outcome("ACTIVE")

    async def reboot(self, host: str, server_id: str, server: Mapping[str, Any]) -> Outcome:
        async with self._locks.hold(server_id):
            rec = self._held(host, server_id)
            if rec is None:
                self._create(host, server_id, server)
                return Outcome("ACTIVE")
            await self._stop(rec)
            self._spawn(rec)
            return Outcome("ACTIVE")

    async def delete(self, host: str, server_id: str, server: Mapping[str, Any]) -> Outcome:
        async with self._locks.hold(server_id):
            rec = self._held(host, server_id)
            if rec is None:
                return Outcome("DELETED")
            outcome = await self._stop(rec)
            self.servers.pop(server_id, None)
            self.ledger.release(server_id)
            with contextlib.suppress(OSError):
                (self._dir(server_id) / "server.json").unlink()
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
