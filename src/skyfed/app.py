"""Composition root: builds a zone process from Settings by composing its features.

Each feature package declares what it adds in its `feature.py` (skyfed/features.py);
this module builds them on the zone's core, in dependency order, and wires their
declarations together: task kinds onto the task store, summary sections into the
zone's view, forgetting a removed child into the zones feature, routers into the
app, and their lives into the process's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from skyfed import __version__, error_handlers
from skyfed.compute import feature as compute
from skyfed.compute.parts import ComputeParts
from skyfed.core import Core, CoreDep
from skyfed.db.migrate import upgrade
from skyfed.features import Feature
from skyfed.identity import feature as identity
from skyfed.identity.identities import Identities
from skyfed.middleware import HttpMetrics, RequestContext
from skyfed.objects import feature as objects
from skyfed.objects.parts import StorageParts
from skyfed.observability import api as observability
from skyfed.observability.metrics_port import metrics_listener
from skyfed.settings import Settings
from skyfed.tasks import feature as tasks
from skyfed.tasks.engine import TaskEngine
from skyfed.transport.amqp_server import ZoneQueueServer
from skyfed.transport.names import AGENTS_EXCHANGE, agent_queue_for, queue_for
from skyfed.transport.queue_policy import AGENT_CALLS
from skyfed.wire import error_body
from skyfed.zones import feature as zones
from skyfed.zones.tree import ZoneTree

log = logging.getLogger(__name__)


@dataclass
class ZoneProcess:
    """One zone process's features, built and wired (the handles are for the process's
    own plumbing and for tests; routes get what features provide, by type)."""

    core: Core
    identities: Identities
    tree: ZoneTree
    engine: TaskEngine
    compute: ComputeParts
    storage: StorageParts
    features: list[Feature]
    provided: dict[type, object] = field(default_factory=dict)
    metrics_port: int | None = None  # bound, once running with `metrics_port` set


def build_zone(settings: Settings) -> ZoneProcess:
    core = Core.open(settings)
    identities = Identities(core)
    tree = ZoneTree(core)
    engine = TaskEngine(core)
    parts = ComputeParts(core, identities, tree, engine)
    storage = StorageParts(core)
    features = [
        identity.feature(identities),
        compute.feature(parts),  # before zones: its /v1/zones/locate is not a zone's name
        zones.feature(tree),
        objects.feature(storage, identities, engine.store),
        tasks.feature(engine),  # last: its workers run what the others declared
    ]
    zone = ZoneProcess(core, identities, tree, engine, parts, storage, features)
    _wire(zone)
    return zone


def _wire(zone: ZoneProcess) -> None:
    zone.provided[Core] = zone.core
    for feature in zone.features:
        zone.engine.store.register(feature.task_kinds)
        for section in feature.summary_sections:
            zone.tree.view.add_section(section)
        if feature.child_removed is not None:
            zone.tree.child_removed.append(feature.child_removed)
        for thing in feature.provides:
            if type(thing) in zone.provided:
                raise ValueError(f"{type(thing).__name__} provided twice ({feature.name})")
            zone.provided[type(thing)] = thing


@asynccontextmanager
async def running(zone: ZoneProcess, *, api: bool) -> AsyncIterator[None]:
    """A zone process's life: migrate, start each feature in order, stop them in reverse.

    The API process polls children; a worker-only process (`api=False`) reads what
    the poller recorded, and both share host beats and run task workers.
    """
    await upgrade(zone.core.db)
    settings = zone.core.settings
    try:
        async with AsyncExitStack() as stack:
            if settings.metrics_port is not None:
                zone.metrics_port = await stack.enter_async_context(
                    metrics_listener(
                        zone.core.metrics, settings.metrics_host, settings.metrics_port
                    )
                )
            for feature in zone.features:
                if feature.lifespan is not None:
                    await stack.enter_async_context(feature.lifespan(api))
            zone.core.metrics.info(
                "skyfed_process",
                "This process: its zone, role (api or worker) and skyfed's version.",
                {"zone": settings.name, "role": "api" if api else "worker", "version": __version__},
            )
            log.info("zone ready", extra={"zone_id": zone.core.zone_id, "api": api})
            yield
    finally:
        await zone.core.db.dispose()
        zone.core.tracing.flush()


def create_app(settings: Settings) -> FastAPI:
    zone = build_zone(settings)

    bus: list[ZoneQueueServer] = []

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with running(zone, api=True):
            connecting: list[asyncio.Task[None]] = []
            if settings.bus_url.startswith("amqp"):
                # Parents linked over AMQP call this zone through its queue, host agents
                # through theirs; each call signed by an account of this zone.
                accounts = zone.identities.link_keys.account
                bus.append(
                    ZoneQueueServer(
                        app,
                        settings.bus_url,
                        queue_for(settings.name),
                        zone=settings.name,
                        accounts=accounts,
                    )
                )
                bus.append(
                    ZoneQueueServer(
                        app,
                        settings.bus_url,
                        agent_queue_for(settings.name),
                        zone=settings.name,
                        accounts=accounts,
                        policy=AGENT_CALLS,
                        exchange=AGENTS_EXCHANGE,
                    )
                )
                connecting = [asyncio.create_task(b.start(), name="zone-bus") for b in bus]
            try:
                yield
            finally:
                for task in connecting:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                await asyncio.gather(*(server.stop() for server in bus))  # running calls answer

    app = FastAPI(
        title=f"skyfed zone {settings.name}",
        version=__version__,
        lifespan=lifespan,
        description="A skyfed zone: identity, child zones, hosts and their summaries.",
    )
    app.state.zone = zone
    app.state.provided = zone.provided
    app.state.bus = bus  # its queue servers (their stats), once the zone runs
    error_handlers.install(app)
    for feature in zone.features:
        for layer in feature.middleware:
            app.add_middleware(layer.cls, *layer.args, **layer.kwargs)
    app.add_middleware(  # the outermost layer: added last
        RequestContext,
        max_body=settings.max_body_bytes,
        http_metrics=HttpMetrics(zone.core.metrics),
        tracing=zone.core.tracing,
    )
    for feature in zone.features:
        for router in feature.routers:
            app.include_router(router)
    app.include_router(observability.router)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok", "zone": settings.name}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "database unreachable"}})
    async def readyz(core: CoreDep) -> JSONResponse:
        """The zone's database answers (and its bus, when it has one, is being served)."""
        try:
            await core.db.ping()
        except Exception as exc:
            return JSONResponse(
                error_body("database_unavailable", f"database not reachable: {type(exc).__name__}"),
                status_code=503,
            )
        if not all(server.serving for server in bus):
            return JSONResponse(
                error_body("bus_unavailable", "not yet consuming calls from the zone's broker"),
                status_code=503,
            )
        return JSONResponse({"status": "ready", "zone": settings.name})

    return app
