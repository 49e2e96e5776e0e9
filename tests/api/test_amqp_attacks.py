"""Attacks on a zone's AMQP link, performed for real: each must fail.

A real zone app serves its queues on the local RabbitMQ, in a vhost of the test's
own with broker users made as `skyfed up` makes them (`federation/broker.py`):
the zone's, a parent link's (account `svc`) and a host agent's (account `agent`).
`guest`, an administrator, plays whoever else can reach the broker. The vhost
and users are removed at the end of each test.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from skyfed.cli.agent import bus_client
from skyfed.client import SkyfedError, ZoneUnreachable
from skyfed.federation.broker import (
    BrokerUser,
    agent_permissions,
    apply,
    ctl,
    link_permissions,
    new_user,
    remove,
    url_for,
    zone_permissions,
)
from skyfed.identity.link_keys import derive_link_key
from skyfed.transport.amqp import amqp_link
from skyfed.transport.base import ZoneRequest
from skyfed.transport.envelope import ANSWERS_TYPE, CALLS_TYPE, pack
from skyfed.transport.names import (
    AGENTS_EXCHANGE,
    CALLS_EXCHANGE,
    agent_queue_for,
    queue_for,
    reply_queue_for,
)
from skyfed.transport.signing import SIGNATURE_HEADER, answer_signature
from tests.conftest import (
    AGENT_PASSWORD,
    IN_CI,
    SERVICE_PASSWORD,
    InProcessZone,
    bus_ready,
    zone_settings,
)
from tests.contract.signed import call_message, envelope
from tests.waiting import until

pytestmark = pytest.mark.skipif(
    shutil.which("rabbitmqctl") is None and not IN_CI, reason="rabbitmqctl is not installed"
)


@dataclass
class Site:
    """One zone's broker: its vhost, and its users as `skyfed up` makes them."""

    base_url: str
    vhost: str
    zone_name: str
    zone: BrokerUser
    link: BrokerUser  # the parent's link account `svc`
    agent: BrokerUser  # the host agent's account `agent`

    def url(self, user: BrokerUser) -> str:
        return url_for(self.base_url, user)

    @property
    def guest_url(self) -> str:
        return f"{self.base_url.rstrip('/')}/{self.vhost}"

    @property
    def queue(self) -> str:
        return queue_for(self.zone_name)


@pytest.fixture
async def site(amqp_url: str) -> AsyncIterator[Site]:

    tag = uuid.uuid4().hex[:10]
    vhost, name = f"skyfed-test-{tag}", f"zone-{tag}"
    users = [
        new_user(f"skyfed-test-{tag}-zone", vhost, zone_permissions(name)),
        new_user(f"skyfed-test-{tag}-link-svc", vhost, link_permissions("svc")),
        new_user(f"skyfed-test-{tag}-agent", vhost, agent_permissions("agent")),
    ]
    try:
        await asyncio.to_thread(apply, [vhost], users)
        await asyncio.to_thread(ctl, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield Site(amqp_url, vhost, name, *users)
    finally:
        left = await asyncio.to_thread(remove, [vhost], [u.name for u in users])
        assert not left, left


@pytest.fixture
async def bus_zone(site: Site, tmp_path: Path) -> AsyncIterator[InProcessZone]:
    """The zone, on SQLite, serving its queues with its own broker user."""
    settings = zone_settings(tmp_path / "zone", name=site.zone_name, bus_url=site.url(site.zone))
    async with InProcessZone(settings) as zone:
        await bus_ready(zone)
        yield zone


def server_of(zone: InProcessZone, index: int = 0) -> Any:
    """The zone's queue server: 0 its parents' queue, 1 its agents'."""
    return zone.app.state.bus[index]


async def take(queue: AbstractQueue, count: int, timeout: float = 10.0) -> list[Any]:
    """`count` messages from `queue` (bounded in time)."""
    got: list[AbstractIncomingMessage] = []
    async with asyncio.timeout(timeout):
        while len(got) < count:
            message = await queue.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.02)
            else:
                got.append(message)
    return got


async def test_unsigned_or_wrongly_signed_calls_are_refused_and_their_token_never_used(
    site: Site, bus_zone: InProcessZone
) -> None:
    async with bus_zone.client() as admin:
        await admin.list_projects()  # logged in: the admin's token, as a thief would hold it
        stolen = f"Bearer {admin.token}"
    connection = await aio_pika.connect(site.url(site.link))
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        calls = await channel.get_exchange(CALLS_EXCHANGE, ensure=False)
        replies = await channel.declare_queue(reply_queue_for("svc"), exclusive=True)

        def create(project: str, **signing: Any) -> aio_pika.Message:
            options: dict[str, Any] = {"account": "svc", "password": SERVICE_PASSWORD}
            options.update(signing)
            return call_message(
                queue=site.queue,
                reply_to=replies.name,
                call_id=f"call-{project}",
                body={"name": project},
                env=envelope("POST", "/v1/projects", headers={"authorization": stolen}),
                **options,
            )

        unsigned = create("pwned-1", password=None)
        wrong_key = create("pwned-2", password="a guess")
        unknown = create("pwned-3", account="nobody")
        tampered = create("harmless")
        tampered = aio_pika.Message(
            json.dumps({"name": "pwned-4"}).encode(),
            headers=tampered.headers,
            message_id="call-pwned-4",
            correlation_id="call-harmless",  # the id it was signed with
            reply_to=replies.name,
        )
        for message in (unsigned, wrong_key, unknown, tampered):
            await calls.publish(message, routing_key=site.queue)
        # Signed by the parent's account, and carrying the stolen token: it runs as the
        # parent's service account (the token never reaches the app), which may not.
        await calls.publish(create("pwned-5"), routing_key=site.queue)

        answers = {m.correlation_id: m for m in await take(replies, 4)}
        # Refusals go unsigned, to the claimed account's reply queue only (not `nobody`'s).
        for call_id in ("call-pwned-1", "call-pwned-2", "call-harmless"):
            assert answers[call_id].headers["x-status"] == 401
            assert b"bad_signature" in answers[call_id].body
            assert SIGNATURE_HEADER not in answers[call_id].headers
        signed = answers["call-pwned-5"]
        assert signed.headers["x-status"] == 403  # the service account is no admin
        assert same_signature(signed, "svc", SERVICE_PASSWORD)

        await until(lambda: server_of(bus_zone).stats.refused == 4)  # `nobody`'s, untold

        # A batch: each call is verified alone; the good one is answered, the bad one not run.
        batch = pack(
            [
                ({"id": "call-good", **_whoami_headers(site, replies.name, "call-good")}, b""),
                ({"id": "call-pwned-6", **dict(create("pwned-6", password="guess").headers)},
                 json.dumps({"name": "pwned-6"}).encode()),
            ]
        )  # fmt: skip
        await calls.publish(
            aio_pika.Message(
                batch, content_type=CALLS_TYPE, message_id="b-1", reply_to=replies.name
            ),
            routing_key=site.queue,
        )
        # The refusal and the answer may come as one reply or as two (the refusal goes
        # at once, the answer once the call ran): read until both are in.
        heads: dict[str, tuple[dict[str, Any], bytes]] = {}
        for _ in range(2):
            heads |= _answers(await take(replies, 1))
            if {"call-good", "call-pwned-6"} <= heads.keys():
                break
        assert heads["call-good"][0]["x-status"] == 200
        assert json.loads(heads["call-good"][1])["username"] == "svc"
        assert heads["call-pwned-6"][0]["x-status"] == 401
    async with bus_zone.client() as admin:
        names = {p.name for p in await admin.list_projects()}
    assert not {n for n in names if n.startswith("pwned")}, names


def _whoami_headers(site: Site, reply_to: str, call_id: str) -> dict[str, Any]:
    message = call_message(
        account="svc",
        password=SERVICE_PASSWORD,
        queue=site.queue,
        reply_to=reply_to,
        call_id=call_id,
        body=None,
        env=envelope("GET", "/v1/auth/whoami"),
    )
    return dict(message.headers)


def _answers(replies: list[Any]) -> dict[str, tuple[dict[str, Any], bytes]]:
    from skyfed.transport.envelope import unpack

    found: dict[str, tuple[dict[str, Any], bytes]] = {}
    for reply in replies:
        if reply.content_type == ANSWERS_TYPE:
            for head, body in unpack(reply.body):
                found[head["id"]] = (head, body)
        else:
            found[reply.correlation_id] = (dict(reply.headers), reply.body)
    return found


def same_signature(reply: Any, account: str, password: str) -> bool:
    headers = {k: str(v) for k, v in dict(reply.headers.get("x-headers") or {}).items()}
    expected = answer_signature(
        derive_link_key(account, password),
        call_id=reply.correlation_id,
        status=int(reply.headers["x-status"]),
        headers=headers,
        body=reply.body,
    )
    return bool(reply.headers.get(SIGNATURE_HEADER) == expected)


async def test_an_agents_broker_user_reaches_heartbeats_only(
    site: Site, bus_zone: InProcessZone
) -> None:
    async def refused(user_url: str, act: Any) -> str:
        connection = await aio_pika.connect(user_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            with pytest.raises(aiormq.exceptions.ChannelAccessRefused) as caught:
                await act(channel)
            return str(caught.value)

    async def consume_zone_queue(channel: Any) -> None:
        queue = await channel.declare_queue(site.queue, passive=True)
        await queue.consume(_ignore)

    async def publish_a_call(channel: Any) -> None:
        calls = await channel.get_exchange(CALLS_EXCHANGE, ensure=False)
        await calls.publish(aio_pika.Message(b"{}"), routing_key=site.queue)

    async def publish_by_default_exchange(channel: Any) -> None:
        await channel.default_exchange.publish(aio_pika.Message(b"{}"), routing_key=site.queue)

    async def read_the_parents_answers(channel: Any) -> None:
        await channel.declare_queue(reply_queue_for("svc"), exclusive=True)

    agent = site.url(site.agent)
    assert "ACCESS_REFUSED" in await refused(agent, consume_zone_queue)
    assert "ACCESS_REFUSED" in await refused(agent, publish_a_call)
    assert "ACCESS_REFUSED" in await refused(agent, publish_by_default_exchange)
    assert "ACCESS_REFUSED" in await refused(agent, read_the_parents_answers)

    async def consume_agent_queue(channel: Any) -> None:
        queue = await channel.declare_queue(agent_queue_for(site.zone_name), passive=True)
        await queue.consume(_ignore)

    async def publish_to_agents(channel: Any) -> None:
        agents = await channel.get_exchange(AGENTS_EXCHANGE, ensure=False)
        await agents.publish(aio_pika.Message(b"{}"), routing_key=site.queue)

    link = site.url(site.link)  # a parent: no zone's queue, and no agent's part either
    assert "ACCESS_REFUSED" in await refused(link, consume_zone_queue)
    assert "ACCESS_REFUSED" in await refused(link, consume_agent_queue)
    assert "ACCESS_REFUSED" in await refused(link, publish_to_agents)
    assert "ACCESS_REFUSED" in await refused(link, publish_by_default_exchange)

    # What an agent may do, it does: heartbeats over its queue, signed with its key.
    async with bus_zone.client(None, None) as http:
        beats = await bus_client(http, agent, "agent", AGENT_PASSWORD, "agent-1")
        async with beats:
            await beats.heartbeat("h1", resources={"vcpus": 4, "ram_mb": 4096})
            with pytest.raises(SkyfedError) as caught:  # and nothing else on that queue
                await beats.request("GET", "/v1/zone")
            assert (caught.value.status, caught.value.code) == (403, "not_served_here")
    async with bus_zone.client() as admin:
        assert [h.name for h in await admin.all_hosts()] == ["h1"]


async def _ignore(message: AbstractIncomingMessage) -> None:
    return None


async def test_a_forged_answer_is_dropped_and_the_caller_gets_the_genuine_one(
    site: Site, tmp_path: Path
) -> None:
    guest = await aio_pika.connect(site.guest_url)
    async with guest:
        channel = await guest.channel()
        # The zone's queue exists (it ran before) but nobody serves it yet: the parent's
        # call waits there while the forger answers.
        calls = await channel.declare_exchange(
            CALLS_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True
        )
        for queue_name in (site.queue, f"{site.queue}-idle"):
            queue = await channel.declare_queue(queue_name, durable=True)
            await queue.bind(calls, routing_key=queue_name)
        parent = amqp_link(
            site.url(site.link), site.queue, username="svc", password=SERVICE_PASSWORD
        )
        try:
            asking = asyncio.create_task(parent.call(ZoneRequest("GET", "/v1/zone", timeout=30)))
            transport = parent.transport
            await until(lambda: any(c.sent for c in transport._calls.values()))
            [call_id] = transport._calls
            reply_queue = transport._reply_queue
            forged = json.dumps({"name": "forged"}).encode()
            wrong_key = answer_signature(
                derive_link_key("svc", "a guess"), call_id=call_id, status=200, headers={},
                body=forged,
            )  # fmt: skip
            for headers in ({"x-status": 200}, {"x-status": 200, SIGNATURE_HEADER: wrong_key}):
                await channel.default_exchange.publish(
                    aio_pika.Message(forged, headers=headers, correlation_id=call_id),
                    routing_key=reply_queue,
                )
            await channel.default_exchange.publish(
                aio_pika.Message(
                    pack([({"id": call_id, "x-status": 200}, forged)]), content_type=ANSWERS_TYPE
                ),
                routing_key=reply_queue,
            )
            await until(lambda: transport.stats.forged_answers == 3)
            assert not asking.done()  # none of them was believed

            settings = zone_settings(
                tmp_path / "zone", name=site.zone_name, bus_url=site.url(site.zone)
            )
            async with InProcessZone(settings):
                answer = await asking
            assert answer["name"] == site.zone_name  # the zone's own answer

            # A call whose genuine answer never comes: its error says what was dropped.
            idle = amqp_link(
                site.url(site.link), f"{site.queue}-idle", username="svc",
                password=SERVICE_PASSWORD,
            )  # fmt: skip
            try:
                waiting = asyncio.create_task(idle.call(ZoneRequest("GET", "/v1/zone", timeout=2)))
                await until(lambda: any(c.sent for c in idle.transport._calls.values()))
                [idle_id] = idle.transport._calls
                await channel.default_exchange.publish(
                    aio_pika.Message(forged, headers={"x-status": 200}, correlation_id=idle_id),
                    routing_key=idle.transport._reply_queue,
                )
                with pytest.raises(ZoneUnreachable) as caught:
                    await waiting
                assert caught.value.timed_out
                assert "dropped 1 unsigned or forged answer" in caught.value.message
            finally:
                await idle.aclose()
        finally:
            await parent.aclose()


async def test_a_call_id_replayed_by_another_account_is_not_answered_from_the_first_run(
    site: Site, bus_zone: InProcessZone
) -> None:
    async with bus_zone.client() as admin:
        await admin.create_user("svc2", "svc2-password", "service", ["service"])

    async def whoami(connection: Any, account: str, password: str) -> dict[str, Any]:
        channel = await connection.channel(publisher_confirms=True)
        replies = await channel.declare_queue(reply_queue_for(account), exclusive=True)
        calls = await channel.get_exchange(CALLS_EXCHANGE, ensure=False)
        message = call_message(
            account=account,
            password=password,
            queue=site.queue,
            reply_to=replies.name,
            call_id="the-same-call",
            body=None,
            env=envelope("GET", "/v1/auth/whoami"),
        )
        await calls.publish(message, routing_key=site.queue)
        [reply] = await take(replies, 1)
        assert reply.headers["x-status"] == 200
        assert same_signature(reply, account, password)  # signed with the caller's own key
        await channel.close()
        return dict(json.loads(reply.body))

    link = await aio_pika.connect(site.url(site.link))
    other = await aio_pika.connect(site.guest_url)  # svc2's broker user: any that may publish
    async with link, other:
        assert (await whoami(link, "svc", SERVICE_PASSWORD))["username"] == "svc"
        assert (await whoami(other, "svc2", "svc2-password"))["username"] == "svc2"
        assert (await whoami(link, "svc", SERVICE_PASSWORD))["username"] == "svc"  # from cache
    assert len(server_of(bus_zone).answers) == 2  # one per (account, call)


async def test_answers_go_to_reply_queues_of_the_caller_only(
    site: Site, bus_zone: InProcessZone
) -> None:
    guest = await aio_pika.connect(site.guest_url)
    link = await aio_pika.connect(site.url(site.link))
    async with guest, link:
        watching = await guest.channel()
        victims = [
            await watching.declare_queue(f"victim-{uuid.uuid4().hex[:8]}"),  # no skyfed queue
            await watching.declare_queue(reply_queue_for("svc2")),  # another account's replies
        ]
        channel = await link.channel(publisher_confirms=True)
        calls = await channel.get_exchange(CALLS_EXCHANGE, ensure=False)
        own = await channel.declare_queue(reply_queue_for("svc"), exclusive=True)
        targets = [v.name for v in victims] + [site.queue, f"skyfed.reply.svc.{'x' * 32}"]
        for i, reply_to in enumerate([*targets, own.name]):
            message = call_message(
                account="svc",
                password=SERVICE_PASSWORD,
                queue=site.queue,
                reply_to=reply_to,
                call_id=f"call-{i}",
                body=None,
                env=envelope("GET", "/v1/zone"),
            )
            await calls.publish(message, routing_key=site.queue)
        [answer] = await take(own, 1)  # the well-formed call is answered
        assert answer.correlation_id == f"call-{len(targets)}"
        await until(lambda: server_of(bus_zone).stats.misdirected == len(targets))
        await asyncio.sleep(0.3)  # anything published would have arrived by now
        for victim in victims:
            again = await watching.declare_queue(victim.name, passive=True)
            assert again.declaration_result.message_count == 0, victim.name
    assert server_of(bus_zone).stats.refused == 0  # signed calls: dropped, not refused
