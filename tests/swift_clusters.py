"""Real Swift clusters for the object storage tests: made on free ports, and
registered with a zone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from skyfed.client import SkyfedClient
from skyfed.objects.local_swift import LocalSwift, LocalSwiftSet, free_base_port
from tests.conftest import ServedZone, free_test_port, zone_settings

GiB = 1 << 30
PASSWORD = "member-password-1"  # the Swift tests' users'


def clusters(root: Path, *specs: tuple[str, tuple[str, ...]], **options: Any) -> LocalSwiftSet:
    """One cluster per (name, tiers), each on ports of its own, under `root`."""
    made: list[LocalSwift] = []
    for name, tiers in specs:
        port = free_base_port([s.port for s in made])
        made.append(LocalSwift(root / name, port, name, tiers, **options))
    return LocalSwiftSet(made)


async def register(admin: SkyfedClient, swift: LocalSwift, capacity_bytes: int = 10 * GiB) -> None:
    """`swift` registered with the admin's zone, each of its tiers a policy of that name."""
    creds = swift.reseller_admin
    await admin.add_storage_cluster(
        swift.name,
        swift.auth_url,
        creds.user,
        creds.key,
        tiers={tier: tier for tier in swift.policies},
        capacity_bytes=capacity_bytes,
    )


@asynccontextmanager
async def swift_zone(
    state: Path, swifts: LocalSwiftSet, **settings: Any
) -> AsyncIterator[ServedZone]:
    """A zone on loopback with `swifts` registered, and the Swift tests' users:
    mia (a member of p1), rita (p1's reader) and otto (a member of p2)."""
    config = zone_settings(
        state, None, port=free_test_port(), allowed_storage_hosts=["127.0.0.1"], **settings
    )
    async with ServedZone(config) as served, served.client() as admin:
        for swift in swifts:
            await register(admin, swift)
        await admin.create_project("p1")
        await admin.create_project("p2")
        await admin.create_user("mia", PASSWORD, "p1", ["member"])
        await admin.create_user("rita", PASSWORD, "p1", ["reader"])
        await admin.create_user("otto", PASSWORD, "p2", ["member"])
        yield served
