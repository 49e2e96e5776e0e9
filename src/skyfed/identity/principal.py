"""Who is calling: the identity every service call acts for."""

from __future__ import annotations

from dataclasses import dataclass

ADMIN = "admin"
MEMBER = "member"
# A parent zone: may read this zone's state and forward an end user's identity
# (admin or member), which it is then trusted to have checked.
SERVICE = "service"
# A host agent: may send heartbeats and nothing else.
AGENT = "agent"
# A user of a project who owns nothing of it: what Swift ACLs grant, and no more.
READER = "reader"
ROLES = frozenset({ADMIN, MEMBER, SERVICE, AGENT, READER})
# What a forwarded identity may carry: never a peer's role, so trust does not chain.
FORWARDABLE_ROLES = frozenset({ADMIN, MEMBER})


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    username: str
    project_id: str
    roles: frozenset[str]
    # The service account that forwarded this identity, when it came from a parent zone.
    via: str | None = None

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles

    @property
    def is_service(self) -> bool:
        return SERVICE in self.roles

    @property
    def is_agent(self) -> bool:
        return AGENT in self.roles
