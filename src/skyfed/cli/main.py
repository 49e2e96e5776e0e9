"""The `skyfed` command."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from skyfed.cli import (
    agent_account,
    bench,
    container,
    host,
    identity,
    server,
    storage_cluster,
    zone,
)
from skyfed.cli.agent import agent
from skyfed.cli.common import AsJson, Password, Url, Username, err_console, plain, print_json, run
from skyfed.cli.serve import serve
from skyfed.cli.up import up
from skyfed.cli.worker import worker
from skyfed.client import SkyfedClient

if TYPE_CHECKING:
    from skyfed.client_models import Token

app = typer.Typer(
    help="skyfed: one control plane over a tree of cloud zones.", no_args_is_help=True
)
app.command()(serve)
app.command()(up)
app.command()(agent)
app.command()(worker)
app.add_typer(zone.app, name="zone")
app.add_typer(storage_cluster.app, name="storage-cluster")
app.add_typer(container.app, name="container")
app.add_typer(host.app, name="host")
app.add_typer(agent_account.app, name="agent-account")
app.add_typer(server.app, name="server")
app.add_typer(server.flavor_app, name="flavor")
app.add_typer(identity.user_app, name="user")
app.add_typer(identity.project_app, name="project")
app.add_typer(bench.app, name="bench")


@app.command()
def login(
    url: Url, username: Username = None, password: Password = None, json: AsJson = False
) -> None:
    """Get a token (export it as SKYFED_TOKEN)."""
    if username is None or password is None:
        err_console.print("[red]give --username and --password[/]")
        raise typer.Exit(2)

    async def call(client: SkyfedClient) -> Token:
        return await client.login(username, password)

    token = run(url, None, None, "", call)  # no token: the login itself authenticates
    if json:
        print_json(token)
    else:
        typer.echo(token.token)
        expires = plain(token)["expires_at"]  # as the zone wrote it
        err_console.print(f"expires {expires}; roles {', '.join(token.user.roles)}")


def main() -> None:
    app()
