"""What only the `amqp` link has to survive: broker restarts, repeats, loops, dead ends.

Runs against the local RabbitMQ. The restart test stops and starts the broker's
application (`rabbitmqctl stop_app` / `start_app`), as an operator's upgrade would.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from skyfed.client import SkyfedError, ZoneUnreachable
from skyfed.federation.broker import ctl
from skyfed.transport.amqp import amqp_link
from skyfed.transport.amqp_server import ZoneQueueServer
from skyfed.transport.base import ZoneRequest
from skyfed.transport.envelope import HOP_LIMIT, current_hops
from skyfed.transport.http import HttpLink
from skyfed.transport.names import reply_queue_for
from skyfed.transport.signing import StaticAccounts
from tests.conftest import IN_CI
from tests.contract.signed import call_message, envelope
from tests.proxy import CuttableProxy

PASSWORD = "pw"
ACCOUNTS = StaticAccounts({"svc": PASSWORD})


def child_server(app: Starlette, amqp_url: str, queue: str, **options: Any) -> ZoneQueueServer:
    """A child's end of the link, knowing the parent's account `svc`."""
    return ZoneQueueServer(app, amqp_url, queue, zone="child", accounts=ACCOUNTS, **options)


class Adder:
    """A child that adds, and counts how often it ran each call."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.runs: dict[str, int] = {}
        self.answered = 0
        self.release = asyncio.Event()
        self.release.set()

    async def login(self, request: Request) -> JSONResponse:
        return JSONResponse({"token": "t"}, 201)

    async def add(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.runs[body["key"]] = self.runs.get(body["key"], 0) + 1
        await self.release.wait()
        await asyncio.sleep(self.delay)
        self.answered += 1
        return JSONResponse({"sum": body["a"] + body["b"]})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/auth/tokens", self.login, methods=["POST"]),
                Route("/v1/add", self.add, methods=["POST"]),
            ]
        )


@pytest.fixture
async def queue(amqp_url: str) -> AsyncIterator[str]:
    name = f"skyfed.test.{uuid.uuid4().hex}"
    yield name
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(name)


def link(amqp_url: str, queue: str, timeout: float = 5.0) -> HttpLink:
    return amqp_link(amqp_url, queue, username="svc", password=PASSWORD, timeout=timeout)


@contextlib.asynccontextmanager
async def serving(
    app: Starlette, amqp_url: str, queue: str, **server_options: Any
) -> AsyncIterator[HttpLink]:
    """A child serving `app` from `queue`, and a parent's link to it; both closed after."""
    server = child_server(app, amqp_url, queue, **server_options)
    await server.start()
    zone = link(amqp_url, queue)
    try:
        yield zone
    finally:
        await zone.aclose()
        await server.stop()


def add(key: str, a: int, b: int, timeout: float | None = None) -> ZoneRequest:
    return ZoneRequest(
        "POST", "/v1/add", json={"key": key, "a": a, "b": b}, timeout=timeout, idempotent=True
    )


async def test_a_queue_nobody_serves_is_unreachable_and_not_a_timeout(
    amqp_url: str, queue: str
) -> None:
    zone = link(amqp_url, queue)
    with pytest.raises(ZoneUnreachable, match="no zone consumes") as caught:
        await zone.call(add("k", 1, 2, timeout=60))
    assert not caught.value.timed_out  # the broker said so; nobody waited out the deadline
    await zone.aclose()


async def test_a_broker_that_is_not_there_is_unreachable() -> None:
    from skyfed.federation.process import free_port

    zone = link(f"amqp://guest:guest@127.0.0.1:{free_port()}/", "skyfed.zone.x")
    with pytest.raises(ZoneUnreachable):
        await zone.call(add("k", 1, 2))
    await zone.aclose()


async def test_a_call_past_the_hop_limit_is_refused_as_a_loop(amqp_url: str, queue: str) -> None:
    adder = Adder()
    server = child_server(adder.app(), amqp_url, queue)
    await server.start()
    zone = link(amqp_url, queue)
    token = current_hops.set(HOP_LIMIT)  # this call already crossed as many links as allowed
    try:
        with pytest.raises(SkyfedError) as caught:
            await zone.call(add("k", 1, 2))
    finally:
        current_hops.reset(token)
    assert caught.value.status == 508 and caught.value.code == "loop_detected"
    assert adder.runs == {}
    assert (await zone.call(add("k", 1, 2)))["sum"] == 3  # within the limit it goes through
    await zone.aclose()
    await server.stop()


async def test_a_repeated_call_runs_once_and_an_expired_one_not_at_all(
    amqp_url: str, queue: str
) -> None:
    adder = Adder()
    server = child_server(adder.app(), amqp_url, queue)
    await server.start()
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    replies = await channel.declare_queue(reply_queue_for("svc"), exclusive=True)

    def message(key: str, call_id: str, deadline: float) -> aio_pika.Message:
        return call_message(
            account="svc",
            password=PASSWORD,
            queue=queue,
            reply_to=replies.name,
            call_id=call_id,
            body={"key": key, "a": 2, "b": 2},
            env=envelope(deadline=deadline),
        )

    # Past its deadline by more than clocks may differ between sites: refused, not run.
    await channel.default_exchange.publish(message("old", "c-0", time.time() - 120), queue)
    for _ in range(3):  # the same call three times, as after a broker restart
        await channel.default_exchange.publish(message("again", "c-1", time.time() + 5), queue)
    answers: list[aio_pika.abc.AbstractIncomingMessage] = []
    async with asyncio.timeout(5):
        async with replies.iterator() as incoming:
            async for reply in incoming:
                answers.append(reply)
                await reply.ack()
                if len(answers) == 4:
                    break
    late = [a for a in answers if a.correlation_id == "c-0"]
    again = [a for a in answers if a.correlation_id == "c-1"]
    assert [a.headers["x-status"] for a in late] == [504]
    assert len(again) == 3
    assert all(a.headers["x-status"] == 200 and b'"sum":4' in a.body for a in again)
    assert adder.runs == {"again": 1}  # repeats answered from the first run; "old" never ran
    await connection.close()
    await server.stop()


async def test_calls_held_by_a_process_that_dies_are_served_by_another(
    amqp_url: str, queue: str
) -> None:
    stuck, healthy = Adder(), Adder()
    stuck.release.clear()  # takes calls and never answers, like a process about to die
    first = child_server(stuck.app(), amqp_url, queue, prefetch=50)
    await first.start()
    zone = link(amqp_url, queue, timeout=10)
    calls = [asyncio.create_task(zone.call(add(f"k{i}", i, i))) for i in range(20)]
    async with asyncio.timeout(5):
        while len(stuck.runs) < 20:
            await asyncio.sleep(0.02)
    second = child_server(healthy.app(), amqp_url, queue)
    await second.start()
    await first.stop(grace=0)  # dies: the broker hands its unacknowledged calls on
    answers = await asyncio.gather(*calls)
    assert [a["sum"] for a in answers] == [2 * i for i in range(20)]
    assert healthy.runs == {f"k{i}": 1 for i in range(20)}
    await zone.aclose()
    await second.stop()


@pytest.mark.skipif(
    shutil.which("rabbitmqctl") is None and not IN_CI, reason="rabbitmqctl is not installed"
)
@pytest.mark.restarts_broker
async def test_calls_in_flight_survive_a_broker_restart(amqp_url: str, queue: str) -> None:
    adder = Adder()
    server = child_server(adder.app(), amqp_url, queue)
    await server.start()
    zone = link(amqp_url, queue, timeout=60)
    assert (await zone.call(add("warm", 1, 1)))["sum"] == 2

    adder.release.clear()  # the first 100 calls reach the child and wait there
    first = [asyncio.create_task(zone.call(add(f"k{i}", i, 1, timeout=60))) for i in range(100)]
    async with asyncio.timeout(10):
        while len(adder.runs) < 101:
            await asyncio.sleep(0.02)
    await asyncio.to_thread(ctl, "stop_app")
    # Sent while the broker is down; the first 100 answer into a broker that is gone.
    second = [
        asyncio.create_task(zone.call(add(f"k{i}", i, 1, timeout=60))) for i in range(100, 200)
    ]
    adder.release.set()
    await asyncio.sleep(0.5)
    await asyncio.to_thread(ctl, "start_app")
    async with asyncio.timeout(60):
        sums = [a["sum"] for a in await asyncio.gather(*first, *second)]
    assert sums == [i + 1 for i in range(200)]  # none lost
    # Whether the held calls came back through a resend or through the child's copy
    # redelivered by the broker depends on who reconnects first; the resend alone is
    # tested below, where it is the only way back.
    assert all(runs == 1 for runs in adder.runs.values())  # none run twice
    assert len(adder.runs) == 201
    await zone.aclose()
    await server.stop()


async def test_calls_whose_answers_were_lost_with_the_connection_are_asked_again(
    amqp_url: str, queue: str
) -> None:
    """The caller's connection is cut while the child holds its calls: its reply queue
    goes with it, so the answers the child gives meanwhile reach nobody, and the child
    acknowledges the calls. Only the link's resend, answered from the child's memory of
    the first run, brings them back."""
    adder = Adder()
    server = child_server(adder.app(), amqp_url, queue)
    await server.start()
    broker = urlsplit(amqp_url)
    async with CuttableProxy(broker.hostname or "127.0.0.1", broker.port or 5672) as proxy:
        via_proxy = urlunsplit(broker._replace(netloc=f"guest:guest@127.0.0.1:{proxy.port}"))
        zone = link(via_proxy, queue, timeout=60)
        try:
            assert (await zone.call(add("warm", 1, 1)))["sum"] == 2
            adder.release.clear()
            calls = [
                asyncio.create_task(zone.call(add(f"k{i}", i, 1, timeout=60))) for i in range(50)
            ]
            async with asyncio.timeout(10):
                while len(adder.runs) < 51:
                    await asyncio.sleep(0.02)
            await proxy.cut()
            adder.release.set()
            async with asyncio.timeout(10):  # answered into nowhere, and acknowledged
                while adder.answered < 51:
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)
            await proxy.restore()
            async with asyncio.timeout(30):
                sums = [a["sum"] for a in await asyncio.gather(*calls)]
            assert sums == [i + 1 for i in range(50)]
            assert zone.transport.stats.resent == 50  # each held call asked again once
            assert zone.transport.stats.disconnects == 1
            assert all(runs == 1 for runs in adder.runs.values())  # answered from the first run
        finally:
            adder.release.set()
            await zone.aclose()
            await server.stop()


async def test_a_graceful_stop_answers_the_calls_it_holds(amqp_url: str, queue: str) -> None:
    adder = Adder(delay=0.3)
    server = child_server(adder.app(), amqp_url, queue)
    await server.start()
    zone = link(amqp_url, queue, timeout=10)
    calls = [asyncio.create_task(zone.call(add(f"k{i}", i, i))) for i in range(10)]
    async with asyncio.timeout(5):
        while len(adder.runs) < 10:
            await asyncio.sleep(0.02)
    await server.stop(grace=5)  # a rolling restart: no call left for another process
    assert [a["sum"] for a in await asyncio.gather(*calls)] == [2 * i for i in range(10)]
    assert adder.runs == {f"k{i}": 1 for i in range(10)}
    await zone.aclose()


async def test_a_broker_that_never_answers_fails_each_call_within_its_deadline() -> None:
    """A listener that accepts and says nothing (a hung broker): each call gives up at its
    own deadline, not after the one before it has also waited out a connect."""
    accepted: list[asyncio.StreamWriter] = []

    async def mute(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    zone = link(f"amqp://guest:guest@127.0.0.1:{port}/", "skyfed.zone.x")
    started = time.monotonic()
    outcomes = await asyncio.gather(
        *(zone.call(add(f"k{i}", 1, 1, timeout=1.0)) for i in range(4)), return_exceptions=True
    )
    assert all(isinstance(o, ZoneUnreachable) and o.timed_out for o in outcomes), outcomes
    assert time.monotonic() - started < 4  # 1 s each, at once (it was 5, 10, 15, 20 s)
    server.close()
    for writer in accepted:  # the hung broker goes away; the link's last attempt ends
        writer.close()
    await zone.aclose()


async def test_concurrent_calls_share_messages_and_each_gets_its_own_answer(
    amqp_url: str, queue: str
) -> None:
    adder = Adder()
    async with serving(adder.app(), amqp_url, queue) as zone:
        answers = await asyncio.gather(*(zone.call(add(f"k{i}", i, 1)) for i in range(300)))
        assert [a["sum"] for a in answers] == [i + 1 for i in range(300)]
        assert adder.runs == {f"k{i}": 1 for i in range(300)}
        # Calls that queued while earlier publishes awaited confirms left together (a login
        # went first, alone).
        assert zone.transport.stats.messages <= 300 // 2
        assert (await zone.call(add("alone", 1, 1)))["sum"] == 2  # an idle link sends at once


async def test_answers_of_a_batch_arrive_as_each_call_finishes(amqp_url: str, queue: str) -> None:
    class Gate(Adder):
        async def add(self, request: Request) -> JSONResponse:
            body = await request.json()
            if body["key"] == "slow":
                await self.release.wait()
            self.runs[body["key"]] = self.runs.get(body["key"], 0) + 1
            return JSONResponse({"sum": body["a"] + body["b"]})

    gate = Gate()
    async with serving(gate.app(), amqp_url, queue) as zone:
        assert (await zone.call(add("warm", 1, 1)))["sum"] == 2
        sent_before = zone.transport.stats.messages
        gate.release.clear()
        calls = [add("slow", 1, 1)] + [add(f"f{i}", i, i) for i in range(20)]
        tasks = [asyncio.create_task(zone.call(c)) for c in calls]
        async with asyncio.timeout(5):
            fast = await asyncio.gather(*tasks[1:])  # answered while "slow" still waits
        assert [a["sum"] for a in fast] == [2 * i for i in range(20)]
        assert zone.transport.stats.messages - sent_before < len(calls)  # some shared a message
        assert not tasks[0].done()
        gate.release.set()
        assert (await tasks[0])["sum"] == 2


async def test_a_malformed_batch_is_dropped_and_serving_goes_on(amqp_url: str, queue: str) -> None:
    from skyfed.transport.envelope import CALLS_TYPE

    adder = Adder()
    server = child_server(adder.app(), amqp_url, queue)
    await server.start()
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    replies = await channel.declare_queue(reply_queue_for("svc"), exclusive=True)
    await channel.default_exchange.publish(
        aio_pika.Message(
            b"\x00\x00\x00\x09not json!\x00\x00\x00\x00",
            content_type=CALLS_TYPE,
            message_id="m-1",
            reply_to=replies.name,
        ),
        queue,
    )
    zone = link(amqp_url, queue)
    assert (await zone.call(add("after", 2, 3)))["sum"] == 5
    assert adder.runs == {"after": 1}
    await zone.aclose()
    await connection.close()
    await server.stop()


async def test_calls_not_safe_to_repeat_travel_alone(amqp_url: str, queue: str) -> None:
    """A batch is acknowledged once all its calls are answered, so a process dying
    mid-batch leaves every call of it to run again: only calls safe to repeat share."""
    adder = Adder()
    async with serving(adder.app(), amqp_url, queue) as zone:
        assert (await zone.call(add("warm", 1, 1)))["sum"] == 2  # logged in
        sent_before = zone.transport.stats.messages
        once = [
            ZoneRequest("POST", "/v1/add", json={"key": f"o{i}", "a": i, "b": 0}, idempotent=False)
            for i in range(40)
        ]
        answers = await asyncio.gather(*(zone.call(r) for r in once))
        assert [a["sum"] for a in answers] == list(range(40))
        assert zone.transport.stats.messages - sent_before == 40


async def test_a_process_runs_at_most_max_calls_at_once(amqp_url: str, queue: str) -> None:
    class Counting(Adder):
        def __init__(self) -> None:
            super().__init__(delay=0.05)
            self.now = self.most = 0

        async def add(self, request: Request) -> JSONResponse:
            self.now += 1
            self.most = max(self.most, self.now)
            try:
                return await super().add(request)
            finally:
                self.now -= 1

    counting = Counting()
    async with serving(counting.app(), amqp_url, queue, max_calls=5) as zone:
        answers = await asyncio.gather(*(zone.call(add(f"k{i}", i, i)) for i in range(40)))
        assert [a["sum"] for a in answers] == [2 * i for i in range(40)]
        assert counting.most == 5
