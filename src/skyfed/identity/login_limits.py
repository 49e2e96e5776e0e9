"""Bounded failed logins per user name and per source address, shared by a zone's processes.

After `max_failures` failed logins within `window` seconds, the name (or address)
is refused with 429 for `window` seconds, before any password is checked: a
guessing attack gets a few tries per window, and a flood costs a lookup, not an
Argon2 hash. Counts live in the zone's database so every API process enforces
the same bound; each process also remembers the blocks it has seen, so a flood
against a blocked name does not reach the database at all.

A blocked name also refuses its owner's correct password until the block ends;
tokens already issued keep working (a parent zone's link logs in once per token
lifetime), and the per-address bound keeps one source from blocking names at will.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.db.base import utcnow
from skyfed.errors import TooManyRequests
from skyfed.identity.models import LoginFailures


@dataclass(frozen=True, slots=True)
class Bound:
    prefix: str  # "user" or "source"
    max_failures: int


class LoginLimiter:
    def __init__(self, *, per_user: int, per_source: int, window: float) -> None:
        self.bounds = (Bound("user", per_user), Bound("source", per_source))
        self.window = timedelta(seconds=window)
        self._blocked: dict[str, datetime] = {}  # key -> until, as last read

    def keys(self, username: str, source: str) -> dict[str, int]:
        """The counters a login from `source` as `username` touches, with their bounds."""
        user, src = self.bounds
        return {
            f"user:{username}"[:160]: user.max_failures,
            f"source:{source}"[:160]: src.max_failures,
        }

    async def check(self, session: AsyncSession, keys: dict[str, int]) -> None:
        """Raise 429 while any of the counters is blocked."""
        now = utcnow()
        for key in keys:
            until = self._blocked.get(key)
            if until is not None and until > now:
                raise _refused(key, until - now)
        rows = await session.scalars(
            select(LoginFailures).where(
                LoginFailures.key.in_(list(keys)), LoginFailures.blocked_until > now
            )
        )
        for row in rows:
            assert row.blocked_until is not None
            self._remember(row.key, row.blocked_until)
            raise _refused(row.key, row.blocked_until - now)

    async def failed(self, session: AsyncSession, keys: dict[str, int]) -> None:
        """Count one failure on each counter; block those that reached their bound."""
        now = utcnow()
        for key, bound in keys.items():
            row = await self._counter(session, key, now)
            if row.window_start + self.window <= now:
                row.count, row.window_start, row.blocked_until = 1, now, None
            else:
                row.count += 1
            if row.count >= bound:
                row.blocked_until = now + self.window
                self._remember(key, row.blocked_until)
            await session.commit()

    async def _counter(self, session: AsyncSession, key: str, now: datetime) -> LoginFailures:
        """The counter's row, locked (on PostgreSQL) until the commit; made when missing."""
        query = (
            select(LoginFailures)
            .where(LoginFailures.key == key)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        row = await session.scalar(query)
        if row is not None:
            return row
        row = LoginFailures(key=key, count=0, window_start=now)
        session.add(row)
        try:
            await session.flush()
        except IntegrityError:  # another process made it meanwhile: count on theirs
            await session.rollback()
            found = await session.scalar(query)
            if found is None:
                raise
            return found
        return row

    async def succeeded(self, session: AsyncSession, username: str) -> None:
        """A correct password clears the name's count (not its address's)."""
        await session.execute(delete(LoginFailures).where(LoginFailures.key == f"user:{username}"))
        await session.commit()

    async def prune(self, session: AsyncSession) -> None:
        """Forget counters whose window and block are both over."""
        now = utcnow()
        await session.execute(
            delete(LoginFailures).where(
                LoginFailures.window_start < now - self.window,
                (LoginFailures.blocked_until.is_(None)) | (LoginFailures.blocked_until < now),
            )
        )
        await session.commit()
        self._blocked = {k: u for k, u in self._blocked.items() if u > now}

    def _remember(self, key: str, until: datetime) -> None:
        if len(self._blocked) > 100_000:  # a flood of addresses: keep memory bounded
            self._blocked.clear()
        self._blocked[key] = until


def _refused(key: str, left: timedelta) -> TooManyRequests:
    what, _, who = key.partition(":")
    subject = f"user '{who}'" if what == "user" else f"address {who}"
    seconds = left.total_seconds()
    return TooManyRequests(
        f"too many failed logins for {subject}; try again in {int(seconds + 0.999)} s",
        retry_after=seconds,
        code="login_rate_limited",
    )
