"""Account quotas, as Swift's account_quotas middleware has them, over every cluster
holding the account's containers.

An admin (Swift's reseller) sets them on the account with POST:
`X-Account-Quota-Bytes`, `X-Account-Quota-Count`, and per tier
`X-Account-Quota-Bytes-Policy-<tier>` and `X-Account-Quota-Count-Policy-<tier>`
(`X-Account-Meta-Quota-Bytes`, the old way, is `X-Account-Quota-Bytes`). An empty
value or `X-Remove-...` removes one; anyone else setting or removing one is refused
(403), and everyone who reads the account sees them.

An object PUT by anyone but an admin is refused with 413 when the account's bytes
plus the upload's declared length would pass a byte quota, or its objects plus one a
count quota, over all its containers or those of the container's tier. As in Swift,
the account's use is what the clusters' accounts say, which follows uploads by the
clusters' container updater (a few seconds): a burst of uploads may pass a quota
by what it stores meanwhile, and an upload without a declared length counts as 0.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.errors import BadRequest, Forbidden, PayloadTooLarge
from skyfed.identity.principal import Principal
from skyfed.objects.locations import Expiring
from skyfed.objects.models import SwiftAccount

BYTES, COUNT = "bytes", "count"
LEGACY = "x-account-meta-quota-bytes"  # the old way's byte quota, and its removal
LEGACY_REMOVE = "x-remove-account-meta-quota-bytes"
_KINDS = {"quota-bytes": BYTES, "quota-count": COUNT}
Quotas = dict[str, int]  # "bytes", "count", "bytes:<tier>", "count:<tier>" -> limit
Usage = tuple[int, int, Mapping[str, tuple[int, int]]]  # objects, bytes; per tier
_LIMIT = re.compile(r"[0-9]{1,19}")  # ASCII digits only (str.isdigit takes "²"), < 2**63
_PREFIXES = ("x-account-quota-", "x-remove-account-quota-", LEGACY, LEGACY_REMOVE)


def asked(headers: Iterable[str]) -> bool:
    """Whether a request's headers (lower-case names) touch the account's quotas."""
    return any(name.startswith(_PREFIXES) for name in headers)


def updates(headers: Mapping[str, str], tiers: Iterable[str]) -> dict[str, int | None]:
    """The quota changes an account POST asks for (None: remove), from headers with
    lower-case names; 400 for a value that is not a whole number. Headers naming a
    tier no cluster offers are ignored, as Swift ignores unknown policies."""
    wanted: list[tuple[str, str, bool]] = []  # (key, value, remove)
    legacy = headers.get(LEGACY)
    if legacy is not None and "x-account-quota-bytes" not in headers:
        wanted.append((BYTES, legacy, False))
    if LEGACY_REMOVE in headers:
        wanted.append((BYTES, "", True))
    known = set(tiers)
    for name, value in headers.items():
        remove = name.startswith("x-remove-account-quota-")
        if not (remove or name.startswith("x-account-quota-")):
            continue
        rest = name.removeprefix("x-remove-account-" if remove else "x-account-")
        kind, policy, tier = rest.partition("-policy-")
        if kind not in _KINDS or (policy and not tier):
            continue
        if tier and tier not in known and not (remove or not value.strip()):
            continue  # a quota is set only for a tier offered; any may be removed
        wanted.append((f"{_KINDS[kind]}:{tier}" if tier else _KINDS[kind], value, remove))
    changes: dict[str, int | None] = {}
    for key, value, remove in wanted:
        if remove or not value.strip():
            changes[key] = None
        elif key not in changes or changes[key] is not None:  # a removal dominates
            if not _LIMIT.fullmatch(value.strip()):
                raise BadRequest(
                    f"an account quota is a whole number of bytes or objects, not {value[:32]!r}"
                )
            changes[key] = int(value.strip())
    return changes


def apply(row: SwiftAccount, changes: Mapping[str, int | None], caller: Principal | None) -> None:
    """The changes made to the account's quotas: an admin's alone to make."""
    if not changes:
        return
    if caller is None or not caller.is_admin:
        raise Forbidden("only an admin sets or removes an account's quotas")
    quotas = of(row)  # an old way's byte quota carries over unless changed here
    for key, limit in changes.items():
        if limit is None:
            quotas.pop(key, None)
        else:
            quotas[key] = limit
    row.quotas = quotas
    metadata = dict(row.metadata_ or {})
    if metadata.pop("quota-bytes", None) is not None:  # kept by the old way once
        row.metadata_ = metadata


def of(row: SwiftAccount | None) -> Quotas:
    """The account's quotas, the old way's byte quota among them (metadata set before
    quotas were kept apart) when no newer one replaced it."""
    if row is None:
        return {}
    quotas = dict(row.quotas or {})
    legacy = (row.metadata_ or {}).get("quota-bytes", "")
    if BYTES not in quotas and _LIMIT.fullmatch(legacy):
        quotas[BYTES] = int(legacy)
    return quotas


def headers(quotas: Quotas) -> dict[str, str]:
    """The quotas as Swift shows them on the account's HEAD and GET."""
    out = {}
    for key, limit in sorted(quotas.items()):
        kind, _, tier = key.partition(":")
        name = f"X-Account-Quota-{'Bytes' if kind == BYTES else 'Count'}"
        out[f"{name}-Policy-{tier}" if tier else name] = str(limit)
    return out


def exceeded(quotas: Quotas, usage: Usage, tier: str, length: int) -> str | None:
    """Why an upload of `length` bytes into a container of `tier` passes a quota, or
    None when it does not."""
    objects, used, per_tier = usage
    tier_objects, tier_bytes = per_tier.get(tier, (0, 0))
    if BYTES in quotas and used + length > quotas[BYTES]:
        return "Upload exceeds quota."
    if COUNT in quotas and objects + 1 > quotas[COUNT]:
        return "Upload exceeds quota."
    if f"{BYTES}:{tier}" in quotas and tier_bytes + length > quotas[f"{BYTES}:{tier}"]:
        return "Upload exceeds policy quota."
    if f"{COUNT}:{tier}" in quotas and tier_objects + 1 > quotas[f"{COUNT}:{tier}"]:
        return "Upload exceeds policy quota."
    return None


def refuse(reason: str) -> PayloadTooLarge:
    return PayloadTooLarge(reason, code="quota_exceeded")


class KnownQuotas:
    """Each account's quotas for a moment (the data path asks on every upload; an
    account with none, the most, is served there, one with some goes to the routes,
    which check them)."""

    def __init__(self) -> None:
        self._kept: Expiring[str, Quotas] = Expiring()

    def cached(self, project_id: str) -> Quotas | None:
        return self._kept.get(project_id)

    async def get(self, session: AsyncSession, project_id: str) -> Quotas:
        found = self._kept.get(project_id)
        if found is None:
            found = of(await session.get(SwiftAccount, project_id))
            self._kept.put(project_id, found)
        return found

    def forget(self, project_id: str) -> None:
        self._kept.forget(project_id)
