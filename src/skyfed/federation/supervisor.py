"""Keeps a running federation's processes up: one that dies is reported, and started
again after a backoff (or left down when asked), while every other keeps running.

People kill zones on purpose to watch a parent mark them offline and route around
them; a restart brings the same zone back (same arguments: port, state, credentials)
so the parent sees it online again.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from skyfed.federation.backoff import Backoff
from skyfed.federation.process import ProcessFailed


class Supervised(Protocol):
    """What the supervisor needs of a process (`ManagedProcess` has it)."""

    name: str
    kind: str
    started_at: float | None  # time.monotonic() of its last start

    @property
    def pid(self) -> int | None: ...

    @property
    def running(self) -> bool: ...

    @property
    def returncode(self) -> int | None: ...

    def start(self) -> None: ...

    async def wait_ready(self, timeout: float = 60.0) -> None: ...


def describe_exit(returncode: int | None) -> str:
    """`-9` -> "was killed by SIGKILL"; `3` -> "exited with code 3"."""
    if returncode is None:
        return "is gone"
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


class Supervisor:
    def __init__(
        self,
        processes: Sequence[Supervised],
        *,
        report: Callable[[str], None],
        changed: Callable[[], None] = lambda: None,
        restart: bool = True,
        backoff: Backoff | None = None,
        poll: float = 0.25,
        ready_timeout: float = 60.0,
    ) -> None:
        self.processes = list(processes)
        self.report = report  # one line per event, for people
        self.changed = changed  # a process died or got a new pid (federation.json follows)
        self.restart = restart
        self.backoff = backoff or Backoff()
        self.poll = poll  # how often to look: a few Popen.poll() calls are nothing
        self.ready_timeout = ready_timeout

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until `stop` is set; a backoff wait or a readiness wait ends there too."""
        watchers = [asyncio.create_task(self._watch(p), name=p.name) for p in self.processes]
        stopping = asyncio.create_task(stop.wait())
        pending: set[asyncio.Task[Any]] = {stopping, *watchers}
        try:
            while not stopping.done():
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done - {stopping}:
                    task.result()  # a watcher ends when its process is left down, or by a bug
        finally:
            for task in (stopping, *watchers):
                task.cancel()
            await asyncio.gather(stopping, *watchers, return_exceptions=True)

    async def _watch(self, process: Supervised) -> None:
        delay: float | None = None
        while True:
            # A Popen has no awaitable exit (and a thread blocked in wait() would hold
            # up the loop's shutdown): look at it every `poll` seconds.
            while process.running:  # noqa: ASYNC110
                await asyncio.sleep(self.poll)
            uptime = time.monotonic() - (process.started_at or time.monotonic())
            delay = self.backoff.delay(delay, uptime)
            death = (
                f"{process.kind} {process.name} (pid {process.pid}) "
                f"{describe_exit(process.returncode)} after {_duration(uptime)}"
            )
            self.changed()  # its pid leaves federation.json
            if not self.restart:
                self.report(f"{death}; left down (--no-restart)")
                return
            self.report(f"{death}; starting it again in {delay:g} s")
            await asyncio.sleep(delay)
            while (problem := self._start(process)) is not None:
                delay = self.backoff.delay(delay, 0.0)
                self.report(
                    f"{process.kind} {process.name} could not be started ({problem}); "
                    f"trying again in {delay:g} s"
                )
                await asyncio.sleep(delay)
            self.changed()
            await self._until_ready(process)

    @staticmethod
    def _start(process: Supervised) -> str | None:
        try:
            process.start()
        except OSError as exc:  # out of processes or file descriptors, for a moment
            return str(exc)
        return None

    async def _until_ready(self, process: Supervised) -> None:
        try:
            await process.wait_ready(self.ready_timeout)
        except ProcessFailed:
            if process.running:
                self.report(
                    f"{process.kind} {process.name} (pid {process.pid}) not ready after "
                    f"{self.ready_timeout:g} s; still watching it"
                )
            return  # dead again: the watch loop reports it, with a longer wait
        self.report(f"{process.kind} {process.name} is back (pid {process.pid})")
