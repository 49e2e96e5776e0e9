"""Children linked over AMQP: added, probed, polled and called through the child's broker.

The child zone serves no socket here: every call from the parent travels as a
message on the local RabbitMQ, to the child's queue, and back.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import pytest

from skyfed.client import SkyfedError
from skyfed.federation.process import free_port
from skyfed.transport.names import agent_queue_for, queue_for
from tests.conftest import SERVICE_PASSWORD, InProcessZone, bus_ready, zone_settings

# A port nothing listens on: the parent must not need the child's HTTP API.
DEAD_API = f"http://127.0.0.1:{free_port()}"


@pytest.fixture
async def bus_child(tmp_path: Path, amqp_url: str) -> AsyncIterator[InProcessZone]:
    name = f"child-{uuid.uuid4().hex[:8]}"
    settings = zone_settings(tmp_path / "child", name=name, bus_url=amqp_url)
    async with InProcessZone(settings) as child:
        await bus_ready(child)
        yield child
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(queue_for(name))
        await channel.queue_delete(agent_queue_for(name))


async def test_a_child_over_amqp_is_probed_polled_and_listed(
    zone: InProcessZone, admin, bus_child: InProcessZone, amqp_url: str
) -> None:
    name = bus_child.settings.name
    async with bus_child.client() as child_admin:
        await child_admin.heartbeat(
            "h1", capabilities={"arch": "arm64"}, resources={"vcpus": 4, "ram_mb": 8192}
        )
    added = await admin.add_zone(
        name, DEAD_API, "svc", SERVICE_PASSWORD, transport="amqp", bus_url=amqp_url
    )
    assert added.transport == "amqp"
    assert added.bus_url == "amqp://127.0.0.1:5672/"  # shown without the broker's password
    assert "guest" not in added.model_dump_json()
    detail = await admin.zone_detail(name)
    assert detail.remote_name == name and detail.summary["hosts"] == 1

    async with bus_child.client() as child_admin:
        await child_admin.heartbeat("h2", resources={"vcpus": 8, "ram_mb": 8192})
    result = await zone.process.tree.poller.cycle()
    assert (result.polled, result.ok) == (1, 1)
    assert (await admin.zone()).summary["hosts"] == 2

    # A wrong queue is found out at once, and the child keeps its working link.
    with pytest.raises(SkyfedError) as caught:
        await admin.update_zone(name, bus_queue="skyfed.zone.nobody", password=SERVICE_PASSWORD)
    assert (caught.value.status, caught.value.code) == (400, "child_unreachable")
    assert "skyfed.zone.nobody" in caught.value.message
    assert (await admin.get_zone(name)).bus_queue == f"skyfed.zone.{name}"


async def test_a_null_queue_on_update_means_the_default_queue(
    admin, bus_child: InProcessZone, amqp_url: str
) -> None:
    """Linked under another name with its queue given, then renamed to its own name
    with the queue reset: the default queue of the new name is the child's."""
    name = bus_child.settings.name
    queue = f"skyfed.zone.{name}"
    await admin.add_zone(
        "alias", DEAD_API, "svc", SERVICE_PASSWORD, transport="amqp", bus_url=amqp_url,
        bus_queue=queue,
    )  # fmt: skip
    with pytest.raises(SkyfedError) as caught:  # skyfed.zone.alias: nobody consumes it
        await admin.update_zone("alias", bus_queue=None, password=SERVICE_PASSWORD)
    assert (caught.value.status, caught.value.code) == (400, "child_unreachable")
    assert (await admin.get_zone("alias")).bus_queue == queue
    renamed = await admin.update_zone("alias", name=name, bus_queue=None)
    assert (renamed.name, renamed.bus_queue) == (name, queue)


async def test_bad_transport_settings_are_refused_and_store_nothing(admin, amqp_url: str) -> None:
    invalid = (422, "validation_error")
    mismatched = (400, "invalid_transport")  # the same code as an update that mismatches
    cases = [
        ({"transport": "amqp"}, mismatched),  # no broker
        ({"transport": "http", "bus_url": amqp_url}, mismatched),  # a broker for an HTTP link
        ({"transport": "smtp"}, invalid),
        ({"transport": "amqp", "bus_url": "http://127.0.0.1:5672/"}, invalid),
        ({"transport": "amqp", "bus_url": amqp_url, "bus_queue": "has spaces"}, invalid),
    ]
    for extra, expected in cases:
        with pytest.raises(SkyfedError) as caught:
            await admin.add_zone("c", DEAD_API, "svc", SERVICE_PASSWORD, **extra)
        assert (caught.value.status, caught.value.code) == expected, (extra, caught.value)
    with pytest.raises(SkyfedError) as caught:
        await admin.add_zone(
            "c",
            DEAD_API,
            "svc",
            SERVICE_PASSWORD,
            transport="amqp",
            bus_url="amqp://guest:guest@10.1.2.3:5672/",
        )
    assert (caught.value.status, caught.value.code) == (400, "child_url_not_allowed")
    with pytest.raises(SkyfedError) as caught:
        await admin.add_zone(
            "c",
            DEAD_API,
            "svc",
            SERVICE_PASSWORD,
            transport="amqp",
            bus_url=amqp_url,
            bus_queue=f"skyfed.zone.{uuid.uuid4().hex}",
        )
    assert (caught.value.status, caught.value.code) == (400, "child_unreachable")
    assert await admin.list_zones() == []


async def test_a_wrong_password_over_amqp_is_refused_and_says_why(
    admin, bus_child: InProcessZone, amqp_url: str
) -> None:
    """The child cannot verify the parent's signature: it refuses the call, and its
    refusal (unsigned, so not believed) is what the parent's error reports."""
    name = bus_child.settings.name
    with pytest.raises(SkyfedError) as caught:
        await admin.add_zone(
            name, DEAD_API, "svc", "not-the-password", transport="amqp", bus_url=amqp_url
        )
    assert (caught.value.status, caught.value.code) == (400, "child_unreachable")
    assert "dropped 1 unsigned or forged answer" in caught.value.message
    assert "bad_signature" in caught.value.message
    assert await admin.list_zones() == []
