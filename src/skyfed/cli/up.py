"""`skyfed up`: a whole federation from one topology file, until Ctrl-C."""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.tree import Tree

from skyfed.cli.common import console, err_console
from skyfed.client import SkyfedError
from skyfed.federation.broker import BrokerError
from skyfed.federation.launcher import Federation
from skyfed.federation.process import ProcessFailed
from skyfed.federation.supervisor import Supervisor
from skyfed.federation.topology import TopologyError, load_topology


def up(
    topology_file: Annotated[
        Path, typer.Argument(help="A topology, e.g. examples/federation.toml")
    ],
    state_dir: Annotated[
        Path | None,
        typer.Option(help="Keep databases, logs and federation.json here (default: a temp dir)."),
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the roots to see every host.")
    ] = 180.0,
    exit_when_ready: Annotated[
        bool, typer.Option(help="Stop everything once it is up (for smoke tests).")
    ] = False,
    restart: Annotated[
        bool,
        typer.Option(
            "--restart/--no-restart",
            help="Once up, start a zone or host agent that dies again (same port, state and "
            "credentials) after 1 s, doubling to 30 s while it keeps dying; "
            "--no-restart leaves it down. Either way the rest keeps running.",
        ),
    ] = True,
) -> None:
    """Start every zone of a topology, link them, start their hosts, and wait for Ctrl-C.

    A zone or agent that dies once everything is up is reported on one line and
    started again (or left down with --no-restart); one that dies while starting
    stops the whole federation."""
    try:
        topology = load_topology(topology_file)
    except TopologyError as exc:
        err_console.print(f"[red]bad topology[/]: {exc}")
        raise typer.Exit(2) from exc
    temporary = state_dir is None
    directory = Path(tempfile.mkdtemp(prefix="skyfed-")) if state_dir is None else state_dir
    federation = Federation(topology, directory, temporary=temporary)
    try:
        asyncio.run(_run(federation, timeout, exit_when_ready, restart))
    except (ProcessFailed, SkyfedError, ValueError, BrokerError) as exc:
        err_console.print(f"[red]federation failed[/]: {exc}")
        raise typer.Exit(1) from exc
    finally:
        with console.status("stopping"):
            federation.stop()
        console.print("stopped")
        if temporary:
            shutil.rmtree(directory, ignore_errors=True)


async def _run(
    federation: Federation, timeout: float, exit_when_ready: bool, restart: bool
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with console.status("starting") as status:
        await federation.start(progress=lambda m: status.update(m))
        await federation.wait_covered(timeout, progress=lambda m: status.update(f"waiting: {m}"))
    await _print_tree(federation)
    console.print(f"state and federation.json in [bold]{federation.state_dir}[/]")
    for root in federation.topology.roots():
        console.print(f"admin password of {root}: {federation.admin_passwords[root]}")
    console.print("every zone has its own credentials: see federation.json (mode 0600)")
    console.print("metrics: prometheus.yml there scrapes every zone (docs/observability.md)")
    if federation.swifts and federation.storage_note is None:
        console.print(
            f"{len(federation.swifts)} Swift clusters registered with their zones "
            "(federation.json: object_store; docs/objects.md)"
        )
    if federation.storage_note:
        console.print(f"[yellow]{federation.storage_note}[/]")
    if exit_when_ready:
        return
    console.print("Ctrl-C stops everything")
    supervisor = Supervisor(
        federation.processes(),
        report=_report,
        changed=federation.write_manifest,
        restart=restart,
    )
    await supervisor.run(stop)


def _report(line: str) -> None:
    # Plain text: a log line may hold brackets Rich would read as markup.
    console.print(f"{time.strftime('%H:%M:%S')} {line}", markup=False, highlight=False)


async def _print_tree(federation: Federation) -> None:
    topo = federation.topology
    covered: dict[str, int] = {}
    for name in topo.zones:
        async with federation.admin_client(name) as client:
            covered[name] = (await client.zone()).summary["hosts"]
    for root in topo.roots():
        tree = Tree(_label(federation, root, covered))
        nodes = {root: tree}
        for depth, name in topo.walk(root):
            if depth == 0:
                continue
            parent = next(p for p in topo.zones[name].parents if p in nodes)
            nodes[name] = nodes[parent].add(_label(federation, name, covered))
        console.print(tree)


def _label(federation: Federation, name: str, covered: dict[str, int]) -> str:
    own = federation.topology.host_count(name)
    extra = f" ({own} own)" if own and own != covered[name] else ""
    return f"[bold]{name}[/]  {federation.zones[name].url}  {covered[name]} hosts{extra}"
