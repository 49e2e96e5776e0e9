"""`skyfed zone`: a zone's children (add, list, show, update, delete)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from skyfed.cli.common import (
    AsJson,
    Password,
    Token,
    Url,
    Username,
    pairs,
    plain,
    print_json,
    print_record,
    print_table,
    run,
)

if TYPE_CHECKING:
    from skyfed.client_models import ChildZone

app = typer.Typer(help="Child zones of a zone.", no_args_is_help=True)
Labels = Annotated[list[str] | None, typer.Option("--label", help="key=value, repeatable.")]


def _labels(items: list[str] | None) -> dict[str, str] | None:
    return pairs(items, "label")


TransportOpt = Annotated[
    str | None, typer.Option("--transport", help="http (the child's API) or amqp (its broker).")
]
# Not from the environment: a variable left from one `zone add` must not move another child.
BusUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--bus-url",
        help="The child's broker, as this parent's own broker user there "
        "(amqps://user:pass@host/vhost).",
    ),
]
BusUrlAddOpt = Annotated[
    str | None,
    typer.Option(
        "--bus-url",
        envvar="SKYFED_CHILD_BUS_URL",  # keeps the broker's password off the command line
        help="The child's broker, as this parent's own broker user there "
        "(amqps://user:pass@host/vhost).",
    ),
]
BusQueueOpt = Annotated[
    str | None, typer.Option("--bus-queue", help="Its queue (default skyfed.zone.<name>).")
]


def _link(zone: ChildZone) -> str:
    if zone.transport == "amqp":
        return f"amqp {zone.bus_queue} @ {zone.bus_url}"
    return zone.api_url


def _show_zones(zones: list[ChildZone]) -> None:
    print_table(
        "child zones",
        ["id", "name", "state", "link", "failures", "last_seen", "weight"],
        [
            (
                z.id,
                z.name,
                z.state,
                _link(z),
                z.failures,
                plain(z)["last_seen"],  # as the zone sent it
                f"{z.weight_offset:+g} x{z.weight_scale:g}",
            )
            for z in zones
        ],
    )


@app.command("add")
def add(
    name: str,
    api_url: Annotated[str, typer.Option("--api-url", help="The child's API URL.")],
    child_username: Annotated[str, typer.Option("--child-username", help="Child service account.")],
    child_password: Annotated[
        str, typer.Option("--child-password", envvar="SKYFED_CHILD_PASSWORD", help="Its password.")
    ],
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    weight_offset: Annotated[float | None, typer.Option()] = None,
    weight_scale: Annotated[float | None, typer.Option()] = None,
    label: Labels = None,
    transport: TransportOpt = None,
    bus_url: BusUrlAddOpt = None,
    bus_queue: BusQueueOpt = None,
    json: AsJson = False,
) -> None:
    """Add a child zone; the parent logs in to it first (over the link it will use)."""
    zone = run(
        url,
        username,
        password,
        token,
        lambda c: c.add_zone(
            name,
            api_url,
            child_username,
            child_password,
            weight_offset=weight_offset,
            weight_scale=weight_scale,
            labels=_labels(label),
            transport=transport,
            bus_url=bus_url,
            bus_queue=bus_queue,
        ),
    )
    print_json(zone) if json else _show_zones([zone])


@app.command("list")
def list_(
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    json: AsJson = False,
) -> None:
    """List child zones with their state."""
    zones = run(url, username, password, token, lambda c: c.list_zones())
    print_json(zones) if json else _show_zones(zones)


@app.command("show")
def show(
    ref: str,
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    json: AsJson = False,
) -> None:
    """A child zone in detail: state, failures, capabilities and summary."""
    zone = run(url, username, password, token, lambda c: c.zone_detail(ref))
    print_json(zone) if json else print_record(zone)


@app.command("update")
def update(
    ref: str,
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    name: Annotated[str | None, typer.Option("--name")] = None,
    api_url: Annotated[str | None, typer.Option("--api-url")] = None,
    child_username: Annotated[str | None, typer.Option("--child-username")] = None,
    child_password: Annotated[
        str | None, typer.Option("--child-password", envvar="SKYFED_CHILD_PASSWORD")
    ] = None,
    weight_offset: Annotated[float | None, typer.Option()] = None,
    weight_scale: Annotated[float | None, typer.Option()] = None,
    label: Labels = None,
    transport: TransportOpt = None,
    bus_url: BusUrlOpt = None,
    bus_queue: BusQueueOpt = None,
    default_bus_queue: Annotated[
        bool, typer.Option("--default-bus-queue", help="Back to skyfed.zone.<name>.")
    ] = False,
    json: AsJson = False,
) -> None:
    """Change a child zone; a new address, transport or credentials are checked by logging in."""
    if default_bus_queue and bus_queue is not None:
        raise typer.BadParameter("give --bus-queue or --default-bus-queue, not both")
    changes = {
        "name": name,
        "api_url": api_url,
        "username": child_username,
        "password": child_password,
        "weight_offset": weight_offset,
        "weight_scale": weight_scale,
        "labels": _labels(label),
        "transport": transport,
        "bus_url": bus_url,
        "bus_queue": bus_queue,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    if default_bus_queue:
        changes["bus_queue"] = None  # null: the default queue
    zone = run(url, username, password, token, lambda c: c.update_zone(ref, **changes))
    print_json(zone) if json else _show_zones([zone])


@app.command("delete")
def delete(
    ref: str,
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    force: Annotated[
        bool, typer.Option(help="Also when it holds servers: forget them here.")
    ] = False,
) -> None:
    """Remove a child zone (the child itself keeps running); refused while it holds
    servers placed from this zone, unless --force."""
    run(url, username, password, token, lambda c: c.delete_zone(ref, force=force))
    typer.echo(f"deleted {ref}")
