"""The tasks feature: durable tasks, their workers and their routes."""

from __future__ import annotations

from skyfed.features import Feature
from skyfed.tasks.api import router
from skyfed.tasks.engine import TaskEngine


def feature(engine: TaskEngine) -> Feature:
    return Feature(
        name="tasks", routers=[router], lifespan=engine.lifespan, provides=[engine.store]
    )
