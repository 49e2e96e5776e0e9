"""The durable task that moves a container: copy, switch over, clean up.

1. **Copy.** Once every process has forgotten where the container was (objects'
   locations live `locations.TTL` seconds; the move waits twice that), one pass over
   its listing where it was copies each object where it goes (move_copy), skipping
   those the listing there shows as new already. Writes meanwhile land where it goes
   and win over the copies (their timestamps are newer); deletes are made in both.
2. **Switch over.** The container's row names its new place alone.
3. **Clean.** Each object left where it was is copied again if the listing where it
   went does not show it (a write that was under way when the move began), then
   deleted there; then the container there is deleted.

Progress is kept in the move's row, every half second, up to the first name not
copied yet: an attempt cut off (a process killed, a backend restarting) resumes
there. A cancel turns the
move around (moves.cancel): the same steps copy back and empty the place it went.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import update

from skyfed.db.base import utcnow
from skyfed.objects.models import (
    CANCEL_CLEANING,
    CANCELLED,
    CANCELLING,
    CLEANING,
    COPYING,
    DONE,
    Container,
    ContainerMove,
    StorageCluster,
)
from skyfed.objects.move_copy import (
    COPIED,
    GONE,
    SKIPPED,
    Copied,
    MoveError,
    NotMovable,
    copy_object,
    make_container,
    offsets,
    with_offset,
)
from skyfed.objects.move_metrics import MoveMetrics
from skyfed.objects.move_throttle import Take
from skyfed.objects.parts import StorageParts
from skyfed.objects.places import SETTLE, cluster_upstream
from skyfed.objects.swift_forward import CLUSTER_UNAVAILABLE, FAILURES, Upstream, ask, open_stream
from skyfed.tasks.models import Task
from skyfed.tasks.worker import RetryLater, TaskFailed

log = logging.getLogger(__name__)
T = TypeVar("T")

PAGE = 1000
RECORD_EVERY = 0.5  # seconds between two records of a page's progress
COPIES_AT_ONCE = 4
TRIES = 4  # per object, a second apart and more, before the attempt gives up
CLEAN_ROUNDS = 30
# A state's (from, to, the state after): copying, then cleaning.
_STEPS = {
    COPYING: ("source_id", "target_id", CLEANING),
    CANCELLING: ("target_id", "source_id", CANCEL_CLEANING),
}
_CLEANS = {
    CLEANING: ("source_id", "target_id", DONE),
    CANCEL_CLEANING: ("target_id", "source_id", CANCELLED),
}


class Stale(Exception):
    """The move changed under this attempt (cancelled): it goes on from its new state."""


class MoveRunner:
    def __init__(self, parts: StorageParts) -> None:
        self.parts = parts
        self.db = parts.core.db

    async def run(self, task: Task) -> dict[str, Any]:
        while True:
            async with self.db.session() as session:
                move = await session.get(ContainerMove, task.resource_id)
            if move is None:
                raise TaskFailed(f"container move '{task.resource_id}' is gone")
            if move.state not in _STEPS and move.state not in _CLEANS:
                return _result(move)
            attributes = {
                "skyfed.move.id": move.id,
                "skyfed.move.container": move.container,
                "skyfed.move.state": move.state,
            }
            try:
                with self.parts.core.tracing.span(f"move {move.state}", attributes=attributes):
                    if move.state in _STEPS:
                        await self._copy(move)
                    else:
                        await self._clean(move)
            except Stale:
                continue
            except MoveError as exc:
                await self._note(move.id, str(exc))
                raise RetryLater(str(exc)) from exc

    async def gave_up(self, task: Task, error: str) -> None:
        await self._note(task.resource_id, error)

    # -- the steps ------------------------------------------------------------------

    async def _upstreams(
        self, move: ContainerMove, ends: tuple[str, str]
    ) -> tuple[Upstream, Upstream, Take | None]:
        """Where it comes from and goes to, and their bandwidth limits (read again for
        each page: an operator may change them while it runs)."""
        async with self.db.session() as session:
            found = [await session.get(StorageCluster, getattr(move, end)) for end in ends]
        if found[0] is None or found[1] is None:
            raise TaskFailed("a storage cluster of the move was deleted")
        take = self.parts.throttles.taker([found[0], found[1]])
        return cluster_upstream(self.parts, found[0]), cluster_upstream(self.parts, found[1]), take

    async def _copy(self, move: ContainerMove) -> None:
        state = move.state
        ends, after = _STEPS[state][:2], _STEPS[state][2]
        source, to, take = await self._upstreams(move, ends)
        account = f"AUTH_{move.project_id}"
        wait = (move.since + timedelta(seconds=SETTLE) - utcnow()).total_seconds()
        if wait > 0:  # every process has forgotten the old place by then
            await asyncio.sleep(wait)
        if state == COPYING:
            await self._make_container(move, source, to, account)
        marker = move.marker
        while page := await _listing(source, account, move.container, marker, PAGE):
            there = await _listed_to(to, account, move.container, marker, page[-1]["name"])
            await self._copy_page(move, source, to, account, page, there, take)
            marker = page[-1]["name"]
            source, to, take = await self._upstreams(move, ends)
        await self._switch(move, ends, after)

    async def _copy_page(
        self,
        move: ContainerMove,
        source: Upstream,
        to: Upstream,
        account: str,
        page: list[dict[str, Any]],
        there: Mapping[str, Mapping[str, Any]],
        take: Take | None,
    ) -> None:
        """A page's objects copied, `COPIES_AT_ONCE` at a time; its progress recorded
        every `RECORD_EVERY` seconds up to the first name not done yet (a resumed
        attempt goes on from there)."""
        tally = _Tally(page, self.parts.move_metrics)
        gate = asyncio.Semaphore(COPIES_AT_ONCE)

        async def one(index: int, entry: Mapping[str, Any]) -> None:
            if _has(there.get(entry["name"]), entry):  # (copied before: by a POST, or an
                tally.done(index, Copied(SKIPPED, names_others=_may_name_others(entry)))
                return  # attempt cut off before it recorded it)
            async with gate:
                path = (move.container, entry["name"])
                copied = await _tried(
                    lambda: copy_object(
                        source, to, account, path, take, offsets(move.generation)[0]
                    )
                )
            tally.done(index, copied)

        copies = asyncio.ensure_future(asyncio.gather(*(one(i, e) for i, e in enumerate(page))))
        try:
            while not copies.done():
                await asyncio.wait([copies], timeout=RECORD_EVERY)
                await self._record(move, tally)
            copies.result()
        finally:
            copies.cancel()
            with contextlib.suppress(BaseException):
                await copies
        await self._record(move, tally)

    async def _record(self, move: ContainerMove, tally: _Tally) -> None:
        marker, values = tally.flush()
        if marker is None and not values:
            return
        changes: dict[str, Any] = {
            key: getattr(ContainerMove, key) + value
            for key, value in values.items()
            if key != "foreign_refs"
        }
        if values.get("foreign_refs"):
            changes["foreign_refs"] = True
        if marker is not None:
            changes["marker"] = marker
        await self._progress(move, **changes)

    async def _copy_all(
        self,
        source: Upstream,
        to: Upstream,
        account: str,
        container: str,
        entries: list[Mapping[str, Any]],
        take: Take | None,
        offset: int,
    ) -> list[Copied]:
        gate = asyncio.Semaphore(COPIES_AT_ONCE)

        async def one(name: str) -> Copied:
            async with gate:
                return await _tried(
                    lambda: copy_object(source, to, account, (container, name), take, offset)
                )

        return list(await asyncio.gather(*(one(e["name"]) for e in entries)))

    async def _make_container(
        self, move: ContainerMove, source: Upstream, to: Upstream, account: str
    ) -> None:
        async with self.db.session() as session:
            row = await session.get(Container, (move.project_id, move.container))
        if row is None:
            raise TaskFailed(f"container '{move.container}' was deleted")
        try:
            headers = await _tried(
                lambda: make_container(source, to, account, move.container, move.tier_to)
            )
        except NotMovable as exc:
            raise TaskFailed(str(exc)) from exc
        if move.marker == "":
            await self._progress(
                move,
                objects_total=int(headers.get("x-container-object-count", 0) or 0),
                bytes_total=int(headers.get("x-container-bytes-used", 0) or 0),
            )

    async def _switch(self, move: ContainerMove, ends: tuple[str, str], after: str) -> None:
        """The container's row names its new place alone; the move cleans up next."""
        came_from, going = getattr(move, ends[0]), getattr(move, ends[1])
        async with self.db.session() as session:
            fresh = await session.get(ContainerMove, move.id)
            if fresh is None or fresh.state != move.state:
                raise Stale
            switched = await session.execute(
                update(Container)
                .where(
                    Container.project_id == move.project_id,
                    Container.name == move.container,
                    Container.cluster_id == came_from,
                    Container.moving_to == going,
                )
                .values(
                    cluster_id=going,
                    moving_to=None,
                    foreign_refs=fresh.foreign_refs,
                    # (a cancelled move keeps the tier it had)
                    tier=fresh.tier_to if move.state == COPYING else fresh.tier_from,
                )
                .execution_options(synchronize_session=False)
            )
            if switched.rowcount != 1:  # type: ignore[attr-defined]
                await session.rollback()
                raise Stale
            # (`since` stays: the cleaning's late copies lose to what was deleted since)
            fresh.state, fresh.marker, fresh.updated_at = after, "", utcnow()
            await session.commit()
        self.parts.locations.forget(move.project_id, move.container)
        self.parts.account_holders.forget(move.project_id)

    async def _clean(self, move: ContainerMove) -> None:
        """Empty the place the container left, then delete it there."""
        ends = _CLEANS[move.state][:2]
        old, now, take = await self._upstreams(move, ends)
        account = f"AUTH_{move.project_id}"
        for _ in range(CLEAN_ROUNDS):
            marker = ""
            while page := await _listing(old, account, move.container, marker, PAGE):
                there = await _listed_to(now, account, move.container, marker, page[-1]["name"])
                late = [e for e in page if not _has(there.get(e["name"]), e)]
                # At the cleaning's offset: over a copy there that its listing missed (its
                # container server restarted mid-copy), so the new one is listed; still
                # under anything written or deleted there since the move began.
                copied = await self._copy_all(
                    old, now, account, move.container, late, take, offsets(move.generation)[1]
                )
                if any(c.names_others for c in copied):  # (it is where it went by now)
                    await self._refs_here(move)
                await asyncio.gather(
                    *(self._delete(old, account, move.container, e, move.generation) for e in page)
                )
                marker = page[-1]["name"]
                await self._progress(
                    move, objects_cleaned=ContainerMove.objects_cleaned + len(page)
                )
                self.parts.move_metrics.objects.labels("cleaned").inc(len(page))
            status = await _tried(lambda: _delete_status(old, account, (move.container,)))
            if status in (204, 404):
                ended = _CLEANS[move.state][2]
                await self._progress(move, state=ended, finished_at=utcnow())
                self.parts.move_metrics.ended.labels(ended).inc()
                raise Stale  # (the next state: done)
            await asyncio.sleep(1.0)  # its listing lags its objects' deletes
        raise MoveError(
            f"'{move.container}' is still not empty where it was; the next attempt goes on"
        )

    async def _refs_here(self, move: ContainerMove) -> None:
        async with self.db.session() as session:
            await session.execute(
                update(Container)
                .where(Container.project_id == move.project_id, Container.name == move.container)
                .values(foreign_refs=True)
            )
            await session.commit()
        self.parts.locations.forget(move.project_id, move.container)

    async def _delete(
        self,
        upstream: Upstream,
        account: str,
        container: str,
        entry: Mapping[str, Any],
        generation: int,
    ) -> None:
        """The object deleted where it was, as listed: sent with the listed time (and
        the move's offset, move_copy.offsets), a newer write there (an upload under
        way when the move began) is not deleted (409), and the next round copies it."""
        name = entry["name"]
        stamp = _listed_time(str(entry.get("last_modified", "")))
        if stamp is not None:
            stamp = with_offset(stamp, offsets(generation)[1])
        status = await _tried(lambda: _delete_status(upstream, account, (container, name), stamp))
        if status >= 300 and status not in (404, 409):
            raise MoveError(f"deleting {name} where it was answered {status}")

    # -- the row --------------------------------------------------------------------

    async def _progress(self, move: ContainerMove, **values: Any) -> None:
        """Record progress, unless the move changed state meanwhile (then: Stale)."""
        async with self.db.session() as session:
            done = await session.execute(
                update(ContainerMove)
                .where(ContainerMove.id == move.id, ContainerMove.state == move.state)
                .values(updated_at=utcnow(), **values)
                .execution_options(synchronize_session=False)
            )
            await session.commit()
        if done.rowcount != 1:  # type: ignore[attr-defined]
            raise Stale

    async def _note(self, move_id: str, error: str) -> None:
        async with self.db.session() as session:
            await session.execute(
                update(ContainerMove)
                .where(ContainerMove.id == move_id)
                .values(error=error[:1024], updated_at=utcnow())
            )
            await session.commit()


class _Tally:
    """A page's copies as they end: what to record next."""

    def __init__(self, page: list[dict[str, Any]], metrics: MoveMetrics) -> None:
        self.metrics = metrics
        self.names = [e["name"] for e in page]
        self.ended = [False] * len(page)
        self.first_open = 0  # the first name not done yet
        self.recorded = 0
        self.counts: dict[str, int] = {}

    def done(self, index: int, copied: Copied) -> None:
        self.ended[index] = True
        self.metrics.objects.labels(copied.outcome).inc()
        self.metrics.bytes.inc(copied.size)
        key = "objects_copied" if copied.outcome == COPIED else "objects_skipped"
        if copied.outcome != GONE:
            self.counts[key] = self.counts.get(key, 0) + 1
        if copied.outcome == COPIED:
            self.counts["bytes_copied"] = self.counts.get("bytes_copied", 0) + copied.size
        if copied.names_others:
            self.counts["foreign_refs"] = 1

    def flush(self) -> tuple[str | None, dict[str, int]]:
        while self.first_open < len(self.ended) and self.ended[self.first_open]:
            self.first_open += 1
        marker = None
        if self.first_open > self.recorded:
            marker, self.recorded = self.names[self.first_open - 1], self.first_open
        counts, self.counts = self.counts, {}
        return marker, counts


def _may_name_others(entry: Mapping[str, Any]) -> bool:
    """Whether a listed object may be a large object's manifest or a link (what a
    listing shows of them; any empty object may be a dynamic large object's)."""
    kind = str(entry.get("content_type", ""))
    return (
        "slo_etag" in entry
        or "symlink_path" in entry
        or "skyfed_slo_" in kind
        or not entry.get("bytes")
    )


def _has(there: Mapping[str, Any] | None, here: Mapping[str, Any]) -> bool:
    """Whether the listing where it goes shows the object as new as where it was."""
    if there is None:
        return False
    return str(there.get("last_modified", "")) >= str(here.get("last_modified", "~"))


async def _listing(
    upstream: Upstream, account: str, container: str, marker: str, limit: int
) -> list[dict[str, Any]]:
    params = [("format", "json"), ("limit", str(limit))] + ([("marker", marker)] if marker else [])
    status, _, body = await _tried(lambda: ask(upstream, "GET", account, params, (container,)))
    if status == 404:
        return []
    if status >= 300 or not isinstance(body, list):
        raise MoveError(f"listing '{container}' on {upstream.name} answered {status}")
    return body


async def _listed_to(
    upstream: Upstream, account: str, container: str, marker: str, last: str
) -> dict[str, dict[str, Any]]:
    """The listing where it goes from `marker` through `last` (those names, however
    many were written there meanwhile)."""
    found: dict[str, dict[str, Any]] = {}
    for _ in range(100):  # (each page PAGE names further on)
        page = await _listing(upstream, account, container, marker, PAGE)
        found |= {e["name"]: e for e in page}
        if len(page) < PAGE or page[-1]["name"].encode() >= last.encode():
            break
        marker = page[-1]["name"]
    return found


def _listed_time(listed: str) -> str | None:
    """A listing's `last_modified` as a Swift timestamp (None if unreadable)."""
    whole, _, fraction = listed.partition(".")
    try:
        seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None
    exact = Decimal(seconds) + Decimal(f"0.{fraction or 0}")
    return f"{exact:016.5f}"


async def _delete_status(
    upstream: Upstream, account: str, path: tuple[str, ...], timestamp: str | None = None
) -> int:
    answer = await open_stream(upstream, "DELETE", account, path, {}, [], timestamp=timestamp)
    await answer.aclose()
    return answer.status_code


async def _tried(attempt: Callable[[], Awaitable[T]]) -> T:
    """`attempt`, again after a second (then 2, 4) when a backend failed it (a
    MoveError, then, if it fails each time)."""
    for n in range(TRIES):
        try:
            return await attempt()
        except Exception as exc:
            passing = isinstance(exc, (MoveError, *FAILURES)) or (
                getattr(exc, "code", "") == CLUSTER_UNAVAILABLE
            )
            if not passing:
                raise
            if n == TRIES - 1 and isinstance(exc, MoveError):
                raise
            if n == TRIES - 1:
                raise MoveError(str(exc)) from exc
            log.info("a move's request failed (%s); trying again", exc)
            await asyncio.sleep(2**n)
    raise AssertionError("unreachable")


def _result(move: ContainerMove) -> dict[str, Any]:
    return {
        "state": move.state,
        "objects_copied": move.objects_copied,
        "bytes_copied": move.bytes_copied,
        "objects_skipped": move.objects_skipped,
        "objects_cleaned": move.objects_cleaned,
    }
