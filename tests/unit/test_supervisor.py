"""`skyfed up`'s supervisor over fake processes: deaths reported, restarts with backoff,
left down when asked, and a stop that ends every wait (the real thing: test_up.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from skyfed.federation.backoff import Backoff
from skyfed.federation.process import ProcessFailed
from skyfed.federation.supervisor import Supervisor, describe_exit
from tests.waiting import until

QUICK = Backoff(first=0.01, cap=0.04, settle=3600)


class FakeProcess:
    """Runs from construction; `die` ends it; `start` runs it again with a new pid."""

    def __init__(self, name: str, kind: str = "zone") -> None:
        self.name, self.kind = name, kind
        self.pid: int | None = 100
        self.started_at: float | None = time.monotonic()
        self.returncode: int | None = None
        self.starts = 0
        self.on_ready = "ready"  # or "hang", "die"
        self.start_errors: list[OSError] = []

    @property
    def running(self) -> bool:
        return self.returncode is None

    def die(self, returncode: int = -9) -> None:
        self.returncode = returncode

    def start(self) -> None:
        self.started_at = time.monotonic()
        if self.start_errors:
            raise self.start_errors.pop(0)
        self.starts += 1
        self.pid = (self.pid or 0) + 1
        self.returncode = None

    async def wait_ready(self, timeout: float = 60.0) -> None:
        if self.on_ready == "hang":
            await asyncio.Event().wait()
        if self.on_ready == "die":
            self.die(1)
            raise ProcessFailed(f"zone {self.name} exited")


class Watched:
    """A supervisor running over some fake processes, with what it reported."""

    def __init__(self, *processes: FakeProcess, **options: object) -> None:
        self.lines: list[str] = []
        self.changes = 0
        self.stop = asyncio.Event()
        supervisor = Supervisor(
            processes,
            report=self.lines.append,
            changed=self._changed,
            poll=0.01,
            **options,  # type: ignore[arg-type]
        )
        self.task = asyncio.create_task(supervisor.run(self.stop))

    def _changed(self) -> None:
        self.changes += 1

    def said(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 5)


def test_backoff_doubles_to_its_cap_and_starts_over_after_a_long_run() -> None:
    backoff = Backoff(first=1, cap=30, settle=60)
    delays: list[float] = []
    previous = None
    for _ in range(7):
        previous = backoff.delay(previous, uptime=2)
        delays.append(previous)
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.delay(30, uptime=59.9) == 30
    assert backoff.delay(30, uptime=60) == 1
    with pytest.raises(ValueError):
        Backoff(first=0)
    with pytest.raises(ValueError):
        Backoff(first=5, cap=1)


@pytest.mark.parametrize(
    ("code", "said"),
    [
        (-9, "was killed by SIGKILL"),
        (-15, "was killed by SIGTERM"),
        (-200, "was killed by signal 200"),
        (0, "exited with code 0"),
        (3, "exited with code 3"),
    ],
)
def test_describe_exit(code: int, said: str) -> None:
    assert describe_exit(code) == said


async def test_a_dead_process_is_reported_started_again_and_the_others_left_alone() -> None:
    eu, us = FakeProcess("eu"), FakeProcess("us-agent", kind="host agent")
    watched = Watched(eu, us, backoff=QUICK)
    try:
        eu.die(-9)
        await until(lambda: watched.said("is back"), what="eu back")
        assert watched.lines == [
            "zone eu (pid 100) was killed by SIGKILL after 0 s; starting it again in 0.01 s",
            "zone eu is back (pid 101)",
        ]
        assert eu.running and eu.starts == 1
        assert us.starts == 0 and us.running
        assert watched.changes == 2  # its death, then its new pid
        us.die(3)
        await until(lambda: watched.said("us-agent is back"), what="agent back")
        assert watched.said("host agent us-agent (pid 100) exited with code 3 after")
    finally:
        await watched.close()


async def test_quick_deaths_wait_longer_each_time_up_to_the_cap() -> None:
    eu = FakeProcess("eu")
    watched = Watched(eu, backoff=QUICK)
    try:
        for starts in range(1, 5):
            eu.die(-9)
            await until(lambda n=starts: eu.starts == n and watched.said(f"(pid {100 + n})"))
        waits = [line.rsplit("again in ", 1)[1] for line in watched.said("again in")]
        assert waits == ["0.01 s", "0.02 s", "0.04 s", "0.04 s"]
    finally:
        await watched.close()


async def test_a_process_that_dies_while_starting_is_tried_again_later() -> None:
    eu = FakeProcess("eu")
    eu.on_ready = "die"
    watched = Watched(eu, backoff=QUICK)
    try:
        eu.die(-9)
        await until(lambda: eu.starts >= 3, what="three attempts")
        assert not watched.said("is back")
        assert watched.said("exited with code 1 after 0 s; starting it again in 0.04 s")
    finally:
        await watched.close()


async def test_a_start_that_fails_is_reported_and_tried_again() -> None:
    eu = FakeProcess("eu")
    eu.start_errors.append(OSError(24, "Too many open files"))
    watched = Watched(eu, backoff=QUICK)
    try:
        eu.die(-9)
        await until(lambda: watched.said("is back"), what="eu back")
        assert watched.said(
            "zone eu could not be started ([Errno 24] Too many open files); trying again in 0.02 s"
        )
        assert eu.starts == 1
    finally:
        await watched.close()


async def test_no_restart_leaves_a_dead_process_down_and_watches_the_rest() -> None:
    eu, us = FakeProcess("eu"), FakeProcess("us")
    watched = Watched(eu, us, backoff=QUICK, restart=False)
    try:
        eu.die(-9)
        await until(lambda: watched.said("zone eu"), what="eu's death reported")
        us.die(-15)
        await until(lambda: watched.said("zone us"), what="us's death reported")
        assert watched.lines == [
            "zone eu (pid 100) was killed by SIGKILL after 0 s; left down (--no-restart)",
            "zone us (pid 100) was killed by SIGTERM after 0 s; left down (--no-restart)",
        ]
        assert eu.starts == us.starts == 0
        assert not watched.task.done()  # still running until stopped, though all is down
    finally:
        await watched.close()


async def test_stop_ends_a_backoff_wait_at_once() -> None:
    eu = FakeProcess("eu")
    watched = Watched(eu, backoff=Backoff(first=3600, cap=3600))
    eu.die(-9)
    await until(lambda: watched.said("again in 3600 s"), what="the death reported")
    await watched.close()  # within 5 s, not an hour
    assert eu.starts == 0


async def test_stop_ends_a_wait_for_readiness() -> None:
    eu = FakeProcess("eu")
    eu.on_ready = "hang"
    watched = Watched(eu, backoff=QUICK, ready_timeout=3600)
    eu.die(-9)
    await until(lambda: eu.starts == 1, what="the restart")
    await watched.close()
    assert not watched.said("is back")
