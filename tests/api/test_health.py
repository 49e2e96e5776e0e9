"""Liveness, readiness, the OpenAPI document, request ids, and 503 when the database is gone."""

from __future__ import annotations

from skyfed.db.engine import Database
from tests.conftest import InProcessZone


async def test_health_ready_and_openapi(zone: InProcessZone) -> None:
    async with zone.raw() as http:
        assert (await http.get("/healthz")).json()["status"] == "ok"
        assert (await http.get("/readyz")).json()["status"] == "ready"
        spec = (await http.get("/openapi.json")).json()
    for path in (
        "/v1/zone",
        "/v1/zones",
        "/v1/zones/{ref}/detail",
        "/v1/hosts/{name}",
        "/v1/auth/tokens",
    ):
        assert path in spec["paths"]


async def test_request_id_is_echoed_or_made(zone: InProcessZone) -> None:
    async with zone.raw() as http:
        given = await http.get("/healthz", headers={"X-Request-Id": "trace-123"})
        made = await http.get("/healthz")
        hostile = await http.get("/healthz", headers={"X-Request-Id": "bad id\twith spaces"})
    assert given.headers["x-request-id"] == "trace-123"
    assert made.headers["x-request-id"].startswith("req-")
    assert hostile.headers["x-request-id"].startswith("req-")


async def test_database_gone_gives_503_with_the_error_shape(zone: InProcessZone, admin) -> None:
    await admin.whoami()  # token resolved and cached while the database is up
    live = zone.process.core.db
    # A database nobody listens on: every query fails to connect.
    zone.process.core.db = Database("postgresql+asyncpg://postgres@127.0.0.1:1/gone")
    try:
        async with zone.raw() as http:
            ready = await http.get("/readyz")
            assert (await http.get("/healthz")).status_code == 200
            listing = await http.get(
                "/v1/zones", headers={"Authorization": f"Bearer {admin.token}"}
            )
    finally:
        await zone.process.core.db.dispose()
        zone.process.core.db = live
    assert ready.status_code == 503
    assert ready.json()["error"]["code"] == "database_unavailable"
    assert listing.status_code == 503
    assert listing.json()["error"]["code"] == "database_unavailable"
    assert (await admin.list_zones()) == []  # and it works again once the database is back


async def test_unknown_route_and_method_use_the_error_shape(zone: InProcessZone) -> None:
    async with zone.raw() as http:
        missing = await http.get("/v2/nothing")
        wrong_method = await http.patch("/healthz")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"


async def test_an_unexpected_error_is_a_500_with_the_shape_and_request_id(
    zone: InProcessZone, caplog
) -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    zone.app.add_api_route("/test-broken", broken)
    with caplog.at_level("ERROR"):
        async with zone.raw() as http:
            response = await http.get("/test-broken", headers={"X-Request-Id": "trace-500"})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "boom" not in response.text
    assert response.headers["x-request-id"] == "trace-500"
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1, [r.getMessage() for r in errors]
