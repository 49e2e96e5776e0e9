"""Pure pieces of the agent's side of the protocol: parsing, clipping, backoff, event order."""

from __future__ import annotations

from typing import Any

import pytest

from skyfed.compute.agent.commands import (
    MESSAGE_MAX,
    CommandLoop,
    EventForwarder,
    Malformed,
    backoff,
    clip,
    parse_command,
)
from skyfed.compute.agent.driver import publish
from skyfed.compute.agent.sim import SimHost
from skyfed.compute.agent.sim_driver import SimDriver


def host() -> SimHost:
    resources = {"vcpus": 4, "ram_mb": 4096, "disk_gb": 40}
    return SimHost("h0", {}, resources, dict.fromkeys(resources, 0))


def test_parse_command_takes_the_documented_shape() -> None:
    raw = {
        "id": "c1",
        "host": "h0",
        "server_id": "s1",
        "action": "boot",
        "server": {"name": "a", "vcpus": 1},
    }
    assert parse_command(raw) == ("c1", "boot", "h0", "s1", {"name": "a", "vcpus": 1})
    assert parse_command({**raw, "server": None})[4] == {}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "a command must be an object"),
        ({"id": "c1", "host": "h0", "server_id": "s1"}, "'action' must be a non-empty string"),
        ({"id": "", "host": "h", "server_id": "s", "action": "boot"}, "'id' must be"),
        (
            {"id": "c", "host": "h", "server_id": "s", "action": "boot", "server": [1]},
            "'server' must be an object",
        ),
    ],
)
def test_parse_command_refuses_what_it_cannot_run(raw: Any, message: str) -> None:
    with pytest.raises(Malformed, match=message):
        parse_command(raw)


def test_clip_keeps_messages_within_what_the_zone_stores() -> None:
    assert clip("short") == "short"
    assert clip("a\x00b") == "ab"
    long = clip("x" * 1000)
    assert len(long) == MESSAGE_MAX and long.endswith("\u2026")
    assert clip("y" * MESSAGE_MAX) == "y" * MESSAGE_MAX


def test_backoff_grows_and_is_capped() -> None:
    assert 0.16 <= backoff(1) <= 0.24
    assert 0.32 <= backoff(2) <= 0.48
    assert all(backoff(n) <= 6.0 for n in range(1, 100))
    assert backoff(50, base=0.5, cap=10.0) >= 8.0


async def test_events_wait_for_commands_in_flight_and_superseded_ones_go() -> None:
    driver = SimDriver([host()])
    await driver.boot("h0", "s1", {"vcpus": 1})
    await driver.boot("h0", "s2", {"vcpus": 1})
    driver.crash("s1")  # STOPPED ...
    await driver.start("h0", "s1", {})  # ... and ACTIVE again before it was forwarded
    driver.crash("s2")
    loop = CommandLoop(None, driver, "ag")  # type: ignore[arg-type]
    forwarder = EventForwarder(None, driver, "ag", loop)  # type: ignore[arg-type]
    loop.busy_servers["s2"] += 1  # a command on s2 is running
    forwarder._take_queued()
    assert forwarder._ready() == []  # s1's event is stale, s2's waits
    assert [e["server_id"] for e in forwarder.pending] == ["s2"]
    del loop.busy_servers["s2"]
    ready = forwarder._ready()
    assert [e["server_id"] for e in ready] == ["s2"] and forwarder.pending == []
    publish(driver.events, "gone", "STOPPED", 1, "a server the driver no longer holds")
    forwarder._take_queued()
    assert forwarder._ready() == []
