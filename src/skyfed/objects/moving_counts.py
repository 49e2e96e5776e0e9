"""An account's counts while some of its containers move (objects/moves).

An account's objects and bytes are the sums of what each place holding its
containers says of the account there. A moving container is in two places: the
one its row names (where it is counted, and listed) and the other, its shadow:
where it goes while it copies, where it was while that is emptied. A shadow that
holds others of the account's containers counts the copy in its sums too: what
its own account listing says of the copy (which lags as its sums do: Swift's
container updater) is taken off them. So a container is never counted twice nor
lost; writes made during a move are counted from its switch over.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.objects.locations import TTL
from skyfed.objects.models import (
    ACTIVE_MOVES,
    CANCEL_CLEANING,
    COPYING,
    Container,
    ContainerMove,
    StorageCluster,
)
from skyfed.objects.parts import StorageParts
from skyfed.objects.places import cluster_upstream
from skyfed.objects.swift_forward import ask


@dataclass
class Correction:
    """What to take off an account's sums, in all and per tier."""

    objects: int = 0
    bytes: int = 0
    per_tier: dict[str, tuple[int, int]] = field(default_factory=dict)


def shadow_of(move: ContainerMove) -> str:
    """The place a moving container is in besides the one its row names."""
    return move.target_id if move.state in (COPYING, CANCEL_CLEANING) else move.source_id


async def correction(
    session: AsyncSession, parts: StorageParts, project_id: str, counted: Collection[str]
) -> Correction:
    """`counted`: the places whose account sums the answer adds up."""
    out = Correction()
    if parts.no_moves_until > time.monotonic():
        return out
    active = (
        await session.scalars(select(ContainerMove).where(ContainerMove.state.in_(ACTIVE_MOVES)))
    ).all()
    if not active:
        # None in the zone: none for a moment either. A move begun meanwhile copies
        # nothing for twice that long (move_runner), so nothing is counted twice.
        parts.no_moves_until = time.monotonic() + TTL
        return out
    moves = [m for m in active if m.project_id == project_id and shadow_of(m) in counted]
    if not moves:
        return out
    names = [m.container for m in moves]
    tiers = dict(
        (
            await session.execute(
                select(Container.name, Container.tier).where(
                    Container.project_id == project_id, Container.name.in_(names)
                )
            )
        ).all()
    )
    ids = {shadow_of(m) for m in moves}
    found = await session.scalars(select(StorageCluster).where(StorageCluster.id.in_(ids)))
    clusters = {c.id: c for c in found.all()}
    await session.commit()  # hold no connection while the places answer
    account = f"AUTH_{project_id}"

    async def listed(move: ContainerMove) -> None:
        cluster = clusters.get(shadow_of(move))
        if cluster is None:
            return
        params = [("format", "json"), ("prefix", move.container), ("limit", "1")]
        try:
            status, _, body = await ask(cluster_upstream(parts, cluster), "GET", account, params)
        except Exception:  # (a place not answering: its sums are missing too)
            return
        entry = body[0] if status == 200 and isinstance(body, list) and body else {}
        if not isinstance(entry, dict) or entry.get("name") != move.container:
            return
        objects, used = int(entry.get("count", 0)), int(entry.get("bytes", 0))
        tier = tiers.get(move.container, "")
        out.objects += objects
        out.bytes += used
        was = out.per_tier.get(tier, (0, 0))
        out.per_tier[tier] = (was[0] + objects, was[1] + used)

    await asyncio.gather(*(listed(m) for m in moves))
    return out
