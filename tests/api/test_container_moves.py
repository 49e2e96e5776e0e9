"""Containers moved between two real Swift clusters while they are in use: every
read answers, every acknowledged write stays, large objects and links keep
working, a cancel leaves the container whole where it was."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import shutil
import subprocess
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from swiftclient.client import ClientException, Connection

from skyfed.client import SkyfedClient, SkyfedError
from skyfed.client_models import ContainerMove
from skyfed.objects.local_swift import LocalSwift, LocalSwiftSet
from tests.conftest import ServedZone
from tests.scrapes import samples, value
from tests.swift_clusters import PASSWORD, clusters, swift_zone

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.xdist_group("moves")]
SMALL = 120  # objects in the moved container before the move
zone_swifts: dict[str, LocalSwift] = {}  # the module's clusters, by name


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def swifts(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalSwiftSet]:
    made = clusters(
        tmp_path_factory.mktemp("moves"), ("east", ("gold",)), ("west", ("gold", "silver"))
    )
    await made.start()
    try:
        yield made
    finally:
        await made.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def zone(
    tmp_path_factory: pytest.TempPathFactory, swifts: LocalSwiftSet
) -> AsyncIterator[ServedZone]:
    zone_swifts.update({s.name: s for s in swifts})  # (the clusters `where` asks)
    async with swift_zone(tmp_path_factory.mktemp("zone"), swifts) as served:
        yield served


def connect(zone: ServedZone, user: str = "p1:mia") -> Connection:
    return Connection(authurl=f"{zone.url}/auth/v1.0", user=user, key=PASSWORD, retries=0)


def direct(swift: LocalSwift, account: str) -> Connection:
    """The project's account on the cluster itself, as its reseller admin."""
    creds = swift.reseller_admin
    conn = Connection(authurl=swift.auth_url, user=creds.user, key=creds.key, retries=0)
    url, _ = conn.get_auth()
    conn.url = url.rsplit("/", 1)[0] + "/" + account
    return conn


def body_of(name: str, size: int) -> bytes:
    block = hashlib.sha256(name.encode()).digest()
    return (block * (size // len(block) + 1))[:size]


async def where(zone: ServedZone, mia: Connection, container: str) -> tuple[str, str]:
    """(the cluster holding the container, the other one)."""
    account = mia.url.rsplit("/", 1)[1]
    for name in ("east", "west"):
        found = await asyncio.to_thread(_has_container, zone, name, account, container)
        if found:
            return name, "west" if name == "east" else "east"
    raise AssertionError(f"{container} is on no cluster")


def _has_container(zone: ServedZone, name: str, account: str, container: str) -> bool:
    swift = zone_swifts[name]
    try:
        direct(swift, account).head_container(container)
    except ClientException as exc:
        if exc.http_status == 404:
            return False
        raise
    return True


async def ended(admin: SkyfedClient, move_id: str, timeout: float = 240.0) -> ContainerMove:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        move = await admin.get_container_move(move_id)
        if move.state in ("done", "cancelled"):
            return move
        await asyncio.sleep(0.5)
    raise AssertionError(f"move {move_id} did not end: {move}")


class Traffic:
    """A writer and a reader on the container while it moves (in threads, as a
    user's programs would be): every answer and every acknowledged write noted."""

    def __init__(self, zone: ServedZone, container: str, readable: dict[str, bytes]) -> None:
        self.zone, self.container, self.readable = zone, container, readable
        self.stop = threading.Event()
        self.written: dict[str, bytes | None] = {}  # None: deleted
        self.failures: list[str] = []
        self.reads = 0

    def write(self) -> None:
        conn = connect(self.zone)
        rng = random.Random(7)
        n = 0
        targets = sorted(self.readable)
        while not self.stop.is_set() and n < 2000:
            n += 1
            kind = rng.random()
            try:
                if kind < 0.6:
                    name = f"new/{n:05d}"
                    data = body_of(name, rng.choice([10, 3000, 70_000]))
                    conn.put_object(self.container, name, data)
                    self.written[name] = data
                elif kind < 0.8:
                    name = targets[rng.randrange(len(targets) // 2)]  # (the reader's are apart)
                    data = body_of(f"{name}-{n}", 500)
                    conn.put_object(self.container, name, data)
                    self.written[name] = data
                else:
                    name = targets[rng.randrange(len(targets) // 2)]
                    try:
                        conn.delete_object(self.container, name)
                    except ClientException as exc:
                        if exc.http_status != 404:
                            raise
                    self.written[name] = None
            except ClientException as exc:
                self.failures.append(f"write {n}: {exc.http_status} {exc.msg}")
            time.sleep(0.01)

    def read(self) -> None:
        conn = connect(self.zone)
        rng = random.Random(11)
        names = sorted(self.readable)[len(self.readable) // 2 :]  # never written meanwhile
        while not self.stop.is_set() and self.reads < 20_000:
            name = rng.choice(names)
            try:
                _, data = conn.get_object(self.container, name)
                if data != self.readable[name]:
                    self.failures.append(f"read {name}: other bytes")
                _, listing = conn.get_container(self.container, full_listing=True)
                listed = [entry["name"] for entry in listing]
                if len(listed) != len(set(listed)):
                    self.failures.append("a listing named an object twice")
            except ClientException as exc:
                self.failures.append(f"read {name}: {exc.http_status} {exc.msg}")
            self.reads += 1


async def test_a_container_moves_while_it_is_written_and_read(
    zone: ServedZone, swifts: LocalSwiftSet
) -> None:
    mia = connect(zone)
    await asyncio.to_thread(mia.get_auth)
    account = mia.url.rsplit("/", 1)[1]
    put = mia.put_object
    await asyncio.to_thread(mia.put_container, "photos", headers={"X-Container-Meta-Owner": "mia"})
    originals: dict[str, bytes] = {}
    for i in range(SMALL):
        name = f"img/{i:04d}.jpg"
        originals[name] = body_of(name, 4096 if i % 10 else 2 << 20)
    for name, data in originals.items():
        await asyncio.to_thread(
            put, "photos", name, data, content_type="image/jpeg",
            headers={"X-Object-Meta-Idx": name},
        )  # fmt: skip
    # A static large object with its segments beside it, one with them in another
    # container, a dynamic one, a link and a static link.
    segs = [body_of(f"seg{i}", 1 << 20) for i in range(3)]
    await asyncio.to_thread(mia.put_container, "photos_segments")
    manifest = []
    for i, seg in enumerate(segs):
        await asyncio.to_thread(put, "photos", f"parts/{i}", seg)
        await asyncio.to_thread(put, "photos_segments", f"big/{i}", seg)
        manifest.append({"path": f"/photos/parts/{i}", "etag": hashlib.md5(seg).hexdigest()})
    await asyncio.to_thread(
        put, "photos", "slo-here", json.dumps(manifest),
        query_string="multipart-manifest=put", content_type="video/mp4",
    )  # fmt: skip
    far = [
        dict(m, path=m["path"].replace("/photos/parts", "/photos_segments/big")) for m in manifest
    ]
    await asyncio.to_thread(
        put, "photos", "slo-beside", json.dumps(far), query_string="multipart-manifest=put"
    )
    await asyncio.to_thread(
        put, "photos", "dlo", b"", headers={"X-Object-Manifest": "photos_segments/big/"}
    )
    await asyncio.to_thread(
        put, "photos", "link", b"", headers={"X-Symlink-Target": "photos/img/0100.jpg"}
    )
    await asyncio.to_thread(
        put, "photos", "static-link", b"",
        headers={
            "X-Symlink-Target": "photos/img/0101.jpg",
            "X-Symlink-Target-Etag": hashlib.md5(originals["img/0101.jpg"]).hexdigest(),
        },
    )  # fmt: skip
    before = {
        name: await asyncio.to_thread(mia.head_object, "photos", name)
        for name in list(originals)[len(originals) // 2 :]
    }
    whole = b"".join(segs)
    frm, to = await where(zone, mia, "photos")

    traffic = Traffic(zone, "photos", {n: originals[n] for n in originals})
    threads = [threading.Thread(target=traffic.write), threading.Thread(target=traffic.read)]
    async with zone.client() as admin:
        for thread in threads:
            thread.start()
        try:
            await asyncio.sleep(1.0)
            started = await admin.move_container("p1", "photos", to)
            assert started.state == "copying" and started.target == to
            # One move at a time.
            with pytest.raises(SkyfedError) as twice:
                await admin.move_container("p1", "photos", frm)
            assert twice.value.status == 409
            move = await ended(admin, started.id)
            await asyncio.sleep(1.0)
        finally:
            traffic.stop.set()
            for thread in threads:
                await asyncio.to_thread(thread.join, 60)
    assert traffic.failures == []
    assert traffic.reads > 20 and len(traffic.written) > 20
    assert move.state == "done" and move.objects_copied >= SMALL, move
    assert move.objects_total >= SMALL

    # It is on the other cluster alone now.
    assert (await where(zone, mia, "photos"))[0] == to
    with pytest.raises(ClientException) as gone:
        await asyncio.to_thread(direct(zone_swifts[frm], account).head_container, "photos")
    assert gone.value.http_status == 404

    # Every acknowledged write is there, every delete stays deleted.
    for name, data in traffic.written.items():
        if data is None:
            with pytest.raises(ClientException) as deleted:
                await asyncio.to_thread(mia.get_object, "photos", name)
            assert deleted.value.http_status == 404, name
        else:
            _, got = await asyncio.to_thread(mia.get_object, "photos", name)
            assert got == data, name
    # What nobody touched is as it was: bytes, type, metadata, time.
    for name, head in before.items():
        headers, got = await asyncio.to_thread(mia.get_object, "photos", name)
        assert got == originals[name]
        for field in ("content-type", "x-object-meta-idx", "etag", "last-modified", "x-timestamp"):
            assert headers[field] == head[field], (name, field)
    # Large objects and links read as before.
    for name in ("slo-here", "slo-beside", "dlo"):
        _, got = await asyncio.to_thread(mia.get_object, "photos", name)
        assert got == whole, name
    _, got = await asyncio.to_thread(mia.get_object, "photos", "link")
    assert got == originals["img/0100.jpg"]
    headers, got = await asyncio.to_thread(mia.get_object, "photos", "static-link")
    assert got == originals["img/0101.jpg"]
    head = await asyncio.to_thread(mia.head_object, "photos", "slo-here")
    assert head["x-static-large-object"] == "True" and head["content-type"] == "video/mp4"
    # The container kept its metadata; its listing names each object once.
    meta = await asyncio.to_thread(mia.head_container, "photos")
    assert meta["x-container-meta-owner"] == "mia"
    _, listing = await asyncio.to_thread(mia.get_container, "photos", full_listing=True)
    names = [entry["name"] for entry in listing]
    assert len(names) == len(set(names))
    expected = set(originals) | {n for n, d in traffic.written.items() if d is not None}
    expected -= {n for n, d in traffic.written.items() if d is None}
    expected |= {f"parts/{i}" for i in range(3)} | {"slo-here", "slo-beside", "dlo", "link"}
    expected |= {"static-link"}
    assert set(names) == expected
    assert int(meta["x-container-object-count"]) == len(expected)


async def test_a_cancelled_move_leaves_the_container_whole_where_it_was(
    zone: ServedZone, swifts: LocalSwiftSet
) -> None:
    mia = connect(zone)
    await asyncio.to_thread(mia.get_auth)
    account = mia.url.rsplit("/", 1)[1]
    await asyncio.to_thread(mia.put_container, "docs")
    originals = {f"d/{i:03d}": body_of(f"d{i}", 2000) for i in range(60)}
    for name, data in originals.items():
        await asyncio.to_thread(mia.put_object, "docs", name, data)
    frm, to = await where(zone, mia, "docs")
    async with zone.client() as admin:
        started = await admin.move_container(f"AUTH_{account[5:]}", "docs", to)
        # Written and deleted while it moves: kept after the cancel too.
        await asyncio.to_thread(mia.put_object, "docs", "during", b"written meanwhile")
        await asyncio.to_thread(mia.delete_object, "docs", "d/000")
        cancelled = await admin.cancel_container_move(started.id)
        assert cancelled.state == "cancelling"
        with pytest.raises(SkyfedError) as again:
            await admin.cancel_container_move(started.id)
        assert again.value.status == 409
        await asyncio.to_thread(mia.put_object, "docs", "after-cancel", b"late")
        move = await ended(admin, started.id)
        scrape = samples(await admin.metrics())
    assert (value(scrape, "skyfed_container_moves_ended_total", outcome="cancelled") or 0) >= 1
    assert (value(scrape, "skyfed_container_move_objects_total", outcome="cleaned") or 0) >= 1
    assert move.state == "cancelled"
    assert (await where(zone, mia, "docs"))[0] == frm
    with pytest.raises(ClientException) as gone:
        await asyncio.to_thread(direct(zone_swifts[to], account).head_container, "docs")
    assert gone.value.http_status == 404
    del originals["d/000"]
    originals |= {"during": b"written meanwhile", "after-cancel": b"late"}
    _, listing = await asyncio.to_thread(mia.get_container, "docs", full_listing=True)
    assert sorted(entry["name"] for entry in listing) == sorted(originals)
    for name, data in originals.items():
        _, got = await asyncio.to_thread(mia.get_object, "docs", name)
        assert got == data, name


async def test_moves_are_for_admins_and_check_what_they_name(
    zone: ServedZone, swifts: LocalSwiftSet
) -> None:
    mia = connect(zone)
    await asyncio.to_thread(mia.put_container, "kept")
    frm, to = await where(zone, mia, "kept")
    async with SkyfedClient(zone.url, username="mia", password=PASSWORD) as member:
        with pytest.raises(SkyfedError) as refused:
            await member.move_container("p1", "kept", to)
        assert refused.value.status == 403
    async with zone.client() as admin:
        for account, container, cluster, status in [
            ("p1", "nothing-here", to, 404),
            ("nobody", "kept", to, 404),
            ("p1", "kept", "no-such-cluster", 404),
            ("p1", "kept", frm, 409),
            ("p1", "a/b", to, 422),
        ]:
            with pytest.raises(SkyfedError) as caught:
                await admin.move_container(account, container, cluster)
            assert caught.value.status == status, (account, container, cluster)
        assert await admin.list_container_moves(active=True) == []
        with pytest.raises(SkyfedError) as missing:
            await admin.get_container_move("00000000-0000-0000-0000-000000000000")
        assert missing.value.status == 404
    # Nothing was moved nor changed.
    assert (await where(zone, mia, "kept"))[0] == frm


async def _account_numbers(conn: Connection) -> tuple[int, int, list[str]]:
    headers, listing = await asyncio.to_thread(conn.get_account, full_listing=True)
    return (
        int(headers["x-account-container-count"]),
        int(headers["x-account-object-count"]),
        [entry["name"] for entry in listing],
    )


async def test_an_account_counts_a_moving_container_once_and_moves_keep_their_bandwidth(
    zone: ServedZone, swifts: LocalSwiftSet
) -> None:
    otto = connect(zone, "p2:otto")
    await asyncio.to_thread(otto.put_container, "big")
    await asyncio.to_thread(otto.put_container, "other")
    frm, to = await where(zone, otto, "big")
    rate = 256 << 10
    async with zone.client() as admin:
        if (await where(zone, otto, "other"))[0] == frm:  # one on each cluster
            first = await admin.move_container("p2", "other", to)
            assert (await ended(admin, first.id)).state == "done"
        for i in range(24):
            await asyncio.to_thread(otto.put_object, "big", f"b{i}", body_of(f"b{i}", 64 << 10))
        for i in range(3):
            await asyncio.to_thread(otto.put_object, "other", f"o{i}", b"x")
        deadline = time.monotonic() + 60
        while await _account_numbers(otto) != (2, 27, ["big", "other"]):  # (the updaters)
            assert time.monotonic() < deadline, await _account_numbers(otto)
            await asyncio.sleep(0.5)
        for name in (frm, to):
            await admin.update_storage_cluster(name, move_bandwidth=rate)
        try:
            started = await admin.move_container("p2", "big", to)
            seen: list[tuple[int, int, list[str]]] = []
            copying_began = copying_ended = None
            while True:
                move = await admin.get_container_move(started.id)
                if move.objects_copied and copying_began is None:
                    copying_began = time.monotonic()
                if move.state != "copying" and copying_ended is None:
                    copying_ended = time.monotonic()
                seen.append(await _account_numbers(otto))
                if move.state == "done":
                    break
                assert time.monotonic() < deadline + 120, move
                await asyncio.sleep(0.3)
        finally:
            for name in (frm, to):
                await admin.update_storage_cluster(name, move_bandwidth=0)
    # Never counted twice, never lost.
    assert all(containers == 2 and names == ["big", "other"] for containers, _, names in seen)
    assert all(objects <= 27 for _, objects, _ in seen), seen
    assert len(seen) > 5
    # The copies kept to the bandwidth given (a second's burst aside).
    assert copying_began is not None and copying_ended is not None
    assert copying_ended - copying_began >= 0.8 * (24 * (64 << 10) - rate) / rate
    deadline = time.monotonic() + 60
    while await _account_numbers(otto) != (2, 27, ["big", "other"]):
        assert time.monotonic() < deadline, await _account_numbers(otto)
        await asyncio.sleep(0.5)


async def _rclone(*args: str, env: dict[str, str]) -> str:
    rclone = shutil.which("rclone")
    if rclone is None:
        message = "rclone is not installed (apt-get install rclone; .ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    done = await asyncio.to_thread(
        subprocess.run, [rclone, *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_a_tier_change_is_a_move_and_rclone_finds_the_container_unchanged(
    zone: ServedZone, swifts: LocalSwiftSet, tmp_path: Path
) -> None:
    mia = connect(zone)
    # Made on east (west answers for silver alone once east is the only other gold).
    async with zone.client() as admin:
        await asyncio.to_thread(mia.put_container, "tiered")
        frm, _to = await where(zone, mia, "tiered")
        if frm != "east":
            moved = await admin.move_container("p1", "tiered", "east")
            assert (await ended(admin, moved.id)).state == "done"
        for i in range(30):
            await asyncio.to_thread(
                mia.put_object, "tiered", f"t/{i}", body_of(f"t{i}", 1000 + i * 997),
                headers={"X-Object-Meta-N": str(i)},
            )  # fmt: skip
        env = {
            **os.environ,
            "RCLONE_CONFIG_SKY_TYPE": "swift",
            "RCLONE_CONFIG_SKY_AUTH": f"{zone.url}/auth/v1.0",
            "RCLONE_CONFIG_SKY_USER": "p1:mia",
            "RCLONE_CONFIG_SKY_KEY": PASSWORD,
            "RCLONE_CONFIG": str(tmp_path / "none.conf"),
        }
        copy = tmp_path / "copy"
        await _rclone("copy", "sky:tiered", str(copy), env=env)
        await _rclone("check", "sky:tiered", str(copy), env=env)
        # No other cluster offers silver beside west: there it goes.
        started = await admin.move_container("p1", "tiered", tier="silver")
        assert (started.tier_from, started.tier_to, started.target) == ("gold", "silver", "west")
        assert (await ended(admin, started.id)).state == "done"
        # Back to gold: only east offers it elsewhere; and a tier nobody else offers.
        with pytest.raises(SkyfedError) as nowhere:
            await admin.move_container("p1", "tiered", tier="bronze")
        assert nowhere.value.status == 409
    head = await asyncio.to_thread(mia.head_container, "tiered")
    assert head["x-storage-policy"] == "silver"
    _, listing = await asyncio.to_thread(mia.get_account)
    assert {e["name"]: e.get("storage_policy") for e in listing}["tiered"] == "silver"
    await _rclone("check", "sky:tiered", str(copy), env=env)
    headers, _ = await asyncio.to_thread(mia.get_object, "tiered", "t/7")
    assert headers["x-object-meta-n"] == "7"


async def test_a_drained_cluster_gives_every_container_away_and_takes_no_new_one(
    zone: ServedZone, swifts: LocalSwiftSet
) -> None:
    mia, otto = connect(zone), connect(zone, "p2:otto")
    written: dict[tuple[str, str], bytes] = {}
    for conn, names in ((mia, ("d1", "d2", "d3")), (otto, ("d4",))):
        for name in names:
            await asyncio.to_thread(conn.put_container, name)
            for i in range(5):
                data = body_of(f"{name}{i}", 3000)
                await asyncio.to_thread(conn.put_object, name, f"o{i}", data)
                written[(name, f"o{i}")] = data
    async with zone.client() as admin:
        try:
            state = await admin.drain_storage_cluster("east", parallel=2)
            assert state["draining"] is True
            # Nothing new is placed on it meanwhile.
            await asyncio.to_thread(mia.put_container, "after-drain")
            assert (await where(zone, mia, "after-drain"))[0] == "west"
            deadline = time.monotonic() + 240
            while state["containers_left"] or state["moving"]:
                assert time.monotonic() < deadline, state
                await asyncio.sleep(0.5)
                state = await admin.storage_cluster_drain("east")
            cluster = await admin.get_storage_cluster("east")
            assert cluster.draining is True
        finally:
            await admin.stop_draining("east")
        assert (await admin.get_storage_cluster("east")).draining is False
    for conn, names in ((mia, ("d1", "d2", "d3", "photos", "docs", "kept")), (otto, ("d4",))):
        for name in names:
            assert (await where(zone, conn, name))[0] == "west", name
    for (name, obj), data in written.items():
        conn = otto if name == "d4" else mia
        _, got = await asyncio.to_thread(conn.get_object, name, obj)
        assert got == data


async def test_a_rebalance_moves_containers_off_a_full_cluster_within_their_tier(
    zone: ServedZone, swifts: LocalSwiftSet
) -> None:
    mia = connect(zone)
    await asyncio.to_thread(mia.put_container, "heavy", headers={"X-Storage-Policy": "gold"})
    for i in range(4):
        await asyncio.to_thread(mia.put_object, "heavy", f"h{i}", body_of(f"h{i}", 256 << 10))
    full, other = await where(zone, mia, "heavy")
    async with zone.client() as admin:
        # Its cluster is told it holds little: what it uses is more than 80% of it.
        await admin.update_storage_cluster(full, capacity_bytes=1 << 20)
        await admin.update_storage_cluster(other, capacity_bytes=1 << 40)
        deadline = time.monotonic() + 60  # (until its account's bytes are counted)
        while (await admin.get_storage_cluster(full)).used_bytes < 1 << 20:
            assert time.monotonic() < deadline
            await zone.process.storage.cycle()
            await asyncio.sleep(0.5)
        try:
            task_id = await admin.rebalance_storage(threshold=0.8, tier="gold", parallel=1)
            deadline = time.monotonic() + 240
            while (task := await admin.get_task(task_id)).state in ("queued", "running"):
                assert time.monotonic() < deadline, task
                await asyncio.sleep(0.5)
        finally:
            for name in (full, other):
                await admin.update_storage_cluster(name, capacity_bytes=10 << 30)
    assert task.state == "succeeded", task
    assert task.result and task.result["moves"], task.result
    assert (await where(zone, mia, "heavy"))[0] == other


async def test_a_post_during_a_move_keeps_a_large_object_whole_and_versioned_ones_stay(
    zone: ServedZone, swifts: LocalSwiftSet
) -> None:
    mia = connect(zone)
    await asyncio.to_thread(mia.put_container, "slow")
    segs = [body_of(f"s{i}", 1 << 20) for i in range(2)]
    manifest = []
    for i, seg in enumerate(segs):
        await asyncio.to_thread(mia.put_object, "slow", f"a-seg/{i}", seg)
        manifest.append({"path": f"/slow/a-seg/{i}", "etag": hashlib.md5(seg).hexdigest()})
    await asyncio.to_thread(
        mia.put_object, "slow", "zz-slo", json.dumps(manifest),
        query_string="multipart-manifest=put",
    )  # fmt: skip
    # A dynamic large object elsewhere whose segments are in the moving container.
    await asyncio.to_thread(mia.put_container, "dlo-home")
    await asyncio.to_thread(
        mia.put_object, "dlo-home", "whole", b"", headers={"X-Object-Manifest": "slow/a-seg/"}
    )
    frm, to = await where(zone, mia, "slow")
    rate = 512 << 10
    async with zone.client() as admin:
        for name in (frm, to):
            await admin.update_storage_cluster(name, move_bandwidth=rate)
        try:
            started = await admin.move_container("p1", "slow", to)
            # While its segments copy (the manifest is last by name): a POST to it,
            # and a DELETE of the container, which waits for the move.
            await asyncio.sleep(2 * 2.0 + 0.5)
            assert (await admin.get_container_move(started.id)).state == "copying"
            await asyncio.to_thread(
                mia.post_object, "slow", "zz-slo", {"X-Object-Meta-Color": "blue"}
            )
            with pytest.raises(ClientException) as waits:
                await asyncio.to_thread(mia.delete_container, "slow")
            assert waits.value.http_status == 409
            headers, got = await asyncio.to_thread(mia.get_object, "slow", "zz-slo")
            assert got == b"".join(segs) and headers["x-object-meta-color"] == "blue"
            _, got = await asyncio.to_thread(mia.get_object, "dlo-home", "whole")
            assert got == b"".join(segs)  # (its segments listed from both places)
            move = await ended(admin, started.id)
        finally:
            for name in (frm, to):
                await admin.update_storage_cluster(name, move_bandwidth=0)
        assert move.state == "done"
        headers, got = await asyncio.to_thread(mia.get_object, "slow", "zz-slo")
        assert got == b"".join(segs)
        assert headers["x-object-meta-color"] == "blue"
        assert headers["x-static-large-object"] == "True"
        _, got = await asyncio.to_thread(mia.get_object, "dlo-home", "whole")
        assert got == b"".join(segs)

        # A container whose versions its cluster keeps does not move.
        await asyncio.to_thread(mia.put_container, "kept-versions")
        await asyncio.to_thread(
            mia.put_container, "versioned", headers={"X-Versions-Location": "kept-versions"}
        )
        here, there = await where(zone, mia, "versioned")
        with pytest.raises(SkyfedError) as refused:
            await admin.move_container("p1", "versioned", there)
        assert refused.value.status == 409 and refused.value.code == "container_not_movable"
        assert (await where(zone, mia, "versioned"))[0] == here


async def test_a_container_moved_away_and_back_keeps_every_object(
    zone: ServedZone, swifts: LocalSwiftSet
) -> None:
    """The first move's cleaning leaves tombstones where it was (Swift keeps them a
    week): the move back must not lose its copies to them, yet a delete made during
    the move back still wins."""
    mia = connect(zone)
    await asyncio.to_thread(mia.put_container, "roundtrip")
    objects = {f"r/{i:02d}": body_of(f"r{i}", 500 + i) for i in range(12)}
    for name, data in objects.items():
        await asyncio.to_thread(mia.put_object, "roundtrip", name, data)
    frm, to = await where(zone, mia, "roundtrip")
    async with zone.client() as admin:
        away = await admin.move_container("p1", "roundtrip", to)
        assert (await ended(admin, away.id)).state == "done"
        back = await admin.move_container("p1", "roundtrip", frm)
        await asyncio.to_thread(mia.delete_object, "roundtrip", "r/00")  # (before it copies)
        done = await ended(admin, back.id)
    assert done.state == "done"
    assert (await where(zone, mia, "roundtrip"))[0] == frm
    del objects["r/00"]
    _, listing = await asyncio.to_thread(mia.get_container, "roundtrip")
    assert sorted(e["name"] for e in listing) == sorted(objects)
    for name, data in objects.items():
        _, got = await asyncio.to_thread(mia.get_object, "roundtrip", name)
        assert got == data, name


async def test_large_objects_read_whole_once_their_segments_container_moved(
    zone: ServedZone, swifts: LocalSwiftSet
) -> None:
    """A backend's own static large object whose segments' container moved away is
    read through skyfed, as when both were on one cluster."""
    mia = connect(zone)
    await asyncio.to_thread(mia.put_container, "pics")
    await asyncio.to_thread(mia.put_container, "pics_segments")  # (placed beside it)
    segs = [body_of(f"p{i}", 300_000 + i) for i in range(3)]
    manifest = []
    for i, seg in enumerate(segs):
        await asyncio.to_thread(mia.put_object, "pics_segments", f"movie/{i}", seg)
        manifest.append({"path": f"/pics_segments/movie/{i}", "etag": hashlib.md5(seg).hexdigest()})
    await asyncio.to_thread(
        mia.put_object, "pics", "movie", json.dumps(manifest),
        query_string="multipart-manifest=put", content_type="video/mp4",
    )  # fmt: skip
    before = await asyncio.to_thread(mia.head_object, "pics", "movie")
    frm, to = await where(zone, mia, "pics_segments")
    assert (await where(zone, mia, "pics"))[0] == frm
    async with zone.client() as admin:
        started = await admin.move_container("p1", "pics_segments", to)
        assert (await ended(admin, started.id)).state == "done"
    whole = b"".join(segs)
    headers, got = await asyncio.to_thread(mia.get_object, "pics", "movie")
    assert got == whole
    for field in ("etag", "content-length", "content-type", "x-static-large-object"):
        assert headers[field] == before[field], field
    _, part = await asyncio.to_thread(
        mia.get_object, "pics", "movie", headers={"Range": "bytes=299990-300010"}
    )
    assert part == whole[299990:300011]
