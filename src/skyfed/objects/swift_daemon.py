"""The child side of `local_swift`: runs one Swift server or daemon, or builds the rings.

    python -m skyfed.objects.swift_daemon run SWIFT_DIR swift-proxy-server CONF -v
    python -m skyfed.objects.swift_daemon rings SWIFT_DIR PORT POLICY_COUNT

Swift reads its storage policies and constraints from /etc/swift/swift.conf when its
modules are imported; a server's `swift_dir` only moves the rings and the hash
prefix/suffix, and the background daemons (container-updater...) ignore it. So each
process points Swift at its own cluster's swift.conf before it imports any server code:
several clusters with their own policies run side by side, and none needs /etc/swift.

Swift is imported only here, in these child processes: never in a skyfed process
(it brings eventlet along).
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import entry_points

# One partition power for every ring: 2^8 partitions on one device is plenty for tests
# and benchmarks, and the rings build in milliseconds.
PART_POWER = 8
# Port offsets from the cluster's base port (the proxy's).
ACCOUNT_OFFSET, CONTAINER_OFFSET, OBJECT_OFFSET = 1, 2, 3
DEVICE = "d1"


def use_swift_conf(swift_dir: str) -> None:
    """Make Swift read `swift_dir`/swift.conf, also where it was already read."""
    import swift.common.utils as utils

    utils.SWIFT_CONF_FILE = os.path.join(swift_dir, "swift.conf")
    from swift.common import constraints, storage_policy

    storage_policy.reload_storage_policies()
    constraints.reload_constraints()


def run(swift_dir: str, script: str, args: list[str]) -> None:
    """Run the console script `script` (swift-proxy-server...) with `args`."""
    use_swift_conf(swift_dir)
    (entry,) = entry_points(group="console_scripts", name=script)
    main = entry.load()
    sys.argv = [script, *args]
    sys.exit(main())


def build_rings(swift_dir: str, port: int, policy_count: int) -> None:
    """One-replica rings of one device each: account, container, one object ring a policy.

    The same as `swift-ring-builder X.builder create 8 1 1`, `add`, `rebalance` for each
    ring, in one process instead of a dozen."""
    from swift.common.ring import RingBuilder

    rings = [("account", ACCOUNT_OFFSET), ("container", CONTAINER_OFFSET)]
    rings += [
        ("object" if index == 0 else f"object-{index}", OBJECT_OFFSET)
        for index in range(policy_count)
    ]
    for ring, offset in rings:
        builder = RingBuilder(PART_POWER, 1, 1)
        builder.add_dev(
            {
                "region": 1,
                "zone": 1,
                "ip": "127.0.0.1",
                "port": port + offset,
                "device": DEVICE,
                "weight": 100,
            }
        )
        builder.rebalance()
        builder.save(os.path.join(swift_dir, f"{ring}.builder"))
        builder.get_ring().save(os.path.join(swift_dir, f"{ring}.ring.gz"))


def main(argv: list[str]) -> None:
    match argv:
        case ["run", swift_dir, script, *args]:
            run(swift_dir, script, args)
        case ["rings", swift_dir, port, policy_count]:
            build_rings(swift_dir, int(port), int(policy_count))
        case _:
            sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
