"""`otlp_endpoint` exports a zone's spans over OTLP/HTTP to a real collector socket
(the benchmark's in-memory collector, a process of its own), flushed when the zone
stops; without it nothing is sent; `trace_console` prints them."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyfed.bench.e2e import otlp_collector
from tests.conftest import InProcessZone, zone_settings


async def test_a_zone_exports_its_spans_to_the_collector(tmp_path: Path) -> None:
    with otlp_collector() as collector:
        settings = zone_settings(
            tmp_path / "on", None, name="exporting", otlp_endpoint=collector.url
        )
        async with InProcessZone(settings) as zone, zone.client() as admin:
            for _ in range(3):
                await admin.zone()
        # The zone flushed its spans as it stopped; the collector counts them as it stops.
    counts = collector.counts
    assert counts["bad"] == 0
    assert counts["zones"] == ["exporting"]
    assert counts["spans"] >= 4  # the login and three GET /v1/zone, each a server span
    assert counts["traces"] >= 4


async def test_no_endpoint_sends_nothing(tmp_path: Path) -> None:
    with otlp_collector() as collector:
        async with InProcessZone(zone_settings(tmp_path, None)) as zone, zone.client() as admin:
            await admin.zone()
            assert not zone.process.core.tracing.enabled
    assert collector.counts["spans"] == 0


async def test_trace_console_prints_each_span(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = zone_settings(tmp_path, None, name="printing", trace_console=True)
    async with InProcessZone(settings) as zone, zone.client() as admin:
        await admin.zone()
    printed = capsys.readouterr().out
    assert '"name": "GET /v1/zone"' in printed
    assert '"skyfed.zone": "printing"' in printed


def test_an_endpoint_must_be_a_url(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="otlp_endpoint"):
        zone_settings(tmp_path, None, otlp_endpoint="collector:4318")
