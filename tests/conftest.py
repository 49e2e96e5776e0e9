"""Shared fixtures: databases (SQLite and PostgreSQL) and in-process zones."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import socket
import sqlite3
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy.engine import make_url

from skyfed.app import ZoneProcess, create_app
from skyfed.client import SkyfedClient
from skyfed.db.engine import Database
from skyfed.db.migrate import upgrade
from skyfed.federation import process
from skyfed.settings import Settings

# A zone's settings take SKYFED_* from the environment over what the code gives them, so
# one exported in the shell that runs the tests (SKYFED_PORT, SKYFED_DATABASE_URL...) would
# override what a test sets, here and in every zone process it starts. The tests' own
# variables (SKYFED_TEST_*) stay.
for _name in [
    n for n in os.environ if n.startswith("SKYFED_") and not n.startswith("SKYFED_TEST_")
]:
    del os.environ[_name]

# Hypothesis's per-example deadline is a wall-clock bound, and this machine's two cores are
# shared by the test processes: slow examples are not failures (speed lives in benchmarks).
hypothesis_settings.register_profile("skyfed", deadline=None)
hypothesis_settings.load_profile("skyfed")

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


# Tests run on several processes (xdist), and other test runs may share the machine. Files
# under these locks keep apart what must not meet, across all of them:
# - the broker: a few tests stop and start the shared RabbitMQ (`restarts_broker`); they
#   hold its lock exclusively, every other test on the broker holds it shared;
# - process servers: every agent's uid range starts at the same base, and deleting a
#   server kills every process of its uid, so those tests hold theirs exclusively.
# Within one run, each kind is also one xdist group, so that its tests queue on one
# process rather than keep two waiting on each other.
LOCKS = Path(tempfile.gettempdir())
BROKER_GROUP = "broker"


@contextmanager
def machine_lock(name: str, exclusive: bool) -> Iterator[None]:
    with (LOCKS / f"skyfed-tests-{name}.lock").open("a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(held.fileno(), fcntl.LOCK_UN)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test on the broker joins its group (see LOCKS).

    xdist's `--dist loadgroup` sends the tests of one xdist_group to one process by the
    suffix "@group" it puts on their node ids; pytest-xdist 3.8 writes it to an attribute
    that pytest 9.2 no longer reads, so here it is written where pytest keeps it now."""
    for item in items:
        if "amqp_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group(BROKER_GROUP))
    if not getattr(config.option, "loadgroup", False):
        return
    from _pytest.nodeid import NodeId

    for item in items:
        groups = sorted({str(m.args[0]) for m in item.iter_markers("xdist_group") if m.args})
        if groups and "@" not in item.nodeid.rpartition("]")[2]:
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(groups)}")


@pytest.fixture(autouse=True)
def kept_apart(request: pytest.FixtureRequest) -> Iterator[None]:
    """The lock of the test's group, if it has one (see LOCKS), held while it runs."""
    from tests.sandboxed import PROCESS_SERVERS_GROUP

    marker = request.node.get_closest_marker("xdist_group")
    group = marker.args[0] if marker is not None and marker.args else None
    if group == BROKER_GROUP:
        restarts = request.node.get_closest_marker("restarts_broker") is not None
        with machine_lock(BROKER_GROUP, exclusive=restarts):
            yield
    elif group == PROCESS_SERVERS_GROUP:
        with machine_lock(PROCESS_SERVERS_GROUP, exclusive=True):
            yield
    else:
        yield


@pytest.fixture
async def amqp_url() -> str:
    return await broker_url()


# Loopback ports for the zones and servers tests start, from one counter for every test
# process of the machine (a file under a lock): a port is picked once, not twice by
# processes racing between picking it and binding it. They are taken below the kernel's
# ephemeral range (32768 and up), where no outgoing connection takes one meanwhile.
PORTS = range(20_000, 25_600)  # RabbitMQ's node port, 25672, above


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_test_port(span: int = 1) -> int:
    """A free port; with `span`, the first of `span` free ports in a row (a Swift cluster
    takes ten), all of them taken from the counter."""
    with (LOCKS / "skyfed-tests-ports").open("a+") as counter:
        fcntl.flock(counter.fileno(), fcntl.LOCK_EX)
        counter.seek(0)
        last = counter.read().strip()
        port = int(last) if last.isdigit() else PORTS.start
        for _ in PORTS:
            port = PORTS.start + (port + 1 - PORTS.start) % len(PORTS)
            if port + span <= PORTS.stop and all(map(_bindable, range(port, port + span))):
                break
        counter.seek(0)
        counter.truncate()
        counter.write(str(port + span - 1))
    return port


process.free_port = free_test_port  # what the launcher, ServedApp and the tests call


def _require_postgres() -> None:
    """Fail (in CI) or skip the test when PostgreSQL is not reachable."""
    problem = asyncio.run(_postgres_reachable())
    if problem:
        if IN_CI:
            pytest.fail(problem)
        pytest.skip(problem)


async def _admin(*statements: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL))
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


def _create_database(name: str, template: str | None = None) -> list[str]:
    """The statements making a test database (a copy of `template`, if given).

    Its commits do not wait for the WAL to reach the disk (synchronous_commit off, for
    this database only): about 4 ms a commit on this machine, and the tests commit tens
    of thousands of times. Nothing else changes for its clients; only a crash of the
    PostgreSQL server could lose their last commits, and no test crashes it."""
    copy = f' TEMPLATE "{template}"' if template else ""
    return [
        f'CREATE DATABASE "{name}"{copy}',
        f'ALTER DATABASE "{name}" SET synchronous_commit = off',
    ]


def _postgres_url(database: str) -> str:
    return make_url(POSTGRES_URL).set(database=database).render_as_string(hide_password=False)


async def _migrate(url: str) -> None:
    database = Database(url)
    try:
        await upgrade(database)
    finally:
        await database.dispose()


@pytest.fixture(scope="session", autouse=True)
def swift_data_cleanup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The tmpfs data of the Swift clusters this test process made (each cluster's
    etc/cluster.json under its temporary directories says where), removed at the end:
    the tests stop their clusters and keep their configs and logs, and tmpfs is RAM."""
    yield
    base = tmp_path_factory.getbasetemp()
    for state in base.rglob("etc/cluster.json"):
        with contextlib.suppress(OSError, ValueError):
            cluster = json.loads(state.read_text())
            data = Path(cluster["data_dir"])
            if cluster.get("data_made") and data.parent == Path("/dev/shm"):
                shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A PostgreSQL database migrated once per test process: the tests' migrated databases
    are copies of it (CREATE DATABASE ... TEMPLATE), not migrated one by one."""
    _require_postgres()
    name = f"skyfed_template_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(*_create_database(name)))
    try:
        asyncio.run(_migrate(_postgres_url(name)))
        yield name
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated once per test process, copied for each test."""
    path = tmp_path_factory.mktemp("template") / "zone.db"
    asyncio.run(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


def sqlite_copy(template: Path, path: Path) -> str:
    """A copy of the migrated template at `path` (SQLite's backup: whole, WAL or not)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(template)) as source, closing(sqlite3.connect(path)) as copy:
        source.backup(copy)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
async def postgres_databases() -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """A factory of fresh PostgreSQL databases, empty or (`template=`) copies of one;
    all are dropped after the test."""
    problem = await _postgres_reachable()
    if problem:
        if IN_CI:
            pytest.fail(problem)
        pytest.skip(problem)
    made: list[str] = []

    async def make(template: str | None = None) -> str:
        name = f"skyfed_test_{uuid.uuid4().hex[:12]}"
        await _admin(*_create_database(name, template))
        made.append(name)
        return _postgres_url(name)

    yield make
    await _admin(*(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in made))


@pytest.fixture
async def postgres_database(
    postgres_template: str, postgres_databases: Callable[..., Awaitable[str]]
) -> str:
    """A fresh PostgreSQL database for one test, migrated (a copy of the template)."""
    return await postgres_databases(template=postgres_template)


@pytest.fixture
async def empty_postgres_database(postgres_databases: Callable[..., Awaitable[str]]) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    return await postgres_databases()


@pytest.fixture(scope="module")
def module_postgres_database(postgres_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database shared by one test module (for costly fixtures)."""
    name = f"skyfed_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(*_create_database(name, postgres_template)))
    yield _postgres_url(name)
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each database test runs on SQLite and on PostgreSQL, migrated (copies of templates)."""
    if request.param == "sqlite":
        return sqlite_copy(request.getfixturevalue("sqlite_template"), tmp_path / "zone.db")
    return str(request.getfixturevalue("postgres_database"))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def module_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """`database_url` for one test module (a zone shared by tests that change nothing)."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("module") / "zone.db"
        return sqlite_copy(request.getfixturevalue("sqlite_template"), path)
    return str(request.getfixturevalue("module_postgres_database"))


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database, on SQLite and on PostgreSQL (for tests of migrations)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    return str(request.getfixturevalue("empty_postgres_database"))


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
    def process(self) -> ZoneProcess:
        return self.app.state.zone

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

        return ZoneServer(config, on_stop=config.app.state.zone.compute.ctx.signals.stop)

    @property
    def process(self) -> ZoneProcess:
        return self.app.state.zone

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
