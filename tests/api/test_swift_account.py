"""The Swift account through python-swiftclient: one listing merged over the
clusters that hold its containers, its metadata and ACL kept by skyfed, container
ACLs and attributes, copies between clusters, `/info`, and a cluster down during a
listing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select
from swiftclient.client import ClientException, Connection
from swiftclient.utils import generate_temp_url

from skyfed.objects.local_swift import LocalSwift, LocalSwiftSet, free_base_port
from skyfed.objects.models import Container
from tests.conftest import ServedZone
from tests.swift_clusters import PASSWORD, register, swift_zone
from tests.swift_clusters import clusters as swift_clusters
from tests.waiting import eventually

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.xdist_group("swift_account")]
GiB = 1 << 30
NAMES = [f"c{i:02}" for i in range(24)] + ["logs_a", "logs_b", "zé"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def clusters(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalSwiftSet]:
    root = tmp_path_factory.mktemp("swifts")
    swifts = swift_clusters(root, ("east", ("gold",)), ("west", ("gold",)), updater_interval=1.0)
    await swifts.start()
    try:
        yield swifts
    finally:
        await swifts.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def zone(
    tmp_path_factory: pytest.TempPathFactory, clusters: LocalSwiftSet
) -> AsyncIterator[ServedZone]:
    async with swift_zone(
        tmp_path_factory.mktemp("zone"), clusters, poll_interval=1.0, poll_timeout=1.0
    ) as served:
        mia = connect(served, "p1:mia")
        for name in NAMES:
            await asyncio.to_thread(mia.put_container, name)
        yield served


def connect(zone: ServedZone, user: str) -> Connection:
    return Connection(authurl=f"{zone.url}/auth/v1.0", user=user, key=PASSWORD, retries=0)


async def call(connection: Connection, method: str, *args: object, **kwargs: object) -> object:
    return await asyncio.to_thread(getattr(connection, method), *args, **kwargs)


async def status_of(connection: Connection, method: str, *args: object, **kwargs: object) -> int:
    try:
        await call(connection, method, *args, **kwargs)
    except ClientException as exc:
        return int(exc.http_status or 0)
    return 200


async def test_the_listing_merges_every_cluster_in_swift_order(zone: ServedZone) -> None:
    async with zone.process.core.db.session() as session:
        where = {c.name: c.cluster_id for c in await session.scalars(select(Container))}
    assert len(set(where.values())) == 2, "an account's containers spread over both clusters"

    mia = connect(zone, "p1:mia")
    for i, name in enumerate(["c00", "c01", "zé"]):
        await call(mia, "put_object", name, "o", b"x" * (i + 1))
    expected = sorted(NAMES, key=lambda n: n.encode())
    _, listing = await call(mia, "get_account", full_listing=True)
    assert [c["name"] for c in listing] == expected
    # Pages of 5 (swiftclient follows the markers), reverse, prefix and delimiter.
    _, paged = await call(mia, "get_account", limit=5, full_listing=True)
    assert [c["name"] for c in paged] == expected
    _, page = await call(mia, "get_account", marker="c05", limit=3)
    assert [c["name"] for c in page] == ["c06", "c07", "c08"]
    _, page = await call(mia, "get_account", end_marker="c02")
    assert [c["name"] for c in page] == ["c00", "c01"]
    _, page = await call(mia, "get_account", prefix="logs_")
    assert [c["name"] for c in page] == ["logs_a", "logs_b"]
    _, page = await call(mia, "get_account", delimiter="_", marker="c23")
    assert page == [{"subdir": "logs_"}, page[1]] and page[1]["name"] == "zé"

    async def counted() -> bool:
        head = await call(mia, "head_account")
        return head["x-account-object-count"] == "3" and head["x-account-bytes-used"] == "6"

    await eventually(counted, 30, "the clusters' object counts summed")
    # A page past every name asks no cluster for names (the counts are the ones they
    # just gave): its headers still say all there is.
    headers, page = await call(mia, "get_account", marker="zé")
    assert page == [] and headers["x-account-object-count"] == "3"
    assert headers["x-account-bytes-used"] == "6"
    head = await call(mia, "head_account")
    assert head["x-account-container-count"] == str(len(NAMES))
    assert head["x-account-storage-policy-gold-container-count"] == str(len(NAMES))
    _, listing = await call(mia, "get_account")
    assert {c["name"]: (c["count"], c["bytes"]) for c in listing if c["count"]} == {
        "c00": (1, 1),
        "c01": (1, 2),
        "zé": (1, 3),
    }


async def test_formats_and_bad_parameters(zone: ServedZone) -> None:
    mia = connect(zone, "p1:mia")
    url, token = await asyncio.to_thread(mia.get_auth)
    async with httpx.AsyncClient(headers={"X-Auth-Token": token}) as http:
        plain = await http.get(url, params={"limit": "3"})
        assert plain.status_code == 200
        assert plain.headers["content-type"] == "text/plain; charset=utf-8"
        assert plain.text == "c00\nc01\nc02\n"
        reverse = await http.get(url, params={"limit": "2", "reverse": "on", "format": "json"})
        assert [c["name"] for c in reverse.json()] == ["zé", "logs_b"]
        xml = await http.get(url, params={"limit": "1"}, headers={"Accept": "application/xml"})
        assert xml.text.startswith(
            f'<?xml version="1.0" encoding="UTF-8"?>\n<account name="{url.rsplit("/", 1)[1]}">'
        )
        assert "<name>c00</name>" in xml.text
        empty = await http.get(url, params={"format": "json", "prefix": "nothing"})
        assert (empty.status_code, empty.json()) == (200, [])
        assert (await http.get(url, params={"prefix": "nothing"})).status_code == 204
        assert (await http.get(url, params={"limit": "10001"})).status_code == 412
        assert (await http.get(url, headers={"Accept": "image/png"})).status_code == 406
        assert (await http.put(url)).status_code == 405
        assert (await http.delete(url)).status_code == 405


async def test_account_metadata_is_kept_by_skyfed(zone: ServedZone) -> None:
    mia = connect(zone, "p1:mia")
    await call(mia, "post_account", {"X-Account-Meta-Color": "blue", "X-Account-Meta-Size": "9"})
    await call(mia, "post_account", {"X-Account-Meta-Size": "", "X-Account-Meta-Shape": "round"})
    head = await call(mia, "head_account")
    assert head["x-account-meta-color"] == "blue" and head["x-account-meta-shape"] == "round"
    assert "x-account-meta-size" not in head
    await call(mia, "post_account", {"X-Remove-Account-Meta-Shape": "x"})
    assert "x-account-meta-shape" not in await call(mia, "head_account")
    too_long = {"X-Account-Meta-Color": "v" * 257}
    assert await status_of(mia, "post_account", too_long) == 400
    assert (await call(mia, "head_account"))["x-account-meta-color"] == "blue"
    # A member does not set its own quota; another project's user sees nothing.
    assert await status_of(mia, "post_account", {"X-Account-Meta-Quota-Bytes": "1"}) == 403
    otto, rita = connect(zone, "p2:otto"), connect(zone, "p1:rita")
    url, _ = await asyncio.to_thread(mia.get_auth)
    for user in (otto, rita):
        await asyncio.to_thread(user.get_auth)
        user.url = url  # mia's account, with their own tokens
        assert await status_of(user, "head_account") == 403
        assert await status_of(user, "get_account") == 403
        assert await status_of(user, "post_account", {"X-Account-Meta-Color": "red"}) == 403


async def test_acls_grant_readers_and_other_projects_what_they_name(zone: ServedZone) -> None:
    mia, rita, otto = connect(zone, "p1:mia"), connect(zone, "p1:rita"), connect(zone, "p2:otto")
    await call(mia, "put_container", "shared")
    await call(mia, "put_object", "shared", "doc", b"hello")
    url, _ = await asyncio.to_thread(mia.get_auth)
    for user in (rita, otto):
        await asyncio.to_thread(user.get_auth)
        user.url = url
    # Nothing is theirs yet: and a name that does not exist answers as one that does.
    for user in (rita, otto):
        assert await status_of(user, "get_object", "shared", "doc") == 403
        assert await status_of(user, "get_object", "no-such-container", "doc") == 403
        assert await status_of(user, "head_container", "no-such-container") == 403
    assert await status_of(rita, "put_container", "mine") == 403

    await call(
        mia, "post_container", "shared", {"X-Container-Read": "p1:rita", "X-Container-Write": "p2"}
    )
    _, body = await call(rita, "get_object", "shared", "doc")
    assert body == b"hello"
    _, listing = await call(rita, "get_container", "shared")
    assert [o["name"] for o in listing] == ["doc"]
    head = await call(rita, "head_container", "shared")
    assert "x-container-read" not in head and "x-container-write" not in head
    assert await status_of(rita, "put_object", "shared", "new", b"no") == 403
    assert await status_of(rita, "post_container", "shared", {"X-Container-Read": "p1"}) == 403
    # Otto's project may write there, not read.
    await call(otto, "put_object", "shared", "from-otto", b"hi")
    assert await status_of(otto, "get_object", "shared", "doc") == 403
    assert (await call(mia, "head_container", "shared"))["x-container-read"] == "p1:rita"

    # Public objects: `.r:*` without a token; the listing needs `.rlistings` too.
    await call(mia, "post_container", "shared", {"X-Container-Read": ".r:*"})
    async with httpx.AsyncClient() as anonymous:
        assert (await anonymous.get(f"{url}/shared/doc")).content == b"hello"
        assert (await anonymous.get(f"{url}/shared")).status_code == 401
        assert (await anonymous.get(url)).status_code == 401
        await call(mia, "post_container", "shared", {"X-Container-Read": ".r:*,.rlistings"})
        assert (await anonymous.get(f"{url}/shared")).text == "doc\nfrom-otto\n"
    assert await status_of(rita, "get_object", "shared", "doc") == 200  # still: .r:*

    # The account ACL: read-only lets otto list mia's account and read any object.
    acl = json.dumps({"read-only": ["p2:otto"]})
    await call(mia, "post_account", {"X-Account-Access-Control": acl})
    _, listing = await call(otto, "get_account")
    assert "shared" in [c["name"] for c in listing]
    assert "x-account-access-control" not in await call(otto, "head_account")
    assert await status_of(otto, "put_container", "otto-made") == 403
    bad_acl = {"X-Account-Access-Control": '{"owner": ["p2"]}'}
    assert await status_of(mia, "post_account", bad_acl) == 400
    await call(mia, "post_account", {"X-Remove-Account-Access-Control": "x"})
    assert await status_of(otto, "get_account") == 403


async def test_container_attributes_are_kept_by_skyfed(
    zone: ServedZone, clusters: LocalSwiftSet
) -> None:
    mia = connect(zone, "p1:mia")
    await call(mia, "put_container", "tagged", {"X-Container-Attr-Owner": "team-a"})
    await call(mia, "post_container", "tagged", {"X-Container-Attr-Tier-Note": "keep"})
    head = await call(mia, "head_container", "tagged")
    assert (
        head["x-container-attr-owner"] == "team-a" and head["x-container-attr-tier-note"] == "keep"
    )
    async with zone.process.core.db.session() as session:
        placed = await session.get(Container, (mia_project(mia), "tagged"))
        assert placed is not None
        cluster = zone.process.storage.clusters[placed.cluster_id].name
    # Skyfed's own: the cluster never saw them.
    swift = clusters[cluster]
    direct = Connection(
        authurl=swift.auth_url,
        user=swift.reseller_admin.user,
        key=swift.reseller_admin.key,
        retries=0,
    )
    url, _ = await asyncio.to_thread(direct.get_auth)
    direct.url = url.rsplit("/", 1)[0] + "/AUTH_" + mia_project(mia)
    backend = await call(direct, "head_container", "tagged")
    assert not any(k.startswith("x-container-attr") for k in backend)


def mia_project(connection: Connection) -> str:
    return str(connection.url).rsplit("/", 1)[1].removeprefix("AUTH_")


async def test_copies_between_clusters_keep_content_and_metadata(zone: ServedZone) -> None:
    mia = connect(zone, "p1:mia")
    async with zone.process.core.db.session() as session:
        where = {c.name: c.cluster_id for c in await session.scalars(select(Container))}
    east = next(n for n in NAMES if where[n] == where["c00"])
    west = next(n for n in NAMES if where[n] != where["c00"])
    body = bytes(range(256)) * 4000  # 1 MB
    meta = {"X-Object-Meta-Color": "blue", "Content-Type": "application/x-test"}
    await call(mia, "put_object", east, "src", body, headers=meta)

    # COPY to a container on the other cluster, then X-Copy-From back, with metadata.
    await call(
        mia, "copy_object", east, "src", f"/{west}/copied", headers={"X-Object-Meta-Size": "L"}
    )
    head, got = await call(mia, "get_object", west, "copied")
    assert got == body
    assert head["content-type"] == "application/x-test"
    assert (head["x-object-meta-color"], head["x-object-meta-size"]) == ("blue", "L")
    answer: dict[str, str] = {}
    fresh = {"X-Copy-From": f"{west}/copied", "X-Fresh-Metadata": "true", "Content-Length": "0"}
    await call(mia, "put_object", east, "back", None, headers=fresh, response_dict=answer)
    assert answer["status"] == 201
    assert answer["headers"]["x-copied-from"] == f"{west}/copied"
    head = await call(mia, "head_object", east, "back")
    assert head["etag"] == hashlib.md5(body).hexdigest() and "x-object-meta-color" not in head
    # On one cluster, the backend copies (same answer).
    await call(mia, "copy_object", east, "src", f"/{east}/twin")
    assert (await call(mia, "head_object", east, "twin"))["x-object-meta-color"] == "blue"

    # A copy reads as the caller may: otto can do neither end in mia's account.
    otto = connect(zone, "p2:otto")
    await call(otto, "put_container", "ottos")
    mia_account = (await asyncio.to_thread(mia.get_auth))[0].rsplit("/", 1)[1]
    steal = {"X-Copy-From": f"{east}/src", "X-Copy-From-Account": mia_account}
    assert await status_of(otto, "put_object", "ottos", "stolen", b"", headers=steal) == 403
    missing = {"X-Copy-From": f"{east}/nothing"}
    assert await status_of(mia, "put_object", west, "x", b"", headers=missing) == 404


async def test_a_dlo_with_segments_on_another_cluster_reads_whole(zone: ServedZone) -> None:
    mia = connect(zone, "p1:mia")
    async with zone.process.core.db.session() as session:
        where = {c.name: c.cluster_id for c in await session.scalars(select(Container))}
    manifests = next(n for n in NAMES if where[n] == where["c00"])
    parts = next(n for n in NAMES if where[n] != where["c00"])
    pieces = [b"a" * 1000, b"b" * 2000, b"c" * 3000]
    for i, piece in enumerate(pieces):
        await call(mia, "put_object", parts, f"big/{i:03}", piece)
    await call(mia, "put_object", parts, "other/000", b"not mine")
    headers = {"X-Object-Manifest": f"{parts}/big/", "X-Object-Meta-Kind": "dlo"}
    await call(mia, "put_object", manifests, "big", b"", headers=headers)

    whole = b"".join(pieces)
    head, body = await call(mia, "get_object", manifests, "big")
    assert body == whole
    etags = "".join(hashlib.md5(p).hexdigest() for p in pieces)
    assert head["etag"] == f'"{hashlib.md5(etags.encode()).hexdigest()}"'
    assert head["x-object-meta-kind"] == "dlo"
    head = await call(mia, "head_object", manifests, "big")
    assert head["x-object-manifest"] == f"{parts}/big/"  # (clients delete segments by it)
    # swiftclient's delete reads it with symlink=get: still the manifest's answer.
    as_link = await call(mia, "head_object", manifests, "big", query_string="symlink=get")
    assert as_link["x-object-manifest"] == f"{parts}/big/"
    assert head["content-length"] == str(len(whole))
    # Ranges across segments, from the end, and past it.
    _, part = await call(mia, "get_object", manifests, "big", headers={"Range": "bytes=900-3099"})
    assert part == whole[900:3100]
    _, tail = await call(mia, "get_object", manifests, "big", headers={"Range": "bytes=-10"})
    assert tail == whole[-10:]
    past = {"Range": f"bytes={len(whole)}-"}
    assert await status_of(mia, "get_object", manifests, "big", headers=past) == 416
    # The manifest itself, and a plain object beside it, are as the cluster has them.
    _, itself = await call(
        mia, "get_object", manifests, "big", query_string="multipart-manifest=get"
    )
    assert itself == b""
    await call(mia, "put_object", manifests, "plain", b"plain")
    assert (await call(mia, "get_object", manifests, "plain"))[1] == b"plain"
    # A new segment is part of the object at once (a DLO is its listing).
    await call(mia, "put_object", parts, "big/003", b"d")
    assert (await call(mia, "get_object", manifests, "big"))[1] == whole + b"d"


async def test_static_large_objects_keep_their_segments_beside_them(zone: ServedZone) -> None:
    mia = connect(zone, "p1:mia")
    # `x_segments` is placed beside `x`, wherever placement sends `x` (of ten pairs
    # placed at random over two clusters, one would be apart by chance but once in 1,024).
    for i in range(10):
        await call(mia, "put_container", f"slo{i}")
        await call(mia, "put_container", f"slo{i}_segments")
    async with zone.process.core.db.session() as session:
        where = {c.name: c.cluster_id for c in await session.scalars(select(Container))}
    assert all(where[f"slo{i}"] == where[f"slo{i}_segments"] for i in range(10))

    pieces = [b"A" * 1500, b"B" * 2500]
    manifest = []
    for i, piece in enumerate(pieces):
        etag = await call(mia, "put_object", "slo0_segments", f"big/{i:03}", piece)
        manifest.append({"path": f"/slo0_segments/big/{i:03}", "etag": etag})
    await call(
        mia, "put_object", "slo0", "big", json.dumps(manifest),
        query_string="multipart-manifest=put",
    )  # fmt: skip
    head, body = await call(mia, "get_object", "slo0", "big")
    assert body == b"".join(pieces)
    assert head["x-static-large-object"] == "True"
    _, part = await call(mia, "get_object", "slo0", "big", headers={"Range": "bytes=1400-1599"})
    assert part == (b"A" * 100) + (b"B" * 100)

    # A reader the manifest's container lets in reads its segments only where they
    # may: the cluster reads them as skyfed, so skyfed checks (Swift's 409 otherwise).
    rita = connect(zone, "p1:rita")
    await call(rita, "get_auth")
    rita.url = mia.url
    await call(mia, "post_container", "slo0", {"X-Container-Read": "p1:rita"})
    assert await status_of(rita, "get_object", "slo0", "big") == 409
    await call(mia, "post_container", "slo0_segments", {"X-Container-Read": "p1:rita"})
    assert (await call(rita, "get_object", "slo0", "big"))[1] == b"".join(pieces)

    # The manifest itself copied to a container on the other cluster names segments
    # there, in the destination's account: apart from it, they are refused (409).
    elsewhere = next(n for n in NAMES if where[n] != where["slo0"])
    with pytest.raises(ClientException) as apart:
        await call(
            mia, "put_object", elsewhere, "big-manifest", b"",
            headers={"X-Copy-From": "slo0/big"}, query_string="multipart-manifest=get",
        )  # fmt: skip
    assert apart.value.http_status == 409, apart.value
    assert await status_of(mia, "head_object", elsewhere, "big-manifest") == 404

    # A writer by ACL deletes segments only where it may: the backend would delete them
    # as skyfed (409 before anything is deleted).
    await call(mia, "post_container", "slo0", {"X-Container-Write": "p1:rita"})
    deleting = {"query_string": "multipart-manifest=delete"}
    assert await status_of(rita, "delete_object", "slo0", "big", **deleting) == 409
    assert (await call(mia, "get_object", "slo0", "big"))[1] == b"".join(pieces)

    # Deleting the manifest with its segments, as clients do.
    await call(mia, "delete_object", "slo0", "big", query_string="multipart-manifest=delete")
    assert await status_of(mia, "head_object", "slo0_segments", "big/000") == 404
    async with httpx.AsyncClient() as http:
        info = (await http.get(f"{zone.url}/info")).json()
    assert info["slo"]["max_manifest_segments"] == 1000


async def test_temporary_urls_sign_for_one_object_one_method_one_time(
    zone: ServedZone,
) -> None:
    mia = connect(zone, "p1:mia")
    async with zone.process.core.db.session() as session:
        where = {c.name: c.cluster_id for c in await session.scalars(select(Container))}
    first = "c00"
    second = next(n for n in NAMES if where[n] != where[first])  # on the other cluster
    await call(mia, "put_object", first, "shared.txt", b"on one cluster")
    await call(mia, "put_object", second, "shared.txt", b"on the other")
    await call(mia, "post_account", {"X-Account-Meta-Temp-URL-Key": "k3y"})
    prefix = str(mia.url).split("/v1/", 1)[0]
    path = str(mia.url)[len(prefix) :]  # /v1/AUTH_<project id>

    def signed(container: str, obj: str, method: str, key: str = "k3y", **kw: object) -> str:
        url = generate_temp_url(f"{path}/{container}/{obj}", 60, key, method, **kw)  # type: ignore[arg-type]
        return f"{prefix}{url}"

    async with httpx.AsyncClient(timeout=30) as http:
        for container, content in ((first, b"on one cluster"), (second, b"on the other")):
            got = await http.get(signed(container, "shared.txt", "GET"))
            assert got.status_code == 200 and got.content == content
        assert (await http.head(signed(first, "shared.txt", "GET"))).status_code == 200
        put = await http.put(signed(second, "up.txt", "PUT"), content=b"via a temp URL")
        assert put.status_code == 201
        assert (await call(mia, "get_object", second, "up.txt"))[1] == b"via a temp URL"

        # What a signature does not grant: another object, container or method, a
        # wrong key, an expired URL, a container that does not exist, an IP range.
        url = signed(first, "shared.txt", "GET")
        past = int(time.time()) - 10  # expired
        refused = [
            url.replace("shared.txt", "other.txt"),
            url.replace(f"/{first}/", f"/{second}/"),
            signed(first, "shared.txt", "GET", key="wrong"),
            prefix + generate_temp_url(f"{path}/{first}/shared.txt", past, "k3y", "GET", True),
            signed("nothing-here", "shared.txt", "GET"),
            signed(first, "shared.txt", "GET", ip_range="127.0.0.1"),
            url.split("?")[0] + "?temp_url_sig=&temp_url_expires=",  # blank: no signature
        ]
        for bad in refused:
            assert (await http.get(bad)).status_code == 401, bad
        assert (await http.put(url, content=b"overwrite")).status_code == 401
        assert (await http.delete(url)).status_code == 401

        # A new key: the old URLs stop working at once, on every cluster.
        old_second = signed(second, "shared.txt", "GET")
        await call(mia, "post_account", {"X-Account-Meta-Temp-URL-Key": "n3w"})
        assert (await http.get(url)).status_code == 401
        assert (await http.get(old_second)).status_code == 401
        assert (await http.get(signed(first, "shared.txt", "GET", key="n3w"))).status_code == 200
        # A container's own key (kept on its cluster) signs for its objects only, and
        # is its owners' to see (not an ACL's readers').
        await call(mia, "post_container", second, {"X-Container-Meta-Temp-URL-Key": "c0nt"})
        await call(mia, "post_container", second, {"X-Container-Read": "p1:rita"})
        rita = connect(zone, "p1:rita")
        await call(rita, "get_auth")
        rita.url = mia.url
        assert "x-container-meta-temp-url-key" not in await call(rita, "head_container", second)
        assert (await call(mia, "head_container", second))["x-container-meta-temp-url-key"]
        ok = await http.get(signed(second, "shared.txt", "GET", key="c0nt"))
        assert ok.status_code == 200 and ok.content == b"on the other"
        assert (await http.get(signed(first, "shared.txt", "GET", key="c0nt"))).status_code == 401
        info = (await http.get(f"{zone.url}/info")).json()
    assert "GET" in info["tempurl"]["methods"]


async def test_a_symlink_to_another_cluster_is_followed(zone: ServedZone) -> None:
    """Dynamic and static links (X-Symlink-Target-Etag) to an object on another
    cluster behave as on one cluster."""
    mia = connect(zone, "p1:mia")
    async with zone.process.core.db.session() as session:
        where = {c.name: c.cluster_id for c in await session.scalars(select(Container))}
    links = next(n for n in NAMES if where[n] == where["c00"])
    targets = next(n for n in NAMES if where[n] != where["c00"])
    await call(mia, "put_object", targets, "real", b"the target", headers={"X-Object-Meta-A": "1"})
    link = {"X-Symlink-Target": f"{targets}/real", "Content-Type": "application/symlink"}
    await call(mia, "put_object", links, "link", b"", headers=link)
    head, body = await call(mia, "get_object", links, "link")
    assert body == b"the target" and head["x-object-meta-a"] == "1"
    assert head["content-location"].endswith(f"/{targets}/real")
    _, part = await call(mia, "get_object", links, "link", headers={"Range": "bytes=4-9"})
    assert part == b"target"
    itself = await call(mia, "head_object", links, "link", query_string="symlink=get")
    assert itself["x-symlink-target"] == f"{targets}/real"
    # A static link across clusters: checked where its target is, as on one cluster.
    etag = hashlib.md5(b"the target").hexdigest()
    wrong = {**link, "X-Symlink-Target-Etag": hashlib.md5(b"x").hexdigest()}
    assert await status_of(mia, "put_object", links, "static", b"", headers=wrong) == 409
    missing = {**link, "X-Symlink-Target": f"{targets}/nothing", "X-Symlink-Target-Etag": etag}
    assert await status_of(mia, "put_object", links, "static", b"", headers=missing) == 409
    static = {**link, "X-Symlink-Target-Etag": f'"{etag}"'}
    await call(mia, "put_object", links, "static", b"", headers=static)
    _, body = await call(mia, "get_object", links, "static")
    assert body == b"the target"
    itself = await call(mia, "head_object", links, "static", query_string="symlink=get")
    assert itself["x-symlink-target-etag"] == etag and itself["x-symlink-target-bytes"] == "10"
    assert not any(name.startswith("x-object-meta-skyfed") for name in itself)
    # skyfed's own marks are not a client's to set.
    forged = {**link, "X-Object-Meta-Skyfed-Symlink-Target-Etag": "0" * 32}
    await call(mia, "put_object", links, "forged", b"", headers=forged)
    assert (await call(mia, "get_object", links, "forged"))[1] == b"the target"
    # A POST to the link (its metadata replaced on the link) keeps its pin; skyfed's
    # own metadata is not a client's to set by POST either.
    posted = await status_of(mia, "post_object", links, "static", {"X-Object-Meta-B": "2"})
    assert posted in (200, 307)
    itself = await call(mia, "head_object", links, "static", query_string="symlink=get")
    assert itself["x-symlink-target-etag"] == etag
    await call(mia, "put_object", links, "plain", b"plain")
    await call(
        mia, "post_object", links, "plain", {"X-Object-Meta-Skyfed-Symlink-Target-Etag": "1"}
    )
    assert "x-object-meta-skyfed-symlink-target-etag" not in await call(
        mia, "head_object", links, "plain"
    )
    # A copy reads its source as skyfed: who copies a link must be able to read its
    # target (Swift's 403), as who reads it.
    rita = connect(zone, "p1:rita")
    await call(rita, "get_auth")
    rita.url = mia.url
    await call(
        mia,
        "post_container",
        links,
        {"X-Container-Read": "p1:rita", "X-Container-Write": "p1:rita"},
    )
    await call(mia, "post_container", targets, {"X-Remove-Container-Read": "x"})
    stolen = {"X-Copy-From": f"{links}/link"}
    assert await status_of(rita, "put_object", links, "stolen", b"", headers=stolen) == 403
    await call(mia, "post_container", targets, {"X-Container-Read": "p1:rita"})
    await call(rita, "put_object", links, "stolen", b"", headers=stolen)
    assert (await call(rita, "get_object", links, "stolen"))[1] == b"the target"
    # The target changed: the static link is broken (409); a dangling link is 404.
    await call(mia, "put_object", targets, "real", b"another target")
    with pytest.raises(ClientException) as broken:
        await call(mia, "get_object", links, "static")
    assert broken.value.http_status == 409
    where_to = broken.value.http_response_headers["content-location"]
    assert where_to.endswith(f"/{targets}/real")  # where it still points
    assert (await call(mia, "get_object", links, "link"))[1] == b"another target"
    await call(mia, "delete_object", targets, "real")
    assert await status_of(mia, "get_object", links, "link") == 404


async def test_info_describes_what_skyfed_serves(zone: ServedZone) -> None:
    async with httpx.AsyncClient() as http:
        info = (await http.get(f"{zone.url}/info")).json()
    assert info["swift"]["policies"] == [{"name": "gold", "aliases": "gold", "default": True}]
    assert info["swift"]["account_listing_limit"] == 10000
    assert info["tempauth"] == {"account_acls": True}
    assert info["symlink"] == {"symloop_max": 2, "static_links": True}
    assert "object_versioning" in info and "container_quotas" in info
    assert "slo" in info and "tempurl" in info
    assert not {"bulk_upload", "bulk_delete", "formpost", "staticweb"} & info.keys()  # not yet


async def test_a_cluster_down_during_a_listing_breaks_only_its_containers(
    tmp_path: Path, zone: ServedZone
) -> None:
    swift = LocalSwift(tmp_path / "dying", free_base_port(), "dying", ("bronze",))
    async with swift, zone.client() as admin:
        await register(admin, swift, GiB)
        mia = connect(zone, "p1:mia")
        await call(mia, "put_container", "fragile", {"X-Storage-Policy": "bronze"})
        await swift.kill()
        async with zone.process.core.db.session() as session:
            project = str(mia.url).rsplit("_", 1)[1]
            mine = await session.scalars(select(Container).where(Container.project_id == project))
            count = len(mine.all())  # (the module's other tests made some too)
        try:
            # Asked and not answering, then known down by the polls: both list it.
            for _ in range(2):
                headers, listing = await call(mia, "get_account", full_listing=True)
                assert "fragile" in [c["name"] for c in listing]
                assert "c00" in [c["name"] for c in listing]
                assert headers["x-skyfed-unavailable-clusters"] == "dying"
                assert headers["x-account-container-count"] == str(count)

                async def down() -> bool:
                    await zone.process.storage.cycle()
                    return any(c.state == "down" for c in zone.process.storage.clusters.values())

                await eventually(down, 30, "the dying cluster known down")
            with pytest.raises(ClientException) as refused:
                await call(mia, "head_container", "fragile")
            assert refused.value.http_status == 503
            await call(mia, "head_container", "c00")
        finally:
            await swift.start()
        await call(mia, "delete_container", "fragile")


async def put_manifest(
    connection: Connection, container: str, name: str, manifest: list[dict], **kwargs: object
) -> dict[str, object]:
    answer: dict[str, object] = {}
    await call(
        connection, "put_object", container, name, json.dumps(manifest),
        query_string="multipart-manifest=put", response_dict=answer, **kwargs,
    )  # fmt: skip
    return answer


async def test_a_static_large_object_with_segments_elsewhere_reads_as_on_one_cluster(
    zone: ServedZone,
) -> None:
    """The same large object, once with every segment beside its manifest (the
    backend's slo does the work) and once with its segments spread over both
    clusters (skyfed does it): every answer a client sees is the same."""
    mia = connect(zone, "p1:mia")
    for name in ("far", "near", "near_segments"):
        await call(mia, "put_container", name)
    async with zone.process.core.db.session() as session:
        where = {c.name: c.cluster_id for c in await session.scalars(select(Container))}
    assert where["near"] == where["near_segments"]
    apart = next(n for n in NAMES if where[n] != where["far"])
    beside = next(n for n in NAMES if where[n] == where["far"])
    pieces = [b"A" * 1500, b"B" * 2500, b"C" * 700]
    etags = []
    for i, piece in enumerate(pieces):
        etags.append(await call(mia, "put_object", "near_segments", f"s{i}", piece))
        await call(mia, "put_object", apart if i != 1 else beside, f"s{i}", piece)

    def manifest(segments: list[str]) -> list[dict]:
        return [
            {"path": f"/{segments[0]}/s0", "etag": etags[0], "size_bytes": 1500},
            {"data": base64.b64encode(b"inline!").decode()},
            {"path": f"/{segments[1]}/s1", "range": "100-1099"},
            {"path": f"/{segments[2]}/s2", "etag": None},
        ]

    near = await put_manifest(
        mia, "near", "big", manifest(["near_segments"] * 3),
        headers={"X-Object-Meta-Kind": "slo", "Content-Type": "text/x-big"},
    )  # fmt: skip
    far = await put_manifest(
        mia, "far", "big", manifest([apart, beside, apart]),
        headers={"X-Object-Meta-Kind": "slo", "Content-Type": "text/x-big"},
    )  # fmt: skip
    assert far["status"] == near["status"] == 201
    whole = pieces[0] + b"inline!" + pieces[1][100:1100] + pieces[2]
    assert far["headers"]["etag"] == near["headers"]["etag"]  # type: ignore[index]

    async def both(method: str, *args: object, **kwargs: object) -> tuple:
        return (
            await call(mia, method, "near", *args, **kwargs),
            await call(mia, method, "far", *args, **kwargs),
        )

    (near_head, near_body), (far_head, far_body) = await both("get_object", "big")
    assert far_body == near_body == whole
    for header in ("etag", "content-length", "content-type", "x-static-large-object",
                   "x-object-meta-kind"):  # fmt: skip
        assert far_head[header] == near_head[header], header
    assert not any("skyfed" in h for h in far_head)  # skyfed's own metadata is not shown
    for ranged in ("bytes=1400-1599", "bytes=-800", "bytes=1000-", "bytes=0-0,1499-1510,-3"):
        (near_head, near_part), (far_head, far_part) = await both(
            "get_object", "big", headers={"Range": ranged}
        )
        if "," not in ranged:
            assert far_part == near_part, ranged
            assert far_head["content-range"] == near_head["content-range"]
        else:  # multipart/byteranges (boundaries differ): the same parts

            def parts(body: bytes, head: dict) -> list[bytes]:
                boundary = head["content-type"].split("boundary=")[1].encode()
                return [p.split(b"\r\n\r\n", 1)[1] for p in body.split(b"--" + boundary)[1:-1]]

            assert parts(far_part, far_head) == parts(near_part, near_head)
            assert [p[:-2] for p in parts(far_part, far_head)] == [
                whole[0:1],
                whole[1499:1511],
                whole[-3:],
            ]
    past = {"Range": f"bytes={len(whole)}-"}
    assert await status_of(mia, "get_object", "far", "big", headers=past) == 416
    etag = far_head["etag"]
    assert await status_of(mia, "head_object", "far", "big", headers={"If-None-Match": etag}) == 304
    assert await status_of(mia, "get_object", "far", "big", headers={"If-Match": '"x"'}) == 412

    # Listed as Swift lists a large object: its size, content type and ETag.
    (_, near_list), (_, far_list) = await both("get_container", "", prefix="big")
    keys = ("bytes", "content_type", "slo_etag")
    assert [{k: e[k] for k in keys} for e in far_list] == [
        {k: e[k] for k in keys} for e in near_list
    ]
    assert far_list[0]["bytes"] == len(whole)
    url, token = await call(mia, "get_auth")
    async with httpx.AsyncClient() as http:
        listed = await http.get(
            f"{url}/far", params={"prefix": "big", "format": "xml"}, headers={"X-Auth-Token": token}
        )
    xml = listed.content
    assert f"<bytes>{len(whole)}</bytes><content_type>text/x-big</content_type>".encode() in xml
    # Those marks are skyfed's: a client's content type may not name them.
    forged = {"Content-Type": "text/plain;skyfed_slo_bytes=1"}
    for container in ("far", beside):  # (the routes, the data path)
        assert await status_of(mia, "put_object", container, "x", b"x", headers=forged) == 400

    # The manifest itself: Swift's stored form (names aside), and as one would PUT it.
    (_, near_json), (far_head, far_json) = await both(
        "get_object", "big", query_string="multipart-manifest=get"
    )
    assert far_head["content-type"] == "application/json; charset=utf-8"
    assert far_head["x-static-large-object"] == "True"
    strip = ("name", "last_modified")
    assert [{k: v for k, v in e.items() if k not in strip} for e in json.loads(far_json)] == [
        {k: v for k, v in e.items() if k not in strip} for e in json.loads(near_json)
    ]
    _, raw = await call(
        mia, "get_object", "far", "big", query_string="multipart-manifest=get&format=raw"
    )
    assert [e.get("path") for e in json.loads(raw)] == [
        f"/{apart}/s0",
        None,
        f"/{beside}/s1",
        f"/{apart}/s2",
    ]

    # Swift's checks of a new manifest, with its errors: nothing is written.
    bad = [{"path": f"/{apart}/s0", "etag": "0" * 32}, {"path": f"/{apart}/nothing"}]
    with pytest.raises(ClientException) as refused:
        await put_manifest(mia, "far", "bad", bad)
    assert refused.value.http_status == 400
    errors = str(refused.value.http_response_content)
    assert f"/{apart}/s0, Etag Mismatch" in errors and f"/{apart}/nothing, 404 Not Found" in errors
    with pytest.raises(ClientException) as wrong:
        await put_manifest(
            mia, "far", "bad", manifest([apart, beside, apart]), headers={"Etag": "0" * 32}
        )
    assert wrong.value.http_status == 422
    assert await status_of(mia, "head_object", "far", "bad") == 404

    # A POST keeps it a large object; a copy of it is its bytes, on either cluster.
    await call(mia, "post_object", "far", "big", {"X-Object-Meta-Kind": "posted"})
    head, body = await call(mia, "get_object", "far", "big")
    assert (body, head["x-object-meta-kind"]) == (whole, "posted")
    for target in (beside, apart):
        await call(mia, "copy_object", "far", "big", f"/{target}/copy")
        head, body = await call(mia, "get_object", target, "copy")
        assert body == whole and head["etag"] == hashlib.md5(whole).hexdigest()
        assert "x-static-large-object" not in head

    # Nested in another far one; its manifest itself copied, beside it or apart.
    nested = await put_manifest(
        mia, "far", "nest", [{"path": "/far/big"}, {"path": f"/{apart}/s2"}]
    )
    outer = hashlib.md5((etag.strip('"') + etags[2]).encode()).hexdigest()
    assert nested["headers"]["etag"] == f'"{outer}"'  # type: ignore[index]
    assert (await call(mia, "get_object", "far", "nest"))[1] == whole + pieces[2]
    for target in (beside, apart):
        await call(
            mia, "put_object", target, "manifest", None, query_string="multipart-manifest=get",
            headers={"X-Copy-From": "far/big", "Content-Length": "0"},
        )  # fmt: skip
        head, body = await call(mia, "get_object", target, "manifest")
        assert body == whole and head["etag"] == etag, target
    await call(mia, "delete_object", "far", "nest")

    # A temporary URL reads it whole (a bad signature still does not), and a signed
    # POST keeps it a large object.
    await call(mia, "post_account", {"X-Account-Meta-Temp-URL-Key": "k3y"})
    prefix = str(mia.url).split("/v1/", 1)[0]
    own = str(mia.url)[len(prefix) :]

    def signed(method: str, key: str = "k3y") -> str:
        return prefix + str(generate_temp_url(f"{own}/far/big", 60, key, method))

    async with httpx.AsyncClient(timeout=30) as http:
        got = await http.get(signed("GET"))
        assert (got.status_code, got.content, got.headers["etag"]) == (200, whole, etag)
        assert (await http.get(signed("GET", "wrong"))).status_code == 401
        posted = await http.post(signed("POST"), headers={"X-Object-Meta-Via": "url"})
        assert posted.status_code == 202, posted.text
    head, body = await call(mia, "get_object", "far", "big")
    assert (body, head["x-object-meta-via"]) == (whole, "url")

    # A reader by ACL reads its segments only where they may (Swift's 409).
    rita = connect(zone, "p1:rita")
    await call(rita, "get_auth")
    rita.url = mia.url
    await call(mia, "post_container", "far", {"X-Container-Read": "p1:rita"})
    for name in (apart, beside):  # (other tests let rita in)
        await call(mia, "post_container", name, {"X-Container-Read": ""})
    assert await status_of(rita, "get_object", "far", "big") == 409
    for name in (apart, beside):
        await call(mia, "post_container", name, {"X-Container-Read": "p1:rita"})
    assert (await call(rita, "get_object", "far", "big"))[1] == whole
    # ...and deletes nothing.
    assert await status_of(rita, "delete_object", "far", "big") == 403

    # Deleting it with its segments, where they are, answered as Swift's bulk delete.
    answer: dict[str, object] = {}
    await call(
        mia, "delete_object", "far", "big", query_string="multipart-manifest=delete",
        response_dict=answer,
    )  # fmt: skip
    assert answer["status"] == 200
    for container, name in ((apart, "s0"), (beside, "s1"), (apart, "s2"), ("far", "big")):
        assert await status_of(mia, "head_object", container, name) == 404, name
