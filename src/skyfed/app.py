"""Composition root: builds a zone (its runtime objects and its FastAPI app) from Settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed import __version__, error_handlers
from skyfed.compute import allocations
from skyfed.compute.agent_accounts.api import router as agent_accounts_router
from skyfed.compute.agent_accounts.book import GrantBook
from skyfed.compute.agent_accounts.service import AgentAccounts
from skyfed.compute.agent_api import router as agents_router
from skyfed.compute.api import router as compute_router
from skyfed.compute.cancels import Cancels
from skyfed.compute.command_wakeups import CommandWakeups
from skyfed.compute.context import ComputeContext
from skyfed.compute.handlers import ServerHandlers
from skyfed.compute.hosts import service as host_service
from skyfed.compute.hosts.api import router as hosts_router
from skyfed.compute.hosts.registry import HostRegistry
from skyfed.compute.hosts.sharing import HostSharing
from skyfed.compute.models import Flavor
from skyfed.compute.placement import Placer
from skyfed.db.engine import Database
from skyfed.db.migrate import upgrade
from skyfed.errors import error_body
from skyfed.identity.api import router as identity_router
from skyfed.identity.link_keys import LinkKeys
from skyfed.identity.login_limits import LoginLimiter
from skyfed.identity.passwords import PasswordHashing
from skyfed.identity.principal import ADMIN, SERVICE
from skyfed.identity.revocations import RevocationFeed
from skyfed.identity.secret_files import read_or_create
from skyfed.identity.service import ADMIN_PROJECT, SERVICE_PROJECT, TokenCache
from skyfed.identity.vault import Vault
from skyfed.middleware import RequestContext
from skyfed.runtime import Runtime, RuntimeDep
from skyfed.settings import FlavorSpec, Settings
from skyfed.tasks.api import router as tasks_router
from skyfed.tasks.store import TaskStore
from skyfed.tasks.wakeups import BusWakeups
from skyfed.tasks.worker import Worker
from skyfed.transport.amqp_server import ZoneQueueServer
from skyfed.transport.names import AGENTS_EXCHANGE, agent_queue_for, queue_for
from skyfed.transport.queue_policy import AGENT_CALLS
from skyfed.zones.api import router as zones_router
from skyfed.zones.links import ChildLinks
from skyfed.zones.models import ZoneIdentity
from skyfed.zones.poller import Poller
from skyfed.zones.view import ZoneView

log = logging.getLogger(__name__)


def build_runtime(settings: Settings) -> Runtime:
    # The state directory holds the database, the vault's key and the admin password:
    # its owner's alone.
    settings.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    settings.state_dir.chmod(0o700)
    db = Database(settings.effective_database_url)
    if settings.secret_key is not None:
        vault = Vault.from_secret(settings.secret_key.get_secret_value())
    else:
        vault = Vault.from_key_file(settings.state_dir / "secret.key")
    hosts = HostRegistry(settings.host_ttl, settings.host_forget_after)
    view = ZoneView(hosts, settings.flavors, settings.summary_max_age)
    links = ChildLinks(
        vault,
        settings.poll_timeout,
        origin=settings.name,
        max_answer_bytes=settings.max_child_answer_bytes,
    )
    poller = Poller(
        db,
        links,
        view,
        interval=settings.poll_interval,
        timeout=settings.poll_timeout,
        failures=settings.poll_failures,
        concurrency=settings.poll_concurrency,
    )
    tasks = TaskStore(db, max_attempts=settings.task_max_attempts)
    compute = ComputeContext(
        settings=settings, db=db, view=view, hosts=hosts, links=links, tasks=tasks
    )
    placer = Placer(compute)
    handlers = ServerHandlers(compute)
    # On the store, not the worker: a process without workers still cancels, and retries.
    Cancels(compute).register(tasks)
    tasks.on_retry["place"] = placer.retried
    worker = None
    if settings.workers > 0:
        worker = Worker(
            tasks,
            handlers.kinds(placer.run, placer.give_up),
            concurrency=settings.workers,
            lease=settings.task_lease,
            poll_interval=settings.task_poll_interval,
            sweep_interval=settings.task_sweep_interval,
        )
    tokens = TokenCache()
    return Runtime(
        settings=settings,
        db=db,
        vault=vault,
        tokens=tokens,
        hosts=hosts,
        view=view,
        links=links,
        poller=poller,
        tasks=tasks,
        compute=compute,
        placer=placer,
        server_handlers=handlers,
        sharing=HostSharing(db, hosts),
        link_keys=LinkKeys(db, vault),
        passwords=PasswordHashing(
            time_cost=settings.password_hash_time_cost,
            memory_kib=settings.password_hash_memory_kib,
        ),
        logins=LoginLimiter(
            per_user=settings.login_max_failures_per_user,
            per_source=settings.login_max_failures_per_source,
            window=settings.login_failure_window,
        ),
        revocations=RevocationFeed(db, tokens),
        grants=GrantBook(db),
        worker=worker,
    )


def admin_password(settings: Settings) -> str:
    """The configured admin password, or one generated once and kept in state_dir (0600)."""
    if settings.admin_password is not None:
        return settings.admin_password.get_secret_value()
    path = settings.state_dir / "admin-password"
    password, created = read_or_create(path, lambda: secrets.token_urlsafe(18))
    if created:
        log.warning("generated the admin password; it is in %s", path)
    return password


async def bootstrap(runtime: Runtime) -> None:
    settings = runtime.settings
    async with runtime.db.session() as session:
        identity = runtime.identity(session)
        await identity.ensure_user(
            settings.admin_username, admin_password(settings), ADMIN_PROJECT, [ADMIN]
        )
        # Where service and agent accounts live, whether or not the settings name any.
        await identity.ensure_project(SERVICE_PROJECT)
        if settings.service_username and settings.service_password:
            await identity.ensure_user(
                settings.service_username,
                settings.service_password.get_secret_value(),
                SERVICE_PROJECT,
                [SERVICE],
            )
        await session.commit()
        # Know the hosts other processes heard from (and who carries them) first.
        await runtime.sharing.share()
        if settings.agent_username and settings.agent_password:
            if not settings.agent_hosts:
                log.warning(
                    "the settings agent carries no host until agent_hosts names some",
                    extra={"agent": settings.agent_username},
                )
            await AgentAccounts(
                session, identity, runtime.hosts, runtime.grants, settings.agent_username
            ).configure(
                settings.agent_username,
                settings.agent_password.get_secret_value(),
                list(settings.agent_hosts),
                settings.agent_max_hosts,
            )
        zone = await session.scalar(select(ZoneIdentity))
        if zone is None:
            zone = ZoneIdentity(name=settings.name)
            session.add(zone)
        zone.name = settings.name
        await session.commit()
        runtime.set_zone_id(zone.id)
        await host_service.load_disabled(session, runtime.hosts)
        await seed_flavors(session, runtime)
        runtime.hosts.set_allocations(await allocations.load(session))


async def seed_flavors(session: AsyncSession, runtime: Runtime) -> None:
    """The configured flavors exist in the database; all of them count in summaries."""
    known = {f.name for f in (await session.scalars(select(Flavor))).all()}
    for spec in runtime.settings.flavors:
        if spec.name not in known:
            session.add(
                Flavor(name=spec.name, vcpus=spec.vcpus, ram_mb=spec.ram_mb, disk_gb=spec.disk_gb)
            )
    await session.commit()
    flavors = (await session.scalars(select(Flavor))).all()
    runtime.compute.set_flavors(
        {
            f.name: FlavorSpec(name=f.name, vcpus=f.vcpus, ram_mb=f.ram_mb, disk_gb=f.disk_gb)
            for f in flavors
        }
    )


async def housekeeping(runtime: Runtime) -> None:
    """Share host beats with the zone's other processes, pick up their disables,
    claims and token revocations, and forget long-gone hosts."""
    interval = min(1.0, runtime.settings.host_ttl / 5)
    rounds = 0
    while True:
        await asyncio.sleep(interval)
        rounds += 1
        try:
            await runtime.sharing.share()
            await runtime.revocations.follow()
            async with runtime.db.session() as session:
                await host_service.load_disabled(session, runtime.hosts)
                mark = runtime.hosts.allocation_changes
                runtime.hosts.set_allocations(await allocations.load(session), read_after=mark)
            if rounds % 60 == 0:
                runtime.hosts.expire()
                await runtime.sharing.forget(runtime.settings.host_forget_after)
                await runtime.revocations.prune()
                async with runtime.db.session() as session:
                    await runtime.logins.prune(session)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("housekeeping failed")


@asynccontextmanager
async def running(runtime: Runtime, *, api: bool) -> AsyncIterator[None]:
    """A zone process's life: migrate, bootstrap, run the background loops, clean up.

    The API process polls children; a worker-only process (`api=False`) reads what
    the poller recorded, and both share host beats and run task workers.
    """
    await upgrade(runtime.db)
    await bootstrap(runtime)
    await runtime.revocations.start()
    await runtime.poller.load()
    background = [
        asyncio.create_task(runtime.poller.run_forever(follow_only=not api), name="poller"),
        asyncio.create_task(housekeeping(runtime), name="housekeeping"),
    ]
    if runtime.worker is not None:
        background.append(asyncio.create_task(runtime.worker.run(), name="worker"))
    if runtime.settings.bus_url.startswith("amqp"):
        wakeups = BusWakeups(runtime.settings.bus_url, runtime.settings.name, runtime.tasks)
        background.append(asyncio.create_task(wakeups.run(), name="task-wakeups"))
        told = CommandWakeups(
            runtime.settings.bus_url, runtime.settings.name, runtime.compute.signals
        )
        background.append(asyncio.create_task(told.run(), name="command-wakeups"))
    log.info("zone ready", extra={"zone_id": runtime.zone_id, "api": api})
    try:
        yield
    finally:
        for task in background:
            task.cancel()
        for task in background:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # it failed earlier; the rest must still be closed
                log.exception("background task failed", extra={"task": task.get_name()})
        await runtime.poller.close()
        await runtime.links.close()
        await runtime.db.dispose()


def create_app(settings: Settings) -> FastAPI:
    runtime = build_runtime(settings)

    bus: list[ZoneQueueServer] = []

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with running(runtime, api=True):
            connecting: list[asyncio.Task[None]] = []
            if settings.bus_url.startswith("amqp"):
                # Parents linked over AMQP call this zone through its queue, host agents
                # through theirs; each call signed by an account of this zone.
                accounts = runtime.link_keys.account
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
    app.state.runtime = runtime
    app.state.bus = bus  # its queue servers (their stats), once the zone runs
    error_handlers.install(app)
    app.add_middleware(RequestContext, max_body=settings.max_body_bytes)
    app.include_router(identity_router)
    app.include_router(compute_router)  # before zones: /v1/zones/locate is not a zone id
    app.include_router(zones_router)
    app.include_router(hosts_router)
    app.include_router(agents_router)
    app.include_router(agent_accounts_router)
    app.include_router(tasks_router)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok", "zone": settings.name}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "database unreachable"}})
    async def readyz(rt: RuntimeDep) -> JSONResponse:
        """The zone's database answers (and its bus, when it has one, is being served)."""
        try:
            await rt.db.ping()
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
