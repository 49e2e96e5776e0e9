"""The zones API against a real child on a loopback socket."""

from __future__ import annotations

import json
from typing import Any

import pytest

from skyfed.client import SkyfedClient, SkyfedError
from skyfed.client_models import ChildZone, ChildZoneState
from skyfed.federation.process import free_port
from tests.conftest import SERVICE_PASSWORD, InProcessZone, ServedZone


async def _add(admin: SkyfedClient, child: ServedZone, name: str = "child", **kw: Any) -> ChildZone:
    return await admin.add_zone(name, child.url, "svc", SERVICE_PASSWORD, **kw)


async def test_add_list_show_update_delete(
    zone: InProcessZone, admin, child_zone: ServedZone
) -> None:
    async with child_zone.client() as child_admin:
        await child_admin.heartbeat(
            "h1",
            capabilities={"arch": "arm64"},
            resources={"vcpus": 4, "ram_mb": 8192, "disk_gb": 50},
        )
    body = {"name": "child", "api_url": child_zone.url, "username": "svc"}
    body |= {"password": SERVICE_PASSWORD, "labels": {"tier": "gold"}, "weight_offset": 1.5}
    raw = await admin.request("POST", "/v1/zones", json=body)  # raw: its leaks, below
    added = ChildZone.model_validate(raw)
    assert added.state == "active"
    assert added.labels == {"tier": "gold"}

    listed = await admin.list_zones()
    assert [z.name for z in listed] == ["child"]
    by_name = await admin.get_zone("child")
    assert by_name.id == added.id

    detail = await admin.zone_detail(added.id)
    assert detail.remote_name == "child"
    assert detail.summary["hosts"] == 1
    assert detail.summary["strings"]["arch"] == {"arm64": 1}
    assert detail.last_seen is not None
    # What goes over the wire never carries the child's password (raw: the models would
    # drop an unknown field, so they cannot show it absent).
    assert SERVICE_PASSWORD not in json.dumps(raw) and "password" not in raw
    for path in ("/v1/zones", f"/v1/zones/{added.id}", f"/v1/zones/{added.id}/detail"):
        answer = await admin.request("GET", path)
        assert SERVICE_PASSWORD not in json.dumps(answer), path
        shown = answer["zones"][0] if path == "/v1/zones" else answer
        assert not {"password", "password_secret"} & set(shown), path

    me = await admin.zone()
    assert me.summary["hosts"] == 1
    assert me.summary["zones"] == 2
    assert me.children == [ChildZoneState(id=added.id, name="child", state="active", hosts=1)]

    updated = await admin.update_zone("child", name="renamed", weight_scale=2.0, labels={})
    assert (updated.name, updated.weight_scale, updated.labels) == ("renamed", 2.0, {})

    await admin.delete_zone("renamed")
    assert await admin.list_zones() == []
    assert (await admin.zone()).summary["hosts"] == 0
    with pytest.raises(SkyfedError) as exc:
        await admin.get_zone("renamed")
    assert (exc.value.status, exc.value.code) == (404, "not_found")


async def test_wrong_credentials_say_so_and_store_nothing(admin, child_zone: ServedZone) -> None:
    with pytest.raises(SkyfedError) as exc:
        await admin.add_zone("child", child_zone.url, "svc", "wrong-password")
    assert (exc.value.status, exc.value.code) == (400, "child_auth_failed")
    assert "credentials" in exc.value.message
    assert await admin.list_zones() == []


async def test_unreachable_child_says_so_and_stores_nothing(admin) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SkyfedError) as exc:
        await admin.add_zone("ghost", url, "svc", SERVICE_PASSWORD)
    assert (exc.value.status, exc.value.code) == (400, "child_unreachable")
    assert url in exc.value.message
    assert await admin.list_zones() == []


async def test_child_account_without_service_role_is_refused(admin, child_zone: ServedZone) -> None:
    from tests.conftest import ADMIN_PASSWORD

    with pytest.raises(SkyfedError) as exc:
        await admin.add_zone("child", child_zone.url, "admin", ADMIN_PASSWORD)
    assert (exc.value.status, exc.value.code) == (400, "child_not_service")
    assert await admin.list_zones() == []


async def test_duplicates_conflict(admin, child_zone: ServedZone) -> None:
    await _add(admin, child_zone)
    with pytest.raises(SkyfedError) as same_name:
        await _add(admin, child_zone)
    assert (same_name.value.status, same_name.value.code) == (409, "conflict")
    with pytest.raises(SkyfedError) as same_zone:
        await _add(admin, child_zone, name="again")
    assert (same_zone.value.status, same_zone.value.code) == (409, "conflict")
    assert "already registered" in same_zone.value.message
    assert [z.name for z in await admin.list_zones()] == ["child"]


async def test_a_zone_cannot_be_its_own_child(tmp_path) -> None:
    from tests.conftest import zone_settings

    settings = zone_settings(tmp_path, None, port=free_port())
    async with ServedZone(settings) as zone, zone.client() as admin:
        with pytest.raises(SkyfedError) as exc:
            await admin.add_zone("me", zone.url, "svc", SERVICE_PASSWORD)
    assert (exc.value.status, exc.value.code) == (400, "child_is_self")


async def test_url_outside_allowed_hosts_is_refused_without_connecting(admin) -> None:
    with pytest.raises(SkyfedError) as exc:
        await admin.add_zone("far", "http://example.invalid:8700", "svc", SERVICE_PASSWORD)
    assert (exc.value.status, exc.value.code) == (400, "child_url_not_allowed")
    assert await admin.list_zones() == []


async def test_bad_input_is_4xx_and_changes_nothing(zone: InProcessZone, admin, child_zone) -> None:
    await _add(admin, child_zone)
    before = await admin.list_zones()
    headers = {"Authorization": f"Bearer {admin.token}", "Content-Type": "application/json"}
    good = {"name": "ok", "api_url": "http://127.0.0.1:1", "username": "a", "password": "b"}
    invalid = (422, "validation_error")
    mismatched = (400, "invalid_transport")
    bodies = [
        [],
        {"name": "x"},
        {**good, "name": 5},
        {**good, "name": "x" * 65},
        {**good, "name": "bad name!"},
        {**good, "api_url": "ftp://127.0.0.1:1"},
        {**good, "api_url": "not a url"},
        {**good, "weight_scale": -1},
        {**good, "weight_offset": "high"},
        {**good, "labels": {"bad key!": "v"}},
        {**good, "extra": 1},
        {**good, "password": ""},
    ]
    cases = [("POST", "/v1/zones", json.dumps(b).encode(), invalid) for b in bodies] + [
        ("POST", "/v1/zones", b"{not json", (400, "malformed_json")),
        ("PUT", "/v1/zones/child", b'{"weight_offset": "high"}', invalid),
        ("PUT", "/v1/zones/child", b'{"labels": {"bad key!": "v"}}', invalid),
        ("PUT", "/v1/zones/child", b'{"name": "child", "extra": true}', invalid),
        ("PUT", "/v1/zones/nope", b'{"weight_offset": 1}', (404, "not_found")),
        # an HTTP child given AMQP with no broker: the same refusal as on add
        ("PUT", "/v1/zones/child", b'{"transport": "amqp", "password": "p"}', mismatched),
        ("POST", "/v1/zones", json.dumps({**good, "transport": "amqp"}).encode(), mismatched),
        ("DELETE", "/v1/zones/nope", b"", (404, "not_found")),
        ("GET", "/v1/zones/%00", b"", invalid),
        ("GET", "/v1/zones/" + "y" * 300, b"", invalid),
    ]
    async with zone.raw() as http:
        for method, path, body, (status, code) in cases:
            response = await http.request(method, path, content=body, headers=headers)
            assert response.status_code == status, (method, path, body, response.text)
            assert set(response.json()) == {"error"}, response.text
            error = response.json()["error"]
            assert error["code"] == code and error["message"], (method, path, response.text)
    assert await admin.list_zones() == before


async def test_child_password_is_encrypted_at_rest(zone: InProcessZone, admin, child_zone) -> None:
    from sqlalchemy import text

    await _add(admin, child_zone)
    async with zone.process.core.db.session() as session:
        rows = (await session.execute(text("SELECT * FROM child_zones"))).all()
    assert len(rows) == 1
    dumped = repr(rows).encode() + b"".join(v for v in rows[0] if isinstance(v, bytes | memoryview))
    assert SERVICE_PASSWORD.encode() not in dumped
    # ... and it is still usable: the poller logs in with it.
    result = await zone.process.tree.poller.cycle()
    assert (result.polled, result.ok) == (1, 1)
