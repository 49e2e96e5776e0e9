"""GET /metrics: who may read it, that Prometheus' parser reads it, and that its figures
move by exactly what known requests did (docs/observability.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from skyfed.client import SkyfedClient, SkyfedError
from tests.conftest import (
    AGENT_PASSWORD,
    SERVICE_PASSWORD,
    InProcessZone,
    ServedZone,
    zone_settings,
)
from tests.fakes import ScriptedAgent
from tests.scrapes import Samples, value
from tests.scrapes import samples as parsed
from tests.waiting import eventually


def figure(scrape: Samples, name: str, **labels: str) -> float:
    """A sample's value, 0 when the scrape has no such series."""
    return value(scrape, name, **labels) or 0.0


async def scrape(client: SkyfedClient) -> Samples:
    return parsed(await client.metrics())


async def test_only_admins_and_service_accounts_read_metrics(zone: InProcessZone, admin) -> None:
    await admin.create_project("p1")
    await admin.create_user("mia", "member-password-1", "p1", ["member"])
    async with zone.client("mia", "member-password-1") as member:
        with pytest.raises(SkyfedError) as caught:
            await member.metrics()
        assert (caught.value.status, caught.value.code) == (403, "forbidden")
    async with zone.raw() as raw:
        anonymous = await raw.get("/metrics")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"]
    async with zone.client("agent", AGENT_PASSWORD) as agent:  # an agent's account: no
        with pytest.raises(SkyfedError) as caught:
            await agent.metrics()
        assert caught.value.status == 403
    async with zone.raw() as raw:  # the content type Prometheus negotiates
        token = admin.token
        answer = await raw.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    async with zone.client("svc", SERVICE_PASSWORD) as scraper:
        samples = await scrape(scraper)
    assert figure(samples, "skyfed_summary_zones") == 1
    [info] = [labels for name, labels in samples if name == "skyfed_process_info"]
    assert {"zone": "test-zone", "role": "api"}.items() <= dict(info).items()
    samples = await scrape(admin)
    # The member's refusal was counted under the route's template, not its path.
    assert (
        figure(samples, "skyfed_http_requests_total", route="/metrics", method="GET", status="403")
        == 2
    )


async def test_http_counters_move_by_the_requests_made(zone: InProcessZone, admin) -> None:
    before = await scrape(admin)
    for _ in range(3):
        await admin.zone()
    for _ in range(2):
        with pytest.raises(SkyfedError):
            await admin.get_server("00000000-0000-0000-0000-000000000000")
    async with zone.raw() as raw:
        assert (await raw.get("/no/such/path/12345")).status_code == 404
    after = await scrape(admin)

    def moved(name: str, **labels: str) -> float:
        return figure(after, name, **labels) - figure(before, name, **labels)

    assert moved("skyfed_http_requests_total", route="/v1/zone", method="GET", status="200") == 3
    server_route = "/v1/servers/{server_id}"
    assert moved("skyfed_http_requests_total", route=server_route, method="GET", status="404") == 2
    assert moved("skyfed_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert moved("skyfed_http_request_duration_seconds_count", route="/v1/zone", method="GET") == 3
    # No label holds a raw path or an id.
    for name, labels in after:
        for key, label in labels:
            assert "12345" not in label and "00000000" not in label, (name, key, label)


async def test_placements_and_summary_figures(tmp_path: Path, database_url: str) -> None:
    async with (
        InProcessZone(zone_settings(tmp_path, database_url)) as zone,
        zone.client() as admin,
        zone.client("agent", AGENT_PASSWORD) as agent_client,
    ):
        agent = ScriptedAgent(agent_client)
        await agent.beat({"h1": {"vcpus": 4, "ram_mb": 8192, "disk_gb": 100}}, arch="x86_64")
        before = await scrape(admin)
        assert figure(before, "skyfed_summary_hosts") == 1
        # 4 vCPUs and 8 GiB: four m1.tiny would need 2 GiB; eight fit by RAM, four by CPU.
        assert figure(before, "skyfed_summary_free_units", flavor="m1.tiny") == 4
        assert figure(before, "skyfed_summary_free_units", flavor="m1.large") == 1
        accepted = await admin.create_servers("web", flavor="m1.large", count=1)
        await agent.answer_all(wait=5.0)

        async def placed() -> Samples | None:
            samples = await scrape(admin)
            ok = figure(samples, "skyfed_placements_total", outcome="host") == 1
            return samples if ok else None

        after = await eventually(placed, 20, "the placement counted")
        assert figure(after, "skyfed_placement_decisions_total", outcome="host") == 1
        assert figure(after, "skyfed_placement_decision_duration_seconds_count") == 1

        async def full() -> bool:  # the summary is rebuilt at most every summary_max_age
            samples = await scrape(admin)
            return figure(samples, "skyfed_summary_free_units", flavor="m1.large") == 0

        await eventually(full, 10, "the host's room taken in the summary")
        # A second large server does not fit: the decision says none, the placement failed.
        await admin.create_servers("web2", flavor="m1.large", count=1)

        async def failed() -> Samples | None:
            samples = await scrape(admin)
            return samples if figure(samples, "skyfed_placements_total", outcome="failed") else None

        after = await eventually(failed, 20, "the failed placement counted")
        assert figure(after, "skyfed_placement_decisions_total", outcome="none") == 1
        assert figure(after, "skyfed_placements_total", outcome="host") == 1
        assert accepted


async def test_child_state_polls_and_link_calls(
    zone: InProcessZone, admin, child_zone: ServedZone
) -> None:
    await admin.add_zone("kid", child_zone.url, "svc", SERVICE_PASSWORD)
    poller = zone.process.tree.poller
    for _ in range(2):
        await poller.cycle()
    samples = await scrape(admin)
    assert figure(samples, "skyfed_child_zone_state", child="kid", state="active") == 1
    assert figure(samples, "skyfed_child_zone_state", child="kid", state="offline") == 0
    assert figure(samples, "skyfed_child_zone_consecutive_failures", child="kid") == 0
    assert figure(samples, "skyfed_child_zone_polls_total", child="kid", outcome="ok") == 2
    assert figure(samples, "skyfed_child_zone_poll_duration_seconds_count", child="kid") == 2
    calls = figure(samples, "skyfed_link_calls_total", child="kid", transport="http", outcome="ok")
    assert calls >= 2  # the polls, and the login's retry if the token was new
    assert figure(samples, "skyfed_summary_zones") == 2

    await child_zone.__aexit__(None, None, None)  # the child goes away
    failures = zone.process.core.settings.poll_failures
    for _ in range(failures):
        await poller.cycle()
    samples = await scrape(admin)
    assert figure(samples, "skyfed_child_zone_state", child="kid", state="offline") == 1
    assert figure(samples, "skyfed_child_zone_state", child="kid", state="active") == 0
    assert figure(samples, "skyfed_child_zone_consecutive_failures", child="kid") == failures
    assert (
        figure(samples, "skyfed_child_zone_polls_total", child="kid", outcome="failed") == failures
    )
    assert (
        figure(
            samples, "skyfed_link_calls_total", child="kid", transport="http", outcome="unreachable"
        )
        == failures
    )
    assert figure(samples, "skyfed_summary_unreachable_zones") == 1

    await admin.delete_zone("kid", force=True)  # its series go with it
    samples = await scrape(admin)
    assert not [key for key in samples if ("child", "kid") in key[1]]


async def test_metrics_port_serves_without_a_token(tmp_path: Path) -> None:
    settings = zone_settings(tmp_path, None, metrics_port=0)
    async with InProcessZone(settings) as zone, zone.client() as admin:
        port = zone.process.metrics_port
        assert port
        await admin.zone()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            answer = await http.get("/metrics")
            assert answer.status_code == 200
            samples = parsed(answer.text)
            assert (
                figure(
                    samples,
                    "skyfed_http_requests_total",
                    route="/v1/zone",
                    method="GET",
                    status="200",
                )
                == 1
            )
            assert (await http.get("/v1/zone")).status_code == 404
            assert (await http.post("/metrics", content=b"x")).status_code == 405
        # A request that never ends its head is dropped, not held forever.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\n" + b"X: " + b"a" * 20000)
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
