"""What the planner decided, and why nothing fit when nothing did (pure)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from skyfed.scheduling.candidates import Candidate, HostCandidate, ZoneCandidate
from skyfed.scheduling.filters import FILTER_NAMES, host_flags, zone_flags, zone_has_room
from skyfed.scheduling.request import PlacementRequest, resource_texts
from skyfed.zones.summary import FREE_KEYS


@dataclass(slots=True, kw_only=True)
class Decision:
    """The candidates ranked best first (at most `max_ranked`; empty when nothing fit).

    `scores` maps keys to the scores of the ranked candidates (of every candidate
    that passed, with `explain=True`). `dropped` lists, per filter name, the keys of the
    candidates it dropped among those scanned: all of them with `explain=True` or
    when nothing fit; otherwise the scan may have stopped early (sampling).
    `scanned` counts the candidates looked at, `offered` those given to plan().
    `passed` and `dropped_candidates` hold the scanned candidates themselves.

    `reason()`, `scores` and `dropped` are worked out when first asked for, from the
    candidates as they are then: ask before reserving on the same candidates.
    """

    ranked: list[Candidate]
    scanned: int
    zone_name: str = ""
    offered: int = 0
    request: PlacementRequest | None = None
    # The bulky fields stay out of repr(): a decision may have seen a million hosts.
    passed: Sequence[Candidate] = field(default_factory=list, repr=False)
    # Per filter name, the scanned candidates it dropped known so far
    # (`dropped_candidates` adds those still pending).
    drops: dict[str, list[Candidate]] = field(default_factory=dict, repr=False)
    # The child zones offered (reason() reads their names).
    zones: Sequence[ZoneCandidate] = field(default=(), repr=False)
    # explain=True only: every candidate offered, with the filter that dropped it (or None).
    records: list[tuple[Candidate, str | None]] | None = field(default=None, repr=False)
    # The candidates scored (the ranked ones; every one that passed, with explain) and
    # their scores: `scores` is built from them when asked for.
    scored: Sequence[Candidate] = field(default=(), repr=False)
    weights: Sequence[float] = field(default=(), repr=False)
    # Candidates the planner's screen dropped whose filter is not named yet: each
    # call runs them through the filters into the dict it is given (see `dropped`).
    pending: list[Callable[[dict[str, list[Candidate]]], object]] = field(
        default_factory=list, repr=False
    )
    # Caches of the properties below, not given by the caller.
    _scores: dict[str, float] | None = field(default=None, init=False, repr=False)
    _dropped: dict[str, list[str]] | None = field(default=None, init=False, repr=False)
    _failure: str | None = field(default=None, init=False, repr=False)

    @property
    def best(self) -> Candidate | None:
        return self.ranked[0] if self.ranked else None

    @property
    def scores(self) -> dict[str, float]:
        if self._scores is None:
            self._scores = {c.key: w for c, w in zip(self.scored, self.weights, strict=True)}
        return self._scores

    @property
    def dropped_candidates(self) -> dict[str, list[Candidate]]:
        """The scanned candidates each filter dropped."""
        while self.pending:
            self.pending.pop()(self.drops)
        return self.drops

    @property
    def dropped(self) -> dict[str, list[str]]:
        if self._dropped is None:
            self._dropped = {
                name: [c.key for c in out] for name, out in self.dropped_candidates.items()
            }
        return self._dropped

    def reason(self) -> str:
        """Why nothing fit, for a person to act on ("" when something did), e.g.
        "no host with ram_mb >= 65536 and arch = arm64 in eu"."""
        if self.ranked or self.request is None:
            return ""
        if self._failure is None:
            self._failure = failure_reason(
                self.request, self.zone_name, self.zones, self.offered, self.dropped_candidates
            )
        return self._failure

    def explain(self) -> dict[str, Any]:
        """A JSON-able account: each candidate with the filter that dropped it, or its
        score and rank (every candidate offered when planned with `explain=True`,
        else those scanned)."""
        if self.records is not None:
            records = self.records
        else:
            records = [(c, None) for c in self.passed]
            for name, dropped in self.dropped_candidates.items():
                records += [(c, name) for c in dropped]
        rank = {c.key: i for i, c in enumerate(self.ranked)}
        candidates = []
        for c, dropped_by in records:
            key = c.key
            candidates.append(
                {
                    "key": key,
                    "name": c.name,
                    "kind": c.kind,
                    "passed": dropped_by is None,
                    "dropped_by": dropped_by,
                    "score": self.scores.get(key),
                    "rank": rank.get(key),
                }
            )
        return {
            "zone": self.zone_name,
            "offered": self.offered,
            "scanned": self.scanned,
            "filters": list(FILTER_NAMES),
            "candidates": candidates,
            "ranked": [c.key for c in self.ranked],
            "scores": dict(self.scores),
            "dropped": {name: list(keys) for name, keys in self.dropped.items()},
            "reason": self.reason() or None,
        }


_NOTES = (
    ("enabled", "disabled, offline or inactive"),
    ("zone_path", "outside the zone path"),
    ("exclude", "already tried"),
)


def failure_reason(
    request: PlacementRequest,
    zone_name: str,
    zones: Sequence[ZoneCandidate],
    offered: int,
    dropped: Mapping[str, Sequence[Candidate]],
) -> str:
    """ "no host with ram_mb >= 65536 and arch = arm64 in eu", then what else ruled
    candidates out. Meant for a plan where nothing passed (so all were scanned)."""
    where = zone_name or "this zone"
    if offered == 0:
        return f"no host in {where}: it has no hosts and no child zones"
    if request.within and not any(z.name == request.within[0] for z in zones):
        return f"no child zone {request.within[0]!r} in {where}"
    unmet = unmet_requirements(
        request, [*dropped.get("resources", ()), *dropped.get("capabilities", ())]
    )
    text = "no host"
    if unmet:
        text += " with " + " and ".join(unmet)
    text += f" in {where}"
    notes = []
    for name, words in (
        *_NOTES,
        ("affinity", f"ruled out by the {request.group_policy} of group {request.group!r}"),
    ):
        n = len(dropped.get(name, ()))
        if n:
            notes.append(f"{n} {'candidate' if n == 1 else 'candidates'} {words}")
    if notes:
        text += " (" + "; ".join(notes) + ")"
    return text


def unmet_requirements(request: PlacementRequest, candidates: Sequence[Candidate]) -> list[str]:
    """A short list of requirements that none of `candidates` meets all of, in
    request order ("vcpus >= N", "ram_mb >= N", "disk_gb >= N", then constraints).

    The requirements no candidate meets, when there are some (each is enough on its
    own); otherwise a small set of requirements that every candidate fails at least
    one of (greedy: first the one most candidates fail), which names the combination
    ("ram_mb >= 65536 and arch = arm64": the arm64 hosts are the small ones).
    """
    needs = [
        (key, need)
        for key, need in zip(
            FREE_KEYS, (request.vcpus, request.ram_mb, request.disk_gb), strict=True
        )
        if need
    ]
    names = resource_texts(request, (True, True, True)) + [str(c) for c in request.constraints]
    hosts = [c for c in candidates if isinstance(c, HostCandidate)]
    zones = [c for c in candidates if isinstance(c, ZoneCandidate)]
    # fails[r][i]: candidate i (hosts, then zones) fails requirement r.
    fails: list[list[bool]] = []
    for key, need in needs:
        row = [getattr(h, key) < need for h in hosts]
        for z in zones:
            stats = z.summary.numeric.get(key)
            row.append(stats is None or stats.max < need)
        fails.append(row)
    for constraint in request.constraints:
        host_ok = host_flags(constraint)(hosts)
        zone_ok = zone_flags(constraint)(zones)
        fails.append([not ok for ok in host_ok] + [not ok for ok in zone_ok])
    if needs:  # a zone with each resource somewhere but no host with all of it (fits)
        first = len(hosts)
        for i, z in enumerate(zones, start=first):
            if not any(row[i] for row in fails[: len(needs)]) and not zone_has_room(z, request):
                for row in fails[: len(needs)]:
                    row[i] = True
    left = [i for i in range(len(candidates)) if any(row[i] for row in fails)]
    if not left:
        return []
    universal = [r for r, row in enumerate(fails) if all(row[i] for i in left)]
    if universal:  # each is enough alone: name them all
        return [names[r] for r in universal]
    chosen: set[int] = set()
    while left and len(chosen) < len(fails):
        counts = [sum(row[i] for i in left) for row in fails]
        pick = max(range(len(fails)), key=counts.__getitem__)  # the first of the most
        chosen.add(pick)
        left = [i for i in left if not fails[pick][i]]
    return [names[r] for r in sorted(chosen)]
