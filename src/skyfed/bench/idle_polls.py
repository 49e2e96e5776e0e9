"""`skyfed bench idle-polls`: what agents' idle long polls cost a zone.

Two zone processes (`skyfed serve`, SQLite, no bus, one agent account each) are
started side by side: one polls the old way, reading the database every 0.25 s
while a poll is idle (`agent_poll_reread = 0.25`: the baseline), the other as a
zone does now (woken by a new command; no re-read on SQLite without a bus). For
each, N polls are held open at once and the zone process's CPU seconds (user +
system, from /proc) are read over `seconds` of the idle time, after the polls
are in and before they end, so connecting and logging in do not count. The two
are measured in turns, `repeat` times, and the median kept, so their ratio holds
on a noisy machine. A third window, the new zone with no poll at all, shows what
a zone costs when nothing happens (its housekeeping: sharing beats, following
revocations), the floor under the figure. Every wait is bounded in time.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w
from rich.console import Console
from rich.table import Table

from skyfed.bench.e2e import process_cpu_s
from skyfed.client import SkyfedClient
from skyfed.federation.process import ZoneProcess, free_port
from skyfed.identity.secret_files import write_private

AGENT = "bench-agent"
PASSWORD = "bench-agent-password"
ADMIN_PASSWORD = "bench-admin-password"
SETTLE = 1.0  # seconds after the polls are sent before the window opens
BASELINE_REREAD = 0.25  # what every idle poll did before


def _zone(directory: Path, name: str, reread: float | None) -> ZoneProcess:
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    values: dict[str, Any] = {
        "name": name,
        "host": "127.0.0.1",
        "port": port,
        "state_dir": str(directory),
        "log_file": str(directory / "zone.log"),
        "log_level": "WARNING",
        "admin_password": ADMIN_PASSWORD,
        "agent_username": AGENT,
        "agent_password": PASSWORD,
        "agent_poll_max": 60.0,
    }
    if reread is not None:
        values["agent_poll_reread"] = reread
    config = directory / "zone.toml"
    write_private(config, tomli_w.dumps(values))
    return ZoneProcess(name, config, port, directory / "process.log")


async def _window(zone: ZoneProcess, polls: int, seconds: float) -> float:
    """Zone CPU seconds over `seconds` while `polls` idle polls are held open."""
    wait = SETTLE + seconds + 2.0
    async with SkyfedClient(
        zone.url, username=AGENT, password=PASSWORD, max_connections=polls + 4, timeout=wait + 10
    ) as client:
        await client.whoami()  # log in once, before the polls
        held = [
            asyncio.create_task(client.agent_commands(AGENT, wait=int(wait))) for _ in range(polls)
        ]
        try:
            await asyncio.sleep(SETTLE)
            if any(task.done() for task in held):
                raise RuntimeError("a poll answered early: the zone is not idle")
            before = process_cpu_s(zone.pid)
            await asyncio.sleep(seconds)
            used = process_cpu_s(zone.pid) - before
            if any(task.done() for task in held):
                raise RuntimeError("a poll answered within the window: it was not held open")
            results = await asyncio.wait_for(asyncio.gather(*held), timeout=wait + 10)
        finally:
            for task in held:
                task.cancel()
        if any(results):
            raise RuntimeError("an idle poll got commands")
    return used


async def _measure(
    polls: int, seconds: float, repeat: int, directory: Path, say: Callable[[str], None]
) -> dict[str, list[float]]:
    zones = {
        "event": _zone(directory / "event", "bench-event", None),
        "baseline": _zone(directory / "baseline", "bench-baseline", BASELINE_REREAD),
    }
    for zone in zones.values():
        zone.start()
    try:
        await asyncio.gather(*(z.wait_ready() for z in zones.values()))
        used: dict[str, list[float]] = {name: [] for name in (*zones, "no_polls")}
        for round_ in range(repeat):
            for name, zone in zones.items():
                say(f"round {round_ + 1}/{repeat}: {polls} idle polls for {seconds:g} s, {name}")
                used[name].append(await _window(zone, polls, seconds))
            say(f"round {round_ + 1}/{repeat}: no polls for {seconds:g} s")
            used["no_polls"].append(await _window(zones["event"], 0, seconds))
        return used
    finally:
        for zone in zones.values():
            zone.stop()


def run_idle_polls_bench(
    polls: int = 200, seconds: float = 10.0, repeat: int = 3
) -> dict[str, Any]:
    console = Console(stderr=True)

    def say(message: str) -> None:
        console.print(f"[dim]{message}[/]")

    load_before = os.getloadavg()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="skyfed-idle-polls-") as tmp:
        used = asyncio.run(_measure(polls, seconds, repeat, Path(tmp), say))
    event = statistics.median(used["event"])
    baseline = statistics.median(used["baseline"])
    floor = statistics.median(used["no_polls"])
    table = Table(title=f"skyfed bench idle-polls ({polls} polls held {seconds:g} s, SQLite)")
    for column in ("poll", "zone CPU s (median)", "runs", "ms per poll-minute above floor"):
        table.add_column(column)
    for label, key, median, count in (
        ("woken by commands (now)", "event", event, polls),
        (f"re-read every {BASELINE_REREAD:g} s (before)", "baseline", baseline, polls),
        ("no polls (the zone's floor)", "no_polls", floor, 0),
    ):
        # Below the floor is noise (CPU is counted in 10 ms ticks): shown as 0.
        per_poll_minute = max(median - floor, 0.0) / count / seconds * 60 * 1000 if count else 0.0
        table.add_row(
            label,
            f"{median:.3f}",
            " ".join(f"{v:.2f}" for v in used[key]),
            f"{per_poll_minute:.2f}" if count else "-",
        )
    Console().print(table)
    return {
        "bench": "idle-polls",
        "polls": polls,
        "seconds": seconds,
        "repeat": repeat,
        "cpu_s": round(event, 3),
        "baseline_cpu_s": round(baseline, 3),
        "baseline": f"re-read every {BASELINE_REREAD:g} s",
        "no_polls_cpu_s": round(floor, 3),
        "ratio": round(baseline / event, 1) if event > 0 else None,
        "runs": {k: [round(v, 3) for v in vs] for k, vs in used.items()},
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.monotonic() - started, 1),
    }
