"""Storage clusters registered with a zone, against real Swift clusters on loopback:
probed before they are stored, their keys never shown, polled up and down, and
their room in the zone summary's storage section."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import select

from skyfed.client import SkyfedClient, SkyfedError
from skyfed.objects.local_swift import LocalSwift, free_base_port
from skyfed.objects.models import StorageCluster
from tests.conftest import (
    SERVICE_PASSWORD,
    InProcessZone,
    ServedZone,
    free_test_port,
    zone_settings,
)
from tests.scrapes import samples, value

# One cluster for the module: its tests share its event loop and its xdist worker.
pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.xdist_group("storage_clusters")]
GiB = 1 << 30
TIERS = {"gold": "gold", "silver": "silver"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def swift(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalSwift]:
    cluster = LocalSwift(tmp_path_factory.mktemp("swift"), free_base_port(), "swift-a")
    async with cluster:
        yield cluster


@pytest_asyncio.fixture(loop_scope="module")
async def storage_zone(tmp_path: Path) -> AsyncIterator[InProcessZone]:
    settings = zone_settings(tmp_path, None, allowed_storage_hosts=["127.0.0.1"])
    async with InProcessZone(settings) as zone:
        yield zone


async def add(admin: SkyfedClient, swift: LocalSwift, name: str = "a", **fields: object) -> object:
    creds = swift.reseller_admin
    values: dict[str, object] = {
        "auth_url": swift.auth_url,
        "username": creds.user,
        "password": creds.key,
        "tiers": TIERS,
        "capacity_bytes": 100 * GiB,
        **fields,
    }
    return await admin.add_storage_cluster(name, **values)  # type: ignore[arg-type]


async def refused(call: object, status: int, code: str) -> SkyfedError:
    with pytest.raises(SkyfedError) as caught:
        await call  # type: ignore[misc]
    assert (caught.value.status, caught.value.code) == (status, code), caught.value
    return caught.value


async def test_a_cluster_is_probed_stored_and_reported(
    storage_zone: InProcessZone, swift: LocalSwift
) -> None:
    async with storage_zone.client() as admin:
        cluster = await add(admin, swift)
        assert cluster.state == "up" and cluster.tiers == TIERS
        assert cluster.swift_version  # read from its /info
        assert cluster.free_bytes == 100 * GiB
        [listed] = await admin.list_storage_clusters()
        assert listed.id == cluster.id
        assert (await admin.get_storage_cluster("a")).auth_url == swift.auth_url

        # The key is never shown, and is not stored as written.
        key = swift.reseller_admin.key
        async with storage_zone.raw() as raw:
            answer = await raw.get(
                "/v1/storage-clusters", headers={"Authorization": f"Bearer {admin.token}"}
            )
        assert key not in answer.text and "password" not in answer.text
        async with storage_zone.process.core.db.session() as session:
            row = await session.scalar(select(StorageCluster))
            assert row is not None and key.encode() not in row.password_secret

        # Its room is in the zone's summary at once, and up the tree from there.
        summary = (await admin.zone()).summary
        storage = summary["sections"]["storage"]
        assert storage["sum"]["free_bytes:gold"] == 100 * GiB
        assert storage["sum"]["clusters_up"] == 1
        assert storage["max"]["free_bytes:silver"] == 100 * GiB

        # A poll reads it again: up, nothing used yet.
        polled, answered = await storage_zone.process.storage.cycle()
        assert (polled, answered) == (1, 1)
        scrape = samples(await admin.metrics())
        assert value(scrape, "skyfed_storage_cluster_state", cluster="a", state="up") == 1
        assert value(scrape, "skyfed_storage_cluster_capacity_bytes", cluster="a") == 100 * GiB

        changed = await admin.update_storage_cluster("a", capacity_bytes=50 * GiB)
        assert changed.capacity_bytes == 50 * GiB
        summary = (await admin.zone()).summary
        assert summary["sections"]["storage"]["sum"]["free_bytes:gold"] == 50 * GiB

        await admin.delete_storage_cluster("a")
        await refused(admin.get_storage_cluster("a"), 404, "not_found")
        assert "storage" not in (await admin.zone()).summary.get("sections", {})


async def test_what_cannot_be_used_is_refused_and_nothing_is_stored(
    storage_zone: InProcessZone, swift: LocalSwift
) -> None:
    async with storage_zone.client() as admin:
        await refused(add(admin, swift, password="wrong"), 400, "cluster_auth_failed")
        await refused(add(admin, swift, tiers={"gold": "platinum"}), 400, "unknown_policy")
        dead = f"http://127.0.0.1:{free_base_port()}/auth/v1.0"
        await refused(add(admin, swift, auth_url=dead), 400, "cluster_unreachable")
        await refused(
            add(admin, swift, auth_url="http://10.9.9.9:8080/auth/v1.0"),
            400,
            "cluster_url_not_allowed",
        )
        await refused(add(admin, swift, tiers={}), 422, "validation_error")
        await refused(add(admin, swift, capacity_bytes=0), 422, "validation_error")
        await refused(add(admin, swift, name="bad name!"), 422, "validation_error")
        assert await admin.list_storage_clusters() == []

        await add(admin, swift)
        await refused(add(admin, swift), 409, "conflict")
        # The stored key goes only where it went before.
        await refused(
            admin.update_storage_cluster("a", username="test:tester"), 400, "password_required"
        )
        await refused(
            admin.update_storage_cluster("a", tiers={"gold": "bronze"}), 400, "unknown_policy"
        )
        assert (await admin.get_storage_cluster("a")).tiers == TIERS


async def test_only_admins_see_or_change_clusters(
    storage_zone: InProcessZone, swift: LocalSwift
) -> None:
    async with storage_zone.client() as admin:
        await add(admin, swift)
        await admin.create_project("p1")
        await admin.create_user("mia", "member-password-1", "p1", ["member"])
    async with storage_zone.client("mia", "member-password-1") as member:
        await refused(member.list_storage_clusters(), 403, "forbidden")
        await refused(member.get_storage_cluster("a"), 403, "forbidden")
        await refused(member.delete_storage_cluster("a"), 403, "forbidden")
        await refused(add(member, swift, name="b"), 403, "forbidden")


async def test_a_cluster_that_stops_answering_goes_down_and_comes_back(
    storage_zone: InProcessZone, tmp_path: Path
) -> None:
    parts = storage_zone.process.storage
    failures = storage_zone.process.core.settings.poll_failures
    async with (
        LocalSwift(tmp_path / "b", free_base_port(), "swift-b") as swift,
        storage_zone.client() as admin,
    ):
        await add(admin, swift, name="b")
        await swift.kill()
        for _ in range(failures):
            assert await parts.cycle() == (1, 0)
        cluster = await admin.get_storage_cluster("b")
        assert cluster.state == "down" and cluster.failures == failures
        assert cluster.last_error
        storage = (await admin.zone()).summary["sections"]["storage"]
        assert storage["sum"]["clusters_down"] == 1
        assert storage["sum"].get("free_bytes:gold", 0) == 0  # no room while it is down

        await swift.start()
        assert await parts.cycle() == (1, 1)
        assert (await admin.get_storage_cluster("b")).state == "up"
        storage = (await admin.zone()).summary["sections"]["storage"]
        assert storage["sum"]["free_bytes:gold"] == 100 * GiB


async def test_the_storage_section_travels_up_the_tree(tmp_path: Path, swift: LocalSwift) -> None:
    """A parent's summary holds what its children's clusters offer, merged as hosts are."""
    child_settings = zone_settings(
        tmp_path / "child",
        None,
        name="dc",
        port=free_test_port(),
        allowed_storage_hosts=["127.0.0.1"],
    )
    async with (
        ServedZone(child_settings) as child,
        InProcessZone(zone_settings(tmp_path / "parent", None, name="region")) as parent,
        child.client() as child_admin,
        parent.client() as parent_admin,
    ):
        await add(child_admin, swift, name="a", capacity_bytes=30 * GiB)
        await add(child_admin, swift, name="b", capacity_bytes=20 * GiB, tiers={"gold": "gold"})
        await parent_admin.add_zone("dc", child.url, "svc", SERVICE_PASSWORD)
        await parent.process.tree.poller.cycle()
        storage = (await parent_admin.zone()).summary["sections"]["storage"]
        assert storage["sum"]["free_bytes:gold"] == 50 * GiB
        assert storage["sum"]["free_bytes:silver"] == 30 * GiB
        assert storage["max"]["free_bytes:gold"] == 30 * GiB
        assert storage["sum"]["clusters_up"] == 2
