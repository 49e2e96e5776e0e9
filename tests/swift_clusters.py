"""Real Swift clusters for the object storage tests: made on free ports, and
registered with a zone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from skyfed.client import SkyfedClient
from skyfed.objects.local_swift import LocalSwift, LocalSwiftSet, free_base_port

GiB = 1 << 30


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
