"""Who may do what on a Swift account, decided by skyfed: the clusters only ever see
skyfed's reseller admin.

- The account's **owners** are the project's members and skyfed's admins, and the
  users its account ACL (X-Account-Access-Control) names `admin`: everything.
- Account ACL `read-write`: containers and objects, not the account's metadata nor
  any ACL; `read-only`: reading them.
- **Container ACLs** (X-Container-Read, X-Container-Write) grant the users they name
  (`project:user`, or `project` for all its users) reading (objects and the
  listing) or writing (objects) there; `.r:<referrer>` entries in the read ACL let
  anyone read objects, and the listing too with `.rlistings`.
- Anyone else gets 403 (401 without a token), before a name is looked up.
- A parent zone's service account acts for the users whose access the parent
  checked: it is an owner here (its credential is this link's alone).

This is Swift's tempauth semantics, with skyfed projects for accounts and the
`reader` role for a project's users who own nothing of it (Swift's `tester3`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlparse

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.errors import BadRequest, Conflict, Forbidden, Unauthorized
from skyfed.identity.identities import Identities
from skyfed.identity.models import Project
from skyfed.identity.principal import MEMBER, Principal
from skyfed.objects.models import Container, SwiftAccount

READ_METHODS = frozenset({"GET", "HEAD"})
ADMIN_LEVEL = "admin"
READ_WRITE = "read-write"
READ_ONLY = "read-only"
ACL_LEVELS = (ADMIN_LEVEL, READ_WRITE, READ_ONLY)
_REFERRER_PREFIXES = (".r:", ".ref:", ".referer:", ".referrer:")
LISTINGS = ".rlistings"


@dataclass(frozen=True)
class Access:
    project_id: str  # the account's
    caller: Principal | None  # None: no token
    owner: bool
    level: str | None  # what the account ACL grants the caller, if anything
    groups: frozenset[str]  # the ACL entries that name the caller
    referrer: str

    def _denied(self, what: str) -> Exception:
        if self.caller is None:
            return Unauthorized("X-Auth-Token is required (GET /auth/v1.0)")
        return Forbidden(f"not allowed to {what}")

    def account(self, method: str) -> None:
        """Account GET/HEAD: any level; POST (metadata, ACL): owners only."""
        if self.owner or (method in READ_METHODS and self.level is not None):
            return
        raise self._denied(f"{method} this account")

    def container(self, method: str, container: Container | None) -> None:
        """A container's own requests: creating, deleting and changing it are the
        owners' and read-write's (whose ACL and sync headers are dropped, as Swift
        does); reading it is also the read ACL's."""
        if self.owner:
            return
        if method in READ_METHODS:
            if self.level is not None:
                return
            if container is not None and self._reads(container, listing=True):
                return
        elif self.level == READ_WRITE:
            return
        raise self._denied(f"{method} this container")

    def object(self, method: str, container: Container) -> None:
        if self.owner:
            return
        if method in READ_METHODS:
            if self.level is not None or self._reads(container, listing=False):
                return
        elif self.level == READ_WRITE or self.groups & set(entries(container.write_acl)):
            return
        raise self._denied(f"{method} objects in this container")

    def _reads(self, container: Container, *, listing: bool) -> bool:
        acl = entries(container.read_acl)
        referrers = [e.split(":", 1)[1] for e in acl if e.startswith(_REFERRER_PREFIXES)]
        if (
            referrers
            and referrer_allowed(self.referrer, referrers)
            and (not listing or LISTINGS in acl)
        ):
            return True
        return bool(self.groups & set(acl))


def entries(acl: str) -> list[str]:
    return [e.strip() for e in acl.split(",") if e.strip()]


def clean_acl(header: str, value: str) -> str:
    """An ACL as given, checked: referrers only in a read ACL."""
    cleaned = entries(value)
    if header == "x-container-write" and any(
        e.startswith(_REFERRER_PREFIXES) or e == LISTINGS for e in cleaned
    ):
        raise BadRequest("referrers are not allowed in a write ACL")
    return ",".join(cleaned)


def referrer_allowed(referrer: str, rules: list[str]) -> bool:
    host = urlparse(referrer).hostname or "unknown"
    allowed = False
    for rule in rules:
        deny = rule.startswith("-")
        pattern = rule[1:] if deny else rule
        if len(pattern) > 1 and pattern.startswith("*"):  # *.example.com: .example.com
            pattern = pattern[1:]
        matches = (not deny and pattern == "*") or pattern == host
        matches = matches or (pattern.startswith(".") and host.endswith(pattern))
        if matches:
            allowed = not deny
    return allowed


def parse_account_acl(value: str) -> dict[str, list[str]]:
    """X-Account-Access-Control: a JSON object of levels to lists of entries."""
    if not value:
        return {}
    try:
        acl = json.loads(value)
    except ValueError:
        raise BadRequest("X-Account-Access-Control must be JSON") from None
    if not isinstance(acl, dict) or any(level not in ACL_LEVELS for level in acl):
        raise BadRequest(f"X-Account-Access-Control's keys are among {list(ACL_LEVELS)}")
    if not all(isinstance(v, list) and all(isinstance(e, str) for e in v) for v in acl.values()):
        raise BadRequest("X-Account-Access-Control's values are lists of names")
    return {level: list(names) for level, names in acl.items() if names}


def owns(caller: Principal, project_id: str) -> bool:
    """An owner without asking the account's ACL: a member of the project, an admin,
    or a parent zone's service account (the parent checked its user's access)."""
    return (
        caller.is_service
        or caller.is_admin
        or (caller.project_id == project_id and MEMBER in caller.roles)
    )


async def check_held_here(session: AsyncSession, access: Access) -> None:
    """The account's names and metadata (its containers made, changed, removed; its
    own metadata) are kept by the zone that holds its project, and below it only as
    that zone asks. So every create of a name goes through one table, whose unique
    key decides between concurrent ones sent to any of the tree's zones; and a
    parent's table, listings and ACLs never miss what was done below it.

    A parent zone's request (its service account: the role is a parent's alone, and
    a parent forwards its users' requests as it) is that zone's decision. Any other
    caller, this zone's admins included, is refused for an account that is not one
    of this zone's projects."""
    caller = access.caller
    if caller is not None and caller.is_service:
        return
    if await session.get(Project, access.project_id) is None:
        raise Conflict(
            f"account 'AUTH_{access.project_id}' is not a project of this zone: its "
            "containers and metadata are changed through the zone that holds the project",
            code="account_held_elsewhere",
        )


async def resolve(
    request: Request, identities: Identities, session: AsyncSession, account_project: str
) -> Access:
    token = request.headers.get("x-auth-token") or request.headers.get("x-storage-token")
    referrer = request.headers.get("referer", "")
    if not token:
        return Access(account_project, None, False, None, frozenset(), referrer)
    caller = await identities.principal(token)
    if owns(caller, account_project):
        return Access(account_project, caller, True, ADMIN_LEVEL, frozenset(), referrer)
    project = await session.get(Project, caller.project_id)
    name = project.name if project is not None else caller.project_id
    groups = frozenset({f"{name}:{caller.username}", name})
    level = None
    account = await session.get(SwiftAccount, account_project)
    if account is not None:
        level = next((lv for lv in ACL_LEVELS if groups & set(account.acl.get(lv, ()))), None)
    return Access(account_project, caller, level == ADMIN_LEVEL, level, groups, referrer)
