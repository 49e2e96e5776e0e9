"""The hosts API: heartbeats, listing and paging, offline after the TTL, disable/enable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from skyfed.client import SkyfedClient, SkyfedError
from skyfed.compute.hosts.models import DisabledHost
from skyfed.settings import Settings
from tests.conftest import AGENT_PASSWORD, InProcessZone, zone_settings

BIG = {"vcpus": 8, "ram_mb": 16384, "disk_gb": 200}
BIG_USED = {"vcpus": 2, "ram_mb": 4096, "disk_gb": 40}  # free: 6 vcpus, 12288 MB, 160 GB
SMALL = {"vcpus": 4, "ram_mb": 8192, "disk_gb": 100}  # nothing used


def _error(response: httpx.Response, status: int | None = None) -> dict[str, Any]:
    """Assert a 4xx with the one error shape; return the error object."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    if status is not None:
        assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"], body
    assert isinstance(error["message"], str) and error["message"], body
    return error


async def _auth(client: SkyfedClient) -> dict[str, str]:
    """Headers for raw requests as this client's user (logging in first if need be)."""
    await client.whoami()
    return {"Authorization": f"Bearer {client.token}", "Content-Type": "application/json"}


async def _disabled_rows(zone: InProcessZone) -> list[str]:
    async with zone.process.core.db.session() as session:
        return sorted((await session.scalars(select(DisabledHost.name))).all())


async def _names(client: SkyfedClient, **filters: Any) -> list[str]:
    return [h.name for h in (await client.list_hosts(limit=10_000, **filters)).hosts]


# -- heartbeats and the summary -------------------------------------------------


async def test_heartbeats_list_hosts_online_and_fill_the_summary(
    zone: InProcessZone, admin
) -> None:
    async with zone.client("agent", AGENT_PASSWORD) as svc:
        beat = await svc.heartbeat(
            "h1", capabilities={"arch": "x86_64", "gpus": 2}, resources=BIG, used=BIG_USED
        )
    assert beat.name == "h1"
    assert beat.state == "online"
    assert beat.disabled is False
    assert beat.free.model_dump() == {"vcpus": 6, "ram_mb": 12288, "disk_gb": 160}
    # An admin may beat too (an agent run with admin credentials).
    await admin.heartbeat("h2", capabilities={"arch": "arm64"}, resources=SMALL)

    page = await admin.list_hosts()
    assert [h.name for h in page.hosts] == ["h1", "h2"]
    assert page.next_marker is None
    h1, h2 = page.hosts
    assert h1.state == h2.state == "online"
    assert h1.capabilities == {"arch": "x86_64", "gpus": 2}
    assert h1.resources.model_dump() == BIG
    assert h1.used.model_dump() == BIG_USED
    assert h1.free.model_dump() == {"vcpus": 6, "ram_mb": 12288, "disk_gb": 160}
    assert h1.last_seen is not None
    assert h2.free.model_dump() == SMALL
    assert await admin.get_host("h1") == h1

    summary = (await admin.zone()).summary
    assert (summary["hosts"], summary["disabled"], summary["zones"]) == (2, 0, 1)
    numeric = summary["numeric"]
    assert numeric["free_vcpus"] == {"min": 4, "max": 6, "sum": 10, "count": 2}
    assert numeric["free_ram_mb"] == {"min": 8192, "max": 12288, "sum": 20480, "count": 2}
    assert numeric["free_disk_gb"] == {"min": 100, "max": 160, "sum": 260, "count": 2}
    assert numeric["vcpus"] == {"min": 4, "max": 8, "sum": 12, "count": 2}
    assert numeric["gpus"] == {"min": 2, "max": 2, "sum": 2, "count": 1}
    assert summary["strings"] == {"arch": {"arm64": 1, "x86_64": 1}}
    # Instances that fit host by host: h1 (6, 12288, 160) plus h2 (4, 8192, 100).
    assert summary["fits"] == {
        "m1.tiny": 6 + 4,
        "m1.small": 6 + 4,
        "m1.medium": 3 + 2,
        "m1.large": 1 + 1,
        "m1.xlarge": 0,
    }


async def test_a_new_beat_replaces_what_the_host_said(zone: InProcessZone, admin) -> None:
    await admin.heartbeat("h1", capabilities={"arch": "x86_64", "rack": "r1"}, resources=BIG)
    first = await admin.get_host("h1")
    await admin.heartbeat("h1", capabilities={"arch": "x86_64"}, resources=BIG, used=BIG_USED)
    second = await admin.get_host("h1")
    assert second.capabilities == {"arch": "x86_64"}
    assert second.used.model_dump() == BIG_USED
    assert second.free.model_dump() == {"vcpus": 6, "ram_mb": 12288, "disk_gb": 160}
    assert first.last_seen is not None and second.last_seen is not None
    assert second.last_seen >= first.last_seen
    assert await _names(admin) == ["h1"]


async def test_batch_heartbeat(zone: InProcessZone, admin) -> None:
    hosts = [
        {"name": f"b{i}", "capabilities": {"arch": "arm64"}, "resources": SMALL} for i in range(3)
    ]
    async with zone.client("agent", AGENT_PASSWORD) as svc:
        answer = await svc.heartbeat_batch(hosts)
    assert answer.model_dump() == {"accepted": 3, "disabled": []}
    listed = (await admin.list_hosts()).hosts
    assert [h.name for h in listed] == ["b0", "b1", "b2"]
    assert all(h.state == "online" and h.resources.model_dump() == SMALL for h in listed)
    summary = (await admin.zone()).summary
    assert summary["hosts"] == 3
    assert summary["strings"]["arch"] == {"arm64": 3}
    assert summary["numeric"]["vcpus"]["sum"] == 12


async def test_members_get_403_and_strangers_401(zone: InProcessZone, admin) -> None:
    await admin.heartbeat("h1")
    await admin.create_project("acme")
    await admin.create_user("alice", "alice-password", "acme", ["member"])
    beat = json.dumps({"capabilities": {}}).encode()
    batch = json.dumps({"hosts": [{"name": "sneaky"}]}).encode()
    calls = [
        ("PUT", "/v1/hosts/sneaky", beat),
        ("PUT", "/v1/hosts", batch),
        ("GET", "/v1/hosts", b""),
        ("GET", "/v1/hosts/h1", b""),
        ("POST", "/v1/hosts/h1/disable", b"{}"),
        ("POST", "/v1/hosts/h1/enable", b""),
    ]
    async with zone.client("alice", "alice-password") as alice:
        member = await _auth(alice)
    async with zone.client("agent", AGENT_PASSWORD) as svc:
        service = await _auth(svc)
    async with zone.raw() as http:
        for method, path, body in calls:
            response = await http.request(method, path, content=body, headers=member)
            assert _error(response, 403)["code"] == "forbidden", (method, path)
            anonymous = await http.request(
                method, path, content=body, headers={"Content-Type": "application/json"}
            )
            assert _error(anonymous, 401)["code"] == "unauthorized", (method, path)
        # The service account beats, but listing and disabling are the admin's.
        for method, path, body in calls[2:]:
            response = await http.request(method, path, content=body, headers=service)
            assert _error(response, 403)["code"] == "forbidden", (method, path)
    assert await _names(admin) == ["h1"]
    assert (await admin.get_host("h1")).disabled is False
    assert await _disabled_rows(zone) == []


# -- offline after the TTL --------------------------------------------------------


async def test_silent_host_goes_offline_and_leaves_the_summary(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = zone_settings(tmp_path, database_url, summary_max_age=0)
    async with InProcessZone(settings) as zone, zone.client() as admin:
        # The registry's clock, moved by hand: no wall-clock TTL that the requests
        # below must fit in (on a loaded machine "chatty" would go offline too).
        now = [1000.0]
        monkeypatch.setattr(zone.process.compute.hosts, "clock", lambda: now[0])
        await admin.heartbeat("quiet", capabilities={"arch": "x86_64"}, resources=BIG)
        await admin.heartbeat("chatty", capabilities={"arch": "arm64"}, resources=SMALL)
        assert (await admin.zone()).summary["hosts"] == 2
        now[0] = 1000.0 + settings.host_ttl - 1
        assert (await admin.get_host("quiet")).state == "online"  # not before its TTL
        now[0] = 1000.0 + settings.host_ttl
        await admin.heartbeat("chatty", capabilities={"arch": "arm64"}, resources=SMALL)
        hosts = {h.name: h for h in (await admin.list_hosts()).hosts}
        summary = (await admin.zone()).summary
        assert hosts["quiet"].state == "offline"
        assert hosts["quiet"].resources.model_dump() == BIG  # still listed, as last heard
        assert hosts["chatty"].state == "online"
        assert summary["hosts"] == 1
        assert summary["strings"] == {"arch": {"arm64": 1}}
        assert summary["numeric"]["vcpus"]["sum"] == SMALL["vcpus"]
        assert await _names(admin, state="offline") == ["quiet"]
        assert (await admin.get_host("quiet")).state == "offline"
        # It comes back with its next beat.
        await admin.heartbeat("quiet", capabilities={"arch": "x86_64"}, resources=BIG)
        assert (await admin.get_host("quiet")).state == "online"
        assert (await admin.zone()).summary["hosts"] == 2


# -- disable / enable -------------------------------------------------------------


def _restarting(tmp_path: Path, database_url: str) -> Settings:
    """A zone whose registry hears only its own beats: a restarted process would learn
    the last one's hosts from the shared beats (sharing.py) in its first second, and
    these tests ask what it knows before it hears a host itself, however slow the
    machine."""
    return zone_settings(tmp_path, database_url, host_share_interval=3600.0)


async def test_disable_is_kept_across_restarts_until_enabled(
    tmp_path: Path, database_url: str
) -> None:
    settings = _restarting(tmp_path, database_url)
    beats = [
        {"name": "h1", "capabilities": {"arch": "x86_64"}, "resources": BIG},
        {"name": "h2", "capabilities": {"arch": "arm64"}, "resources": SMALL},
    ]
    async with (
        InProcessZone(settings) as zone,
        zone.client() as admin,
        zone.client("agent", AGENT_PASSWORD) as svc,
    ):
        await svc.heartbeat_batch(beats)
        disabled = await admin.disable_host("h1", reason="bad DIMM")
        assert (disabled.disabled, disabled.disabled_reason) == (True, "bad DIMM")
        assert disabled.state == "online"
        listed = {h.name: h for h in (await admin.list_hosts()).hosts}
        assert listed["h1"].disabled is True and listed["h2"].disabled is False

        summary = (await admin.zone()).summary
        assert (summary["hosts"], summary["disabled"]) == (2, 1)
        assert summary["strings"] == {"arch": {"arm64": 1}}  # h1 adds no capacity
        assert summary["numeric"]["vcpus"] == {"min": 4, "max": 4, "sum": 4, "count": 1}
        assert summary["fits"]["m1.large"] == 1
        assert summary["fits"]["m1.xlarge"] == 0

        taken = await svc.heartbeat_batch(beats)
        assert taken.model_dump() == {"accepted": 2, "disabled": ["h1"]}
        assert (await admin.get_host("h1")).disabled is True  # a beat does not clear it
        assert await _disabled_rows(zone) == ["h1"]

    # A new process on the same database: the registry starts empty, the disable is kept.
    async with (
        InProcessZone(settings) as zone,
        zone.client() as admin,
        zone.client("agent", AGENT_PASSWORD) as svc,
    ):
        assert (await admin.list_hosts()).hosts == []
        beat = await svc.heartbeat("h1", capabilities={"arch": "x86_64"}, resources=BIG)
        assert (beat.disabled, beat.disabled_reason) == (True, "bad DIMM")
        summary = (await admin.zone()).summary
        assert (summary["hosts"], summary["disabled"]) == (1, 1)
        assert summary["numeric"] == {}
        assert set(summary["fits"].values()) == {0}
        taken = await svc.heartbeat_batch(beats[:1])
        assert taken.model_dump() == {"accepted": 1, "disabled": ["h1"]}

        enabled = await admin.enable_host("h1")
        assert (enabled.disabled, enabled.disabled_reason) == (False, "")
        summary = (await admin.zone()).summary
        assert (summary["hosts"], summary["disabled"]) == (1, 0)
        assert summary["numeric"]["vcpus"]["sum"] == BIG["vcpus"]
        assert summary["fits"]["m1.xlarge"] == 1 and summary["fits"]["m1.large"] == 2
        taken = await svc.heartbeat_batch(beats[:1])
        assert taken.model_dump() == {"accepted": 1, "disabled": []}
        assert await _disabled_rows(zone) == []

    async with InProcessZone(settings) as zone, zone.client() as admin:
        assert (await admin.heartbeat("h1")).disabled is False  # the enable was kept too


async def test_a_host_known_only_by_its_disable_can_be_changed(
    tmp_path: Path, database_url: str
) -> None:
    settings = _restarting(tmp_path, database_url)
    async with InProcessZone(settings) as zone, zone.client() as admin:
        await admin.heartbeat("h1")
        await admin.disable_host("h1", reason="bad DIMM")
    async with InProcessZone(settings) as zone, zone.client() as admin:
        # Not heard from since the restart: not listed, but its disable can be changed.
        with pytest.raises(SkyfedError) as exc:
            await admin.get_host("h1")
        assert (exc.value.status, exc.value.code) == (404, "not_found")
        again = await admin.disable_host("h1", reason="still bad")
        assert again.state == "offline" and again.last_seen is None
        assert (again.disabled, again.disabled_reason) == (True, "still bad")
        beat = await admin.heartbeat("h1")
        assert (beat.disabled, beat.disabled_reason) == (True, "still bad")
    async with InProcessZone(settings) as zone, zone.client() as admin:
        beat = await admin.heartbeat("h1")
        assert (beat.disabled, beat.disabled_reason) == (True, "still bad")  # stored


async def test_disable_or_enable_of_an_unknown_host_is_404(zone: InProcessZone, admin) -> None:
    await admin.heartbeat("h1")
    for call in (admin.disable_host("ghost", reason="x"), admin.enable_host("ghost")):
        with pytest.raises(SkyfedError) as exc:
            await call
        assert (exc.value.status, exc.value.code) == (404, "not_found")
    assert await _disabled_rows(zone) == []
    assert await _names(admin) == ["h1"]
    # Nothing was recorded for later either: the ghost's first beat finds it enabled.
    assert (await admin.heartbeat("ghost")).disabled is False
    assert (await admin.zone()).summary["disabled"] == 0


# -- paging and filters -----------------------------------------------------------


async def test_paging_returns_every_host_exactly_once(zone: InProcessZone, admin) -> None:
    names = [f"h{i:03d}" for i in range(25)] + ["A-1", "z.9", "m_5"]
    await admin.heartbeat_batch([{"name": n} for n in names])
    for limit in (1, 5, 7, 27, 28, 1000):
        seen: list[str] = []
        pages = 0
        marker = None
        while True:
            page = await admin.list_hosts(limit=limit, marker=marker)
            pages += 1
            assert 0 < len(page.hosts) <= limit
            seen.extend(h.name for h in page.hosts)
            marker = page.next_marker
            if marker is None:
                break
            assert marker == seen[-1]
        assert seen == sorted(names), limit
        assert pages == -(-len(names) // limit), limit  # no empty last page
    after = await admin.list_hosts(marker="h020", limit=3)
    assert [h.name for h in after.hosts] == ["h021", "h022", "h023"]
    assert after.next_marker == "h023"


async def test_state_filter_with_paging(
    zone: InProcessZone, admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(zone.process.compute.hosts, "clock", lambda: now[0])
    old = [f"old{i}" for i in range(7)]
    new = [f"new{i}" for i in range(6)]
    await admin.heartbeat_batch([{"name": n} for n in old])
    now[0] += zone.settings.host_ttl + 1
    await admin.heartbeat_batch([{"name": n} for n in new])

    async def pages(state: str | None) -> list[str]:
        seen: list[str] = []
        marker = None
        while True:
            page = await admin.list_hosts(state=state, limit=4, marker=marker)
            assert page.hosts or marker is None
            if state is not None:
                assert {h.state for h in page.hosts} <= {state}
            seen.extend(h.name for h in page.hosts)
            marker = page.next_marker
            if marker is None:
                return seen

    assert await pages("online") == sorted(new)
    assert await pages("offline") == sorted(old)
    assert await pages(None) == sorted(old + new)


# -- bad input ----------------------------------------------------------------------


def _beat_body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


BAD_BEATS: list[tuple[str, bytes]] = [
    ("bool capability", _beat_body(capabilities={"gpu": True})),
    ("nested capability", _beat_body(capabilities={"gpu": {"model": "a100"}})),
    ("list capability", _beat_body(capabilities={"zones": ["a", "b"]})),
    ("null capability", _beat_body(capabilities={"gpu": None})),
    ("reserved vcpus", _beat_body(capabilities={"vcpus": 4})),
    ("reserved free_ram_mb", _beat_body(capabilities={"free_ram_mb": 1})),
    ("key too long", _beat_body(capabilities={"k" * 65: "v"})),
    ("key with a space", _beat_body(capabilities={"bad key": "v"})),
    ("key with a bang", _beat_body(capabilities={"bad!": "v"})),
    ("empty key", _beat_body(capabilities={"": "v"})),
    ("value too long", _beat_body(capabilities={"note": "x" * 256})),
    ("too many capabilities", _beat_body(capabilities={f"k{i}": i for i in range(129)})),
    ("NaN", b'{"capabilities": {"speed": NaN}}'),
    ("Infinity", b'{"capabilities": {"speed": Infinity}}'),
    ("int too big for a float", b'{"capabilities": {"speed": 1' + b"0" * 400 + b"}}"),
    ("capabilities not an object", _beat_body(capabilities=["arch"])),
    ("negative vcpus", _beat_body(resources={"vcpus": -1})),
    ("negative used ram", _beat_body(used={"ram_mb": -5})),
    ("vcpus as a string", _beat_body(resources={"vcpus": "4"})),
    ("vcpus as a float", _beat_body(resources={"vcpus": 4.5})),
    ("vcpus as a bool", _beat_body(resources={"vcpus": True})),
    ("vcpus too many", _beat_body(resources={"vcpus": 1_000_001})),
    ("resources not an object", _beat_body(resources=8)),
    ("unknown field", _beat_body(capabilities={}, colour="blue")),
    ("unknown resource", _beat_body(resources={"gpus": 1})),
    ("a list, not an object", b"[]"),
    ("a string, not an object", b'"beat"'),
]


def _batch(*hosts: Any, **fields: Any) -> bytes:
    return json.dumps({"hosts": list(hosts), **fields}).encode()


BAD_BATCHES: list[tuple[str, bytes]] = [
    ("one bad among good", _batch({"name": "h2"}, {"name": "h3", "capabilities": {"vcpus": 1}})),
    ("name too long", _batch({"name": "n" * 64})),
    ("name with a space", _batch({"name": "bad name"})),
    ("name with a slash", _batch({"name": "a/b"})),
    ("name starting with a dot", _batch({"name": ".hidden"})),
    ("empty name", _batch({"name": ""})),
    ("no name", _batch({"capabilities": {}})),
    ("name not a string", _batch({"name": 7})),
    ("negative resources", _batch({"name": "h2", "resources": {"disk_gb": -1}})),
    ("bad capability", _batch({"name": "h2", "capabilities": {"ok": True}})),
    ("hosts not a list", json.dumps({"hosts": {"name": "h2"}}).encode()),
    ("no hosts", b"{}"),
    ("unknown field", _batch(agent="x")),
]

BAD_NAMES = ["n" * 64, "bad%20name", "bad!", "-leading", ".hidden", "caf%C3%A9", "%00"]


async def test_bad_input_is_4xx_with_the_error_shape_and_changes_nothing(
    zone: InProcessZone, admin
) -> None:
    await admin.heartbeat("h1", capabilities={"arch": "x86_64"}, resources=BIG, used=BIG_USED)
    before = await admin.list_hosts()
    summary_before = (await admin.zone()).summary
    headers = await _auth(admin)
    async with zone.raw() as http:
        for what, body in BAD_BEATS:
            for name in ("h1", "h2"):
                response = await http.put(f"/v1/hosts/{name}", content=body, headers=headers)
                assert _error(response, 422)["code"] == "validation_error", (what, response.text)
        for what, body in BAD_BATCHES:
            response = await http.put("/v1/hosts", content=body, headers=headers)
            assert _error(response, 422)["code"] == "validation_error", (what, response.text)
        for name in BAD_NAMES:
            response = await http.put(f"/v1/hosts/{name}", content=b"{}", headers=headers)
            assert _error(response, 422)["code"] == "validation_error", response.text
            for action in ("disable", "enable"):
                response = await http.post(f"/v1/hosts/{name}/{action}", headers=headers)
                assert _error(response, 422)["code"] == "validation_error", response.text
        for path in ("/v1/hosts/h2", "/v1/hosts", "/v1/hosts/h1/disable"):
            method = "POST" if path.endswith("disable") else "PUT"
            for body in (b"{not json", b'{"capabilities": {', b"\xff\xfe"):
                response = await http.request(method, path, content=body, headers=headers)
                assert _error(response, 400)["code"] == "malformed_json", (path, body)
        for body in (b'{"reason": "' + b"r" * 256 + b'"}', b'{"reason": 5}', b'{"why": "x"}'):
            response = await http.post("/v1/hosts/h1/disable", content=body, headers=headers)
            assert _error(response, 422)["code"] == "validation_error", response.text
        for query in ("limit=0", "limit=10001", "limit=ten", "state=gone", "marker=bad%20marker"):
            response = await http.get(f"/v1/hosts?{query}", headers=headers)
            assert _error(response, 422)["code"] == "validation_error", response.text
    assert await admin.list_hosts() == before  # not even last_seen moved
    assert (await admin.zone()).summary == summary_before
    assert await _disabled_rows(zone) == []


async def test_a_batch_holds_at_most_5000_hosts(zone: InProcessZone, admin) -> None:
    too_many = [{"name": f"h{i:05d}"} for i in range(5001)]
    async with zone.raw() as http:
        response = await http.put(
            "/v1/hosts", content=json.dumps({"hosts": too_many}), headers=await _auth(admin)
        )
    assert "5000" in _error(response, 422)["message"]
    assert await _names(admin) == []
    taken = await admin.heartbeat_batch(too_many[:5000])
    assert taken.model_dump() == {"accepted": 5000, "disabled": []}
    assert (await admin.zone()).summary["hosts"] == 5000
