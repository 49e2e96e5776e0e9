"""Many fake child zones behind one loopback port, for `skyfed bench summary`.

    python -m skyfed.bench.fake_children --port P --children C [--hosts-per-child H]
                                         [--latency-ms MS]

Child `cNN` answers under the path prefix `/cNN` the two routes a parent's
poller calls, shaped like the real API: `POST /cNN/v1/auth/tokens` (a bearer
token and a user with the service role) and `GET /cNN/v1/zone` (id, name,
capabilities, a real summary of H simulated hosts, children, generated_at).
Each child's summary is built once at start through the real HostRegistry, so
the parent receives what a zone of that size would send. `--latency-ms` delays
every answer, as a child across a WAN would. The process exits on
SIGTERM, when its parent process goes, or after `--max-seconds`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from skyfed.bench.sim_hosts import fill_registry, new_registry, zone_hosts
from skyfed.compute.hosts.registry import HostRegistry
from skyfed.compute.hosts.section import HostsSection
from skyfed.settings import DEFAULT_FLAVORS
from skyfed.zones.report import ZoneReport
from skyfed.zones.summary import Summary

SERVICE_USERNAME = "skyfed-service"
SERVICE_PASSWORD = "bench-service-password"  # a throwaway account of throwaway fake zones
TOKEN_TTL = timedelta(hours=12)
_ID_NAMESPACE = uuid.UUID("5c1fed00-0000-4000-8000-0000000000b1")


def child_names(count: int) -> list[str]:
    width = max(2, len(str(count - 1)))
    return [f"c{i:0{width}d}" for i in range(count)]


def child_id(name: str) -> str:
    """The id a fake child keeps for life (a parent checks it does not change)."""
    return str(uuid.uuid5(_ID_NAMESPACE, name))


def _error(status: int, code: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def build_app(reports: dict[str, dict[str, Any]], latency: float = 0.0) -> Starlette:
    tokens: dict[str, str] = {}  # token -> child name
    started = datetime.now(UTC).isoformat()

    async def login(request: Request) -> JSONResponse:
        if latency:
            await asyncio.sleep(latency)
        child = request.path_params["child"]
        if child not in reports:
            return _error(404, "not_found", f"no child zone {child!r} here")
        try:
            body = await request.json()
        except ValueError:
            return _error(422, "validation_error", "body is not JSON")
        if not isinstance(body, dict):
            return _error(422, "validation_error", "body is not an object")
        if body.get("username") != SERVICE_USERNAME or body.get("password") != SERVICE_PASSWORD:
            return _error(401, "invalid_credentials", "invalid username or password")
        token = secrets.token_urlsafe(32)
        tokens[token] = child
        return JSONResponse(
            {
                "token": token,
                "expires_at": (datetime.now(UTC) + TOKEN_TTL).isoformat(),
                "user": {
                    "id": str(uuid.uuid5(_ID_NAMESPACE, f"{child}/{SERVICE_USERNAME}")),
                    "name": SERVICE_USERNAME,
                    "project_id": str(uuid.uuid5(_ID_NAMESPACE, f"{child}/service")),
                    "roles": ["service"],
                    "enabled": True,
                    "created_at": started,
                },
            },
            status_code=201,
        )

    async def zone(request: Request) -> JSONResponse:
        if latency:
            await asyncio.sleep(latency)
        child = request.path_params["child"]
        report = reports.get(child)
        if report is None:
            return _error(404, "not_found", f"no child zone {child!r} here")
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or tokens.get(token) != child:
            return _error(401, "invalid_token", "token is invalid or expired")
        return JSONResponse({**report, "generated_at": datetime.now(UTC).isoformat()})

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "children": len(reports)})

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/{child}/v1/auth/tokens", login, methods=["POST"]),
            Route("/{child}/v1/zone", zone),
        ]
    )


def _local_summary(registry: HostRegistry) -> Summary:
    """What a zone holding `registry`'s hosts reports of itself."""
    summary = HostsSection(registry, DEFAULT_FLAVORS).summary()
    summary.zones = 1
    return summary


def build_reports(count: int, hosts_per_child: int) -> dict[str, dict[str, Any]]:
    reports = {}
    for i, name in enumerate(child_names(count)):
        registry = new_registry()
        fill_registry(registry, zone_hosts(hosts_per_child, prefix=name, seed=i))
        reports[name] = ZoneReport(
            child_id(name),
            name,
            {"region": "bench", "dc": name},
            _local_summary(registry),
        ).to_dict()
    return reports


async def _watchdog(server: uvicorn.Server, parent: int, max_seconds: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_seconds
    while not server.should_exit:
        if os.getppid() != parent or loop.time() > deadline:
            server.should_exit = True
            return
        await asyncio.sleep(0.5)


async def serve(
    port: int, reports: dict[str, dict[str, Any]], max_seconds: float, latency: float = 0.0
) -> None:
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(reports, latency),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
    )
    watchdog = asyncio.create_task(_watchdog(server, os.getppid(), max_seconds))
    try:
        await server.serve()
    finally:
        watchdog.cancel()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--children", type=int, default=100)
    parser.add_argument("--hosts-per-child", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    args = parser.parse_args(argv)
    if not 1 <= args.children <= 10_000 or not 0 <= args.hosts_per_child <= 100_000:
        parser.error("--children must be 1..10000 and --hosts-per-child 0..100000")
    if not 0 <= args.latency_ms <= 500:
        parser.error("--latency-ms must be 0..500")
    reports = build_reports(args.children, args.hosts_per_child)
    asyncio.run(serve(args.port, reports, args.max_seconds, args.latency_ms / 1000))


if __name__ == "__main__":
    main()
