"""`skyfed user` and `skyfed project`: accounts of a zone (admin)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from skyfed.cli.common import AsJson, Password, Token, Url, Username, print_json, print_table, run

if TYPE_CHECKING:
    from skyfed.client_models import User

user_app = typer.Typer(help="Users of a zone.", no_args_is_help=True)
project_app = typer.Typer(help="Projects of a zone.", no_args_is_help=True)


def _users(users: list[User]) -> None:
    print_table(
        "users",
        ["id", "name", "project_id", "roles", "enabled"],
        [(u.id, u.name, u.project_id, ",".join(u.roles), u.enabled) for u in users],
    )


@user_app.command("create")
def create_user(
    name: str,
    new_password: Annotated[str, typer.Option("--new-password", envvar="SKYFED_NEW_PASSWORD")],
    project: Annotated[str, typer.Option(help="Project id or name.")],
    url: Url,
    role: Annotated[
        list[str] | None, typer.Option(help="admin, member or service; repeatable.")
    ] = None,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    json: AsJson = False,
) -> None:
    """Create a user (a parent zone or an agent needs one with the service role)."""
    user = run(
        url,
        username,
        password,
        token,
        lambda c: c.create_user(name, new_password, project, role or ["member"]),
    )
    print_json(user) if json else _users([user])


@user_app.command("list")
def list_users(
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    json: AsJson = False,
) -> None:
    users = run(url, username, password, token, lambda c: c.list_users())
    print_json(users) if json else _users(users)


@project_app.command("create")
def create_project(
    name: str,
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    description: str = "",
    json: AsJson = False,
) -> None:
    project = run(url, username, password, token, lambda c: c.create_project(name, description))
    print_json(project) if json else print_table(
        "project", ["id", "name"], [(project.id, project.name)]
    )


@project_app.command("list")
def list_projects(
    url: Url,
    username: Username = None,
    password: Password = None,
    token: Token = None,
    json: AsJson = False,
) -> None:
    projects = run(url, username, password, token, lambda c: c.list_projects())
    print_json(projects) if json else print_table(
        "projects",
        ["id", "name", "description"],
        [(p.id, p.name, p.description) for p in projects],
    )
