"""A zone keeps its children as one ZoneSet between polls: decisions share it and the
room they reserve, with or without a server group, and a poll renews it."""

from __future__ import annotations

from types import SimpleNamespace

from skyfed.compute.placement import Placer
from skyfed.scheduling.candidates import ZoneCandidate, reserve_zone
from skyfed.scheduling.planner import plan
from skyfed.scheduling.request import PlacementRequest
from skyfed.zones.summary import NumericStats, Summary
from skyfed.zones.view import ChildSnapshot, ZoneView


def snapshot(child_id: str, units: int) -> ChildSnapshot:
    summary = Summary(
        hosts=4,
        numeric={"free_ram_mb": NumericStats(min=0, max=8192, sum=8192 * units, count=4)},
        fits={"small": units},
    )
    return ChildSnapshot(id=child_id, name=child_id, state="active", summary=summary)


def placer_over(*children: ChildSnapshot) -> Placer:
    view = ZoneView()  # children only
    for child in children:
        view.put_child(child)
    settings = SimpleNamespace(scheduler_strategy="spread", scheduler_sample=32, child_wait=1.0)
    return Placer(SimpleNamespace(settings=settings, links=None, db=None, view=view))  # type: ignore[arg-type]


def small(server_id: str) -> PlacementRequest:
    return PlacementRequest(server_id=server_id, vcpus=1, ram_mb=1024, disk_gb=10, flavor="small")


def place(
    placer: Placer, request: PlacementRequest, group_members: dict[str, int] | None = None
) -> str | None:
    """One decision as the place task makes it: the best child, reserved."""
    decision = plan(
        request,
        [],
        placer.children(),
        zone_name="here",
        config=placer.config,
        group_members=group_members,
    )
    if not decision.ranked:
        return None
    chosen = decision.ranked[0]
    assert isinstance(chosen, ZoneCandidate)
    reserve_zone(chosen, request)
    return chosen.id


def test_decisions_between_polls_share_the_children_and_their_reservations() -> None:
    placer = placer_over(snapshot("a", 2), snapshot("b", 1))
    assert placer.children() is placer.children()  # no candidates built per decision
    chosen = [place(placer, small(f"s{i}")) for i in range(4)]
    assert sorted(c for c in chosen if c) == ["a", "a", "b"]  # three units, three servers
    assert chosen[3] is None  # the fourth finds no room left


def test_a_group_requests_reservation_is_seen_by_the_next_decision() -> None:
    placer = placer_over(snapshot("a", 1), snapshot("b", 1))
    kept = placer.children()
    assert list(kept.fits("small")) == [1, 1]  # the column, as decisions have read it
    # A request with a server group decides over the same kept candidates, its group's
    # counts given beside them.
    grouped = PlacementRequest(
        server_id="grouped", vcpus=1, ram_mb=1024, disk_gb=10, flavor="small", group="g"
    )
    assert place(placer, grouped, group_members={}) == "a"
    assert kept.fits("small")[0] == 0
    assert place(placer, small("next")) == "b"


def test_a_poll_renews_the_children() -> None:
    placer = placer_over(snapshot("a", 1))
    assert place(placer, small("s1")) == "a"
    assert place(placer, small("s2")) is None
    placer.ctx.view.put_child(snapshot("a", 3))  # the child's next answer
    assert place(placer, small("s3")) == "a"
