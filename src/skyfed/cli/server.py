"""`skyfed server` and `skyfed flavor`: servers anywhere under a zone, and their sizes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from skyfed.cli.common import (
    AsJson,
    Password,
    Token,
    Url,
    Username,
    err_console,
    print_json,
    print_record,
    print_table,
    run,
)
from skyfed.client import SkyfedClient

if TYPE_CHECKING:
    from skyfed.client_models import Server

app = typer.Typer(
    help="Servers under a zone (project-scoped; admins see all).", no_args_is_help=True
)
flavor_app = typer.Typer(help="Flavors of a zone.", no_args_is_help=True)


def _show(servers: list[Server]) -> None:
    print_table(
        f"{len(servers)} servers",
        ["id", "name", "status", "task", "flavor", "where", "fault"],
        [
            (
                s.id,
                s.name,
                s.status,
                s.task_state or "",
                s.flavor or f"{s.vcpus}c/{s.ram_mb}M",
                s.location.where(),
                s.fault or "",
            )
            for s in servers
        ],
    )


def _constraints(values: list[str]) -> dict[str, str]:
    """`--where arch=arm64 --where "ram_mb=>= 8192"` -> {"arch": "arm64", "ram_mb": ">= 8192"}."""
    out: dict[str, str] = {}
    for item in values:
        key, sep, expression = item.partition("=")
        if not sep or not key:
            err_console.print(f"[red]--where takes KEY=EXPRESSION, not {item!r}[/]")
            raise typer.Exit(2)
        out[key] = expression
    return out


@app.command("create")
def create(
    name: str,
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    flavor: Annotated[
        str | None, typer.Option(help="A flavor name (see skyfed flavor list).")
    ] = None,
    vcpus: Annotated[int | None, typer.Option(help="Explicit size instead of a flavor.")] = None,
    ram_mb: Annotated[int | None, typer.Option()] = None,
    disk_gb: Annotated[int | None, typer.Option()] = None,
    where: Annotated[
        list[str], typer.Option("--where", help="Capability constraint KEY=EXPRESSION (repeat).")
    ] = [],  # noqa: B006 - typer reads the default, never mutates it
    group: Annotated[str | None, typer.Option(help="Server group name.")] = None,
    policy: Annotated[str, typer.Option(help="affinity or anti-affinity")] = "anti-affinity",
    within: Annotated[str | None, typer.Option(help="Zone path to stay inside: eu/eu-dc1.")] = None,
    avoid: Annotated[list[str], typer.Option(help="Zone path to avoid (repeat).")] = [],  # noqa: B006
    count: Annotated[int, typer.Option(min=1, max=1000)] = 1,
    json: AsJson = False,
) -> None:
    """Create COUNT servers (one reservation); they start BUILDING."""
    request: dict[str, Any] = {"name": name, "count": count, "constraints": _constraints(where)}
    sizes = {"flavor": flavor, "vcpus": vcpus, "ram_mb": ram_mb, "disk_gb": disk_gb}
    request.update({k: v for k, v in sizes.items() if v is not None})
    if group is not None:
        request["group"] = {"name": group, "policy": policy}
    if within is not None:
        request["within"] = within
    if avoid:
        request["avoid"] = avoid
    created = run(url, username, password, token, lambda c: c.create_servers(**request))
    if json:
        print_json(created)
        return
    print_table(
        f"reservation {created.reservation_id}",
        ["id", "name", "status"],
        [(s.id, s.name, s.status) for s in created.servers],
    )


@app.command("list")
def list_(
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    status: Annotated[str | None, typer.Option(help="ACTIVE, BUILDING, ERROR ...")] = None,
    name: Annotated[str | None, typer.Option()] = None,
    json: AsJson = False,
) -> None:
    """Every server under the zone (all pages, across its subtree)."""
    servers, unavailable = run(
        url, username, password, token, lambda c: c.all_servers(status=status, name=name)
    )
    if json:
        print_json({"servers": servers, "unavailable_zones": unavailable})
        return
    _show(servers)
    if unavailable:
        err_console.print(f"[yellow]did not answer:[/] {', '.join(unavailable)}")


def _by_id(call: Callable[[SkyfedClient, str], Awaitable[Any]], doc: str) -> Any:
    """A command on one server: `skyfed server VERB ID`."""

    def command(
        server_id: str,
        url: Url,
        username: Username = None,
        password: Password = None,
        token: Token = None,
        json: AsJson = False,
    ) -> None:
        answer = run(url, username, password, token, lambda c: call(c, server_id))
        print_json(answer) if json else print_record(answer)

    command.__doc__ = doc
    return command


app.command("show")(
    _by_id(lambda c, i: c.get_server(i), "One server, found through the location index.")
)
app.command("delete")(
    _by_id(lambda c, i: c.delete_server(i), "Delete a server (it goes DELETING, then away).")
)


def _action(action: str) -> Any:
    return _by_id(
        lambda c, i: c.server_action(i, action),
        f"{action.capitalize()} a server (409 when its state does not allow it).",
    )


for _name in ("reboot", "stop", "start"):
    app.command(_name)(_action(_name))


@flavor_app.command("list")
def flavor_list(
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    json: AsJson = False,
) -> None:
    """The zone's flavors."""
    flavors = run(url, username, password, token, lambda c: c.list_flavors())
    if json:
        print_json(flavors)
        return
    print_table(
        f"{len(flavors)} flavors",
        ["name", "vcpus", "ram_mb", "disk_gb"],
        [(f.name, f.vcpus, f.ram_mb, f.disk_gb) for f in flavors],
    )


@flavor_app.command("create")
def flavor_create(
    name: str,
    url: Url,
    vcpus: Annotated[int, typer.Option()],
    ram_mb: Annotated[int, typer.Option()],
    disk_gb: Annotated[int, typer.Option()] = 0,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    json: AsJson = False,
) -> None:
    """Add a flavor (admin)."""
    flavor = run(
        url,
        username,
        password,
        token,
        lambda c: c.create_flavor(name, vcpus=vcpus, ram_mb=ram_mb, disk_gb=disk_gb),
    )
    print_json(flavor) if json else print_record(flavor)
