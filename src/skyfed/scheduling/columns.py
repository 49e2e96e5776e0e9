"""Child zones kept with columns of what the planner reads of each (pure).

A zone with many children (a data centre's 200 huddles) screens a sample of them
for every request: their active flag, the units of the request's flavor that fit
(the summary's `fits`), the constraints, then ranks the survivors by those units
and their weight scale and offset. Read from the candidates, that is a chain of
objects per child (candidate, summary, its `fits` dict, the count), which in a
process holding a large tree are mostly cache misses. A `ZoneSet` keeps the same
figures side by side, one column per flavor asked for (a compact array of
counts, by child position), so the planner reads one contiguous array instead.

The columns are a view of the candidates, kept in step with them:

- `reserve_zone` on a member updates its flavor's column (it knows its set);
- whatever else changes a member (its summary replaced, `active` or the weights
  changed, its summary changed in place other than by `reserve_zone`) must be
  followed by `ZoneSet.update(zone)`.

Columns are built when first asked for; `plan()` gives the same decisions with a
`ZoneSet` as with a plain list of the same candidates.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import overload

from skyfed.scheduling.candidates import ZoneCandidate
from skyfed.scheduling.filters import zone_flags
from skyfed.zones.capabilities import Constraint
from skyfed.zones.summary import FREE_KEYS

# A count the column cannot answer for: the summary has no count for the flavor (or
# not one a signed 64-bit array holds). The planner reads that child's candidate.
UNKNOWN = -1
_TOP = 2**63

# Constraint columns kept at most per set (one per constraints tuple asked about).
_MET_MAX = 64


def fits_row(zone: ZoneCandidate, flavor: str) -> int:
    """What the flavor's column holds for `zone`: the units that fit when it is active
    and they are more than 0; 0 when it cannot take the flavor (inactive, or no unit
    fits); UNKNOWN when its summary does not say."""
    units = zone.summary.fits.get(flavor)
    if type(units) is not int or units >= _TOP:
        return UNKNOWN
    if not zone.active or units <= 0:
        return 0
    return units


def columnar(constraints: tuple[Constraint, ...]) -> bool:
    """Whether a column can answer these constraints: none reads the free amounts
    (which reservations change) rather than capabilities."""
    return all(c.key not in FREE_KEYS for c in constraints)


class ZoneSet(Sequence[ZoneCandidate]):
    """A zone's child candidates, in a fixed order, with columns the planner reads.

    A candidate belongs to one set at most (it points back to it, so `reserve_zone`
    keeps the columns). The members are fixed: build a new set when children come
    or go.
    """

    __slots__ = ("_fits", "_met", "items", "offset", "plain", "scale")

    def __init__(self, zones: Iterable[ZoneCandidate] = ()) -> None:
        self.items: list[ZoneCandidate] = list(zones)
        for i, zone in enumerate(self.items):
            if zone.columns is not None:
                raise ValueError(f"zone {zone.id!r} is already in a ZoneSet")
            zone.columns = self
            zone.column = i
        self.scale: list[float] = [z.weight_scale for z in self.items]
        self.offset: list[float] = [z.weight_offset for z in self.items]
        self.plain = self._plain()
        self._fits: dict[str, array[int]] = {}
        # id(constraints) -> (the tuple, one flag per child: they may be met below it)
        self._met: dict[int, tuple[tuple[Constraint, ...], bytearray]] = {}

    def __len__(self) -> int:
        return len(self.items)

    @overload
    def __getitem__(self, index: int) -> ZoneCandidate: ...

    @overload
    def __getitem__(self, index: slice) -> list[ZoneCandidate]: ...

    def __getitem__(self, index: int | slice) -> ZoneCandidate | list[ZoneCandidate]:
        return self.items[index]

    def __iter__(self) -> Iterator[ZoneCandidate]:
        return iter(self.items)

    def __repr__(self) -> str:
        return f"ZoneSet({self.items!r})"

    def _plain(self) -> bool:
        """Every weight scale 1.0 and offset 0.0: a child's weight is its room's alone."""
        return all(s == 1.0 for s in self.scale) and all(o == 0.0 for o in self.offset)

    def fits(self, flavor: str) -> array[int]:
        """The flavor's column (`fits_row` of each child, by position)."""
        column = self._fits.get(flavor)
        if column is None:
            column = array("q", [fits_row(z, flavor) for z in self.items])
            self._fits[flavor] = column
        return column

    def met(self, constraints: tuple[Constraint, ...]) -> bytearray:
        """Per child, 1 when each constraint may be met in its subtree (its own
        capabilities, else its summary: `filters.zone_may_satisfy`), else 0. Only for
        `columnar` constraints: reservations do not change these answers."""
        entry = self._met.get(id(constraints))
        if entry is not None and entry[0] is constraints:
            return entry[1]
        column = bytearray([1]) * len(self.items)
        for constraint in constraints:
            for i, ok in enumerate(zone_flags(constraint)(self.items)):
                if not ok:
                    column[i] = 0
        if len(self._met) >= _MET_MAX:
            self._met.clear()
        self._met[id(constraints)] = (constraints, column)
        return column

    def update(self, zone: ZoneCandidate) -> None:
        """Read `zone` again into every column (after its summary was replaced or
        changed, or its `active` flag or weights)."""
        if zone.columns is not self:
            raise ValueError(f"zone {zone.id!r} is not in this ZoneSet")
        i = zone.column
        self.scale[i] = zone.weight_scale
        self.offset[i] = zone.weight_offset
        self.plain = self._plain()
        for flavor, column in self._fits.items():
            column[i] = fits_row(zone, flavor)
        self._met.clear()

    def fit_changed(self, zone: ZoneCandidate, flavor: str) -> None:
        """`zone`'s count of `flavor` changed (`reserve_zone`)."""
        column = self._fits.get(flavor)
        if column is not None:
            column[zone.column] = fits_row(zone, flavor)
