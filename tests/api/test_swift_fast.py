"""The object data path (objects/swift_fast.py): owners' plain object requests go
straight to their cluster, answered exactly as the routes answer them; everyone
and everything else still goes through the routes' checks."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from skyfed.objects.local_swift import LocalSwift, LocalSwiftSet, free_base_port
from skyfed.objects.swift_fast import OBJECT_ROUTE
from tests.conftest import ServedZone
from tests.swift_clusters import PASSWORD, register, swift_zone
from tests.swift_clusters import clusters as swift_clusters

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.xdist_group("swift_fast")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def clusters(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalSwiftSet]:
    root = tmp_path_factory.mktemp("swifts")
    swifts = swift_clusters(root, ("fast-gold", ("gold",)), ("fast-silver", ("silver",)))
    await swifts.start()
    try:
        yield swifts
    finally:
        await swifts.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def zone(
    tmp_path_factory: pytest.TempPathFactory, clusters: LocalSwiftSet
) -> AsyncIterator[ServedZone]:
    async with swift_zone(tmp_path_factory.mktemp("zone"), clusters) as served:
        yield served


class Swift:
    """A user's session with the zone's storage URL, over plain HTTP."""

    def __init__(self, http: httpx.AsyncClient, token: str, url: str) -> None:
        self.http, self.token, self.url = http, token, url

    async def __call__(
        self, method: str, path: str, *, headers: dict[str, str | bytes] | None = None, **kw: object
    ) -> httpx.Response:
        sent = {"X-Auth-Token": self.token, **(headers or {})}
        return await self.http.request(method, f"{self.url}/{path}", headers=sent, **kw)  # type: ignore[arg-type]


@pytest_asyncio.fixture(loop_scope="module")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def login(http: httpx.AsyncClient, zone: ServedZone, user: str) -> Swift:
    answer = await http.get(
        f"{zone.url}/auth/v1.0", headers={"X-Auth-User": user, "X-Auth-Key": PASSWORD}
    )
    assert answer.status_code == 200, answer.text
    return Swift(http, answer.headers["x-auth-token"], answer.headers["x-storage-url"])


def served_fast(zone: ServedZone, method: str) -> float:
    registry = zone.process.core.metrics.registry
    return registry.get_sample_value("skyfed_swift_fast_requests_total", {"method": method}) or 0


async def test_owners_plain_requests_take_the_data_path_with_the_routes_answers(
    zone: ServedZone, http: httpx.AsyncClient
) -> None:
    mia = await login(http, zone, "p1:mia")
    assert (await mia("PUT", "plain")).status_code == 201
    assert (await mia("PUT", "plain/first", content=b"1")).status_code == 201  # (the routes)
    before = {m: served_fast(zone, m) for m in ("GET", "HEAD", "PUT", "DELETE")}

    packed = gzip.compress(b"hello " * 1000)
    put = await mia(
        "PUT",
        "plain/d%C3%A9j%C3%A0/vu.txt",
        content=packed,
        headers={
            "Content-Type": "text/plain",
            "Content-Encoding": "gzip",
            "X-Object-Meta-Colour": "bleu \u00e9".encode(),  # raw UTF-8
        },
    )
    assert put.status_code == 201
    assert put.headers["etag"] == hashlib.md5(packed).hexdigest()
    assert put.headers["x-trans-id"]  # the cluster's own transaction id, relayed

    got = await mia("GET", "plain/d%C3%A9j%C3%A0/vu.txt")
    assert got.status_code == 200
    assert got.headers["content-encoding"] == "gzip"  # as stored, not decoded
    assert got.content == b"hello " * 1000  # (httpx decodes it, as any client would)
    assert got.headers["content-type"] == "text/plain"
    raw = [(name.lower(), value) for name, value in got.headers.raw]
    assert (b"x-object-meta-colour", "bleu \u00e9".encode()) in raw  # its bytes as sent

    text = bytes(range(256)) * 4
    assert (await mia("PUT", "plain/ranges", content=text)).status_code == 201
    ranged = await mia("GET", "plain/ranges", headers={"Range": "bytes=0-9,20-29"})
    assert ranged.status_code == 206
    assert ranged.headers["content-type"].startswith("multipart/byteranges")
    assert text[0:10] in ranged.content and text[20:30] in ranged.content

    etag = put.headers["etag"]
    unchanged = await mia("GET", "plain/d%C3%A9j%C3%A0/vu.txt", headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b""
    head = await mia("HEAD", "plain/d%C3%A9j%C3%A0/vu.txt")
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(packed))
    # A query goes on as given: the plain object is its own manifest-less self.
    assert (await mia("GET", "plain/first?multipart-manifest=get")).content == b"1"

    assert (await mia("DELETE", "plain/d%C3%A9j%C3%A0/vu.txt")).status_code == 204
    missing = await mia("GET", "plain/d%C3%A9j%C3%A0/vu.txt")
    assert missing.status_code == 404
    after = {m: served_fast(zone, m) for m in before}
    assert after["PUT"] - before["PUT"] == 2
    assert after["GET"] - before["GET"] == 5
    assert after["HEAD"] - before["HEAD"] == 1
    assert after["DELETE"] - before["DELETE"] == 1
    # Counted under the route's template, as the routes' requests are.
    registry = zone.process.core.metrics.registry
    labels = {"route": OBJECT_ROUTE.path, "method": "GET", "status": "304"}
    assert registry.get_sample_value("skyfed_http_requests_total", labels) == 1


def blocks(size: int) -> Iterator[bytes]:
    block = hashlib.sha256(b"chunked").digest() * 2048  # 64 KiB
    for start in range(0, size, len(block)):
        yield block[: min(len(block), size - start)]


async def test_chunked_uploads_and_refused_ones(zone: ServedZone, http: httpx.AsyncClient) -> None:
    mia = await login(http, zone, "p1:mia")
    assert (await mia("PUT", "chunky")).status_code == 201
    assert (await mia("PUT", "chunky/warm", content=b"")).status_code == 201
    puts = served_fast(zone, "PUT")

    size = 3 * 1024 * 1024 + 7
    expected = b"".join(blocks(size))

    async def body() -> AsyncIterator[bytes]:  # no length: sent chunked
        for block in blocks(size):
            yield block

    put = await mia("PUT", "chunky/big.bin", content=body())
    assert put.status_code == 201
    assert put.headers["etag"] == hashlib.md5(expected).hexdigest()
    assert (await mia("GET", "chunky/big.bin")).content == expected

    # A wrong ETag: the cluster reads the body, refuses it, and keeps nothing.
    wrong = await mia("PUT", "chunky/bad.bin", content=b"abc", headers={"ETag": "0" * 32})
    assert wrong.status_code == 422
    assert (await mia("HEAD", "chunky/bad.bin")).status_code == 404
    assert served_fast(zone, "PUT") - puts == 2

    # What the data path leaves to the routes: no length at all, an unknown coding,
    # and an object beyond what the clusters take (the routes' 411, 501 and 413).
    raw = await raw_request(
        zone, f"PUT {path_of(mia, 'chunky/nolength')} HTTP/1.1\r\nX-Auth-Token: {mia.token}\r\n"
    )
    assert raw.startswith(b"HTTP/1.1 411")
    too_big = await raw_request(
        zone,
        f"PUT {path_of(mia, 'chunky/huge')} HTTP/1.1\r\nX-Auth-Token: {mia.token}\r\n"
        f"Content-Length: {6 << 40}\r\n",
    )
    assert too_big.startswith(b"HTTP/1.1 413")
    assert served_fast(zone, "PUT") - puts == 2


def path_of(swift: Swift, path: str) -> str:
    return httpx.URL(f"{swift.url}/{path}").raw_path.decode()


async def raw_request(zone: ServedZone, head: str, body: bytes = b"") -> bytes:
    """A request written by hand (what httpx would not send), and the answer's head."""
    host, port = httpx.URL(zone.url).host, httpx.URL(zone.url).port
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"{head}Host: {host}\r\nConnection: close\r\n\r\n".encode() + body)
        await writer.drain()
        return await asyncio.wait_for(reader.read(4096), 30)
    finally:
        writer.close()


async def test_only_owners_are_served_there(zone: ServedZone, http: httpx.AsyncClient) -> None:
    """A reader and another project's member hold tokens this process knows, and ask
    for a container it has just located: their requests still meet the ACLs."""
    mia = await login(http, zone, "p1:mia")
    assert (await mia("PUT", "guarded")).status_code == 201
    assert (await mia("PUT", "guarded/doc", content=b"secret")).status_code == 201
    assert (await mia("GET", "guarded/doc")).status_code == 200
    rita = await login(http, zone, "p1:rita")  # the reader role: only what ACLs grant
    otto = await login(http, zone, "p2:otto")
    await rita("GET", "")  # (their tokens are resolved now, and kept)
    await otto("GET", "")
    rita.url = otto.url = mia.url
    fast = served_fast(zone, "GET") + served_fast(zone, "PUT") + served_fast(zone, "DELETE")
    for caller, expected in ((rita, 403), (otto, 403)):
        assert (await caller("GET", "guarded/doc")).status_code == expected
        assert (await caller("PUT", "guarded/doc", content=b"mine")).status_code == expected
        assert (await caller("DELETE", "guarded/doc")).status_code == expected
    no_token = await http.get(f"{mia.url}/guarded/doc")
    assert no_token.status_code == 401
    assert served_fast(zone, "GET") + served_fast(zone, "PUT") + served_fast(zone, "DELETE") == fast
    assert (await mia("GET", "guarded/doc")).content == b"secret"

    # What an ACL grants, the routes grant: rita may read, still not write.
    assert (
        await mia("POST", "guarded", headers={"X-Container-Read": "p1:rita"})
    ).status_code == 204
    assert (await rita("GET", "guarded/doc")).content == b"secret"
    assert (await rita("PUT", "guarded/doc", content=b"mine")).status_code == 403


async def test_a_revoked_token_is_refused_at_once(
    zone: ServedZone, http: httpx.AsyncClient
) -> None:
    mia = await login(http, zone, "p1:mia")
    assert (await mia("PUT", "revoked")).status_code == 201
    assert (await mia("PUT", "revoked/o", content=b"x")).status_code == 201
    assert (await mia("GET", "revoked/o")).status_code == 200
    logout = await http.delete(
        f"{zone.url}/v1/auth/tokens", headers={"Authorization": f"Bearer {mia.token}"}
    )
    assert logout.status_code == 204
    assert (await mia("GET", "revoked/o")).status_code == 401
    assert (await mia("PUT", "revoked/o", content=b"y")).status_code == 401


async def test_a_container_made_again_elsewhere_is_found_there(
    zone: ServedZone, http: httpx.AsyncClient, clusters: LocalSwiftSet
) -> None:
    mia = await login(http, zone, "p1:mia")
    assert (await mia("PUT", "moving", headers={"X-Storage-Policy": "gold"})).status_code == 201
    assert (await mia("PUT", "moving/a", content=b"on gold")).status_code == 201
    assert (await mia("GET", "moving/a")).content == b"on gold"
    assert (await mia("DELETE", "moving/a")).status_code == 204
    assert (await mia("DELETE", "moving")).status_code == 204
    assert (await mia("PUT", "moving", headers={"X-Storage-Policy": "silver"})).status_code == 201
    assert (await mia("PUT", "moving/b", content=b"on silver")).status_code == 201
    assert (await mia("PUT", "moving/c", content=b"on silver too")).status_code == 201
    listing = await mia("GET", "moving?format=json")
    assert [o["name"] for o in listing.json()] == ["b", "c"]
    assert (await mia("GET", "moving/c")).content == b"on silver too"


async def test_a_caller_gone_mid_upload_leaves_no_object(
    zone: ServedZone, http: httpx.AsyncClient
) -> None:
    mia = await login(http, zone, "p1:mia")
    assert (await mia("PUT", "cut")).status_code == 201
    assert (await mia("PUT", "cut/warm", content=b"w")).status_code == 201
    puts = served_fast(zone, "PUT")
    host, port = httpx.URL(zone.url).host, httpx.URL(zone.url).port
    with socket.create_connection((host, port)) as sock:
        sock.sendall(
            f"PUT {path_of(mia, 'cut/half.bin')} HTTP/1.1\r\nHost: {host}\r\n"
            f"X-Auth-Token: {mia.token}\r\nContent-Length: {4 << 20}\r\n\r\n".encode()
            + b"h" * (1 << 20)
        )
        await asyncio.sleep(0.3)  # forwarded as it comes
    for _ in range(10):  # never visible, not even for a moment
        assert (await mia("HEAD", "cut/half.bin")).status_code == 404
        await asyncio.sleep(0.1)
    assert served_fast(zone, "PUT") - puts == 1
    assert (await mia("GET", "cut?format=json")).json()[0]["name"] == "warm"


async def test_a_cluster_that_does_not_answer_is_named(
    tmp_path: Path, zone: ServedZone, http: httpx.AsyncClient
) -> None:
    swift = LocalSwift(tmp_path / "gone", free_base_port(), "fast-gone", ("bronze",))
    async with swift, zone.client() as admin:
        await register(admin, swift)
        mia = await login(http, zone, "p1:mia")
        created = await mia("PUT", "doomed", headers={"X-Storage-Policy": "bronze"})
        assert created.status_code == 201
        assert (await mia("PUT", "doomed/o", content=b"x")).status_code == 201
        await swift.kill()
        answer = await mia("GET", "doomed/o")
        assert answer.status_code == 503
        assert "fast-gone" in answer.text
        assert answer.headers["content-type"].startswith("text/plain")
        assert answer.headers["x-trans-id"].startswith("tx")
        assert (await mia("PUT", "doomed/p", content=b"y")).status_code == 503
        await swift.start()
        assert (await mia("GET", "doomed/o")).content == b"x"
        assert (await mia("DELETE", "doomed/o")).status_code == 204
        assert (await mia("DELETE", "doomed")).status_code == 204
        await admin.delete_storage_cluster("fast-gone")


async def big_object(owner: Swift, container: str, mib: int) -> bytes:
    """`<container>/blob`, made with `mib` MiB of bytes that differ by container."""
    assert (await owner("PUT", container)).status_code == 201
    body = hashlib.sha256(container.encode()).digest() * (mib << 15)
    assert (await owner("PUT", f"{container}/blob", content=body)).status_code == 201
    return body


async def test_large_downloads_and_ranges_on_kept_alive_connections(
    zone: ServedZone, http: httpx.AsyncClient
) -> None:
    mia = await login(http, zone, "p1:mia")
    body = await big_object(mia, "big", 8)
    before = served_fast(zone, "GET")
    for _ in range(2):  # the second on the same connections, kept alive
        got = await mia("GET", "big/blob")
        assert got.status_code == 200 and got.content == body
    ranged = await mia("GET", "big/blob", headers={"Range": "bytes=1048576-5242879"})
    assert ranged.status_code == 206 and ranged.content == body[1 << 20 : 5 << 20]
    assert (await mia("GET", "big/blob", headers={"Range": "bytes=0-9"})).content == body[:10]
    assert served_fast(zone, "GET") - before == 4


async def test_a_caller_gone_mid_download_breaks_nothing(
    zone: ServedZone, http: httpx.AsyncClient
) -> None:
    mia = await login(http, zone, "p1:mia")
    body = await big_object(mia, "left", 16)
    path = mia.url.split("/", 3)[3] + "/left/blob"
    host, port = zone.url.removeprefix("http://").split(":")
    for _ in range(3):
        reader, writer = await asyncio.open_connection(host, int(port))
        request = f"GET /{path} HTTP/1.1\r\nHost: {host}\r\nX-Auth-Token: {mia.token}\r\n\r\n"
        writer.write(request.encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        await reader.readexactly(256 << 10)  # a little of it, then gone
        writer.transport.abort()
    got = await mia("GET", "left/blob")
    assert got.status_code == 200 and got.content == body


async def test_the_data_path_checks_cluster_addresses_when_connecting(zone: ServedZone) -> None:
    """The clusters' URLs were checked when registered; the data path's connections
    check every address their names resolve to again (as the routes' pools do)."""
    from skyfed.zones.reach_policy import forbidden_address

    assert zone.process.storage.stream.address_check is forbidden_address
