"""What a placement asks for, and how the request travels down the zone tree (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from skyfed.zones.capabilities import Constraint

AFFINITY = "affinity"
ANTI_AFFINITY = "anti-affinity"
POLICIES = (AFFINITY, ANTI_AFFINITY)

ZonePath = tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PlacementRequest:
    """One server to place, as the deciding zone sees it.

    `within` and each path of `avoid` are zone names relative to the deciding zone:
    the first element names one of its children. `exclude` holds candidate keys
    (`"host:<name>"`, `"zone:<child id>"`) already tried at this zone (retries).
    """

    server_id: str
    vcpus: int
    ram_mb: int
    disk_gb: int
    flavor: str | None = None  # summaries count "units that fit" per flavor name
    constraints: tuple[Constraint, ...] = ()
    group: str | None = None  # server group name
    group_policy: str | None = None  # "affinity" | "anti-affinity"
    within: ZonePath = ()
    avoid: tuple[ZonePath, ...] = ()
    exclude: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name in ("vcpus", "ram_mb", "disk_gb"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if self.group_policy is not None and self.group_policy not in POLICIES:
            raise ValueError(f"group_policy must be one of {POLICIES}, got {self.group_policy!r}")
        if self.group_policy is not None and not self.group:
            raise ValueError("a group_policy needs a group")
        if not all(self.within):
            raise ValueError("within must not hold empty zone names")
        if not all(path and all(path) for path in self.avoid):
            raise ValueError("avoid paths must be non-empty and hold no empty zone names")

    def requirements(self) -> list[str]:
        """The request in words, as `reason()` names what was not met."""
        return resource_texts(self, (True, True, True)) + [str(c) for c in self.constraints]


def resource_texts(request: PlacementRequest, which: tuple[bool, bool, bool]) -> list[str]:
    """ "vcpus >= N", "ram_mb >= N", "disk_gb >= N" for the needed resources chosen by `which`."""
    needs = (("vcpus", request.vcpus), ("ram_mb", request.ram_mb), ("disk_gb", request.disk_gb))
    return [f"{key} >= {need}" for (key, need), w in zip(needs, which, strict=True) if w and need]


def child_request(request: PlacementRequest, child_name: str) -> PlacementRequest:
    """The request as the chosen child zone `child_name` must see it.

    `within` loses its first element (which must name that child); `avoid` keeps only
    the paths that go through that child, without their first element. `exclude`
    is emptied: its keys name candidates of this zone, and the child keeps its own.
    """
    if not (request.within or request.avoid or request.exclude):
        return request
    within = request.within
    if within:
        if within[0] != child_name:
            raise ValueError(f"the request must stay within {within[0]!r}, not {child_name!r}")
        within = within[1:]
    avoid = tuple(p[1:] for p in request.avoid if len(p) > 1 and p[0] == child_name)
    if any(len(p) == 1 and p[0] == child_name for p in request.avoid):
        raise ValueError(f"the request avoids {child_name!r}")
    if within == request.within and avoid == request.avoid and not request.exclude:
        return request
    return PlacementRequest(
        server_id=request.server_id,
        vcpus=request.vcpus,
        ram_mb=request.ram_mb,
        disk_gb=request.disk_gb,
        flavor=request.flavor,
        constraints=request.constraints,
        group=request.group,
        group_policy=request.group_policy,
        within=within,
        avoid=avoid,
    )
