"""What a zone reports out of reach below it: offline children with what they held
when last seen, and what active children report below themselves (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from skyfed.zones.capabilities import parse_constraint
from skyfed.zones.report import ZoneReport
from skyfed.zones.summary import Summary, SummaryError, summarize_hosts
from skyfed.zones.view import ChildSnapshot, Unreachable, ZoneView


class Host:
    """A host as a summary reads it."""

    def __init__(self, **caps: Any) -> None:
        self.disabled = False
        self.values = {"free_vcpus": 8, "free_ram_mb": 16384, "free_disk_gb": 100, **caps}
        self.free = (8, 16384, 100)


def hosts_summary(**caps: Any) -> Summary:
    return summarize_hosts([Host(**caps)], [])


def child(name: str, state: str, summary: Summary, below: Unreachable | None = None) -> Any:
    return ChildSnapshot(
        id=name, name=name, state=state, summary=summary, unreachable=below or Unreachable()
    )


def view_of(*children: ChildSnapshot) -> ZoneView:
    view = ZoneView()  # children only
    for c in children:
        view.put_child(c)
    return view


def test_nothing_out_of_reach_when_every_child_answers() -> None:
    view = view_of(child("eu", "active", hosts_summary(arch="x86_64")))
    assert view.unreachable().paths == ()


def test_offline_children_and_what_active_ones_report_below_them() -> None:
    arm = hosts_summary(arch="arm64")
    gpu = hosts_summary(gpu=8)
    us = child("us", "active", hosts_summary(), Unreachable(("us-dc",), arm))
    ap = child("ap", "offline", gpu, Unreachable(("ap-dc",), hosts_summary(ssd=1)))
    eu = child("eu", "active", hosts_summary(arch="x86_64"))
    away = view_of(us, ap, eu).unreachable()
    assert away.paths == ("ap", "ap/ap-dc", "us/us-dc")
    # Everything they held when last seen, and nothing of what answers.
    for spec, held in ((("arch", "arm64"), True), (("gpu", ">= 1"), True), (("ssd", "1"), True)):
        assert away.summary.may_satisfy(parse_constraint(*spec)) is held
    assert not away.summary.may_satisfy(parse_constraint("arch", "x86_64"))


def test_a_report_carries_it_up_and_a_malformed_one_is_refused() -> None:
    away = Unreachable(("us-dc",), hosts_summary(arch="arm64"))
    body = {
        "id": "6f1d3f0a-9a8e-4a59-9d55-111111111111",
        "name": "us",
        "capabilities": {},
        "summary": hosts_summary().to_dict(),
        "unreachable": away.to_dict(),
    }
    assert ZoneReport.from_dict(body).unreachable == away
    assert ZoneReport.from_dict({**body, "unreachable": None}).unreachable.paths == ()
    for bad in (
        {"zones": "us-dc"},
        {"zones": ["../x"]},
        {"zones": ["a"] * 33},
        [],
        {"zones": [], "summary": 3},
    ):
        with pytest.raises(SummaryError):
            ZoneReport.from_dict({**body, "unreachable": bad})
