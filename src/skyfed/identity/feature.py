"""The identity feature: this zone's users, projects, tokens and link keys."""

from __future__ import annotations

from skyfed.features import Feature
from skyfed.identity.api import router
from skyfed.identity.identities import Identities


def feature(identities: Identities) -> Feature:
    return Feature(
        name="identity", routers=[router], lifespan=identities.lifespan, provides=[identities]
    )
