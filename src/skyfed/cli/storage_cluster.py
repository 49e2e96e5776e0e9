"""`skyfed storage-cluster`: the Swift clusters of a zone (add, list, show, update,
delete), and where a new container would be placed (explain)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from skyfed.cli.common import (
    AsJson,
    Password,
    Token,
    Url,
    Username,
    err_console,
    pairs,
    plain,
    print_json,
    print_record,
    print_table,
    run,
)

if TYPE_CHECKING:
    from skyfed.client_models import StorageCluster

app = typer.Typer(help="Swift clusters registered with a zone.", no_args_is_help=True)
TiersOpt = Annotated[
    list[str] | None,
    typer.Option("--tier", help="tier=policy: a skyfed tier and the cluster's storage policy."),
]
AuthUrl = Annotated[str, typer.Option("--auth-url", help="The cluster's Swift v1 auth URL.")]
ClusterUser = Annotated[
    str, typer.Option("--cluster-username", help="A reseller admin there (account:user).")
]
ClusterKey = Annotated[
    str,
    typer.Option("--cluster-password", envvar="SKYFED_CLUSTER_PASSWORD", help="Its key."),
]
Capacity = Annotated[int, typer.Option("--capacity-bytes", min=1, help="What it can hold.")]


def _tiers(items: list[str] | None) -> dict[str, str] | None:
    return pairs(items, "tier", "tier=policy")


def _show(clusters: list[StorageCluster]) -> None:
    print_table(
        "storage clusters",
        ["id", "name", "state", "auth_url", "tiers", "used", "capacity", "last_seen"],
        [
            (
                c.id,
                c.name,
                c.state,
                c.auth_url,
                ", ".join(f"{t}={p}" for t, p in sorted(c.tiers.items())),
                c.used_bytes,
                c.capacity_bytes,
                plain(c)["last_seen"],
            )
            for c in clusters
        ],
    )


@app.command("add")
def add(
    name: str,
    auth_url: AuthUrl,
    cluster_username: ClusterUser,
    cluster_password: ClusterKey,
    tier: TiersOpt,
    capacity_bytes: Capacity,
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    json: AsJson = False,
) -> None:
    """Register a cluster; the zone logs in to it and checks its policies first."""
    tiers = _tiers(tier)
    if not tiers:
        raise typer.BadParameter("give at least one --tier tier=policy")
    cluster = run(
        url,
        username,
        password,
        token,
        lambda c: c.add_storage_cluster(
            name,
            auth_url,
            cluster_username,
            cluster_password,
            tiers=tiers,
            capacity_bytes=capacity_bytes,
        ),
    )
    print_json(cluster) if json else _show([cluster])


@app.command("list")
def list_(
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    json: AsJson = False,
) -> None:
    """The zone's clusters with their state and use."""
    clusters = run(url, username, password, token, lambda c: c.list_storage_clusters())
    print_json(clusters) if json else _show(clusters)


@app.command("show")
def show(
    ref: str,
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    json: AsJson = False,
) -> None:
    """One cluster: state, last error, use and capacity."""
    cluster = run(url, username, password, token, lambda c: c.get_storage_cluster(ref))
    print_json(cluster) if json else print_record(cluster)


@app.command("update")
def update(
    ref: str,
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    name: Annotated[str | None, typer.Option("--name")] = None,
    auth_url: Annotated[str | None, typer.Option("--auth-url")] = None,
    cluster_username: Annotated[str | None, typer.Option("--cluster-username")] = None,
    cluster_password: Annotated[
        str | None, typer.Option("--cluster-password", envvar="SKYFED_CLUSTER_PASSWORD")
    ] = None,
    tier: TiersOpt = None,
    capacity_bytes: Annotated[int | None, typer.Option("--capacity-bytes", min=1)] = None,
    move_bandwidth: Annotated[
        int | None,
        typer.Option("--move-bandwidth", min=0, help="Moves' bytes a second there (0: no limit)."),
    ] = None,
    json: AsJson = False,
) -> None:
    """Change a cluster; a new address, account or tiers are checked by logging in."""
    changes = {
        "name": name,
        "auth_url": auth_url,
        "username": cluster_username,
        "password": cluster_password,
        "tiers": _tiers(tier),
        "capacity_bytes": capacity_bytes,
        "move_bandwidth": move_bandwidth,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    cluster = run(
        url, username, password, token, lambda c: c.update_storage_cluster(ref, **changes)
    )
    print_json(cluster) if json else _show([cluster])


@app.command("delete")
def delete(
    ref: str,
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
) -> None:
    """Unregister a cluster (the cluster itself and its data stay)."""
    run(url, username, password, token, lambda c: c.delete_storage_cluster(ref))


@app.command("explain")
def explain(
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    tier: Annotated[
        str | None, typer.Option("--tier", help="The zone's default otherwise.")
    ] = None,
    project: Annotated[
        str | None, typer.Option("--project", help="Whose containers count (account mode).")
    ] = None,
    json: AsJson = False,
) -> None:
    """Where a new container would be placed now: each cluster and child zone with
    the filter that dropped it, or its score and rank. Places nothing."""
    result = run(
        url, username, password, token, lambda c: c.explain_storage_placement(tier, project)
    )
    if json:
        print_json(result)
        return
    print_table(
        f"placement of a new {result['request']['tier']} container in {result['zone']}",
        ["rank", "kind", "name", "score", "dropped_by", "free_bytes", "containers"],
        [
            (
                "-" if c["rank"] is None else c["rank"] + 1,
                c["kind"],
                c["name"],
                "-" if c["score"] is None else f"{c['score']:.3f}",
                c["dropped_by"] or "-",
                c["free_bytes"],
                c["containers"],
            )
            for c in sorted(
                result["candidates"],
                key=lambda c: (c["rank"] is None, c["rank"] or 0, c["name"]),
            )
        ],
    )
    if result.get("reason"):
        typer.echo(result["reason"])


Parallel = Annotated[int, typer.Option("--parallel", min=1, max=32, help="Moves at once.")]


@app.command("drain")
def drain(
    ref: str,
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    parallel: Parallel = 2,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until it ends.")] = False,
    json: AsJson = False,
) -> None:
    """Move every container off a cluster; nothing new is placed there."""
    state = run(url, username, password, token, lambda c: c.drain_storage_cluster(ref, parallel))
    deadline = time.monotonic() + 30 * 24 * 3600
    while wait and (state["containers_left"] or state["moving"]) and time.monotonic() < deadline:
        err_console.print(
            f"{state['cluster']}: {state['containers_left']} containers left,"
            f" {state['moving']} moving"
        )
        time.sleep(2.0)
        state = run(url, username, password, token, lambda c: c.storage_cluster_drain(ref))
    print_json(state) if json else print_record(state)


@app.command("drain-status")
def drain_status(
    ref: str,
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    json: AsJson = False,
) -> None:
    """A drain's progress: containers left on the cluster, moving off it now."""
    state = run(url, username, password, token, lambda c: c.storage_cluster_drain(ref))
    print_json(state) if json else print_record(state)


@app.command("undrain")
def undrain(
    ref: str,
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    json: AsJson = False,
) -> None:
    """Stop draining: the cluster takes containers again (moves under way end)."""
    state = run(url, username, password, token, lambda c: c.stop_draining(ref))
    print_json(state) if json else print_record(state)


@app.command("rebalance")
def rebalance(
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    threshold: Annotated[
        float, typer.Option("--threshold", min=0.01, max=1.0, help="Fill above which to give.")
    ] = 0.8,
    tier: Annotated[str | None, typer.Option("--tier", help="Only this tier.")] = None,
    parallel: Parallel = 2,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until its moves end.")] = False,
) -> None:
    """Move containers, largest first, from clusters filled above the threshold to those
    below it, in their tier. Prints its task's id (`skyfed container moves --active`
    shows its moves)."""
    task_id = run(
        url, username, password, token,
        lambda c: c.rebalance_storage(threshold, tier, parallel),
    )  # fmt: skip
    print(task_id)
    deadline = time.monotonic() + 30 * 24 * 3600
    while wait and time.monotonic() < deadline:
        task = run(url, username, password, token, lambda c: c.get_task(task_id))
        if task.state not in ("queued", "running"):
            print_json(task)
            return
        time.sleep(2.0)
