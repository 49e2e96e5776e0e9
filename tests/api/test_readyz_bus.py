"""`/readyz` of a zone on a bus answers 503 `bus_unavailable` while the zone cannot
consume its queues on its broker, and 200 once it does; `/healthz` answers throughout.

The zone's broker is the shared RabbitMQ behind a proxy the test cuts (a closed
loopback port to the zone), so the broker itself never stops."""

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import httpx

from skyfed.transport.names import agent_queue_for, queue_for
from tests.conftest import InProcessZone, zone_settings
from tests.proxy import CuttableProxy
from tests.waiting import eventually


def through(amqp_url: str, port: int) -> str:
    """`amqp_url` with its host and port replaced by 127.0.0.1:`port`."""
    parts = urlsplit(amqp_url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


async def readiness(http: httpx.AsyncClient) -> tuple[int, str]:
    answer = await http.get("/readyz")
    body = answer.json()
    return answer.status_code, body["error"]["code"] if "error" in body else body["status"]


async def test_readyz_answers_bus_unavailable_while_the_broker_is_out_of_reach(
    tmp_path: Path, amqp_url: str
) -> None:
    broker = urlsplit(amqp_url)
    proxy = CuttableProxy(broker.hostname or "127.0.0.1", broker.port or 5672)  # not listening
    name = f"ready-{uuid.uuid4().hex[:8]}"
    settings = zone_settings(tmp_path, None, name=name, bus_url=through(amqp_url, proxy.port))
    try:
        async with InProcessZone(settings) as zone, zone.raw() as http:
            # Never reached its broker: not ready, with the one error shape; alive all the same.
            answer = await http.get("/readyz")
            assert answer.status_code == 503
            assert set(answer.json()) == {"error"}
            assert answer.json()["error"]["code"] == "bus_unavailable"
            assert answer.json()["error"]["message"]
            health = await http.get("/healthz")
            assert (health.status_code, health.json()) == (200, {"status": "ok", "zone": name})

            async def ready() -> bool:
                return await readiness(http) == (200, "ready")

            async def not_ready() -> bool:
                return await readiness(http) == (503, "bus_unavailable")

            await proxy.restore()  # the broker can be reached: the zone consumes, and is ready
            await eventually(ready, 30, "ready once the broker answers")
            await proxy.cut()  # gone again, connections reset
            await eventually(not_ready, 30, "bus_unavailable once the broker is away")
            assert (await http.get("/healthz")).status_code == 200
            await proxy.restore()
            await eventually(ready, 30, "ready again")
    finally:
        await proxy.cut()
        connection = await aio_pika.connect(amqp_url)  # leave no queue on the shared broker
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(queue_for(name))
            await channel.queue_delete(agent_queue_for(name))
