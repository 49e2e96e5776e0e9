"""`skyfed bench NAME`: benchmarks; each ends with one JSON line of figures and baselines."""

from __future__ import annotations

import json
from typing import Annotated

import typer

app = typer.Typer(
    help="Benchmarks (the last line of each is one JSON object).", no_args_is_help=True
)


@app.command("summary")
def summary(
    hosts: Annotated[int, typer.Option(help="Hosts in the zone summary.")] = 100_000,
    children: Annotated[int, typer.Option(help="Children in the poll cycle.")] = 100,
    repeat: Annotated[int, typer.Option(help="Runs per measurement (the median is kept).")] = 5,
    child_latency_ms: Annotated[
        float, typer.Option(help="Delay each fake child's answers, like a WAN between zones.")
    ] = 0.0,
) -> None:
    """Build a zone summary over many hosts, and poll many children once."""
    from skyfed.bench.summary import run_summary_bench

    result = run_summary_bench(
        hosts=hosts, children=children, repeat=repeat, child_latency_ms=child_latency_ms
    )
    typer.echo(json.dumps(result))


@app.command("placement")
def placement(
    regions: Annotated[int, typer.Option(help="Regions under the global zone.")] = 5,
    dcs: Annotated[int, typer.Option(help="Data centres per region.")] = 5,
    huddles: Annotated[int, typer.Option(help="Huddles per data centre.")] = 200,
    hosts_per_huddle: Annotated[int, typer.Option(help="Hosts per huddle.")] = 200,
    decisions: Annotated[int, typer.Option(help="Placement decisions (full descents).")] = 20_000,
    baseline_decisions: Annotated[
        int, typer.Option(help="Decisions of the flat baseline over every host.")
    ] = 20,
    sample_size: Annotated[
        int, typer.Option(help="Passing candidates a zone collects before it stops scanning.")
    ] = 32,
    strategy: Annotated[str, typer.Option(help="spread or fill.")] = "spread",
    seed: Annotated[int, typer.Option(help="Seed of the hosts and the requests.")] = 1,
) -> None:
    """Place servers down a zone tree of 1,000,000 hosts, against a flat scheduler."""
    from skyfed.bench.placement import run_placement_bench

    result = run_placement_bench(
        regions=regions,
        dcs=dcs,
        huddles=huddles,
        hosts_per_huddle=hosts_per_huddle,
        decisions=decisions,
        baseline_decisions=baseline_decisions,
        sample_size=sample_size,
        strategy=strategy,
        seed=seed,
    )
    typer.echo(json.dumps(result))


@app.command("e2e")
def e2e(
    servers: Annotated[int, typer.Option(help="Servers to create at the root.")] = 1000,
    concurrency: Annotated[int, typer.Option(help="Creates in flight at most.")] = 64,
    rate: Annotated[
        float, typer.Option(help="Creates offered per second (open loop); 0: as fast as they go.")
    ] = 200.0,
    baseline: Annotated[bool, typer.Option(help="Also run the flat-zone baseline.")] = True,
    tracing: Annotated[
        bool, typer.Option(help="Also run the tree exporting spans (tracing_overhead).")
    ] = True,
) -> None:
    """Create servers at the root of examples/federation.toml; time them to ACTIVE."""
    from skyfed.bench.e2e import run_e2e_bench

    if rate < 0:
        raise typer.BadParameter("must be 0 or more", param_hint="--rate")
    result = run_e2e_bench(
        servers=servers, concurrency=concurrency, rate=rate, baseline=baseline, tracing=tracing
    )
    typer.echo(json.dumps(result))


@app.command("rpc")
def rpc(
    broker: Annotated[
        str, typer.Option(envvar="SKYFED_BENCH_BROKER", help="RabbitMQ for both systems.")
    ] = "amqp://guest:guest@127.0.0.1:5672/",
    sizes: Annotated[str, typer.Option(help="Parallel adds per row.")] = "1,10,100,1000,10000",
    workers: Annotated[str, typer.Option(help="Worker processes per row.")] = "1,2",
    fault_requests: Annotated[
        int, typer.Option(help="Adds in each fault row (0: no fault rows).")
    ] = 1000,
    systems: Annotated[
        str,
        typer.Option(help="amqp, http and the celery baseline; httpx: http over httpx's pool."),
    ] = "amqp,http,celery",
    timeout: Annotated[float, typer.Option(help="Seconds a call may take.")] = 120.0,
) -> None:
    """Seed 001's RabbitMQ spike through skyfed's zone links, against Celery."""
    from skyfed.bench.rpc import run_rpc_bench

    result = run_rpc_bench(
        broker=broker,
        sizes=[int(s) for s in sizes.split(",") if s],
        worker_counts=[int(w) for w in workers.split(",") if w],
        fault_requests=fault_requests,
        systems=[s for s in systems.split(",") if s],
        timeout=timeout,
        echo=typer.echo,
    )
    typer.echo(json.dumps(result))


@app.command("idle-polls")
def idle_polls(
    polls: Annotated[int, typer.Option(help="Idle agent polls held open at once.")] = 200,
    seconds: Annotated[float, typer.Option(help="Seconds of idle time measured.")] = 10.0,
    repeat: Annotated[int, typer.Option(help="Runs of each (the median is kept).")] = 3,
) -> None:
    """Zone CPU of idle agent polls woken by commands, against re-reading every 0.25 s."""
    from skyfed.bench.idle_polls import run_idle_polls_bench

    if polls < 1 or not 1 <= seconds <= 40 or repeat < 1:
        raise typer.BadParameter("--polls >= 1, --seconds 1..40, --repeat >= 1")
    typer.echo(json.dumps(run_idle_polls_bench(polls=polls, seconds=seconds, repeat=repeat)))


@app.command("objects")
def objects(
    large_mib: Annotated[int, typer.Option(help="Size of the large PUT and GET (MiB).")] = 64,
    large_repeat: Annotated[int, typer.Option(help="Rounds of large PUT and GET.")] = 3,
    small_kib: Annotated[int, typer.Option(help="Size of the small objects (KiB).")] = 4,
    concurrency: Annotated[int, typer.Option(help="Clients of small ops and creates.")] = 32,
    small_seconds: Annotated[float, typer.Option(help="Seconds of each small-op run.")] = 10.0,
    small_max_ops: Annotated[int, typer.Option(help="Operations of a small run at most.")] = (
        100_000
    ),
    small_repeat: Annotated[int, typer.Option(help="Rounds of small PUT and GET runs.")] = 3,
    containers: Annotated[
        int, typer.Option(help="Containers in the account listing (0: no listing).")
    ] = 10_000,
    list_repeat: Annotated[int, typer.Option(help="Rounds of account listings.")] = 3,
    upload_mib: Annotated[
        int, typer.Option(help="Upload watched for the zone's memory, MiB (0: none).")
    ] = 1024,
    budget_s: Annotated[
        float, typer.Option(help="A measurement stops repeating after this many seconds.")
    ] = 300.0,
) -> None:
    """skyfed's Swift API against the same requests sent to the Swift cluster directly."""
    from skyfed.bench.objects import Options, run_objects_bench

    options = Options(
        large_mib=large_mib,
        large_repeat=large_repeat,
        small_kib=small_kib,
        concurrency=concurrency,
        small_seconds=small_seconds,
        small_max_ops=small_max_ops,
        small_repeat=small_repeat,
        containers=containers,
        list_repeat=list_repeat,
        upload_mib=upload_mib,
        budget_s=budget_s,
    )
    try:
        options.check()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(json.dumps(run_objects_bench(options)))


@app.command("move")
def move(
    objects: Annotated[int, typer.Option(help="Objects in the container moved.")] = 2000,
    min_kib: Annotated[int, typer.Option(help="The smallest object (KiB).")] = 4,
    max_kib: Annotated[int, typer.Option(help="The largest object (KiB).")] = 4096,
    repeat: Annotated[int, typer.Option(help="Rounds of rclone copy and skyfed move.")] = 2,
) -> None:
    """A container moved between two Swift clusters by skyfed, against rclone copy."""
    from skyfed.bench.move import Options, run_move_bench

    options = Options(objects=objects, min_kib=min_kib, max_kib=max_kib, repeat=repeat)
    try:
        options.check()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(json.dumps(run_move_bench(options)))
