"""API shapes for identity."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from skyfed.schema_types import Name, Secret, Strict, Text64, Text255

NewPassword = Annotated[str, StringConstraints(min_length=8, max_length=256, pattern=r"^[^\x00]*$")]
Role = Annotated[str, StringConstraints(pattern=r"^(admin|member|service|agent|reader)$")]


class TokenRequest(Strict):
    username: Text64
    password: Secret


class UserOut(BaseModel):
    id: str
    name: str
    project_id: str
    roles: list[str]
    enabled: bool
    created_at: datetime


class TokenOut(BaseModel):
    token: str
    expires_at: datetime
    user: UserOut


class ProjectCreate(Strict):
    name: Name
    description: Text255 = ""


class ProjectOut(BaseModel):
    id: str
    name: str
    description: str
    created_at: datetime


class UserCreate(Strict):
    name: Name
    password: NewPassword
    # A project id or name.
    project: Text64
    roles: list[Role] = Field(default_factory=lambda: ["member"], max_length=4)


class ProjectList(BaseModel):
    projects: list[ProjectOut]


class UserList(BaseModel):
    users: list[UserOut]
