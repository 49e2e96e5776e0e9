"""The objects feature: storage clusters registered with the zone, polled, and their
capacity in the zone summary's `storage` section."""

from __future__ import annotations

from starlette.middleware import Middleware

from skyfed.features import Feature
from skyfed.identity.identities import Identities
from skyfed.objects import (
    drains,
    moves,
    moves_api,
    swift_account,
    swift_api,
    swift_auth,
    swift_info,
)
from skyfed.objects.api import router
from skyfed.objects.drains import DrainRunner
from skyfed.objects.move_runner import MoveRunner
from skyfed.objects.parts import StorageParts
from skyfed.objects.swift_fast import FastObjects
from skyfed.tasks.kinds import Kind
from skyfed.tasks.store import TaskStore


def feature(parts: StorageParts, identities: Identities, store: TaskStore) -> Feature:
    runner = MoveRunner(parts)
    drainer = DrainRunner(parts, store)
    return Feature(
        name="objects",
        routers=[
            router,
            moves_api.router,
            swift_auth.router,
            swift_account.router,
            swift_api.router,
            swift_info.router,
        ],
        summary_sections=[parts],
        lifespan=parts.lifespan,
        provides=[parts],
        child_removed=parts.child_removed,
        middleware=[Middleware(FastObjects, parts=parts, identities=identities)],
        task_kinds={
            moves.KIND: Kind(runner.run, give_up=runner.gave_up),
            drains.DRAIN: Kind(drainer.drain),
            drains.REBALANCE: Kind(drainer.rebalance),
        },
    )
