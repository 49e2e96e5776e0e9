"""Moves of containers between the zone's storage clusters: asked, listed, cancelled.

A move is a durable task (`container.move`, move_runner) and a row of
`container_moves` with its state and progress. From the moment it is asked, the
container's row names where it goes (`moving_to`): its writes land there, its
reads look there first and then where it was (swift_forward.moving).
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.db.base import utcnow
from skyfed.errors import BadRequest, Conflict, NotFound, Unavailable
from skyfed.objects.models import (
    ACTIVE_MOVES,
    CANCELLING,
    COPYING,
    Container,
    ContainerMove,
    StorageCluster,
)
from skyfed.objects.move_copy import MoveError, NotMovable, check_timestamps, make_container
from skyfed.objects.parts import StorageParts
from skyfed.objects.places import cluster_upstream, move_target, project_id_of
from skyfed.objects.service import find_cluster
from skyfed.objects.swift_forward import CLUSTER_UNAVAILABLE
from skyfed.tasks.models import UNFINISHED, Task
from skyfed.tasks.store import TaskStore

KIND = "container.move"
RESOURCE = "container_move"
# A move outlives backends restarting and processes dying: each attempt goes on from
# where the last stopped.
MAX_ATTEMPTS = 50


async def _project_id(session: AsyncSession, ref: str) -> str:
    """A project's id from its id, its name or its Swift account (`AUTH_<id>`)."""
    found = await project_id_of(session, ref.removeprefix("AUTH_"))
    if found is None:
        raise NotFound(f"account '{ref}' not found")
    return found


async def start(
    session: AsyncSession,
    parts: StorageParts,
    store: TaskStore,
    account: str,
    container: str,
    to: str | None,
    tier: str | None = None,
) -> ContainerMove:
    """Ask for a move to the cluster `to` (the planner's choice when None), in `tier`
    (its own when None); the container starts moving at the commit (one move at a
    time)."""
    project_id = await _project_id(session, account)
    found = await session.get(Container, (project_id, container))
    if found is None:
        raise NotFound(f"container '{container}' not found in account '{account}'")
    if found.child_id is not None:
        raise Conflict(
            f"container '{container}' is in a child zone: move it there, between its clusters",
            code="container_in_child",
        )
    if found.moving_to is not None or await active_move(session, project_id, container):
        raise Conflict(f"container '{container}' is moving already", code="container_moving")
    tier = tier or found.tier
    if to is not None:
        target = await find_cluster(session, to)
    else:
        chosen = await move_target(session, parts, found, tier)
        if chosen is None:
            raise Conflict(
                f"no other storage cluster of this zone offers tier '{tier}' with room",
                code="no_move_target",
            )
        target = chosen
    if found.cluster_id == target.id:
        raise Conflict(
            f"container '{container}' is on '{target.name}' already (a tier changes only"
            " by a move to another cluster)"
        )
    if target.tiers.get(tier) is None:
        raise BadRequest(
            f"storage cluster '{target.name}' does not offer tier '{tier}'", code="unknown_tier"
        )
    if target.draining:
        raise Conflict(f"storage cluster '{target.name}' is being drained", code="draining")
    assert found.cluster_id is not None
    source = await session.get(StorageCluster, found.cluster_id)
    if source is None:
        raise Conflict(f"the storage cluster of container '{container}' is gone")
    await session.commit()  # hold no connection while the clusters answer
    # Made where it goes first: writes land there from the moment it moves.
    going = cluster_upstream(parts, target)
    try:
        await make_container(
            cluster_upstream(parts, source), going, f"AUTH_{project_id}", container, tier
        )
        await check_timestamps(going, f"AUTH_{project_id}", container)
    except NotMovable as exc:
        raise Conflict(str(exc), code="container_not_movable") from exc
    except MoveError as exc:
        raise Unavailable(str(exc), code=CLUSTER_UNAVAILABLE) from exc
    # Whether it moved meanwhile is in the WHERE: two moves asked at once, one wins.
    taken = await session.execute(
        update(Container)
        .where(
            Container.project_id == project_id,
            Container.name == container,
            Container.moving_to.is_(None),
            Container.cluster_id == found.cluster_id,
        )
        # Until it is where it goes, reads ask what an object is first: copies of
        # large objects and links are skyfed's to read (move_copy).
        .values(moving_to=target.id, foreign_refs=True)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        raise Conflict(f"container '{container}' is moving already", code="container_moving")
    # What the account's other containers there name in it (dynamic large objects'
    # segments, links) is read through skyfed from now on: it will be elsewhere.
    await session.execute(
        update(Container)
        .where(Container.project_id == project_id, Container.cluster_id == found.cluster_id)
        .values(foreign_refs=True)
        .execution_options(synchronize_session=False)
    )
    parts.locations.forget_place(found.cluster_id)
    earlier = await session.scalar(
        select(func.max(ContainerMove.generation)).where(
            ContainerMove.project_id == project_id, ContainerMove.container == container
        )
    )
    move = ContainerMove(
        generation=(earlier or 0) + 1,
        project_id=project_id,
        container=container,
        source_id=found.cluster_id,
        target_id=target.id,
        tier_from=found.tier,
        tier_to=tier,
        state=COPYING,
        since=utcnow(),
        foreign_refs=found.foreign_refs,
    )
    session.add(move)
    await session.flush()
    move.task_id = _queue(session, store, move).id
    await session.commit()
    store.notify()
    parts.locations.forget(project_id, container)
    parts.no_moves_until = 0.0
    return move


def _queue(session: AsyncSession, store: TaskStore, move: ContainerMove) -> Task:
    return store.enqueue(
        session,
        kind=KIND,
        resource_type=RESOURCE,
        resource_id=move.id,
        project_id=move.project_id,
        max_attempts=MAX_ATTEMPTS,
    )


async def active_move(session: AsyncSession, project_id: str, container: str) -> bool:
    """Whether a move of the container is under way (copying, or emptying a place)."""
    found = await session.scalar(
        select(ContainerMove.id)
        .where(
            ContainerMove.project_id == project_id,
            ContainerMove.container == container,
            ContainerMove.state.in_(ACTIVE_MOVES),
        )
        .limit(1)
    )
    return found is not None


async def get(session: AsyncSession, move_id: str) -> ContainerMove:
    found = await session.get(ContainerMove, move_id)
    if found is None:
        raise NotFound(f"container move '{move_id}' not found")
    return found


async def listed(session: AsyncSession, active: bool) -> list[ContainerMove]:
    query = select(ContainerMove).order_by(ContainerMove.created_at.desc()).limit(1000)
    if active:
        query = query.where(ContainerMove.state.in_(ACTIVE_MOVES))
    return list((await session.scalars(query)).all())


async def cancel(
    session: AsyncSession, parts: StorageParts, store: TaskStore, move_id: str
) -> ContainerMove:
    """Turn a move that is copying back: what it copied and what was written where it
    went is copied back where it was, and the place it went is emptied. A move that
    has switched over is done but for its cleaning: move the container back instead."""
    move = await get(session, move_id)
    if move.state != COPYING:
        raise Conflict(
            f"container move '{move_id}' is {move.state}; only a copying move can be cancelled",
            code="move_not_cancellable",
            details={"state": move.state},
        )
    # Writes go back where it was, reads look there first, then where it was going.
    turned = await session.execute(
        update(Container)
        .where(
            Container.project_id == move.project_id,
            Container.name == move.container,
            Container.cluster_id == move.source_id,
            Container.moving_to == move.target_id,
        )
        .values(cluster_id=move.target_id, moving_to=move.source_id)
        .execution_options(synchronize_session=False)
    )
    moved = await session.execute(
        update(ContainerMove)
        .where(ContainerMove.id == move_id, ContainerMove.state == COPYING)
        .values(state=CANCELLING, marker="", since=utcnow(), updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if turned.rowcount != 1 or moved.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        raise Conflict(f"container move '{move_id}' changed meanwhile; ask again")
    task = await session.get(Task, move.task_id) if move.task_id else None
    live = await session.scalar(
        select(Task.id).where(Task.id == move.task_id, Task.state.in_(UNFINISHED))
    )
    if task is None or live is None:  # (its task gave up: a new one turns it back)
        await session.execute(
            update(ContainerMove)
            .where(ContainerMove.id == move_id)
            .values(task_id=_queue(session, store, move).id)
        )
    await session.commit()
    store.notify()
    parts.locations.forget(move.project_id, move.container)
    await session.refresh(move)
    return move


async def note_refs(session: AsyncSession, project_id: str, container: str) -> None:
    """A write into a moving container may name others: once moved, its reads still ask
    what an object is first (the container's flag is set at the switch)."""
    found = await session.get(Container, (project_id, container))
    if found is None or found.moving_to is None:
        await session.commit()  # (what comes next may hold no connection of this one)
        return
    await session.execute(
        update(ContainerMove)
        .where(
            ContainerMove.project_id == project_id,
            ContainerMove.container == container,
            ContainerMove.state.in_(ACTIVE_MOVES),
        )
        .values(foreign_refs=True)
        .execution_options(synchronize_session=False)
    )
    await session.commit()
