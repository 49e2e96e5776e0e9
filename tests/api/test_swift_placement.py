"""`storage_placement = "account"`: an account's containers stay on one cluster while
it has room, and a new account goes where there is most room per container; the
storage planner's explain says so."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import select
from swiftclient.client import Connection

from skyfed.client import SkyfedError
from skyfed.objects.local_swift import LocalSwift, LocalSwiftSet, free_base_port
from skyfed.objects.models import Container
from tests.conftest import ServedZone, free_test_port, zone_settings
from tests.scrapes import samples, value

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.xdist_group("swift_place")]
GiB = 1 << 30
PASSWORD = "member-password-1"
PROJECTS: dict[str, str] = {}  # name -> id


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
            made = await admin.create_project(project)
            PROJECTS[project] = made.id
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
    assert all(len(places) == 1 for places in where.values()), where
    homes = [next(iter(where[PROJECTS[name]])) for name in ("p1", "p2", "p3")]
    # The first account goes where there is most room (b: 20 GiB), the second where
    # there is most room per container (a: 10 GiB, b: 20 GiB over 5 containers),
    # the third to b again (20/6 against 10/6).
    assert homes == ["b", "a", "b"]
    async with zone.client() as admin:
        scrape = samples(await admin.metrics())
    assert value(scrape, "skyfed_storage_placements_total", chosen="cluster") == 15
    assert value(scrape, "skyfed_storage_placement_decision_seconds_count") == 15


async def test_explain_says_where_the_next_container_goes_and_why(zone: ServedZone) -> None:
    async with zone.client() as admin:
        mine = await admin.explain_storage_placement("gold", "p2")
        assert await admin.explain_storage_placement("gold", PROJECTS["p2"]) == mine
        anyone = await admin.explain_storage_placement("gold")
        nothing = await admin.explain_storage_placement("bronze")
    by_name = {c["name"]: c for c in mine["candidates"]}
    assert mine["request"] == {"tier": "gold", "placement": "account"}
    # p2's containers are on a: it holds the next one (affinity), b is dropped.
    assert by_name["a"]["rank"] == 0 and by_name["a"]["account_containers"] == 5
    assert by_name["b"]["dropped_by"] == "affinity"
    assert {c["kind"] for c in mine["candidates"]} == {"cluster"}
    # A project without containers: where the room per container is largest.
    first = {c["name"]: c for c in anyone["candidates"]}
    assert first["a"]["containers"] == 5 and first["b"]["containers"] == 10
    assert anyone["ranked"][0] == first["b"]["key"]  # 20 GiB / 11 against 10 GiB / 6
    assert nothing["ranked"] == [] and nothing["reason"] == "Invalid X-Storage-Policy 'bronze'"
    assert all(c["dropped_by"] == "capabilities" for c in nothing["candidates"])


async def test_explain_is_for_admins_and_checks_its_tier(zone: ServedZone) -> None:
    async with zone.client("mia", PASSWORD) as member:
        with pytest.raises(SkyfedError) as refused:
            await member.explain_storage_placement("gold")
    assert refused.value.status == 403
    async with zone.client() as admin:
        with pytest.raises(SkyfedError) as bad:
            await admin.explain_storage_placement("Gold!")
        assert bad.value.status == 422, bad.value
        with pytest.raises(SkyfedError) as unknown:
            await admin.explain_storage_placement("gold", "nobody")
        assert unknown.value.status == 404, unknown.value
