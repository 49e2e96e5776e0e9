"""The trust holes a security review found, each attack performed and shown refused.

Forwarded identity on the wrong routes, peers' and agents' tokens on the member
API, revoked tokens living on in other processes, password guessing, state and
database files readable by others, bound parameters in logged errors.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from skyfed.client import SkyfedError
from skyfed.client_models import Caller
from skyfed.identity.models import User
from skyfed.identity.principal import Principal
from skyfed.wire import forwarded_headers
from tests.conftest import (
    ADMIN_PASSWORD,
    AGENT_PASSWORD,
    SERVICE_PASSWORD,
    InProcessZone,
    ServedApp,
    ServedZone,
    zone_settings,
)


def _as(who: Caller, roles: str) -> Principal:
    return Principal(who.user_id, who.username, who.project_id, frozenset(roles.split(",")))


async def test_service_token_cannot_forward_an_admin_to_identity_zones_hosts_or_flavors(
    zone: InProcessZone, admin
) -> None:
    """The attack: a service token forwarding roles 'admin' made a lasting admin account."""
    me = await admin.whoami()
    forged = forwarded_headers(_as(me, "admin"))
    attempts = [
        (
            "POST",
            "/v1/users",
            {"name": "evil", "password": "evil-password", "project": "admin", "roles": ["admin"]},
        ),
        ("GET", "/v1/users", None),
        ("POST", "/v1/projects", {"name": "evil"}),
        ("GET", "/v1/zones", None),
        (
            "POST",
            "/v1/zones",
            {"name": "x", "api_url": "http://127.0.0.1:1", "username": "a", "password": "b"},
        ),
        ("GET", "/v1/hosts", None),
        ("POST", "/v1/hosts/h1/disable", {"reason": "x"}),
        ("POST", "/v1/flavors", {"name": "huge", "vcpus": 1, "ram_mb": 1}),
        ("GET", "/v1/flavors", None),
        ("GET", "/v1/tasks", None),
        ("POST", "/v1/scheduler/explain", {"name": "x", "flavor": "m1.small"}),
    ]
    async with zone.client("svc", SERVICE_PASSWORD) as service:
        for method, path, body in attempts:
            with pytest.raises(SkyfedError) as refused:
                await service.request(method, path, json=body, headers=forged)
            assert (refused.value.status, refused.value.code) == (403, "forwarding_refused"), (
                method,
                path,
                refused.value,
            )
        # Without forwarding, a service token is no admin either.
        with pytest.raises(SkyfedError) as plain:
            await service.create_user("evil", "evil-password", "admin", ["admin"])
        assert (plain.value.status, plain.value.code) == (403, "forbidden")
    assert "evil" not in [u.name for u in await admin.list_users()]
    assert "evil" not in [p.name for p in await admin.list_projects()]


async def test_forwarding_still_works_where_parents_act_for_a_user(
    zone: InProcessZone, admin
) -> None:
    await admin.create_project("acme")
    alice = await admin.create_user("alice", "alice-password", "acme", ["member"])
    as_alice = forwarded_headers(
        Principal(alice.id, "alice", alice.project_id, frozenset({"member"}))
    )
    async with zone.client("svc", SERVICE_PASSWORD) as parent:
        listed = await parent.request("GET", "/v1/servers", headers=as_alice)
        assert listed["servers"] == []
        # Accepted as alice (who has no servers yet), not refused as a forwarding.
        with pytest.raises(SkyfedError) as nothing:
            await parent.request(
                "GET", "/v1/zones/locate", params={"project": alice.project_id}, headers=as_alice
            )
        assert (nothing.value.status, nothing.value.code) == (404, "not_found")
        # A forwarded identity carries at least one role.
        with pytest.raises(SkyfedError) as none:
            await parent.request("GET", "/v1/servers", headers={**as_alice, "X-Skyfed-Roles": ""})
        assert (none.value.status, none.value.code) == (400, "bad_request")


async def test_agent_and_service_tokens_cannot_use_the_member_api(
    zone: InProcessZone, admin
) -> None:
    """The attack: an agent token created a server (202) and listed tasks."""
    for username, password in (("agent", AGENT_PASSWORD), ("svc", SERVICE_PASSWORD)):
        async with zone.client(username, password) as peer:
            for call in (
                peer.create_servers(name="x", flavor="m1.tiny"),
                peer.list_servers(),
                peer.list_tasks(),
                peer.list_flavors(),
                peer.request("GET", "/v1/zones/locate", params={"project": "admin"}),
            ):
                with pytest.raises(SkyfedError) as refused:
                    await call
                assert (refused.value.status, refused.value.code) == (403, "forbidden"), (
                    username,
                    refused.value,
                )
    servers, _ = await admin.all_servers()
    assert servers == []
    assert (await admin.list_tasks()).tasks == []


async def test_failed_logins_are_bounded_per_user(tmp_path: Path) -> None:
    settings = zone_settings(tmp_path, None, login_max_failures_per_user=3, login_failure_window=60)
    async with InProcessZone(settings) as zone, zone.client(None, None) as client:
        for _ in range(3):
            with pytest.raises(SkyfedError) as wrong:
                await client.login("admin", "guess")
            assert (wrong.value.status, wrong.value.code) == (401, "invalid_credentials")
        async with zone.raw() as http:
            blocked = await http.post(
                "/v1/auth/tokens", json={"username": "admin", "password": ADMIN_PASSWORD}
            )
        # Blocked before the password is checked: the right one is refused too, for now.
        assert blocked.status_code == 429
        assert blocked.json()["error"]["code"] == "login_rate_limited"
        assert 1 <= int(blocked.headers["retry-after"]) <= 60
        # Other users are not affected by admin's block.
        await client.login("svc", SERVICE_PASSWORD)


async def test_failed_logins_are_bounded_per_source(tmp_path: Path) -> None:
    settings = zone_settings(
        tmp_path, None, login_max_failures_per_source=4, login_failure_window=60
    )
    async with InProcessZone(settings) as zone, zone.client(None, None) as client:
        for name in ("a1", "a2", "a3", "a4"):  # a spray over many names from one address
            with pytest.raises(SkyfedError) as wrong:
                await client.login(name, "guess")
            assert (wrong.value.status, wrong.value.code) == (401, "invalid_credentials")
        with pytest.raises(SkyfedError) as blocked:
            await client.login("admin", ADMIN_PASSWORD)
        assert (blocked.value.status, blocked.value.code) == (429, "login_rate_limited")


async def test_a_good_login_clears_the_users_count(tmp_path: Path) -> None:
    settings = zone_settings(tmp_path, None, login_max_failures_per_user=3)
    async with InProcessZone(settings) as zone, zone.client(None, None) as client:
        for _ in range(5):  # two failures, then a success, and again: never blocked
            for _ in range(2):
                with pytest.raises(SkyfedError) as wrong:
                    await client.login("admin", "guess")
                # A wrong password, not the 429 of a blocked name.
                assert (wrong.value.status, wrong.value.code) == (401, "invalid_credentials")
            await client.login("admin", ADMIN_PASSWORD)


async def test_a_revoked_token_dies_in_every_process_of_the_zone(
    tmp_path: Path, postgres_database: str
) -> None:
    """The attack: a token revoked on one API process stayed valid up to 10 s on the
    others (their token caches)."""
    common = {"secret_key": "one-key-for-the-zone", "host_ttl": 2.5}  # housekeeping each 0.5 s
    one = InProcessZone(zone_settings(tmp_path / "one", postgres_database, **common))
    two = InProcessZone(zone_settings(tmp_path / "two", postgres_database, **common))
    async with one, two:
        # Two's cache would keep the token for an hour: only the revocation can drop it
        # (not a cache entry running out while the test waits on a loaded machine).
        two.process.identities.tokens.ttl = 3600.0
        async with one.client(None, None) as login:
            token = (await login.login("admin", ADMIN_PASSWORD)).token
        bearer = {"Authorization": f"Bearer {token}"}
        async with two.raw() as http:
            assert (await http.get("/v1/zones", headers=bearer)).status_code == 200  # cached
        async with one.raw() as http:
            assert (await http.delete("/v1/auth/tokens", headers=bearer)).status_code == 204
        async with two.raw() as http:
            answer = None
            for _ in range(300):  # bounded: 30 s
                answer = await http.get("/v1/zones", headers=bearer)
                if answer.status_code != 200:
                    break
                await asyncio.sleep(0.1)
            assert answer is not None and answer.status_code == 401, "still works on two"
            assert answer.json()["error"]["code"] == "invalid_token"


async def test_state_dir_and_database_are_private(tmp_path: Path) -> None:
    """The attack: state directories and databases were world-readable (0755/0644)."""
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    async with InProcessZone(zone_settings(state, None)) as zone:
        await zone.client().__aenter__()
        db = Path(zone.process.core.db.url.database)
        assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
        for path in (db, state / "secret.key"):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
        wal = db.with_name(db.name + "-wal")  # the database runs in WAL mode: it is there
        assert stat.S_IMODE(os.stat(wal).st_mode) & 0o077 == 0


async def test_integrity_errors_do_not_log_bound_parameters(
    zone: InProcessZone, caplog: pytest.LogCaptureFixture
) -> None:
    """The attack: a failed statement's logged message carried its parameters (hashes,
    sealed secrets, metadata)."""
    async with zone.process.core.db.session() as session:
        admin = await session.scalar(select(User).where(User.name == "admin"))
        assert admin is not None
        session.add(
            User(
                name="admin",
                password_hash="$argon2id$secret-hash-value",
                project_id=admin.project_id,
                roles=["member"],
            )
        )
        with caplog.at_level(logging.DEBUG), pytest.raises(IntegrityError) as exc:
            await session.commit()
    assert "secret-hash-value" not in str(exc.value)
    assert "hidden due to hide_parameters" in str(exc.value)


# -- child links: where a parent sends its credentials and what it echoes ----------------


class Trap:
    """A listener an attacker controls: records each request, answers as told."""

    def __init__(self, status: int = 400, body: bytes = b"", content_type: str = "text/plain"):
        self.seen: list[tuple[str, bytes]] = []
        self.status, self.body, self.content_type = status, body, content_type

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.seen.append((scope["path"], body))
        await send(
            {
                "type": "http.response.start",
                "status": self.status,
                "headers": [(b"content-type", self.content_type.encode())],
            }
        )
        await send({"type": "http.response.body", "body": self.body})


async def test_a_stored_child_password_goes_nowhere_new(
    zone: InProcessZone, admin, child_zone: ServedZone
) -> None:
    """The attack: an admin changed a child's api_url without a password, and the parent
    sent the stored password to the new URL."""
    await admin.add_zone("child", child_zone.url, "svc", SERVICE_PASSWORD)
    before = await admin.get_zone("child")
    trap = Trap()
    async with ServedApp(trap) as served:
        for change in (
            {"api_url": served.url},
            {"api_url": served.url, "username": "svc"},
            {"transport": "amqp", "bus_url": "amqp://guest:guest@127.0.0.1:5672/"},
        ):
            with pytest.raises(SkyfedError) as refused:
                await admin.update_zone("child", **change)
            assert (refused.value.status, refused.value.code) == (400, "password_required")
    assert trap.seen == []
    assert await admin.get_zone("child") == before
    # Edits that move nothing need no password.
    assert (await admin.update_zone("child", weight_offset=2.0)).weight_offset == 2.0
    same = await admin.update_zone("child", api_url=child_zone.url)
    assert same.api_url == child_zone.url


async def test_no_child_host_is_allowed_until_the_operator_lists_it(tmp_path: Path) -> None:
    """The attack: allowed_child_hosts defaulted to '*', so any URL was probed."""
    trap = Trap()
    async with ServedApp(trap) as served:
        settings = zone_settings(tmp_path, None, allowed_child_hosts=[])
        async with InProcessZone(settings) as zone, zone.client() as admin:
            with pytest.raises(SkyfedError) as refused:
                await admin.add_zone("x", served.url, "svc", SERVICE_PASSWORD)
    assert (refused.value.status, refused.value.code) == (400, "child_url_not_allowed")
    assert "allowed_child_hosts" in refused.value.message
    assert trap.seen == []


async def test_metadata_and_link_local_addresses_are_refused_even_when_listed(
    tmp_path: Path,
) -> None:
    settings = zone_settings(
        tmp_path, None, allowed_child_hosts=["169.254.169.254", "169.254.0.0/16", "0.0.0.0"]
    )
    async with InProcessZone(settings) as zone, zone.client() as admin:
        for url, why in (
            ("http://169.254.169.254/latest", "metadata"),
            ("http://169.254.1.1:8700", "link-local"),
            ("http://0.0.0.0:8700", "unspecified"),
        ):
            with pytest.raises(SkyfedError) as refused:
                await admin.add_zone("x", url, "svc", SERVICE_PASSWORD)
            assert refused.value.code == "child_url_not_allowed" and why in refused.value.message
        assert await admin.list_zones() == []


async def test_a_non_skyfed_answer_is_never_echoed(admin) -> None:
    """The attack: up to 200 characters of another service's answer came back in the 400."""
    secret = b"AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG"
    for trap, code in (
        (Trap(400, secret), "child_auth_failed"),  # the login answered by something else
        (Trap(200, secret, "application/json"), "child_invalid"),  # nonsense, not JSON
    ):
        async with ServedApp(trap) as served:
            with pytest.raises(SkyfedError) as refused:
                await admin.add_zone("x", served.url, "svc", SERVICE_PASSWORD)
        assert (refused.value.status, refused.value.code) == (400, code)
        assert b"wJalrXUtnFEMI" not in str(refused.value).encode()
        assert trap.seen  # it was asked, and its answer stayed here
    assert await admin.list_zones() == []


@pytest.mark.parametrize("pool", ["h1", "httpx"])
async def test_a_childs_answer_is_bounded(tmp_path: Path, pool: str) -> None:
    """A child (or whatever is at its URL) that answers without end fails the call,
    whichever pool carries it (link_http_transport)."""
    settings = zone_settings(
        tmp_path, None, max_child_answer_bytes=64 * 1024, link_http_transport=pool
    )
    trap = Trap(200, b'{"token": "' + b"x" * (1024 * 1024) + b'"}', "application/json")
    async with (
        ServedApp(trap) as served,
        InProcessZone(settings) as zone,
        zone.client() as admin,
    ):
        with pytest.raises(SkyfedError) as refused:
            await admin.add_zone("x", served.url, "svc", SERVICE_PASSWORD)
    assert refused.value.code == "child_unreachable"
    assert "larger than 65536 bytes" in refused.value.message


@pytest.mark.parametrize("pool", ["h1", "httpx", "streaming"])
async def test_addresses_are_checked_again_when_connecting(pool: str) -> None:
    """A name that resolves, at connect time, to a refused address is not connected to
    (DNS may answer differently after the check at add)."""
    import httpx

    from skyfed.transport.h1_pool import H1Transport
    from skyfed.transport.httpx_pool import HttpxTransport, checked_transport

    def refused(address: str) -> str | None:
        return "refused here" if address == "127.0.0.1" else None

    trap = Trap(200, b"{}", "application/json")
    async with ServedApp(trap) as served:
        transport: httpx.AsyncBaseTransport
        if pool == "h1":
            transport = H1Transport(address_check=refused)
        elif pool == "httpx":
            transport = HttpxTransport(address_check=refused)
        else:  # the Swift routes' pools, with clusters and children (objects/cluster_pool)
            transport = checked_transport(refused)
        request = httpx.Request("GET", f"http://localhost:{served.port}/v1/zone")
        with pytest.raises(httpx.ConnectError, match="refused here"):
            await transport.handle_async_request(request)
        await transport.aclose()
    assert trap.seen == []
