"""The Swift API of a root zone with no clusters of its own: containers placed in
its children's clusters by tier and room, objects and listings through the root,
ACLs checked at the root, and a child down for its containers only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select
from swiftclient.client import ClientException, Connection
from swiftclient.utils import generate_temp_url

from skyfed.objects.local_swift import LocalSwift, LocalSwiftSet, free_base_port
from skyfed.objects.models import Container
from skyfed.zones.models import ChildZone
from tests.conftest import (
    ADMIN_PASSWORD,
    SERVICE_PASSWORD,
    ServedZone,
    free_test_port,
    zone_settings,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.xdist_group("swift_tree")]
GiB = 1 << 30
PASSWORD = "member-password-1"


@dataclass
class Tree:
    root: ServedZone
    children: dict[str, ServedZone]
    swifts: LocalSwiftSet

    async def poll(self) -> None:
        for child in self.children.values():
            await child.process.storage.cycle()
        await self.root.process.tree.poller.cycle()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tree(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Tree]:
    root_dir = tmp_path_factory.mktemp("tree")
    first = free_base_port()
    swifts = LocalSwiftSet(
        [
            LocalSwift(root_dir / "s1", first, "dc1-swift", ("gold",)),
            LocalSwift(root_dir / "s2", free_base_port([first]), "dc2-swift", ("gold", "silver")),
        ]
    )
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(swifts)
        children: dict[str, ServedZone] = {}
        for name, swift in zip(("dc1", "dc2"), swifts, strict=True):
            settings = zone_settings(
                root_dir / name, None, name=name, port=free_test_port(),
                allowed_storage_hosts=["127.0.0.1"],
            )  # fmt: skip
            zone = await stack.enter_async_context(ServedZone(settings))
            async with zone.client() as admin:
                creds = swift.reseller_admin
                await admin.add_storage_cluster(
                    swift.name, swift.auth_url, creds.user, creds.key,
                    tiers={t: t for t in swift.policies}, capacity_bytes=10 * GiB,
                )  # fmt: skip
            children[name] = zone
        root = await stack.enter_async_context(
            ServedZone(zone_settings(root_dir / "root", None, name="root", port=free_test_port()))
        )
        async with root.client() as admin:
            for name, child in children.items():
                await admin.add_zone(name, child.url, "svc", SERVICE_PASSWORD)
            await admin.create_project("p1")
            await admin.create_user("mia", PASSWORD, "p1", ["member"])
            await admin.create_user("rita", PASSWORD, "p1", ["reader"])
        built = Tree(root, children, swifts)
        await built.poll()
        yield built


def connect(zone: ServedZone, user: str) -> Connection:
    return Connection(authurl=f"{zone.url}/auth/v1.0", user=user, key=PASSWORD, retries=0)


async def on_account_of(owner: Connection, user: Connection) -> Connection:
    """`user`, logged in, sending its requests to `owner`'s account."""
    url, _ = await asyncio.to_thread(owner.get_auth)
    await asyncio.to_thread(user.get_auth)
    user.url = url
    return user


async def call(connection: Connection, method: str, *args: object, **kwargs: object) -> object:
    return await asyncio.to_thread(getattr(connection, method), *args, **kwargs)


async def places(zone: ServedZone) -> dict[str, str | None]:
    """Each container of the zone's table and the name of the child holding it."""
    async with zone.process.core.db.session() as session:
        names = {c.id: c.name for c in await session.scalars(select(ChildZone))}
        return {
            c.name: names.get(c.child_id or "") for c in await session.scalars(select(Container))
        }


async def test_the_root_places_containers_in_its_children_and_serves_them(tree: Tree) -> None:
    async with httpx.AsyncClient() as http:
        info = (await http.get(f"{tree.root.url}/info")).json()
    assert [p["name"] for p in info["swift"]["policies"]] == ["gold", "silver"]

    mia = connect(tree.root, "p1:mia")
    names = [f"c{i:02}" for i in range(16)]
    for name in names:
        await call(mia, "put_container", name)
    await call(mia, "put_container", "cold", {"X-Storage-Policy": "silver"})
    placed = {name: child for name, child in (await places(tree.root)).items() if child}
    assert set(placed.values()) == {"dc1", "dc2"}, "spread over both children"
    assert placed["cold"] == "dc2", "silver is only in dc2"
    # Each child knows its own and placed it on its cluster.
    for name, child in tree.children.items():
        below = await places(child)
        assert set(below) == {n for n, z in placed.items() if z == name}

    await call(mia, "put_object", "c00", "a.txt", b"alpha")
    await call(mia, "put_object", "cold", "b.txt", b"beta" * 1000)
    _, body = await call(mia, "get_object", "cold", "b.txt")
    assert body == b"beta" * 1000
    _, listing = await call(mia, "get_account", full_listing=True)
    assert [c["name"] for c in listing] == sorted([*names, "cold"])
    head = await call(mia, "head_account")
    assert head["x-account-container-count"] == str(len(names) + 1)
    # Through the root, a policy change is still refused.
    with pytest.raises(ClientException) as refused:
        await call(mia, "put_container", "cold", {"X-Storage-Policy": "gold"})
    assert refused.value.http_status == 409


async def test_acls_are_checked_at_the_root(tree: Tree) -> None:
    mia, rita = connect(tree.root, "p1:mia"), connect(tree.root, "p1:rita")
    await call(mia, "put_container", "shared")
    await call(mia, "put_object", "shared", "doc", b"hello")
    await on_account_of(mia, rita)
    with pytest.raises(ClientException) as refused:
        await call(rita, "get_object", "shared", "doc")
    assert refused.value.http_status == 403
    await call(mia, "post_container", "shared", {"X-Container-Read": "p1:rita"})
    _, body = await call(rita, "get_object", "shared", "doc")
    assert body == b"hello"
    # A user's token is the root's: a child does not take it (its own users only).
    child = next(iter(tree.children.values()))
    async with httpx.AsyncClient() as http:
        url, token = await asyncio.to_thread(mia.get_auth)
        direct = await http.get(
            f"{child.url}/v1/{url.rsplit('/', 1)[1]}", headers={"X-Auth-Token": token}
        )
    assert direct.status_code == 401


async def test_a_temporary_url_reaches_a_container_in_a_child(tree: Tree) -> None:
    """The root gives the child the account's key, the child gives its cluster the
    same, and the cluster checks the signature made for the root's URL."""
    mia = connect(tree.root, "p1:mia")
    await call(mia, "put_container", "signed")
    await call(mia, "put_object", "signed", "doc", b"for a while")
    await call(mia, "post_account", {"X-Account-Meta-Temp-URL-Key": "tr33"})
    url, _ = await asyncio.to_thread(mia.get_auth)
    prefix, path = url.split("/v1/", 1)
    signed = generate_temp_url(f"/v1/{path}/signed/doc", 60, "tr33", "GET")
    wrong = generate_temp_url(f"/v1/{path}/signed/doc", 60, "other", "GET")
    async with httpx.AsyncClient(timeout=30) as http:
        got = await http.get(prefix + signed)
        assert got.status_code == 200 and got.content == b"for a while"
        assert (await http.get(prefix + wrong)).status_code == 401
        await call(mia, "post_account", {"X-Account-Meta-Temp-URL-Key": "n3w"})
        assert (await http.get(prefix + signed)).status_code == 401  # the old key is gone


async def test_a_roots_account_is_changed_below_only_through_the_root(tree: Tree) -> None:
    """One table decides an account's names: a child's admin who goes to the child
    directly cannot make, change or remove containers of the root's project there
    (the root would never list them, and two zones could each place one name)."""
    mia = connect(tree.root, "p1:mia")
    await call(mia, "put_container", "held")
    url, _ = await asyncio.to_thread(mia.get_auth)
    account = url.rsplit("/", 1)[1]
    child = tree.children[(await places(tree.root))["held"] or ""]
    admin = Connection(
        authurl=f"{child.url}/auth/v1.0", user="admin:admin", key=ADMIN_PASSWORD, retries=0
    )
    _, token = await asyncio.to_thread(admin.get_auth)
    direct = f"{child.url}/v1/{account}"
    auth = {"X-Auth-Token": token}
    async with httpx.AsyncClient(headers=auth) as http:
        for method, path, headers in (
            ("PUT", "/sneaky", {}),
            ("POST", "/held", {"X-Container-Read": ".r:*"}),
            ("DELETE", "/held", {}),
            ("POST", "", {"X-Account-Meta-Color": "red"}),
        ):
            answer = await http.request(method, direct + path, headers=headers)
            assert answer.status_code == 409, (method, path, answer.text)
            assert "is not a project of this zone" in answer.text  # (Swift's plain text)
        # Reading is not changing: the child's admin may look.
        assert (await http.head(direct + "/held")).status_code == 204
    assert "sneaky" not in await places(child)
    _, listing = await call(mia, "get_account")
    assert "held" in [c["name"] for c in listing] and "sneaky" not in [c["name"] for c in listing]
    head = await call(mia, "head_container", "held")
    assert "x-container-read" not in head

    # The child's own projects are its own to change.
    async with child.client() as child_admin:
        own = await child_admin.create_project("local")
    async with httpx.AsyncClient(headers=auth) as http:
        made = await http.put(f"{child.url}/v1/AUTH_{own.id}/mine")
        assert made.status_code == 201, made.text
        assert (await http.delete(f"{child.url}/v1/AUTH_{own.id}/mine")).status_code == 204


def served_fast(zone: ServedZone, method: str) -> float:
    registry = zone.process.core.metrics.registry
    return registry.get_sample_value("skyfed_swift_fast_requests_total", {"method": method}) or 0


async def test_the_roots_data_path_serves_objects_in_its_children(tree: Tree) -> None:
    """Plain object requests on a container in a child go down on the data path, as
    this zone's service account there with the caller's identity, answered as the
    routes answer them."""
    mia = connect(tree.root, "p1:mia")
    await call(mia, "put_container", "quick")
    child = tree.children[(await places(tree.root))["quick"] or ""]
    await call(mia, "put_object", "quick", "first", b"1")  # (the routes: where it is)
    root_before = {m: served_fast(tree.root, m) for m in ("PUT", "GET", "HEAD", "DELETE")}
    child_before = served_fast(child, "PUT")
    for i in range(3):
        await call(mia, "put_object", "quick", f"o{i}", f"body {i}".encode())
    headers, body = await call(mia, "get_object", "quick", "o2")
    assert body == b"body 2" and headers["content-length"] == "6"
    head = await call(mia, "head_object", "quick", "o1")
    assert head["etag"]
    await call(mia, "delete_object", "quick", "o0")
    with pytest.raises(ClientException) as gone:
        await call(mia, "get_object", "quick", "o0")
    assert gone.value.http_status == 404
    root_after = {m: served_fast(tree.root, m) for m in root_before}
    assert root_after["PUT"] - root_before["PUT"] == 3
    assert root_after["GET"] - root_before["GET"] == 2
    assert root_after["HEAD"] - root_before["HEAD"] == 1
    assert root_after["DELETE"] - root_before["DELETE"] == 1
    # The child served them on its own data path too (the service account owns them).
    assert served_fast(child, "PUT") - child_before == 3
    # A reader without rights still goes through the routes' checks.
    rita = await on_account_of(mia, connect(tree.root, "p1:rita"))
    with pytest.raises(ClientException) as refused:
        await call(rita, "get_object", "quick", "o1")
    assert refused.value.http_status == 403


async def test_a_child_down_breaks_only_its_containers(tree: Tree) -> None:
    mia = connect(tree.root, "p1:mia")
    placed = await places(tree.root)
    on_dc1 = sorted(n for n, child in placed.items() if child == "dc1")
    on_dc2 = sorted(n for n, child in placed.items() if child == "dc2")
    dc2 = tree.children["dc2"]
    await dc2.__aexit__(None, None, None)  # stopped: its port answers nothing
    try:
        headers, listing = await call(mia, "get_account", full_listing=True)
        assert [c["name"] for c in listing] == sorted(on_dc1 + on_dc2)
        assert headers["x-skyfed-unavailable-clusters"] == "dc2"
        with pytest.raises(ClientException) as refused:
            await call(mia, "get_container", on_dc2[0])
        assert refused.value.http_status == 503
        assert "zone 'dc2' did not answer" in refused.value.http_response_content.decode()
        await call(mia, "head_container", on_dc1[0])
    finally:
        await dc2.__aenter__()
