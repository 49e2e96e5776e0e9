"""`storage_placement = "account"`: an account's containers stay on one cluster while
it has room, and a new account goes to the cluster holding the fewest accounts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import select
from swiftclient.client import Connection

from skyfed.objects.local_swift import LocalSwift, LocalSwiftSet, free_base_port
from skyfed.objects.models import Container
from tests.conftest import ServedZone, free_test_port, zone_settings

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.xdist_group("swift_place")]
GiB = 1 << 30
PASSWORD = "member-password-1"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def zone(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServedZone]:
    root: Path = tmp_path_factory.mktemp("placement")
    first = free_base_port()
    swifts = LocalSwiftSet(
        [
            LocalSwift(root / "a", first, "a", ("gold",)),
            LocalSwift(root / "b", free_base_port([first]), "b", ("gold",)),
        ]
    )
    settings = zone_settings(
        root / "zone", None, port=free_test_port(), allowed_storage_hosts=["127.0.0.1"],
        storage_placement="account",
    )  # fmt: skip
    async with swifts, ServedZone(settings) as served, served.client() as admin:
        for swift, capacity in zip(swifts, (10 * GiB, 20 * GiB), strict=True):
            creds = swift.reseller_admin
            await admin.add_storage_cluster(
                swift.name, swift.auth_url, creds.user, creds.key,
                tiers={"gold": "gold"}, capacity_bytes=capacity,
            )  # fmt: skip
        for project, user in (("p1", "mia"), ("p2", "otto"), ("p3", "ida")):
            await admin.create_project(project)
            await admin.create_user(user, PASSWORD, project, ["member"])
        yield served


async def test_an_account_stays_on_one_cluster_and_accounts_spread(zone: ServedZone) -> None:
    for user in ("p1:mia", "p2:otto", "p3:ida"):
        connection = Connection(authurl=f"{zone.url}/auth/v1.0", user=user, key=PASSWORD, retries=0)
        for i in range(5):
            await asyncio.to_thread(connection.put_container, f"c{i}")
    async with zone.process.core.db.session() as session:
        rows = (await session.scalars(select(Container))).all()
    clusters = zone.process.storage.clusters
    where: dict[str, set[str]] = {}
    for row in rows:
        where.setdefault(row.project_id, set()).add(clusters[row.cluster_id or ""].name)
    homes = [next(iter(places)) for places in where.values()]
    assert all(len(places) == 1 for places in where.values()), where
    # The first account goes where there is most room (b), the second to the
    # cluster with fewer accounts (a), the third to b again (a tie: more room).
    assert sorted(homes) == ["a", "b", "b"]
