"""What a feature package adds to a zone, declared in one place.

Each feature package (identity, zones, tasks, compute; objects and dr next) has a
`feature.py` that builds its objects on the zone's core and describes them with a
`Feature`: its routers, its task kinds and their hooks, the sections it adds to
the zone's summary, its life (startup, background loops, shutdown) and what it
forgets when a child zone is removed by force. The composition root (`app.py`)
lists the features and wires these declarations together; nothing else does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

from fastapi import APIRouter
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.middleware import Middleware

from skyfed.tasks.kinds import Kind
from skyfed.zones.view import LocalSection

# A feature's life in one zone process: startup before it yields, shutdown after.
# `api` is False in a worker-only process (`skyfed worker`), which serves no routes
# and polls no children.
Lifespan = Callable[[bool], AbstractAsyncContextManager[None]]
# Forgets, in the removal's transaction, what the feature recorded of resources that
# the location index places in the child (its id) being removed by force.
ChildRemoved = Callable[[AsyncSession, str], Awaitable[None]]


@dataclass(frozen=True, kw_only=True)
class Feature:
    name: str
    routers: Sequence[APIRouter] = ()
    task_kinds: Mapping[str, Kind] = field(default_factory=dict)
    summary_sections: Sequence[LocalSection] = ()
    lifespan: Lifespan | None = None
    child_removed: ChildRemoved | None = None
    # The objects its routes ask for by type (`core.provided`).
    provides: Sequence[object] = ()
    # ASGI layers before the routes (inside the zone's request context: ids, metrics,
    # logs), for paths that must not pay for FastAPI's routing.
    middleware: Sequence[Middleware] = ()
