"""Identity through the API: tokens, roles, forwarded identity, account management."""

from __future__ import annotations

import pytest

from skyfed.client import SkyfedError
from skyfed.client_models import Caller
from skyfed.identity.principal import Principal
from skyfed.wire import forwarded_headers
from tests.conftest import ADMIN_PASSWORD, AGENT_PASSWORD, SERVICE_PASSWORD, InProcessZone


async def test_login_returns_token_with_expiry(zone: InProcessZone) -> None:
    async with zone.client(None, None) as client:
        token = await client.login("admin", ADMIN_PASSWORD)
        # The answer as sent, not only the fields the client reads of it: no secret in it.
        sent = await client.request(
            "POST",
            "/v1/auth/tokens",
            json={"username": "admin", "password": ADMIN_PASSWORD},
            authenticate=False,
        )
    assert len(token.token) >= 32 and client.token == token.token
    assert token.expires_at > token.user.created_at
    assert token.user.roles == ["admin"]
    assert ADMIN_PASSWORD not in str(sent) and "password_hash" not in sent["user"]


async def test_wrong_password_and_unknown_user_get_the_same_401(zone: InProcessZone) -> None:
    async with zone.client(None, None) as client:
        with pytest.raises(SkyfedError) as wrong:
            await client.login("admin", "nope")
        with pytest.raises(SkyfedError) as unknown:
            await client.login("nobody", "nope")
    assert (wrong.value.status, wrong.value.code) == (401, "invalid_credentials")
    assert (unknown.value.status, unknown.value.code) == (401, "invalid_credentials")
    assert wrong.value.message == unknown.value.message


async def test_routes_need_a_token(zone: InProcessZone) -> None:
    async with zone.raw() as http:
        for method, path in [("GET", "/v1/zones"), ("GET", "/v1/zone"), ("GET", "/v1/hosts")]:
            response = await http.request(method, path)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "unauthorized"
        bogus = await http.get("/v1/zones", headers={"Authorization": "Bearer not-a-token"})
        assert bogus.status_code == 401
        assert bogus.json()["error"]["code"] == "invalid_token"


async def test_member_gets_403_on_admin_routes(zone: InProcessZone, admin) -> None:
    await admin.create_project("acme")
    await admin.create_user("alice", "alice-password", "acme", ["member"])
    async with zone.client("alice", "alice-password") as alice:
        who = await alice.whoami()
        assert who.roles == ["member"]
        for call in (alice.list_zones(), alice.list_hosts(), alice.zone(), alice.list_users()):
            with pytest.raises(SkyfedError) as exc:
                await call
            assert (exc.value.status, exc.value.code) == (403, "forbidden")


async def test_forwarded_identity_only_from_service_accounts(zone: InProcessZone, admin) -> None:
    await admin.create_project("acme")
    alice = await admin.create_user("alice", "alice-password", "acme", ["member"])
    end_user = Principal(alice.id, "alice", alice.project_id, frozenset({"member"}))
    async with zone.client("svc", SERVICE_PASSWORD) as service:
        who = await service.request("GET", "/v1/auth/whoami", headers=forwarded_headers(end_user))
    assert who["username"] == "alice"
    assert who["project_id"] == alice.project_id
    assert who["via"] == "svc"
    # An admin is not a service account: it may not speak for someone else.
    with pytest.raises(SkyfedError) as exc:
        await admin.request("GET", "/v1/auth/whoami", headers=forwarded_headers(end_user))
    assert (exc.value.status, exc.value.code) == (403, "forbidden")
    # Malformed forwarded roles are refused, not trusted.
    headers = {**forwarded_headers(end_user), "X-Skyfed-Roles": "root"}
    async with zone.client("svc", SERVICE_PASSWORD) as service:
        with pytest.raises(SkyfedError) as bad:
            await service.request("GET", "/v1/auth/whoami", headers=headers)
    assert (bad.value.status, bad.value.code) == (400, "bad_request")


async def test_duplicate_names_conflict_and_change_nothing(admin) -> None:
    await admin.create_project("acme")
    with pytest.raises(SkyfedError) as exc:
        await admin.create_project("acme")
    assert (exc.value.status, exc.value.code) == (409, "conflict")
    await admin.create_user("bob", "bob-password", "acme", ["member"])
    with pytest.raises(SkyfedError) as exc:
        await admin.create_user("bob", "other-password", "acme", ["admin"])
    assert (exc.value.status, exc.value.code) == (409, "conflict")
    bob = next(u for u in await admin.list_users() if u.name == "bob")
    assert bob.roles == ["member"]


async def test_user_in_unknown_project_is_404(admin) -> None:
    with pytest.raises(SkyfedError) as exc:
        await admin.create_user("carol", "carol-password", "no-such-project", ["member"])
    assert (exc.value.status, exc.value.code) == (404, "not_found")
    assert "carol" not in [u.name for u in await admin.list_users()]


async def test_deleted_user_token_stops_working(zone: InProcessZone, admin) -> None:
    await admin.create_project("acme")
    await admin.create_user("dave", "dave-password", "acme", ["member"])
    async with zone.client("dave", "dave-password") as dave:
        await dave.whoami()
        await admin.request("DELETE", "/v1/users/dave")
        dave.username = dave.password = None  # no silent re-login
        with pytest.raises(SkyfedError) as exc:
            await dave.whoami()
    assert (exc.value.status, exc.value.code) == (401, "invalid_token")


async def test_bootstrap_password_change_applies_on_restart(tmp_path, database_url) -> None:
    from tests.conftest import zone_settings

    async with InProcessZone(zone_settings(tmp_path, database_url)) as zone, zone.client() as c:
        await c.whoami()
    settings = zone_settings(tmp_path, database_url, admin_password="a-new-password")
    async with InProcessZone(settings) as zone:
        async with zone.client("admin", ADMIN_PASSWORD) as old:
            with pytest.raises(SkyfedError) as refused:
                await old.whoami()
            assert (refused.value.status, refused.value.code) == (401, "invalid_credentials")
        async with zone.client("admin", "a-new-password") as new:
            assert (await new.whoami()).username == "admin"


async def test_logout_revokes_the_token(zone: InProcessZone) -> None:
    async with zone.client(None, None) as client:
        await client.login("admin", ADMIN_PASSWORD)
        token = client.token
        await client.logout()
        client.token = token
        with pytest.raises(SkyfedError) as exc:
            await client.whoami()
    assert (exc.value.status, exc.value.code) == (401, "invalid_token")


async def test_forwarded_identity_cannot_carry_peer_roles(zone: InProcessZone, admin) -> None:
    """A service account speaks for users; it cannot mint service or agent powers."""
    me = await admin.whoami()
    for roles in ("service", "agent", "admin,service"):
        headers = {**forwarded_headers(_principal(me)), "X-Skyfed-Roles": roles}
        async with zone.client("svc", SERVICE_PASSWORD) as service:
            with pytest.raises(SkyfedError) as exc:
                await service.request("GET", "/v1/auth/whoami", headers=headers)
        assert (exc.value.status, exc.value.code) == (400, "bad_request"), roles


async def test_agent_account_sends_heartbeats_and_nothing_else(zone: InProcessZone, admin) -> None:
    me = await admin.whoami()
    async with zone.client("agent", AGENT_PASSWORD) as agent:
        beat = await agent.heartbeat("h1", resources={"vcpus": 2, "ram_mb": 1024})
        assert beat.state == "online"
        for call in (agent.zone(), agent.list_hosts(), agent.list_zones(), agent.list_users()):
            with pytest.raises(SkyfedError) as exc:
                await call
            assert (exc.value.status, exc.value.code) == (403, "forbidden")
        # It cannot speak for anyone, not even with admin's identity.
        with pytest.raises(SkyfedError) as exc:
            await agent.request("GET", "/v1/users", headers=forwarded_headers(_principal(me)))
        assert (exc.value.status, exc.value.code) == (403, "forwarding_refused")
    assert [u.name for u in await admin.list_users()] == ["admin", "agent", "svc"]


def _principal(who: Caller) -> Principal:
    return Principal(who.user_id, who.username, who.project_id, frozenset(who.roles))
