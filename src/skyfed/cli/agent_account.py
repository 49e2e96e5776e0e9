"""`skyfed agent-account`: the agent accounts of a zone and the hosts each may carry (admin).

(`skyfed agent` runs an agent; this provisions the account it logs in with.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from skyfed.cli.common import (
    AsJson,
    Password,
    Token,
    Url,
    Username,
    print_json,
    print_record,
    print_table,
    run,
)

if TYPE_CHECKING:
    from skyfed.client_models import AgentAccount

app = typer.Typer(help="Agent accounts: one per host agent, with its hosts.", no_args_is_help=True)

Hosts = Annotated[
    list[str] | None,
    typer.Option(
        "--host",
        help="A host name, or a prefix ending in '*' (eu-dc1-*); repeatable. '*' is every host.",
    ),
]
MaxHosts = Annotated[int | None, typer.Option(help="Hosts it may carry at most.")]
NewPassword = Annotated[
    str | None,
    typer.Option("--new-password", envvar="SKYFED_NEW_PASSWORD", help="A new password."),
]


def _show(agents: list[AgentAccount]) -> None:
    print_table(
        f"{len(agents)} agents",
        ["name", "hosts", "carried/max", "pending commands", "configured"],
        [
            (
                a.name,
                " ".join(a.hosts) or "(none)",
                f"{a.carried}/{a.max_hosts}",
                a.pending_commands,
                "settings" if a.configured else "",
            )
            for a in agents
        ],
    )


@app.command("create")
def create(
    name: str,
    new_password: Annotated[
        str, typer.Option("--new-password", envvar="SKYFED_NEW_PASSWORD", help="Its password.")
    ],
    url: Url,
    host: Hosts = None,
    max_hosts: MaxHosts = None,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    json: AsJson = False,
) -> None:
    """An agent account (its name is the agent's) and the hosts it may carry."""
    agent = run(
        url,
        username,
        password,
        token,
        lambda c: c.create_agent(name, new_password, host or [], max_hosts=max_hosts),
    )
    print_json(agent) if json else _show([agent])


@app.command("list")
def list_(
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    json: AsJson = False,
) -> None:
    """Every agent account: its hosts, how many it carries, its pending commands."""
    agents = run(url, username, password, token, lambda c: c.list_agents())
    print_json(agents) if json else _show(agents)


@app.command("show")
def show(
    name: str,
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    json: AsJson = False,
) -> None:
    """One agent account."""
    agent = run(url, username, password, token, lambda c: c.get_agent(name))
    print_json(agent) if json else print_record(agent)


@app.command("update")
def update(
    name: str,
    url: Url,
    host: Hosts = None,
    max_hosts: MaxHosts = None,
    new_password: NewPassword = None,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    json: AsJson = False,
) -> None:
    """Change its hosts (those no longer covered are released), cap or password."""
    agent = run(
        url,
        username,
        password,
        token,
        lambda c: c.update_agent(name, hosts=host, max_hosts=max_hosts, password=new_password),
    )
    print_json(agent) if json else _show([agent])


@app.command("delete")
def delete(
    name: str,
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
) -> None:
    """Delete the account (its tokens die) and release the hosts it carried."""
    run(url, username, password, token, lambda c: c.delete_agent(name))
    typer.echo(f"deleted agent {name}")
