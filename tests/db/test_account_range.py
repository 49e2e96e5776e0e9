"""The account listing reads only the containers a page can hold
(swift_account._in_range): past the marker, before the end marker, in Swift's
order (UTF-8 bytes), on SQLite and on PostgreSQL whatever its locale orders."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from skyfed.db.engine import Database
from skyfed.objects.models import Container
from skyfed.objects.swift_account import _in_range
from skyfed.objects.swift_listing import ListingQuery

NAMES = ["a", "B", "b", "z", "Z", "é", "zé", "~", "a b", "a-b", "ab", "\u4e2d"]


def expected(query: ListingQuery) -> set[str]:
    low, high = query.marker.encode(), query.end_marker.encode()
    if query.reverse:
        low, high = high, low
    return {n for n in NAMES if (not low or n.encode() > low) and (not high or n.encode() < high)}


@pytest.mark.parametrize(
    "query",
    [
        ListingQuery(),
        ListingQuery(marker="a"),
        ListingQuery(marker="Z", end_marker="é"),
        ListingQuery(marker="z"),
        ListingQuery(end_marker="b"),
        ListingQuery(marker="zé", reverse=True),
        ListingQuery(marker="é", end_marker="B", reverse=True),
    ],
)
async def test_the_range_is_in_bytes_order(db: Database, query: ListingQuery) -> None:
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
        found = {row[0] for row in await _in_range(session, "p", query)}
    assert found == expected(query)
