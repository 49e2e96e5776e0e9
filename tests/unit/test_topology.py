"""Federation topologies described in TOML: parsing, validation and tree questions (pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skyfed.federation.launcher import agent_options
from skyfed.federation.topology import (
    Topology,
    TopologyError,
    hash_name,
    load_topology,
    parse_topology,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "federation.toml"


def zones(*specs: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"zones": list(specs), **top}


def assert_children_first(topology: Topology, order: list[str]) -> None:
    assert sorted(order) == sorted(topology.zones)
    assert len(order) == len(set(order))
    position = {name: i for i, name in enumerate(order)}
    for zone in topology.zones.values():
        for parent in zone.parents:
            assert position[zone.name] < position[parent], (zone.name, parent, order)


# -- the example federation ------------------------------------------------------------------


@pytest.fixture(scope="module")
def example() -> Topology:
    return load_topology(EXAMPLE)


def test_example_zones(example: Topology) -> None:
    assert list(example.zones) == ["global", "eu", "us", "eu-dc1", "eu-dc2", "us-dc1"]
    assert example.roots() == ["global"]
    assert example.children("global") == ["eu", "us"]
    assert example.children("eu") == ["eu-dc1", "eu-dc2"]
    assert example.children("eu-dc1") == []
    assert example.zones["eu"].parents == ["global"]
    assert example.zones["eu"].capabilities == {"region": "eu"}


def test_example_host_counts(example: Topology) -> None:
    assert example.subtree_hosts("global") == 900
    assert example.subtree_hosts("eu") == 600
    assert example.subtree_hosts("us") == 300
    assert example.host_count("eu-dc1") == 300
    assert example.host_count("eu") == 0
    assert sum(example.host_count(z) for z in example.zones) == 900


def test_example_hosts_expand(example: Topology) -> None:
    hosts = example.zones["eu-dc1"].hosts()
    assert len(hosts) == 300
    assert hosts[0].name == "eu-dc1-std-00000"
    assert hosts[0].capabilities["arch"] == "x86_64"
    assert {h.capabilities["rack"] for h in hosts[:240]} == {f"r0{i}" for i in range(1, 7)}
    gpu = [h for h in hosts if h.name.startswith("eu-dc1-gpu")]
    assert len(gpu) == 60
    assert all(h.capabilities["gpu"] == 8 for h in gpu)
    for h in hosts:
        for key, total in h.resources.items():
            assert 0 <= h.used[key] <= total


def test_example_hosts_are_reproducible(example: Topology) -> None:
    again = load_topology(EXAMPLE)
    assert [h.used for h in again.zones["eu-dc2"].hosts()] == [
        h.used for h in example.zones["eu-dc2"].hosts()
    ]


def test_example_defaults(example: Topology) -> None:
    assert example.heartbeat_interval == 5.0
    assert "heartbeat_interval" not in example.defaults
    assert example.defaults["poll_interval"] == 2.0
    assert example.defaults["host_ttl"] == 15.0


def test_example_walk(example: Topology) -> None:
    assert list(example.walk("global")) == [
        (0, "global"),
        (1, "eu"),
        (2, "eu-dc1"),
        (2, "eu-dc2"),
        (1, "us"),
        (2, "us-dc1"),
    ]


def test_example_children_first(example: Topology) -> None:
    order = example.order_children_first()
    assert_children_first(example, order)
    assert order[-1] == "global"


def test_load_topology_accepts_a_string_path() -> None:
    assert load_topology(str(EXAMPLE)).roots() == ["global"]


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="cannot read topology"):
        load_topology(tmp_path / "nope.toml")


def test_load_bad_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[[zones]\nname = ")
    with pytest.raises(TopologyError, match="cannot read topology"):
        load_topology(path)


def test_load_from_file(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(
        '[[zones]]\nname = "root"\n\n[[zones]]\nname = "leaf"\nparents = ["root"]\n'
        "[[zones.hosts]]\ncount = 7\nvcpus = 4\n"
    )
    topology = load_topology(path)
    assert topology.subtree_hosts("root") == 7
    assert topology.zones["leaf"].host_groups == [{"count": 7, "vcpus": 4}]


# -- a small valid topology ---------------------------------------------------------------------


def test_minimal_topology() -> None:
    topology = parse_topology(zones({"name": "solo"}))
    assert topology.roots() == ["solo"]
    assert topology.subtree_hosts("solo") == 0
    assert topology.heartbeat_interval == 5.0
    assert topology.defaults == {}
    assert topology.order_children_first() == ["solo"]
    assert topology.zones["solo"].port is None


def test_zone_fields_are_kept() -> None:
    topology = parse_topology(
        zones(
            {
                "name": "a",
                "capabilities": {"region": "eu"},
                "settings": {"poll_interval": 1.0},
                "port": 8123,
                "hosts": [{"count": 2}, {"vcpus": 4}],
            },
            defaults={"heartbeat_interval": 2, "poll_timeout": 3.0},
        )
    )
    zone = topology.zones["a"]
    assert zone.capabilities == {"region": "eu"}
    assert zone.settings == {"poll_interval": 1.0}
    assert zone.port == 8123
    assert topology.heartbeat_interval == 2.0
    assert topology.defaults == {"poll_timeout": 3.0}
    # A group without a count is one host.
    assert topology.host_count("a") == 3
    assert len(zone.hosts()) == 3


def test_parse_does_not_change_its_input() -> None:
    data = zones({"name": "a"}, defaults={"heartbeat_interval": 2.0})
    parse_topology(data)
    assert data["defaults"] == {"heartbeat_interval": 2.0}


def test_hash_name_is_stable() -> None:
    assert hash_name("eu") == 1 * ord("e") + 2 * ord("u")
    assert hash_name("eu") != hash_name("ue")


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (zones({"name": "a", "parents": ["b"]}), "unknown parent 'b'"),
        (zones({"name": "a", "parents": ["a"]}), "its own parent"),
        (
            zones(
                {"name": "root"},
                {"name": "a", "parents": ["root", "c"]},
                {"name": "b", "parents": ["a"]},
                {"name": "c", "parents": ["b"]},
            ),
            "cycle",
        ),
        (zones({"name": "a"}, {"name": "a"}), "'a' is listed twice"),
        (zones({"name": "bad name"}), "name"),
        (zones({"name": "-dash-first"}), "name"),
        (zones({"name": ""}), "name"),
        (zones({"name": "a" * 64}), "name"),
        (zones({"name": "trailing\n"}), "name"),
        (zones({"name": 5}), "name"),
        (zones({}), "name"),
        (zones({"name": "a", "colour": "red"}), r"unknown keys \['colour'\]"),
        (zones({"name": "a"}, extra=1), r"unknown top-level keys \['extra'\]"),
        (zones(), "at least one zone"),
        ({}, "at least one zone"),
        (zones("a"), "must be a table"),
        (zones({"name": "a", "parents": "root"}), "parents must be a list"),
        (zones({"name": "a", "parents": [1]}), "parents must be a list"),
        (zones({"name": "a", "hosts": [{"count": -1}]}), "count"),
        (zones({"name": "a", "hosts": [{"count": 1_000_001}]}), "count"),
        (zones({"name": "a", "hosts": [{"count": "3"}]}), "count"),
        (zones({"name": "a", "hosts": [{"count": 1, "cores": 4}]}), r"unknown keys \['cores'\]"),
        (zones({"name": "a", "hosts": [{"vcpus": -4}]}), "vcpus"),
        (zones({"name": "a", "hosts": [{"vcpus": []}]}), "empty list"),
        (zones({"name": "a", "hosts": [{"load": 1.5}]}), "load"),
        (zones({"name": "a", "hosts": [{"capabilities": {"bad key": 1}}]}), "capability key"),
        (
            zones({"name": "a", "hosts": [{"count": 2, "prefix": "p"}, {"prefix": "p"}]}),
            "repeat",
        ),
        (zones({"name": "a", "hosts": 5}), "hosts must be a list"),
        (zones({"name": "a", "hosts": ["x"]}), "hosts must be a list"),
        (zones({"name": "a", "capabilities": "x"}), "capabilities must be a table"),
        (zones({"name": "a", "settings": ["x"]}), "settings must be a table"),
        (zones({"name": "a", "port": "80"}), "port"),
        (zones({"name": "a"}, defaults="x"), "defaults must be a table"),
        (zones({"name": "a"}, defaults={"heartbeat_interval": 0}), "positive"),
        (zones({"name": "a"}, defaults={"heartbeat_interval": -1.0}), "positive"),
        (zones({"name": "a"}, defaults={"heartbeat_interval": float("nan")}), "positive"),
        (zones({"name": "a"}, defaults={"heartbeat_interval": "5"}), "heartbeat_interval"),
        (zones({"name": "a", "agent": {"server_uid_base": True}}), "'server_uid_base'"),
        (zones({"name": "a", "agent": {"insecure_shared_user": "yes"}}), "wrong type"),
    ],
)
def test_invalid_topologies(data: dict[str, Any], message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        parse_topology(data)


def test_error_names_the_zone_of_a_bad_host_group() -> None:
    with pytest.raises(TopologyError, match="zone 'dc1': host group 1"):
        parse_topology(zones({"name": "dc1", "hosts": [{"count": 1}, {"count": -1}]}))


def test_cycle_message_shows_the_path() -> None:
    data = zones({"name": "a", "parents": ["b"]}, {"name": "b", "parents": ["a"]})
    with pytest.raises(TopologyError, match=r"a > b > a|b > a > b"):
        parse_topology(data)


def test_no_root() -> None:
    # Every zone has a parent: there is no root (and necessarily a cycle).
    data = zones(
        {"name": "a", "parents": ["c"]},
        {"name": "b", "parents": ["a"]},
        {"name": "c", "parents": ["b"]},
    )
    with pytest.raises(TopologyError, match=r"cycle|root"):
        parse_topology(data)


# -- several parents ------------------------------------------------------------------------------


@pytest.fixture
def two_roots() -> Topology:
    return parse_topology(
        zones(
            {"name": "geo"},
            {"name": "gpu-pool"},
            {"name": "eu", "parents": ["geo"], "hosts": [{"count": 5}]},
            {"name": "dc1", "parents": ["eu", "gpu-pool"], "hosts": [{"count": 40}]},
            {"name": "dc2", "parents": ["eu"], "hosts": [{"count": 10}]},
        )
    )


def test_zone_with_two_parents_counts_in_both_roots(two_roots: Topology) -> None:
    assert two_roots.roots() == ["geo", "gpu-pool"]
    assert two_roots.children("gpu-pool") == ["dc1"]
    assert two_roots.children("eu") == ["dc1", "dc2"]
    assert two_roots.subtree_hosts("geo") == 5 + 40 + 10
    assert two_roots.subtree_hosts("gpu-pool") == 40
    assert two_roots.subtree_hosts("dc1") == 40


def test_children_first_with_two_parents(two_roots: Topology) -> None:
    order = two_roots.order_children_first()
    assert_children_first(two_roots, order)
    assert order.count("dc1") == 1


def test_walk_with_two_parents(two_roots: Topology) -> None:
    assert list(two_roots.walk("gpu-pool")) == [(0, "gpu-pool"), (1, "dc1")]


@st.composite
def dags(draw: st.DrawFn) -> dict[str, Any]:
    """A random acyclic topology: zone i may only have parents among zones 0..i-1."""
    n = draw(st.integers(min_value=1, max_value=12))
    specs = []
    for i in range(n):
        parents = (
            draw(st.sets(st.integers(min_value=0, max_value=i - 1), max_size=3)) if i else set()
        )
        spec: dict[str, Any] = {"name": f"z{i}", "parents": [f"z{p}" for p in sorted(parents)]}
        count = draw(st.integers(min_value=0, max_value=4))
        if count:
            spec["hosts"] = [{"count": count}]
        specs.append(spec)
    order = draw(st.permutations(specs))
    return zones(*order)


@given(data=dags())
@settings(max_examples=150)
def test_random_dags_parse_and_order_children_first(data: dict[str, Any]) -> None:
    if _some_root_reaches_a_zone_twice(data):
        with pytest.raises(TopologyError, match="two paths"):
            parse_topology(data)
        return
    topology = parse_topology(data)
    assert_children_first(topology, topology.order_children_first())
    assert topology.roots() == [z["name"] for z in data["zones"] if not z["parents"]]
    for name in topology.zones:
        own = topology.host_count(name)
        assert topology.subtree_hosts(name) == own + sum(
            topology.subtree_hosts(c) for c in topology.children(name)
        )


def _some_root_reaches_a_zone_twice(data: dict[str, Any]) -> bool:
    """Count the paths from each root to each zone, independently of the code under test."""
    children: dict[str, list[str]] = {z["name"]: [] for z in data["zones"]}
    for zone in data["zones"]:
        for parent in zone["parents"]:
            children[parent].append(zone["name"])

    def paths(name: str, counts: dict[str, int]) -> None:
        counts[name] = counts.get(name, 0) + 1
        for child in children[name]:
            paths(child, counts)

    for zone in data["zones"]:
        if not zone["parents"]:
            counts: dict[str, int] = {}
            paths(zone["name"], counts)
            if max(counts.values()) > 1:
                return True
    return False


@given(data=dags(), source=st.integers(min_value=0, max_value=11))
@settings(max_examples=150)
def test_a_back_edge_makes_a_cycle(data: dict[str, Any], source: int) -> None:
    specs = {z["name"]: z for z in data["zones"]}
    # Make a zone that has a parent also a parent of that parent: a two-zone cycle.
    child = f"z{source % len(specs)}"
    if not specs[child]["parents"]:
        return
    parent = specs[child]["parents"][0]
    specs[parent]["parents"] = [*specs[parent]["parents"], child]
    with pytest.raises(TopologyError, match="cycle"):
        parse_topology(data)


def test_a_zone_reached_twice_from_one_root_is_refused() -> None:
    data = {
        "zones": [
            {"name": "top"},
            {"name": "a", "parents": ["top"]},
            {"name": "b", "parents": ["top"]},
            {"name": "dc", "parents": ["a", "b"], "hosts": [{"count": 2}]},
        ]
    }
    with pytest.raises(TopologyError, match="two paths"):
        parse_topology(data)


def test_agent_options_become_the_agents_flags() -> None:
    topology = parse_topology(
        zones(
            {
                "name": "a",
                "agent": {"driver": "process", "server_uid_base": 300_000, "cgroups": False},
            }
        )
    )
    assert agent_options(topology.zones["a"].agent) == [
        "--driver",
        "process",
        "--server-uid-base",
        "300000",
        "--no-cgroups",
    ]


def test_the_example_declares_three_swift_clusters_over_two_tiers() -> None:
    topology = load_topology(EXAMPLE)
    clusters = {
        c.name: (zone.name, c.tiers) for zone in topology.zones.values() for c in zone.storage
    }
    assert len(clusters) == 3
    assert {tier for _, tiers in clusters.values() for tier in tiers} == {"gold", "silver"}


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("nope", "storage must be a list"),
        ([{"tiers": ["gold"]}], "needs a name"),
        ([{"name": "s", "tiers": []}], "tiers must name tiers"),
        ([{"name": "s", "tiers": ["Gold!"]}], "tiers must name tiers"),
        ([{"name": "s", "capacity_gb": 0}], "capacity_gb must be positive"),
        ([{"name": "s", "replicas": 3}], "unknown keys"),
        ([{"name": "s"}, {"name": "s"}], "unique"),
    ],
)
def test_bad_storage_clusters_are_refused(storage: object, message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        parse_topology({"zones": [{"name": "z", "storage": storage}]})
