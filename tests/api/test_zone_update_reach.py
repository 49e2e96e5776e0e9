"""`allowed_child_hosts` holds on `PUT /v1/zones/{name}` as on add: a child's API or
broker URL moved to a host the operator did not list is refused with 400
child_url_not_allowed, without connecting there, and the child stays as it was."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from skyfed.client import SkyfedClient, SkyfedError
from skyfed.federation.process import free_port
from tests.conftest import SERVICE_PASSWORD, InProcessZone, ServedZone


class Listener:
    """A TCP port on 127.0.0.2 (loopback, but not in the tests' allow-list) that counts
    who connects."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = free_port()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Listener:
        self._server = await asyncio.start_server(self._accept, "127.0.0.2", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _accept(self, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    async with Listener() as served:
        yield served


async def refused_update(admin: SkyfedClient, **changes: object) -> SkyfedError:
    with pytest.raises(SkyfedError) as caught:
        await admin.update_zone("child", **changes)
    return caught.value


async def test_moving_a_child_outside_the_allowed_hosts_is_refused(
    zone: InProcessZone, admin: SkyfedClient, child_zone: ServedZone, listener: Listener
) -> None:
    assert zone.settings.allowed_child_hosts == ["127.0.0.1", "localhost"]
    await admin.add_zone("child", child_zone.url, "svc", SERVICE_PASSWORD)
    before = await admin.get_zone("child")

    for changes, host in (
        ({"api_url": f"http://127.0.0.2:{listener.port}"}, "127.0.0.2"),
        ({"api_url": "http://10.20.0.5:8700"}, "10.20.0.5"),
        ({"api_url": "http://child.zones.example.net:8700"}, "child.zones.example.net"),
        (
            {"transport": "amqp", "bus_url": f"amqp://guest:guest@127.0.0.2:{listener.port}/"},
            "127.0.0.2",
        ),
    ):
        # With the password, as a changed reach needs: only the allow-list refuses it.
        error = await refused_update(admin, password=SERVICE_PASSWORD, **changes)
        assert (error.status, error.code) == (400, "child_url_not_allowed"), error
        assert host in error.message and "allowed_child_hosts" in error.message
    assert listener.connections == 0  # refused before connecting
    assert await admin.get_zone("child") == before
    # The child is still reached as before.
    result = await zone.process.tree.poller.cycle()
    assert (result.polled, result.ok) == (1, 1)

    # A listed host is taken (the same child under its other allowed name).
    moved = await admin.update_zone(
        "child", api_url=f"http://localhost:{child_zone.settings.port}", password=SERVICE_PASSWORD
    )
    assert moved.api_url == f"http://localhost:{child_zone.settings.port}"
    assert moved.state == "active"
