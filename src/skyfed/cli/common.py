"""What every client command shares: where the zone is, who we are, and how to print."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from skyfed.client import SkyfedClient, SkyfedError

T = TypeVar("T")
console = Console()
err_console = Console(stderr=True)

Url = Annotated[str, typer.Option("--url", envvar="SKYFED_URL", help="The zone's API URL.")]
Username = Annotated[
    str | None, typer.Option("--username", "-u", envvar="SKYFED_USERNAME", help="Log in as.")
]
Password = Annotated[
    str | None,
    typer.Option("--password", "-p", envvar="SKYFED_PASSWORD", help="Password for --username."),
]
Token = Annotated[
    str | None, typer.Option("--token", envvar="SKYFED_TOKEN", help="A bearer token instead.")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def make_client(
    url: str, username: str | None, password: str | None, token: str | None
) -> SkyfedClient:
    if token is None and (username is None or password is None):
        err_console.print("[red]give --token, or --username and --password (or SKYFED_*)[/]")
        raise typer.Exit(2)
    return SkyfedClient(url, token=token, username=username, password=password)


def run(
    url: str,
    username: str | None,
    password: str | None,
    token: str | None,
    call: Callable[[SkyfedClient], Awaitable[T]],
) -> T:
    """Run one client call; a zone's error becomes a message and exit status 1."""

    async def go() -> T:
        async with make_client(url, username, password, token) as client:
            return await call(client)

    try:
        return asyncio.run(go())
    except SkyfedError as exc:
        err_console.print(f"[red]error[/] {exc.code}: {exc.message}")
        raise typer.Exit(1) from exc


def plain(data: Any) -> Any:
    """The client's models as the JSON the zone sent (same fields, same order); lists and
    dicts of them likewise; anything else as it is."""
    if hasattr(data, "model_dump"):
        return data.model_dump(mode="json")
    if isinstance(data, list | tuple):
        return [plain(item) for item in data]
    if isinstance(data, dict):
        return {key: plain(value) for key, value in data.items()}
    return data


def print_json(data: Any) -> None:
    console.print_json(json.dumps(plain(data), default=str))


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row])
    console.print(table)


def print_record(record: Any) -> None:
    """One answer (a model or a dict), a field a row, values as the zone sent them."""
    table = Table(show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in plain(record).items():
        shown = json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)
        table.add_row(key, shown)
    console.print(table)


def pairs(items: list[str] | None, what: str, shape: str = "key=value") -> dict[str, str] | None:
    """Repeated `--option key=value` flags as a mapping (None when none was given)."""
    if items is None:
        return None
    found = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{what} {item!r} is not {shape}")
        found[key] = value
    return found
