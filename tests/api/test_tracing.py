"""One trace for a create entered at the root of `root > region > dc`, down to the host
agent's boot, over HTTP links and over AMQP links; and task runs counted at /metrics.

The zones run in this process (the root in-process; below it, zones on loopback
sockets for HTTP, or zones consuming their queues on the local RabbitMQ for AMQP),
and so does the data centre's agent (an AgentRunner with the sim driver). Every one
of them gets the same in-memory span exporter; the spans carry their zone in their
resource (`skyfed.zone`), and the trace is followed by parent ids alone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from skyfed.client import SkyfedClient
from skyfed.compute.agent.runner import AgentRunner
from skyfed.compute.agent.sim import SimHost
from skyfed.compute.agent.sim_driver import SimDriver
from skyfed.federation.process import free_port
from skyfed.logs import JsonFormatter
from skyfed.observability.tracing import Tracing, attached
from skyfed.transport.names import agent_queue_for, queue_for
from tests.conftest import (
    AGENT_PASSWORD,
    SERVICE_PASSWORD,
    InProcessZone,
    ServedZone,
    bus_ready,
    zone_settings,
)
from tests.fakes import ScriptedAgent
from tests.scrapes import samples, value
from tests.waiting import eventually, until

pytestmark = pytest.mark.timeout(120)
AGENT = "agent"  # the zones' configured agent account (tests/conftest.zone_settings)
RESOURCES = {"vcpus": 8, "ram_mb": 16384, "disk_gb": 200}
HOST = SimHost("h1", {"arch": "x86_64"}, RESOURCES, dict.fromkeys(RESOURCES, 0))


class LogLines(logging.Handler):
    """The JSON lines the zones and the agent write, as each was formatted."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(JsonFormatter("test"))
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@dataclass
class Traced:
    names: dict[str, str]  # root, region, dc -> the zone's name
    zones: dict[str, InProcessZone | ServedZone]
    spans: InMemorySpanExporter = field(default_factory=InMemorySpanExporter)
    logs: LogLines = field(default_factory=LogLines)


@asynccontextmanager
async def traced_tree(tmp_path: Path, amqp_url: str | None) -> AsyncIterator[Traced]:
    """root > region > dc, linked over AMQP when given a broker, else over HTTP; the dc's
    agent carries one host; every zone and the agent export to one in-memory exporter."""
    tag = uuid.uuid4().hex[:8]
    names = {"root": f"root-{tag}", "region": f"region-{tag}", "dc": f"dc-{tag}"}
    traced = Traced(names, {})
    logger = logging.getLogger("skyfed")
    level = logger.level
    async with AsyncExitStack() as stack:
        parent: InProcessZone | ServedZone | None = None
        for level_name in ("root", "region", "dc"):
            name = names[level_name]
            zone: InProcessZone | ServedZone
            if parent is None:
                zone = InProcessZone(zone_settings(tmp_path / name, None, name=name))
            elif amqp_url is not None:
                settings = zone_settings(tmp_path / name, None, name=name, bus_url=amqp_url)
                zone = InProcessZone(settings)
                stack.push_async_callback(_delete_queues, amqp_url, name)
            else:
                zone = ServedZone(zone_settings(tmp_path / name, None, name=name, port=free_port()))
            await stack.enter_async_context(zone)
            if parent is not None:
                async with parent.client() as admin:
                    if amqp_url is not None:
                        assert isinstance(zone, InProcessZone)
                        await bus_ready(zone)
                        dead_api = f"http://127.0.0.1:{free_port()}"  # never called
                        await admin.add_zone(
                            name, dead_api, "svc", SERVICE_PASSWORD,
                            transport="amqp", bus_url=amqp_url,
                        )  # fmt: skip
                    else:
                        assert isinstance(zone, ServedZone)
                        await admin.add_zone(name, zone.url, "svc", SERVICE_PASSWORD)
            traced.zones[level_name] = zone
            parent = zone

        dc = traced.zones["dc"]
        agent_tracing = Tracing("skyfed-agent", names["dc"])
        client = await stack.enter_async_context(dc.client(AGENT, AGENT_PASSWORD))
        runner = AgentRunner(
            client,
            SimDriver([HOST], boot_delay=0.01, jitter=0.0),
            AGENT,
            interval=0.2,
            poll_wait=1,
            tracing=agent_tracing,
        )
        stop = asyncio.Event()
        agent = asyncio.create_task(runner.run(stop))

        async def stop_agent() -> None:
            stop.set()
            await asyncio.wait_for(agent, 15)

        stack.push_async_callback(stop_agent)
        async with dc.client() as dc_admin:
            await eventually(dc_admin.all_hosts, 10, "the agent's host known at the dc")
        for lower in ("region", "root"):  # each parent polls its child once, lowest first
            result = await traced.zones[lower].process.tree.poller.cycle()
            assert result.polled == result.ok == 1, (lower, result)

        for zone in traced.zones.values():
            zone.process.core.tracing.export(traced.spans)
        agent_tracing.export(traced.spans)
        logger.addHandler(traced.logs)
        logger.setLevel(logging.INFO)
        try:
            yield traced
        finally:
            logger.removeHandler(traced.logs)
            logger.setLevel(level)


async def _delete_queues(amqp_url: str, name: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(queue_for(name))
        await channel.queue_delete(agent_queue_for(name))


def _zone(span: ReadableSpan) -> str:
    return str(span.resource.attributes.get("skyfed.zone"))


def _chain(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[ReadableSpan]:
    """The span and its ancestors, up to the trace's root."""
    chain = [span]
    while chain[-1].parent is not None:
        parent = by_id.get(chain[-1].parent.span_id)
        assert parent is not None, f"{chain[-1].name}'s parent was not exported"
        chain.append(parent)
    return chain


async def create_and_follow(traced: Traced) -> None:
    names = traced.names
    async with traced.zones["root"].client() as admin:
        [made] = (await admin.create_servers(name="traced", flavor="m1.small")).servers

        async def active() -> bool:
            return (await admin.get_server(made.id)).status == "ACTIVE"

        await eventually(active, 30, "the server ACTIVE at the root")
        [place] = (await admin.list_tasks(resource_id=made.id)).tasks

    def spans() -> list[ReadableSpan]:
        return list(traced.spans.get_finished_spans())

    def root_create() -> ReadableSpan | None:
        found = [
            s
            for s in spans()
            if s.name == "POST /v1/servers" and _zone(s) == names["root"] and s.parent is None
        ]
        assert len(found) <= 1, [s.name for s in found]
        return found[0] if found else None

    request = await until(root_create, 10, "the root's span of the create")
    assert request.context is not None
    trace_id = request.context.trace_id

    def result_posted() -> ReadableSpan | None:
        return next(
            (
                s
                for s in spans()
                if s.context is not None
                and s.context.trace_id == trace_id
                and s.name == "POST /v1/agents/{agent}/results"
            ),
            None,
        )

    # The agent's result reaches the dc within the trace (its span ends after its answer).
    result = await until(result_posted, 10, "the agent's result in the trace")
    trace = [s for s in spans() if s.context is not None and s.context.trace_id == trace_id]
    by_id = {s.context.span_id: s for s in trace if s.context is not None}
    servers = {_zone(s) for s in trace if s.kind == SpanKind.SERVER}
    assert servers >= set(names.values()), servers
    assert {_zone(s) for s in trace if s.name == "task place"} == set(names.values())

    # The result's span at the dc hangs under the agent's boot, which hangs under the
    # dc's place task, and so on up to the root's request: one chain across the tree,
    # each call to a child the parent of the child's request.
    chain = _chain(result, by_id)
    steps = [(_zone(s), s.name) for s in chain]
    expected = [
        (names["dc"], "POST /v1/agents/{agent}/results"),
        (names["dc"], "agent boot"),
        (names["dc"], "task place"),
        (names["dc"], "POST /v1/servers/delegated"),  # with the id chosen at the root
        (names["region"], f"call {names['dc']}"),
        (names["region"], "task place"),
        (names["region"], "POST /v1/servers/delegated"),
        (names["root"], f"call {names['region']}"),
        (names["root"], "task place"),
        (names["root"], "POST /v1/servers"),
    ]
    assert steps == expected, "\n".join(map(str, steps))
    assert chain[-1] is request
    boot = next(s for s in chain if s.name == "agent boot")
    assert boot.resource.attributes["service.name"] == "skyfed-agent"
    assert boot.attributes is not None and boot.attributes["skyfed.server.id"] == made.id
    calls = [s for s in chain if s.kind == SpanKind.CLIENT]
    assert len(calls) == 2

    hex_id = format(trace_id, "032x")
    assert place.traceparent is not None and place.traceparent.split("-")[1] == hex_id

    # Log lines written while serving it carry its trace id: the root's access line,
    # the agent's line for the command.
    traced_lines = [line for line in traced.logs.lines if line.get("trace_id") == hex_id]
    assert any(
        line["msg"] == "request" and line.get("path") == "/v1/servers" for line in traced_lines
    ), traced_lines
    assert any(
        line["msg"] == "command done" and line.get("server_id") == made.id for line in traced_lines
    ), traced_lines


async def test_one_trace_from_the_root_to_the_agent_over_http(tmp_path: Path) -> None:
    async with traced_tree(tmp_path, None) as traced:
        await create_and_follow(traced)


async def test_one_trace_from_the_root_to_the_agent_over_amqp(
    tmp_path: Path, amqp_url: str
) -> None:
    async with traced_tree(tmp_path, amqp_url) as traced:
        await create_and_follow(traced)


async def metrics(zone: InProcessZone, admin: SkyfedClient) -> dict[Any, float]:
    """GET /metrics with the admin's token, parsed with Prometheus' own parser."""
    return samples(await admin.metrics())


async def test_task_runs_are_counted_by_kind_and_outcome(zone: InProcessZone, admin) -> None:
    async with zone.client(AGENT, AGENT_PASSWORD) as client:
        agent = ScriptedAgent(client)
        await agent.beat({"h1": RESOURCES})
        runs = "skyfed_task_runs_total"
        before = await metrics(zone, admin)
        succeeded = value(before, runs, kind="place", outcome="succeeded")
        assert succeeded is not None  # every kind's series exists from the start
        created = 3
        ids = [
            (await admin.create_servers(name=f"s{i}", flavor="m1.tiny")).servers[0].id
            for i in range(created)
        ]

        async def all_active() -> bool:
            await agent.answer_all()
            statuses = [(await admin.get_server(i)).status for i in ids]
            return statuses == ["ACTIVE"] * created

        await eventually(all_active, 30, "the servers ACTIVE")

        async def counted() -> dict[Any, float] | None:
            after = await metrics(zone, admin)
            done = value(after, runs, kind="place", outcome="succeeded")
            return after if done == succeeded + created else None

        after = await eventually(counted, 10, f"{created} place runs counted")
        for outcome in ("failed", "retried", "lost"):
            assert value(after, runs, kind="place", outcome=outcome) == value(
                before, runs, kind="place", outcome=outcome
            )
        duration = "skyfed_task_run_duration_seconds_count"
        grew = value(after, duration, kind="place") - value(before, duration, kind="place")  # type: ignore[operator]
        assert grew == created
        assert value(after, "skyfed_tasks", kind="place", state="queued") == 0
        assert value(after, "skyfed_task_queue_depth", kind="place") == 0


async def test_creates_sent_down_together_keep_their_own_traces(tmp_path: Path) -> None:
    """Creates of several traces travel to a child in one batched request, and their
    boot commands are written in one transaction: each server's boot at the agent
    still continues the trace of its own create."""
    async with traced_tree(tmp_path, None) as traced:
        count = 4
        callers = {i: f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01" for i in range(count)}
        async with traced.zones["root"].client() as admin:

            async def create(i: int) -> str:
                with attached(callers[i]):  # as a caller's own tracing would send it
                    made = await admin.create_servers(name=f"batch{i}", flavor="m1.small")
                return made.servers[0].id

            ids = await asyncio.gather(*(create(i) for i in range(count)))

            async def all_active() -> bool:
                statuses = [(await admin.get_server(s)).status for s in ids]
                return statuses == ["ACTIVE"] * count

            await eventually(all_active, 30, "the servers ACTIVE at the root")

        def boots() -> dict[str, ReadableSpan] | None:
            found = {
                str(s.attributes["skyfed.server.id"]): s
                for s in traced.spans.get_finished_spans()
                if s.name == "agent boot" and s.attributes
            }
            return found if set(ids) <= set(found) else None

        booted = await until(boots, 10, "every boot's span")
        for i, server_id in enumerate(ids):
            boot = booted[server_id]
            assert boot.context is not None
            wanted = int(callers[i].split("-")[1], 16)
            assert boot.context.trace_id == wanted, (i, server_id)
