"""The storage URL through python-swiftclient: containers placed on the zone's Swift
clusters by tier, objects streamed to and from them, other projects refused."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import select
from swiftclient.client import ClientException, Connection

from skyfed.objects.local_swift import LocalSwift, LocalSwiftSet, free_base_port
from skyfed.objects.models import Container
from tests.conftest import ServedZone, free_test_port, zone_settings
from tests.swift_clusters import register
from tests.waiting import eventually

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.xdist_group("swift_objects")]
GiB = 1 << 30
PASSWORD = "member-password-1"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def clusters(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalSwiftSet]:
    root = tmp_path_factory.mktemp("swifts")
    first = free_base_port()
    swifts = LocalSwiftSet(
        [
            LocalSwift(root / "gold", first, "gold-only", ("gold",)),
            LocalSwift(root / "silver", free_base_port([first]), "silver-only", ("silver",)),
        ]
    )
    await swifts.start()
    try:
        yield swifts
    finally:
        await swifts.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def zone(tmp_path: Path, clusters: LocalSwiftSet) -> AsyncIterator[ServedZone]:
    settings = zone_settings(
        tmp_path, None, port=free_test_port(), allowed_storage_hosts=["127.0.0.1"]
    )
    async with ServedZone(settings) as served, served.client() as admin:
        for swift in clusters:
            creds = swift.reseller_admin
            tier = swift.policies[0]
            await admin.add_storage_cluster(
                swift.name, swift.auth_url, creds.user, creds.key,
                tiers={tier: tier}, capacity_bytes=10 * GiB,
            )  # fmt: skip
        await admin.create_project("p1")
        await admin.create_project("p2")
        await admin.create_user("mia", PASSWORD, "p1", ["member"])
        await admin.create_user("otto", PASSWORD, "p2", ["member"])
        yield served


def connect(zone: ServedZone, user: str) -> Connection:
    return Connection(authurl=f"{zone.url}/auth/v1.0", user=user, key=PASSWORD, retries=0)


def mia_project(connection: Connection) -> str:
    """The project id in a connection's storage URL (…/v1/AUTH_<project id>)."""
    return str(connection.url).rsplit("/", 1)[1].removeprefix("AUTH_")


def chunks(size: int, seed: bytes) -> Iterator[bytes]:
    block = hashlib.sha256(seed).digest() * 2048  # 64 KiB
    for start in range(0, size, len(block)):
        yield block[: min(len(block), size - start)]


async def test_containers_land_on_their_tier_and_objects_go_through(
    zone: ServedZone, clusters: LocalSwiftSet
) -> None:
    mia = connect(zone, "p1:mia")
    await asyncio.to_thread(mia.put_container, "docs")  # the default tier: gold
    await asyncio.to_thread(mia.put_container, "logs", headers={"X-Storage-Policy": "silver"})
    async with zone.process.core.db.session() as session:
        placed = {
            c.name: (c.tier, zone.process.storage.clusters[c.cluster_id].name)
            for c in await session.scalars(select(Container))
        }
    assert placed == {"docs": ("gold", "gold-only"), "logs": ("silver", "silver-only")}

    size = 5 * 1024 * 1024 + 123  # several chunks, sent chunked (no length)
    expected = hashlib.md5(b"".join(chunks(size, b"x"))).hexdigest()
    etag = await asyncio.to_thread(mia.put_object, "logs", "a/b.log", chunks(size, b"x"))
    assert etag == expected
    headers, body = await asyncio.to_thread(mia.get_object, "logs", "a/b.log")
    assert hashlib.md5(body).hexdigest() == expected
    assert int(headers["content-length"]) == size
    head = await asyncio.to_thread(mia.head_object, "logs", "a/b.log")
    assert head["etag"] == expected
    # Ranges and metadata pass through.
    _, part = await asyncio.to_thread(
        mia.get_object, "logs", "a/b.log", headers={"Range": "bytes=0-9"}
    )
    assert part == body[:10]
    await asyncio.to_thread(mia.post_object, "logs", "a/b.log", {"X-Object-Meta-Color": "blue"})
    head = await asyncio.to_thread(mia.head_object, "logs", "a/b.log")
    assert head["x-object-meta-color"] == "blue"
    _, listing = await asyncio.to_thread(mia.get_container, "logs")
    assert [o["name"] for o in listing] == ["a/b.log"]

    # The object is on the silver cluster itself, in the project's account there.
    silver = clusters["silver-only"]
    direct = Connection(
        authurl=silver.auth_url,
        user=silver.reseller_admin.user,
        key=silver.reseller_admin.key,
        retries=0,
    )
    url, _ = await asyncio.to_thread(direct.get_auth)
    project_account = mia.url.rsplit("/", 1)[1]
    direct.url = url.rsplit("/", 1)[0] + "/" + project_account
    direct_head = await asyncio.to_thread(direct.head_object, "logs", "a/b.log")
    assert direct_head["etag"] == expected

    # Changing a container's tier is refused, as in Swift.
    with pytest.raises(ClientException) as caught:
        await asyncio.to_thread(mia.put_container, "logs", headers={"X-Storage-Policy": "gold"})
    assert caught.value.http_status == 409

    await asyncio.to_thread(mia.delete_object, "logs", "a/b.log")
    with pytest.raises(ClientException) as caught:
        await asyncio.to_thread(mia.get_object, "logs", "a/b.log")
    assert caught.value.http_status == 404
    await asyncio.to_thread(mia.delete_container, "logs")
    await asyncio.to_thread(mia.delete_container, "docs")
    with pytest.raises(ClientException) as caught:
        await asyncio.to_thread(mia.head_container, "logs")
    assert caught.value.http_status == 404


async def test_another_project_is_refused(zone: ServedZone) -> None:
    mia = connect(zone, "p1:mia")
    await asyncio.to_thread(mia.put_container, "private")
    await asyncio.to_thread(mia.put_object, "private", "secret.txt", b"s3cret")
    otto = connect(zone, "p2:otto")
    await asyncio.to_thread(otto.get_auth)
    otto.url = mia.url  # p1's account, with p2's token
    for call in (
        lambda: otto.get_object("private", "secret.txt"),
        lambda: otto.put_object("private", "x", b"x"),
        lambda: otto.head_container("private"),
        lambda: otto.delete_object("private", "secret.txt"),
    ):
        with pytest.raises(ClientException) as caught:
            await asyncio.to_thread(call)
        assert caught.value.http_status == 403
    _, body = await asyncio.to_thread(mia.get_object, "private", "secret.txt")
    assert body == b"s3cret"
    with pytest.raises(ClientException) as caught:  # no token at all
        await asyncio.to_thread(
            Connection(preauthurl=mia.url, preauthtoken="nope", retries=0).head_container,
            "private",
        )
    assert caught.value.http_status == 401


async def test_an_object_larger_than_the_api_body_bound_streams_through(
    zone: ServedZone,
) -> None:
    """The API's 32 MiB body bound is not the object store's: 40 MiB goes through."""
    mia = connect(zone, "p1:mia")
    await asyncio.to_thread(mia.put_container, "big")
    size = 40 * 1024 * 1024
    etag = await asyncio.to_thread(mia.put_object, "big", "blob", chunks(size, b"big"))
    head = await asyncio.to_thread(mia.head_object, "big", "blob")
    assert (int(head["content-length"]), head["etag"]) == (size, etag)

    async def counted() -> bool:  # the cluster's account counts it once its updater ran
        await zone.process.storage.cycle()
        return any(c.used_bytes >= size for c in zone.process.storage.clusters.values())

    await eventually(counted, 30, "the object's bytes in its cluster's use")
    await asyncio.to_thread(mia.delete_object, "big", "blob")
    await asyncio.to_thread(mia.delete_container, "big")


async def test_a_cluster_killed_mid_upload_leaves_no_partial_object(
    tmp_path: Path, zone: ServedZone
) -> None:
    """The client gets an error, and once the cluster is back the object is not there:
    nothing half written is ever visible."""
    swift = LocalSwift(tmp_path / "dying", free_base_port(), "dying", ("bronze",))
    async with swift, zone.client() as admin:
        await register(admin, swift, GiB)
        mia = connect(zone, "p1:mia")
        await asyncio.to_thread(
            mia.put_container, "fragile", headers={"X-Storage-Policy": "bronze"}
        )
        loop = asyncio.get_running_loop()
        halfway = asyncio.Event()

        def slow_body() -> Iterator[bytes]:
            for i, block in enumerate(chunks(8 * 1024 * 1024, b"half")):
                if i == 40:  # 2.5 MiB sent: the cluster dies now
                    loop.call_soon_threadsafe(halfway.set)
                    time.sleep(1.0)  # (a thread of swiftclient's: it may block)
                yield block

        upload = asyncio.create_task(
            asyncio.to_thread(mia.put_object, "fragile", "half.bin", slow_body())
        )
        await asyncio.wait_for(halfway.wait(), 30)
        await swift.kill()
        with pytest.raises(ClientException) as caught:
            await asyncio.wait_for(upload, 60)
        assert caught.value.http_status is None or caught.value.http_status >= 500
        await swift.start()
        with pytest.raises(ClientException) as caught:
            await asyncio.to_thread(mia.head_object, "fragile", "half.bin")
        assert caught.value.http_status == 404
        _, listing = await asyncio.to_thread(mia.get_container, "fragile")
        assert listing == []

        # A create on the cluster while it is dead (not yet polled down) fails, and
        # leaves no container behind: once it is back, the name is unknown.
        await swift.kill()
        with pytest.raises(ClientException) as caught:
            await asyncio.to_thread(
                mia.put_container, "never", headers={"X-Storage-Policy": "bronze"}
            )
        assert caught.value.http_status == 503
        await swift.start()
        with pytest.raises(ClientException) as caught:
            await asyncio.to_thread(mia.head_container, "never")
        assert caught.value.http_status == 404
        async with zone.process.core.db.session() as session:
            assert await session.get(Container, (mia_project(mia), "never")) is None


async def test_a_member_cannot_make_the_cluster_sync_a_container_elsewhere(
    zone: ServedZone,
) -> None:
    """The attack: container sync set through skyfed, which acts as the cluster's
    reseller admin, would have the cluster send a project's objects to any host."""
    mia = connect(zone, "p1:mia")
    await asyncio.to_thread(
        mia.put_container,
        "synced",
        headers={"X-Container-Sync-To": "http://10.9.9.9/v1/AUTH_x/c", "X-Container-Sync-Key": "k"},
    )
    await asyncio.to_thread(
        mia.post_container, "synced", {"X-Container-Sync-To": "http://10.9.9.9/v1/AUTH_x/c"}
    )
    head = await asyncio.to_thread(mia.head_container, "synced")
    assert "x-container-sync-to" not in head  # (a key alone sends nothing anywhere)
    await asyncio.to_thread(mia.delete_container, "synced")
