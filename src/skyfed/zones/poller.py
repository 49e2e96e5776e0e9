"""Polls every child zone for its name, capabilities, summary and state.

All children are polled concurrently (bounded), each within one deadline for
its login and its report, and each result is recorded as soon as it arrives.
After `failures` consecutive failed polls a child is `offline` and drops out of
the summary and routing; the first good answer makes it `active` again.

A poll never undoes an admin's edit: its write applies only if the row still
has the URL and the `updated_at` the poll started from. When several processes
serve one zone on PostgreSQL, one of them (holding an advisory lock) polls; the
others refresh their view from the database.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from skyfed.client import SkyfedError, ZoneUnreachable
from skyfed.db.base import utcnow
from skyfed.db.engine import Database
from skyfed.identity.vault import VaultError
from skyfed.logs import request_id
from skyfed.transport.base import ZoneRequest
from skyfed.zones.links import ChildLinks
from skyfed.zones.metrics import ZoneMetrics
from skyfed.zones.models import ChildZone
from skyfed.zones.report import ZoneReport
from skyfed.zones.summary import SummaryError
from skyfed.zones.view import NOTHING_UNREACHABLE, ZoneView, snapshot_of

log = logging.getLogger(__name__)
_POLLER_LOCK = 0x5C1F_ED02


@dataclass(frozen=True, slots=True)
class CycleResult:
    polled: int
    ok: int
    seconds: float
    leader: bool = True


class Poller:
    def __init__(
        self,
        db: Database,
        links: ChildLinks,
        view: ZoneView,
        *,
        interval: float,
        timeout: float,
        failures: int,
        concurrency: int,
        metrics: ZoneMetrics | None = None,
    ) -> None:
        self.db = db
        self.metrics = metrics
        self.links = links
        self.view = view
        self.interval = interval
        self.timeout = timeout
        self.failures = failures
        self._slots = asyncio.Semaphore(concurrency)
        self._lock_conn: AsyncConnection | None = None

    async def load(self) -> None:
        """Refresh the view from the database (a restarted zone keeps its children)."""
        read_at = self.view.clock()
        children = await self._children()
        self.links.remember(children)
        self.view.retain({c.id for c in children}, read_at)
        for child in children:
            self.view.put_child(snapshot_of(child))

    async def run_forever(self, *, follow_only: bool = False) -> None:
        """Poll every interval; with `follow_only`, only read what another process polled."""
        while True:
            started = time.monotonic()
            try:
                if follow_only:
                    await self.load()
                else:
                    await self.cycle()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be down; try again next interval
                log.exception("poll cycle failed")
            await asyncio.sleep(max(self.interval - (time.monotonic() - started), 0.05))

    async def close(self) -> None:
        """Give up leadership: unlock, and drop the connection (the lock is per session)."""
        conn, self._lock_conn = self._lock_conn, None
        if conn is None:
            return
        try:
            await (
                conn.invalidate()
            )  # closes the session itself, so no pooled session keeps the lock
        finally:
            await conn.close()

    async def cycle(self) -> CycleResult:
        started = time.monotonic()
        if not await self._lead():
            await self.load()
            return CycleResult(len(self.view.children), 0, time.monotonic() - started, False)
        read_at = self.view.clock()
        children = await self._children()
        self.links.remember(children)
        self.view.retain({c.id for c in children}, read_at)
        token = request_id.set(f"poll-{uuid.uuid4()}")  # children log this id too
        try:
            results = await asyncio.gather(*(self._poll_and_record(c) for c in children))
        finally:
            request_id.reset(token)
        return CycleResult(len(children), sum(results), time.monotonic() - started)

    async def _children(self) -> list[ChildZone]:
        async with self.db.session() as session:
            return list((await session.scalars(select(ChildZone))).all())

    async def _lead(self) -> bool:
        """Whether this process polls: always on SQLite; the lock holder on PostgreSQL."""
        if self.db.is_sqlite:
            return True
        try:
            if self._lock_conn is not None:
                await self._lock_conn.execute(text("SELECT 1"))
                return True
            conn = await self.db.engine.connect()
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            if await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": _POLLER_LOCK}):
                self._lock_conn = conn
                return True
            await conn.close()
        except DBAPIError:
            await self.close()  # the lock went with the connection; try again next cycle
            raise
        return False

    async def _poll_and_record(self, child: ChildZone) -> bool:
        started = time.perf_counter()
        outcome = await self._poll(child)
        if self.metrics is not None:
            ok = isinstance(outcome, ZoneReport)
            self.metrics.polled(child.name, time.perf_counter() - started, ok)
        values = self._apply(child, outcome)
        try:
            async with self.db.session() as session:
                result = await session.execute(
                    update(ChildZone)
                    .where(
                        ChildZone.id == child.id,
                        ChildZone.api_url == child.api_url,
                        ChildZone.updated_at == child.updated_at,
                    )
                    .values(**values)
                )
                await session.commit()
        except IntegrityError as exc:  # its identity is registered under another name
            log.warning("poll result not recorded", extra={"zone": child.name, "error": str(exc)})
            return False
        if getattr(result, "rowcount", 0) != 1:
            return False  # deleted or edited while we polled: the edit wins
        for key, value in values.items():
            setattr(child, key, value)
        if isinstance(outcome, ZoneReport):
            summary, unreachable = outcome.summary, outcome.unreachable
        else:  # silent: what it reported out of reach below it stays so
            summary = None
            kept = self.view.children.get(child.id)
            unreachable = kept.unreachable if kept is not None else NOTHING_UNREACHABLE
        self.view.put_child(snapshot_of(child, summary, unreachable))
        return isinstance(outcome, ZoneReport)

    def _apply(self, child: ChildZone, outcome: ZoneReport | str) -> dict[str, Any]:
        if isinstance(outcome, ZoneReport):
            if child.state != "active":
                log.info("child zone active", extra={"zone": child.name})
            return {
                "state": "active",
                "failures": 0,
                "last_error": "",
                "last_seen": utcnow(),
                "remote_id": outcome.id,
                "remote_name": outcome.name,
                "capabilities": outcome.capabilities,
                "summary": outcome.summary.to_dict(),
            }
        failures = child.failures + 1
        state = "offline" if failures >= self.failures else child.state
        if state == "offline" and child.state != "offline":
            log.warning(
                "child zone offline",
                extra={"zone": child.name, "failures": failures, "error": outcome},
            )
        return {"state": state, "failures": failures, "last_error": outcome[:512]}

    async def _poll(self, child: ChildZone) -> ZoneReport | str:
        async with self._slots:
            try:
                link = await self.links.link_for(child)
                # One deadline for the login (when the token expired) and the report.
                async with asyncio.timeout(self.timeout):
                    answer = await link.call(ZoneRequest("GET", "/v1/zone", timeout=self.timeout))
                    report = ZoneReport.from_dict(answer)
            except ZoneUnreachable as exc:
                return f"unreachable: {exc.reason}"
            except SkyfedError as exc:
                return f"answered {exc.status} {exc.code}: {exc.message}"
            except SummaryError as exc:
                return f"bad report: {exc}"
            except TimeoutError:
                return f"no answer within {self.timeout:g}s"
            except VaultError as exc:
                return str(exc)
            except Exception as exc:  # whatever one child does must not stop the others
                log.exception("poll of %s failed", child.name)
                return f"poll failed: {type(exc).__name__}"
        if child.remote_id is not None and report.id != child.remote_id:
            return f"a different zone ({report.name}, {report.id}) now answers at {child.api_url}"
        return report
