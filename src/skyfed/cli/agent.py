"""`skyfed agent`: a host agent; with the sim driver one process carries thousands of hosts.

It heartbeats the hosts of its spec file, long-polls the zone for commands,
runs them through its driver and reports results and events (docs/compute.md,
"The agent protocol").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from skyfed.cli.common import Password, Url, Username
from skyfed.client import SkyfedClient, SkyfedError
from skyfed.compute.agent.driver import Driver, DriverError
from skyfed.compute.agent.process_driver import ProcessDriver
from skyfed.compute.agent.runner import AgentRunner
from skyfed.compute.agent.sandbox import MAX_OPEN_FILES, MAX_PROCESSES, SandboxOptions
from skyfed.compute.agent.sim import SimHost, SpecError, expand_groups
from skyfed.compute.agent.sim_driver import SimDriver
from skyfed.compute.agent.uid_ledger import UID_BASE, UID_COUNT
from skyfed.logs import configure_logging
from skyfed.schema_types import NAME_PATTERN

if TYPE_CHECKING:
    from skyfed.observability.tracing import Tracing

DRIVERS = ("sim", "process")


def _fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(2)


def load_spec(spec: Path, seed: int) -> tuple[dict[str, Any], list[SimHost]]:
    raw = spec.read_bytes()
    data = json.loads(raw) if spec.suffix == ".json" else tomllib.loads(raw.decode())
    if not isinstance(data, dict):
        raise SpecError("the spec must be an object with groups = [...]")
    hosts = expand_groups(data.get("groups", []), prefix=data.get("prefix", "host"), seed=seed)
    return data, hosts


def agent(
    url: Url,
    spec: Annotated[
        Path, typer.Option(help="Host groups, JSON or TOML: {prefix = ..., groups = [...]}.")
    ],
    username: Username = None,
    password: Password = None,
    driver: Annotated[
        str, typer.Option(help="sim: simulated servers; process: each server a local process.")
    ] = "sim",
    name: Annotated[
        str | None,
        typer.Option(
            help="This agent's name (commands are routed by it): its account's user name, "
            "which is the default (see `skyfed agent-account`)."
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(help="process driver: server logs and state. Default: ./agent-state/<name>."),
    ] = None,
    interval: Annotated[float, typer.Option(help="Seconds between heartbeats.")] = 10.0,
    boot_delay: Annotated[float, typer.Option(help="sim: seconds a boot takes.")] = 0.5,
    jitter: Annotated[float, typer.Option(help="sim: boot delay varies by this fraction.")] = 0.5,
    failure_rate: Annotated[float, typer.Option(help="sim: fraction of boots that fail.")] = 0.0,
    seed: Annotated[int, typer.Option(help="sim: seed of loads, delays and failures.")] = 0,
    stop_grace: Annotated[
        float, typer.Option(help="process: seconds between SIGTERM and SIGKILL on stop.")
    ] = 10.0,
    stop_servers_on_exit: Annotated[
        bool,
        typer.Option(
            "--stop-servers-on-exit/--leave-servers-on-exit",
            help="process: stop every server when the agent stops (so `skyfed up` and Ctrl-C "
            "leave nothing behind), or leave them running for the next agent to adopt.",
        ),
    ] = True,
    server_uid_base: Annotated[
        int,
        typer.Option(
            help="process: the first uid (and gid) given to servers, each its own; no "
            "account may use one of the range."
        ),
    ] = UID_BASE,
    server_uid_count: Annotated[
        int, typer.Option(help="process: how many uids from --server-uid-base.")
    ] = UID_COUNT,
    server_homes: Annotated[
        Path | None,
        typer.Option(
            help="process: where each server's home (its HOME and default cwd) is made. "
            "Default: <state-dir>/_homes. Every directory above it must let others pass (o+x)."
        ),
    ] = None,
    server_max_processes: Annotated[
        int, typer.Option(help="process: processes (and threads) a server may have at once.")
    ] = MAX_PROCESSES,
    server_max_open_files: Annotated[
        int, typer.Option(help="process: files a server process may have open.")
    ] = MAX_OPEN_FILES,
    cgroups: Annotated[
        bool,
        typer.Option(
            "--cgroups/--no-cgroups",
            help="process: hold memory, CPU and processes to the flavor with cgroups where "
            "the agent can make them (else rlimits: memory as address space, no CPU limit).",
        ),
    ] = True,
    cgroup_parent: Annotated[
        str | None,
        typer.Option(
            help="process: the cgroup servers' groups go below, e.g. /skyfed.slice (default: "
            "the agent's own; on cgroup v2 that only works for a group holding no process "
            "but the root, so an agent run by systemd needs one beside its own)."
        ),
    ] = None,
    insecure_shared_user: Annotated[
        bool,
        typer.Option(
            help="process, agent not root: run servers as the agent's own user (refused "
            "otherwise). They can then read the agent's state and each other's files."
        ),
    ] = False,
    concurrency: Annotated[int, typer.Option(help="Commands run at once.")] = 64,
    poll_wait: Annotated[int, typer.Option(help="Seconds a command long poll may last.")] = 20,
    bus_url: Annotated[
        str | None,
        typer.Option(
            envvar="SKYFED_BUS_URL",
            help="The zone's RabbitMQ: heartbeats go through the zone's queue there.",
        ),
    ] = None,
    otlp_endpoint: Annotated[
        str | None,
        typer.Option(
            envvar="SKYFED_OTLP_ENDPOINT",
            help="Export a span per command over OTLP/HTTP to this collector "
            "(http://host:4318), in the trace of the request the command serves.",
        ),
    ] = None,
    trace_console: Annotated[
        bool, typer.Option(help="Print a span per command to standard output.")
    ] = False,
) -> None:
    """Carry the hosts of a spec file for a zone: heartbeats, commands, server events."""
    if driver not in DRIVERS:
        raise _fail(f"unknown driver {driver!r}; this build has: {', '.join(DRIVERS)}")
    if username is None or password is None:
        raise _fail("give --username and --password (or SKYFED_USERNAME / SKYFED_PASSWORD)")
    if boot_delay < 0 or not 0 <= jitter <= 1 or not 0 <= failure_rate <= 1:
        raise _fail("--boot-delay must be >= 0; --jitter and --failure-rate within 0..1")
    if interval <= 0 or stop_grace < 0 or concurrency < 1 or not 1 <= poll_wait <= 60:
        raise _fail(
            "--interval must be > 0, --stop-grace >= 0, --concurrency >= 1, --poll-wait 1..60"
        )
    if otlp_endpoint is not None and not re.match(r"^https?://\S+$", otlp_endpoint):
        raise _fail(f"--otlp-endpoint {otlp_endpoint!r} is not an http(s) URL")
    try:
        _, hosts = load_spec(spec, seed)
    except (OSError, ValueError, SpecError) as exc:
        raise _fail(f"bad spec {spec}: {exc}") from exc
    agent_name = name or username
    if not re.match(NAME_PATTERN, agent_name):
        raise _fail(
            f"agent name {agent_name!r} is not a name (letters, digits, '.', '_', '-'; "
            "at most 63); give --name"
        )
    if agent_name != username:
        raise _fail(
            f"--name {agent_name!r} is not --username {username!r}: an agent's name is its "
            "account's user name (one account per agent: skyfed agent-account create)"
        )
    the_driver: Driver
    if driver == "sim":
        the_driver = SimDriver(
            hosts, boot_delay=boot_delay, jitter=jitter, failure_rate=failure_rate, seed=seed
        )
    else:
        if not hosts:
            raise _fail(f"bad spec {spec}: the process driver needs at least one host")
        try:
            the_driver = ProcessDriver(
                hosts,
                state_dir or Path("agent-state") / agent_name,
                stop_grace=stop_grace,
                homes=server_homes,
                sandbox=SandboxOptions(
                    uid_base=server_uid_base,
                    uid_count=server_uid_count,
                    max_processes=server_max_processes,
                    max_open_files=server_max_open_files,
                    cgroups=cgroups,
                    cgroup_parent=cgroup_parent,
                    insecure_shared_user=insecure_shared_user,
                ),
            )
        except DriverError as exc:
            raise _fail(str(exc)) from exc
    configure_logging(f"agent:{agent_name}")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with contextlib.AsyncExitStack() as stack:
            client = await stack.enter_async_context(
                SkyfedClient(url, username=username, password=password)
            )
            tracing = None
            if otlp_endpoint or trace_console:
                tracing = await agent_tracing(client, agent_name, otlp_endpoint, trace_console)
                stack.callback(tracing.flush)  # the last spans leave before the process
            beat_client = None
            if bus_url:
                beat_client = await stack.enter_async_context(
                    await bus_client(client, bus_url, username, password, agent_name)
                )
            runner = AgentRunner(
                client,
                the_driver,
                agent_name,
                interval=interval,
                poll_wait=poll_wait,
                concurrency=concurrency,
                stop_servers_on_exit=stop_servers_on_exit,
                beat_client=beat_client,
                tracing=tracing,
            )
            await runner.run(stop)

    try:
        asyncio.run(main())
    except DriverError as exc:
        typer.echo(f"agent {agent_name}: {exc}", err=True)
        raise typer.Exit(1) from exc


async def agent_tracing(
    client: SkyfedClient, agent: str, otlp_endpoint: str | None, console: bool
) -> Tracing:
    """The agent's tracing, its spans named for the zone it serves (asked once; when the
    zone does not answer yet, named by the agent alone). Imported here only: an agent
    that traces nothing never loads OpenTelemetry, and starts faster."""
    from skyfed.observability.tracing import Tracing

    try:
        health = await client.request("GET", "/healthz", authenticate=False)
        zone = str(health["zone"])
    except (SkyfedError, KeyError, TypeError):
        zone = ""
    return Tracing("skyfed-agent", zone, otlp_endpoint=otlp_endpoint, console=console)


async def bus_client(
    client: SkyfedClient, bus_url: str, username: str, password: str, agent: str
) -> SkyfedClient:
    """A client of the zone's API through its agents' queue on `bus_url` (the zone's
    name, which names the queue, from its health check): each call signed with the
    account's link key, published to the agents' exchange, the only one an agent's
    broker user may write to."""
    from skyfed.transport.amqp import AmqpTransport, base_url_for
    from skyfed.transport.names import AGENTS_EXCHANGE, agent_queue_for

    health = await client.request("GET", "/healthz", authenticate=False)
    queue = agent_queue_for(str(health["zone"]))
    transport = AmqpTransport(
        bus_url, queue, account=username, password=password, exchange=AGENTS_EXCHANGE,
        origin=agent,
    )  # fmt: skip
    return SkyfedClient(base_url_for(queue), transport=transport)  # no login: signed calls
