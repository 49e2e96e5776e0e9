"""Grants: exact names and anchored prefixes, nothing else; the registry's carriers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skyfed.compute.hosts.grants import HostGrant, PatternError, check_pattern
from skyfed.compute.hosts.registry import HostRegistry, Resources

NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)


def test_exact_names_and_prefixes() -> None:
    grant = HostGrant.of(["eu-dc1-*", "lone", "eu-dc1-std-*"], 10)
    assert grant.prefixes == ("eu-dc1-",)  # the longer prefix adds nothing
    assert grant.covers("eu-dc1-std-00001") and grant.covers("eu-dc1-")
    assert grant.covers("lone")
    for name in ("eu-dc1", "xeu-dc1-1", "eu-dc2-1", "lone2", "lon", "EU-DC1-1"):
        assert not grant.covers(name), name
    assert grant.uncovered(["lone", "eu-dc2-1", "eu-dc1-9", "x"]) == ["eu-dc2-1", "x"]
    assert not grant.catch_all


def test_only_a_trailing_star_and_only_one() -> None:
    assert HostGrant.of(["*"], 1).catch_all
    for bad in ("eu-*-std", "*-std", "eu-**", "eu-dc?", "eu-dc[12]", "", "-x*", "a" * 64, "a b"):
        with pytest.raises(PatternError):
            check_pattern(bad)
    assert check_pattern("a" * 62 + "*") and check_pattern("a" * 63)


def test_an_empty_grant_covers_nothing() -> None:
    grant = HostGrant.of([], 0)
    assert grant.uncovered(["h1", "*", ""]) == ["h1", "*", ""]


@given(st.lists(NAMES, max_size=5), st.lists(NAMES, max_size=5), NAMES)
def test_covers_is_exact_name_or_prefix(names: list[str], prefixes: list[str], host: str) -> None:
    grant = HostGrant.of(names + [p + "*" for p in prefixes], 1)
    assert grant.covers(host) == (host in names or any(host.startswith(p) for p in prefixes))


def test_the_registry_counts_each_agent_hosts() -> None:
    registry = HostRegistry(ttl=10, forget_after=20, clock=lambda: now[0])
    now = [0.0]
    for name, agent in (("h1", "a"), ("h2", "a"), ("h3", "b"), ("h4", None)):
        registry.heartbeat(name, {}, Resources(1, 1, 1), Resources(), agent)
    assert (registry.carried_by("a"), registry.carried_by("b")) == (2, 1)
    registry.heartbeat("h2", {}, Resources(1, 1, 1), Resources(), "b")
    assert (registry.carried_by("a"), registry.carried_by("b")) == (1, 2)
    registry.set_carrier("h3", None)
    assert registry.carrier("h3") is None and registry.names_carried_by("b") == ["h2"]
    now[0] = 15.0
    registry.heartbeat("h1", {}, Resources(1, 1, 1), Resources(), "a")
    now[0] = 25.0
    assert registry.expire() == 3  # h2, h3, h4 were silent past forget_after
    assert (registry.carried_by("a"), registry.carried_by("b")) == (1, 0)
