"""Shared fixtures: databases (SQLite and PostgreSQL) and in-process zones."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from skyfed.app import create_app
from skyfed.client import SkyfedClient
from skyfed.settings import Settings

# A zone's settings take SKYFED_* from the environment over what the code gives them, so
# one exported in the shell that runs the tests (SKYFED_PORT, SKYFED_DATABASE_URL...) would
# override what a test sets, here and in every zone process it starts. The tests' own
# variables (SKYFED_TEST_*) stay.
for _name in [
    n for n in os.environ if n.startswith("SKYFED_") and not n.startswith("SKYFED_TEST_")
]:
    del os.environ[_name]

POSTGRES_URL = os.environ.get(
    "SKYFED_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
AMQP_URL = os.environ.get("SKYFED_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
ADMIN_PASSWORD = "admin-password"
SERVICE_PASSWORD = "service-password"
AGENT_PASSWORD = "agent-password"
IN_CI = bool(os.environ.get("CI"))
# Argon2id at its cheapest: test passwords guard nothing, and every zone a test starts
# hashes three of them (tests/unit/test_passwords.py keeps the production cost).
CHEAP_HASHING = {"password_hash_time_cost": 1, "password_hash_memory_kib": 1024}


def _asyncpg_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def _postgres_reachable() -> str | None:
    try:
        conn = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL), timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        return f"PostgreSQL at {POSTGRES_URL} is not reachable: {exc}"
    await conn.close()
    return None


async def _broker_reachable() -> str | None:
    import aio_pika

    try:
        connection = await aio_pika.connect(AMQP_URL, timeout=3)
    except Exception as exc:
        return f"RabbitMQ at {AMQP_URL} is not reachable: {exc}"
    await connection.close()
    return None


async def broker_url() -> str:
    """The test broker's URL; the test fails in CI (skips elsewhere) when it is down."""
    problem = await _broker_reachable()
    if problem:
        if IN_CI:
            pytest.fail(problem)
        pytest.skip(problem)
    return AMQP_URL


@pytest.fixture
async def amqp_url() -> str:
    return await broker_url()


@pytest.fixture
async def postgres_databases() -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """A factory of fresh, empty PostgreSQL databases; all are dropped after the test."""
    problem = await _postgres_reachable()
    if problem:
        if IN_CI:
            pytest.fail(problem)
        pytest.skip(problem)
    made: list[str] = []

    async def make() -> str:
        name = f"skyfed_test_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL))
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        made.append(name)
        return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)

    yield make
    admin = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL))
    try:
        for name in made:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def postgres_database(postgres_databases: Callable[[], Awaitable[str]]) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    return await postgres_databases()


@pytest.fixture(scope="module")
def module_postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database shared by one test module (for costly fixtures)."""
    import asyncio

    problem = asyncio.run(_postgres_reachable())
    if problem:
        if IN_CI:
            pytest.fail(problem)
        pytest.skip(problem)
    name = f"skyfed_test_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each database test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'zone.db'}"
    return str(request.getfixturevalue("postgres_database"))


def zone_settings(tmp_path: Path, database_url: str | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "name": "test-zone",
        "state_dir": tmp_path,
        "database_url": database_url,
        "admin_password": ADMIN_PASSWORD,
        "service_username": "svc",
        "service_password": SERVICE_PASSWORD,
        "agent_username": "agent",
        "agent_password": AGENT_PASSWORD,
        # A catch-all grant, written out: the tests' one agent carries any host name.
        # Tests of grants provision agents of their own (POST /v1/agents).
        "agent_hosts": ["*"],
        "agent_max_hosts": 10_000,
        "allowed_child_hosts": ["127.0.0.1", "localhost"],
        "poll_interval": 3600.0,  # tests poll by hand
        **CHEAP_HASHING,
        **overrides,
    }
    return Settings(**values)


class InProcessZone:
    """A zone app served in-process through httpx's ASGI transport (no sockets)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self._lifespan: Any = None

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime

    async def __aenter__(self) -> InProcessZone:
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._lifespan.__aexit__(None, None, None)

    def client(
        self, username: str | None = "admin", password: str | None = ADMIN_PASSWORD
    ) -> SkyfedClient:
        return SkyfedClient(
            "http://zone.test",
            username=username,
            password=password,
            transport=httpx.ASGITransport(app=self.app),
        )

    def raw(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url="http://zone.test", transport=httpx.ASGITransport(app=self.app)
        )


async def bus_ready(zone: InProcessZone) -> None:
    """Wait (bounded) until a zone on a bus consumes its queues: /readyz says so."""
    import asyncio

    async with zone.raw() as raw:
        for _ in range(200):
            if (await raw.get("/readyz")).status_code == 200:
                return
            await asyncio.sleep(0.05)
    raise AssertionError("the zone never consumed its queues")


@pytest.fixture
async def zone(tmp_path: Path, database_url: str) -> AsyncIterator[InProcessZone]:
    async with InProcessZone(zone_settings(tmp_path, database_url)) as z:
        yield z


@pytest.fixture
async def admin(zone: InProcessZone) -> AsyncIterator[SkyfedClient]:
    async with zone.client() as client:
        yield client


@pytest.fixture
def anyio_backend() -> Iterator[str]:
    yield "asyncio"


class ServedApp:
    """Any ASGI app on a real loopback socket, served by uvicorn in this event loop."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        import uvicorn

        from skyfed.federation.process import free_port

        self.app = app
        self.port = port or free_port()
        self.server = self._server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, lifespan="on")
        )
        self._task: Any = None

    def _server(self, config: Any) -> Any:
        import uvicorn

        return uvicorn.Server(config)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Any:
        import asyncio

        self._task = asyncio.create_task(self.server.serve())
        for _ in range(500):
            if self.server.started:
                return self
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        raise RuntimeError("server did not start")

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        await self._task


class ServedZone(ServedApp):
    """A zone on a real loopback socket."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__(create_app(settings), settings.port)

    def _server(self, config: Any) -> Any:
        """As `skyfed serve` runs it: agent polls end when it begins to stop."""
        from skyfed.cli.serve import ZoneServer

        return ZoneServer(config, on_stop=config.app.state.runtime.compute.signals.stop)

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime

    def client(
        self, username: str | None = "admin", password: str | None = ADMIN_PASSWORD
    ) -> SkyfedClient:
        return SkyfedClient(self.url, username=username, password=password)


@pytest.fixture
async def child_zone(tmp_path: Path) -> AsyncIterator[ServedZone]:
    """A second zone (SQLite) on a real socket, to be registered as a child."""
    from skyfed.federation.process import free_port

    settings = zone_settings(tmp_path / "child", None, name="child", port=free_port())
    async with ServedZone(settings) as child:
        yield child
