"""`skyfed container`: containers of Swift accounts, moved between a zone's clusters."""

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
    print_json,
    print_table,
    run,
)

if TYPE_CHECKING:
    from skyfed.client_models import ContainerMove

app = typer.Typer(
    help="Containers of Swift accounts, moved between clusters.", no_args_is_help=True
)
ENDED = ("done", "cancelled")


def _show(moves: list[ContainerMove]) -> None:
    print_table(
        "container moves",
        ["id", "container", "from", "to", "state", "copied", "of", "bytes", "skipped", "error"],
        [
            (
                m.id,
                f"{m.account}/{m.container}",
                m.source,
                m.target,
                m.state,
                m.objects_copied,
                m.objects_total,
                m.bytes_copied,
                m.objects_skipped,
                m.error,
            )
            for m in moves
        ],
    )


def _split(ref: str) -> tuple[str, str]:
    account, _, container = ref.partition("/")
    if not account or not container or "/" in container:
        raise typer.BadParameter("give ACCOUNT/CONTAINER (ACCOUNT: a project's name or id)")
    return account, container


@app.command("move")
def move(
    ref: Annotated[str, typer.Argument(help="ACCOUNT/CONTAINER (a project's name or id).")],
    to: Annotated[str, typer.Option("--to", help="The storage cluster it goes to.")],
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until it ends.")] = False,
    json: AsJson = False,
) -> None:
    """Move a container to another cluster of its zone while it is in use."""
    account, container = _split(ref)
    started = run(
        url, username, password, token, lambda c: c.move_container(account, container, to)
    )
    if wait:
        started = _follow(url, username, password, token, started.id)
    print_json(started) if json else _show([started])


def _follow(
    url: str, username: str | None, password: str | None, token: str | None, move_id: str
) -> ContainerMove:
    """Poll the move each second, printing its progress, until it ends."""
    deadline = time.monotonic() + 7 * 24 * 3600
    while True:
        current = run(url, username, password, token, lambda c: c.get_container_move(move_id))
        err_console.print(
            f"{current.state}: {current.objects_copied}/{current.objects_total} objects,"
            f" {current.bytes_copied} bytes copied, {current.objects_cleaned} cleaned"
            + (f" (last error: {current.error})" if current.error else "")
        )
        if current.state in ENDED or time.monotonic() > deadline:
            return current
        time.sleep(1.0)


@app.command("set-tier")
def set_tier(
    ref: Annotated[str, typer.Argument(help="ACCOUNT/CONTAINER (a project's name or id).")],
    tier: Annotated[str, typer.Argument(help="The tier it goes to.")],
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    to: Annotated[
        str | None, typer.Option("--to", help="The cluster (the zone's choice otherwise).")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until it ends.")] = False,
    json: AsJson = False,
) -> None:
    """Change a container's tier: a move to a cluster offering it (Swift keeps a
    container's storage policy for its life)."""
    account, container = _split(ref)
    started = run(
        url, username, password, token,
        lambda c: c.move_container(account, container, to, tier),
    )  # fmt: skip
    if wait:
        started = _follow(url, username, password, token, started.id)
    print_json(started) if json else _show([started])


@app.command("moves")
def moves(
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    active: Annotated[bool, typer.Option("--active", help="Only those not ended.")] = False,
    json: AsJson = False,
) -> None:
    """The latest container moves, newest first."""
    found = run(url, username, password, token, lambda c: c.list_container_moves(active))
    print_json(found) if json else _show(found)


@app.command("move-show")
def move_show(
    move_id: str,
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    json: AsJson = False,
) -> None:
    """One move: its state and progress."""
    found = run(url, username, password, token, lambda c: c.get_container_move(move_id))
    print_json(found) if json else _show([found])


@app.command("move-cancel")
def move_cancel(
    move_id: str,
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    json: AsJson = False,
) -> None:
    """Turn a copying move back: the container ends whole where it was."""
    found = run(url, username, password, token, lambda c: c.cancel_container_move(move_id))
    print_json(found) if json else _show([found])
