"""The account listing reads only the containers a page can hold: past the marker,
before the end marker, in Swift's order (UTF-8 bytes), whether read from the table
(swift_account._read_placed, on SQLite and on PostgreSQL whatever its locale
orders) or cut from an account's index kept in memory (locations.Index)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from skyfed.db.engine import Database
from skyfed.objects.locations import Index
from skyfed.objects.models import Container
from skyfed.objects.swift_account import _read_placed

NAMES = ["a", "B", "b", "z", "Z", "é", "zé", "~", "a b", "a-b", "ab", "\u4e2d"]
BOUNDS = [("", ""), ("a", ""), ("Z", "é"), ("z", ""), ("", "b"), ("B", "é"), ("zé", "~")]


def expected(after: str, before: str) -> set[str]:
    low, high = after.encode(), before.encode()
    return {n for n in NAMES if (not low or n.encode() > low) and (not high or n.encode() < high)}


@pytest.mark.parametrize(("after", "before"), BOUNDS)
async def test_the_range_is_in_bytes_order(db: Database, after: str, before: str) -> None:
    async with db.session() as session:
        if session.get_bind().dialect.name == "postgresql":
            # A database whose locale orders names as people read them ("B" < "b" < "é"
            # < "z"): ICU's, the one collation every PostgreSQL build here has.
            await session.execute(
                text('ALTER TABLE containers ALTER COLUMN name TYPE varchar COLLATE "und-x-icu"')
            )
        for name in NAMES:
            session.add(Container(project_id="p", name=name, cluster_id="c1", tier="gold"))
        session.add(Container(project_id="q", name="b2", cluster_id="c1", tier="gold"))
        await session.commit()
        found = {row[0] for row in await _read_placed(session, "p", after, before)}
        everything = await _read_placed(session, "p", "", "")
    assert found == expected(after, before)
    # The same page cut from the account's index, in memory.
    index = Index.of(list(everything))
    cut = index.between(after, before)
    assert [row[0] for row in cut] == sorted(expected(after, before), key=str.encode)
