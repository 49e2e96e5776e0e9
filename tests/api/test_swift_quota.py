"""Account quotas (objects/swift_quota.py): set by admins only, shown to readers of
the account, and enforced over every cluster holding the account's containers, on
the routes and on the data path alike."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from skyfed.objects.local_swift import LocalSwiftSet
from tests.conftest import ADMIN_PASSWORD, ServedZone
from tests.swift_clusters import PASSWORD, swift_zone
from tests.swift_clusters import clusters as swift_clusters

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.xdist_group("swift_quota")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def zone(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServedZone]:
    root = tmp_path_factory.mktemp("quota")
    # The account counts follow uploads by the container updater: every second here.
    swifts: LocalSwiftSet = swift_clusters(
        root, ("q-gold", ("gold",)), ("q-silver", ("silver",)), updater_interval=1.0
    )
    async with swifts, swift_zone(root / "zone", swifts) as served:
        yield served


class Session:
    def __init__(self, http: httpx.AsyncClient, token: str, url: str) -> None:
        self.http, self.token, self.url = http, token, url

    async def __call__(self, method: str, path: str = "", **kw: object) -> httpx.Response:
        headers = {"X-Auth-Token": self.token, **kw.pop("headers", {})}  # type: ignore[dict-item]
        target = f"{self.url}/{path}" if path else self.url
        return await self.http.request(method, target, headers=headers, **kw)  # type: ignore[arg-type]


async def login(http: httpx.AsyncClient, zone: ServedZone, user: str, key: str) -> Session:
    answer = await http.get(
        f"{zone.url}/auth/v1.0", headers={"X-Auth-User": user, "X-Auth-Key": key}
    )
    assert answer.status_code == 200, answer.text
    return Session(http, answer.headers["x-auth-token"], answer.headers["x-storage-url"])


async def admin_on(http: httpx.AsyncClient, zone: ServedZone, user: Session) -> Session:
    """The zone's admin (Swift's reseller), on `user`'s account."""
    admin = await login(http, zone, "admin:admin", ADMIN_PASSWORD)
    admin.url = user.url
    return admin


async def settled(mia: Session, used: int, timeout: float = 20.0) -> None:
    """Until the account's byte count (the clusters' updaters) says `used`."""
    deadline = time.monotonic() + timeout
    while True:
        head = await mia("HEAD")
        if int(head.headers["x-account-bytes-used"]) == used:
            return
        assert time.monotonic() < deadline, head.headers
        await asyncio.sleep(0.3)


async def test_only_admins_set_quotas_and_every_reader_sees_them(zone: ServedZone) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        mia = await login(http, zone, "p1:mia", PASSWORD)
        admin = await admin_on(http, zone, mia)
        for header in (
            "X-Account-Quota-Bytes",
            "X-Account-Meta-Quota-Bytes",
            "X-Account-Quota-Count",
            "X-Account-Quota-Bytes-Policy-gold",
            "X-Remove-Account-Quota-Count",
        ):
            refused = await mia("POST", headers={header: "0"})
            assert refused.status_code == 403, (header, refused.text)
        assert (await admin("POST", headers={"X-Account-Quota-Bytes": "12x"})).status_code == 400
        # A member is refused before the value is read (403, not 400 nor 500).
        odd = await mia("POST", headers={"X-Account-Quota-Bytes": "\u00b2".encode()})
        assert odd.status_code == 403, odd.text
        assert (
            await admin("POST", headers={"X-Account-Quota-Bytes": "\u00b2".encode()})
        ).status_code == 400
        set_ = await admin(
            "POST",
            headers={"X-Account-Meta-Quota-Bytes": "123", "X-Account-Quota-Count-Policy-gold": "7"},
        )
        assert set_.status_code == 204
        head = await mia("HEAD")
        assert head.headers["x-account-quota-bytes"] == "123"
        assert head.headers["x-account-quota-count-policy-gold"] == "7"
        assert "x-account-meta-quota-bytes" not in head.headers  # a quota, not metadata
        await admin("POST", headers={"X-Remove-Account-Quota-Bytes": "t"})
        await admin("POST", headers={"X-Account-Quota-Count-Policy-gold": ""})
        head = await mia("HEAD")
        assert "x-account-quota-bytes" not in head.headers
        assert "x-account-quota-count-policy-gold" not in head.headers


async def test_uploads_past_a_quota_are_refused_over_all_clusters(zone: ServedZone) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        otto = await login(http, zone, "p2:otto", PASSWORD)
        admin = await admin_on(http, zone, otto)
        assert (await otto("PUT", "warm")).status_code == 201
        silver = {"X-Storage-Policy": "silver"}
        assert (await otto("PUT", "cold", headers=silver)).status_code == 201
        assert (await otto("PUT", "warm/a", content=b"x" * 60)).status_code == 201
        assert (await otto("PUT", "cold/b", content=b"y" * 30)).status_code == 201
        await settled(otto, 90)  # the two clusters together

        assert (await admin("POST", headers={"X-Account-Quota-Bytes": "100"})).status_code == 204
        over = await otto("PUT", "cold/c", content=b"z" * 11)  # 90 + 11 > 100
        assert over.status_code == 413 and "Upload exceeds quota." in over.text
        assert (await otto("GET", "cold/c")).status_code == 404
        assert (await otto("PUT", "cold/c", content=b"z" * 10)).status_code == 201  # = 100
        # An admin is not held to it (Swift's reseller).
        assert (await admin("PUT", "warm/big", content=b"w" * 50)).status_code == 201
        assert (await admin("DELETE", "warm/big")).status_code == 204
        await settled(otto, 100)

        # Per tier: gold holds 60 bytes in 1 object.
        await admin("POST", headers={"X-Remove-Account-Quota-Bytes": "t"})
        await admin(
            "POST",
            headers={"X-Account-Quota-Bytes-Policy-gold": "70", "X-Account-Quota-Count": "4"},
        )
        gold = await otto("PUT", "warm/d", content=b"d" * 11)
        assert gold.status_code == 413 and "Upload exceeds policy quota." in gold.text
        assert (await otto("PUT", "cold/e", content=b"e" * 11)).status_code == 201  # silver
        await settled(otto, 111)
        count = await otto("PUT", "cold/f", content=b"f")  # a fifth object
        assert count.status_code == 413
        await admin("POST", headers={"X-Account-Quota-Count": ""})
        assert (await otto("PUT", "cold/f", content=b"f")).status_code == 201


async def test_a_copy_is_an_upload_of_its_sources_length(zone: ServedZone) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        mia = await login(http, zone, "p1:mia", PASSWORD)
        admin = await admin_on(http, zone, mia)
        assert (await mia("PUT", "src")).status_code == 201
        assert (await mia("PUT", "dst", headers={"X-Storage-Policy": "silver"})).status_code == 201
        assert (await mia("PUT", "src/a", content=b"a" * 40)).status_code == 201
        await settled(mia, 40)
        assert (await admin("POST", headers={"X-Account-Quota-Bytes": "70"})).status_code == 204
        by_put = await mia("PUT", "dst/b", headers={"X-Copy-From": "src/a"})
        assert by_put.status_code == 413, by_put.text  # 40 + 40 > 70
        by_copy = await mia("COPY", "src/a", headers={"Destination": "dst/c"})
        assert by_copy.status_code == 413, by_copy.text
        assert (await mia("GET", "dst/b")).status_code == 404
        assert (await admin("COPY", "src/a", headers={"Destination": "dst/c"})).status_code == 201
        await admin("POST", headers={"X-Account-Quota-Bytes": ""})
        assert (await mia("PUT", "dst/b", headers={"X-Copy-From": "src/a"})).status_code == 201


async def test_a_temporary_url_upload_is_held_to_the_quota(zone: ServedZone) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        mia = await login(http, zone, "p1:mia", PASSWORD)
        admin = await admin_on(http, zone, mia)
        assert (
            await mia("POST", headers={"X-Account-Meta-Temp-URL-Key": "k3y"})
        ).status_code == 204
        assert (await mia("PUT", "signed")).status_code == 201
        names = [c["name"] for c in (await mia("GET", params={"format": "json"})).json()]
        used = 0
        for name in names:  # a container's own count is current; the account's lags
            used += int((await mia("HEAD", name)).headers["x-container-bytes-used"])
        await settled(mia, used)
        path = f"{mia.url.split('/', 3)[3]}/signed/up"
        expires = int(time.time()) + 300
        message = f"PUT\n{expires}\n/{path}".encode()
        signature = hmac.new(b"k3y", message, hashlib.sha256).hexdigest()
        url = f"{zone.url}/{path}?temp_url_sig={signature}&temp_url_expires={expires}"
        await admin("POST", headers={"X-Account-Quota-Bytes": str(used + 5)})
        over = await http.put(url, content=b"u" * 6)
        assert over.status_code == 413, over.text
        assert (await http.put(url, content=b"u" * 5)).status_code == 201
        await admin("POST", headers={"X-Account-Quota-Bytes": ""})
