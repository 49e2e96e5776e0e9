"""What every feature of a zone shares, and how routes receive what features provide.

The core is the zone's settings, database, vault, id, metrics and tracing. Features build their own
objects on it and list the ones their routes need (`Feature.provides`); a route
asks for one by type through `provided(SomeType)`, so each router names exactly
what it depends on and no feature reaches into another's objects through a
common holder.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.db.engine import Database
from skyfed.identity.vault import Vault
from skyfed.observability.database import watch_pool
from skyfed.observability.metrics import Metrics
from skyfed.observability.tracing import Tracing
from skyfed.settings import Settings

T = TypeVar("T")


@dataclass
class Core:
    settings: Settings
    db: Database
    vault: Vault
    metrics: Metrics
    tracing: Tracing
    zone_id: str = ""  # this zone's lasting id, known once the zones feature started

    @classmethod
    def open(cls, settings: Settings) -> Core:
        # The state directory holds the database, the vault's key and the admin
        # password: its owner's alone.
        settings.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        settings.state_dir.chmod(0o700)
        if settings.secret_key is not None:
            vault = Vault.from_secret(settings.secret_key.get_secret_value())
        else:
            vault = Vault.from_key_file(settings.state_dir / "secret.key")
        tracing = Tracing(
            "skyfed-zone",
            settings.name,
            otlp_endpoint=settings.otlp_endpoint,
            console=settings.trace_console,
        )
        db = Database(settings.effective_database_url)
        metrics = Metrics()
        watch_pool(metrics, db)
        return cls(settings=settings, db=db, vault=vault, metrics=metrics, tracing=tracing)


def provided(kind: type[T]) -> Callable[[Request], Awaitable[T]]:
    """A route dependency: the object of type `kind` that a feature provided.

    A coroutine function: FastAPI runs a plain function dependency on its thread
    pool, a hand-off to another thread and back for every route that asks."""

    async def dependency(request: Request) -> T:
        return request.app.state.provided[kind]

    dependency.__name__ = f"provided_{kind.__name__}"
    return dependency


CoreDep = Annotated[Core, Depends(provided(Core))]


async def _session(core: CoreDep) -> AsyncIterator[AsyncSession]:
    async with core.db.session() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(_session)]
