"""The zones feature: child zones, the zone summary and the location index."""

from __future__ import annotations

from skyfed.features import Feature
from skyfed.zones.api import router
from skyfed.zones.tree import ZoneTree


def feature(tree: ZoneTree) -> Feature:
    return Feature(name="zones", routers=[router], lifespan=tree.lifespan, provides=[tree])
