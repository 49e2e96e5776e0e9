"""`skyfed host`: the hosts a zone hears from (list, disable, enable, release)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from skyfed.cli.common import AsJson, Password, Token, Url, Username, print_json, print_table, run

if TYPE_CHECKING:
    from skyfed.client_models import Host

app = typer.Typer(help="Hosts of a zone.", no_args_is_help=True)


def _show(hosts: list[Host]) -> None:
    print_table(
        f"{len(hosts)} hosts",
        [
            "name",
            "state",
            "agent",
            "disabled",
            "vcpus free/total",
            "ram_mb free/total",
            "capabilities",
        ],
        [
            (
                h.name,
                h.state,
                h.agent,
                h.disabled_reason or h.disabled,
                f"{h.free.vcpus}/{h.resources.vcpus}",
                f"{h.free.ram_mb}/{h.resources.ram_mb}",
                " ".join(f"{k}={v}" for k, v in sorted(h.capabilities.items())),
            )
            for h in hosts
        ],
    )


@app.command("list")
def list_(
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    state: Annotated[str | None, typer.Option(help="online or offline")] = None,
    json: AsJson = False,
) -> None:
    """Every host of the zone (all pages)."""
    hosts = run(url, username, password, token, lambda c: c.all_hosts(state=state))
    print_json(hosts) if json else _show(hosts)


@app.command("disable")
def disable(
    name: str,
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    reason: Annotated[str, typer.Option()] = "",
    json: AsJson = False,
) -> None:
    """Take a host out of placement (remembered across restarts)."""
    host = run(url, username, password, token, lambda c: c.disable_host(name, reason))
    print_json(host) if json else _show([host])


@app.command("enable")
def enable(
    name: str,
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    json: AsJson = False,
) -> None:
    """Put a disabled host back into placement."""
    host = run(url, username, password, token, lambda c: c.enable_host(name))
    print_json(host) if json else _show([host])


@app.command("release")
def release(
    name: str,
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    json: AsJson = False,
) -> None:
    """Hand a host over: the next agent granted for it that beats carries it."""
    answer = run(url, username, password, token, lambda c: c.release_host(name))
    if json:
        print_json(answer)
    else:
        typer.echo(f"released {name} from {answer.released_from or 'no agent'}")
