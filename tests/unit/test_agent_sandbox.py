"""The pure parts of confining process servers: whom they run as, their uids, limits, cgroups."""

from __future__ import annotations

import json
import pwd
import resource
import shutil
from pathlib import Path

import pytest

from skyfed.compute.agent.cgroups import Cgroups, Hierarchy, find_hierarchies
from skyfed.compute.agent.driver import DriverError
from skyfed.compute.agent.sandbox import SandboxOptions, rlimits_for, user_mode
from skyfed.compute.agent.uid_ledger import UidLedger, check_range

# -- whom servers run as -----------------------------------------------------------


def test_a_root_agent_runs_servers_as_users_of_their_own_with_or_without_the_flag() -> None:
    assert user_mode(0, insecure_shared_user=False) == "own-users"
    assert user_mode(0, insecure_shared_user=True) == "own-users"  # never as root


def test_an_agent_that_is_not_root_refuses_unless_the_operator_consents() -> None:
    with pytest.raises(DriverError, match=r"needs root.*--insecure-shared-user"):
        user_mode(1000, insecure_shared_user=False)
    assert user_mode(1000, insecure_shared_user=True) == "shared-user"


# -- uid ranges and the ledger -----------------------------------------------------


@pytest.mark.parametrize(
    ("base", "count", "message"),
    [
        (0, 10, "must lie within 1000"),
        (999, 10, "must lie within 1000"),
        (2**31 - 5, 10, "must lie within"),
        (65530, 10, "nobody's uid 65534"),
        (200_000, 0, "at least 1"),
    ],
)
def test_uid_ranges_that_could_hand_out_root_or_a_system_uid_are_refused(
    base: int, count: int, message: str
) -> None:
    with pytest.raises(DriverError, match=message):
        check_range(base, count)


def test_a_range_holding_an_account_is_refused() -> None:
    accounts = [u for u in pwd.getpwall() if 1000 <= u.pw_uid < 65534]
    if not accounts:
        pytest.skip("no ordinary account on this host to collide with")
    with pytest.raises(DriverError, match=f"account '{accounts[0].pw_name}'"):
        check_range(accounts[0].pw_uid, 1)


def test_uids_are_one_per_server_kept_on_disk_and_freed_last(tmp_path: Path) -> None:
    path = tmp_path / "_uids.json"
    ledger = UidLedger(path, base=5000, count=3)
    ledger.load()
    assert [ledger.allocate(s) for s in ("a", "b")] == [5000, 5001]
    assert ledger.allocate("a") == 5000  # the one it has
    assert path.stat().st_mode & 0o777 == 0o600
    again = UidLedger(path, base=5000, count=3)
    again.load()
    assert again.taken() == {"a": 5000, "b": 5001}
    again.release("a")
    assert again.allocate("c") == 5002  # the next in turn, not the one just freed
    assert again.allocate("d") == 5000  # wrapped: the freed one, last
    with pytest.raises(DriverError, match="no free server uid: all 3 from 5000 are taken"):
        again.allocate("e")
    assert json.loads(path.read_text())["uids"] == {"b": 5001, "c": 5002, "d": 5000}


def test_a_narrowed_range_keeps_the_uids_still_held(tmp_path: Path) -> None:
    path = tmp_path / "_uids.json"
    wide = UidLedger(path, base=5000, count=10)
    wide.allocate("a")
    narrow = UidLedger(path, base=6000, count=2)
    narrow.load()
    assert narrow.get("a") == 5000
    assert narrow.allocate("b") == 6000


@pytest.mark.parametrize(
    "body", ["not json", '{"uids": {"a": 0}}', '{"uids": {"a": "5000"}}', '{"uids": []}']
)
def test_a_damaged_ledger_stops_the_agent(tmp_path: Path, body: str) -> None:
    path = tmp_path / "_uids.json"
    path.write_text(body)
    with pytest.raises(DriverError, match="uid ledger"):
        UidLedger(path, base=5000, count=10).load()


# -- limits --------------------------------------------------------------------------


def test_rlimits_follow_the_flavor_and_leave_memory_to_a_cgroup() -> None:
    need = {"vcpus": 2, "ram_mb": 256, "disk_gb": 3}
    options = SandboxOptions(max_processes=40, max_open_files=64)
    limits = rlimits_for(need, options, memory_in_cgroup=False, own_user=True)
    assert limits == {
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_NOFILE: 64,
        resource.RLIMIT_NPROC: 40,
        resource.RLIMIT_FSIZE: 3 * 1024**3,
        resource.RLIMIT_AS: 256 * 1024**2,
    }
    in_cgroup = rlimits_for(need, options, memory_in_cgroup=True, own_user=True)
    assert resource.RLIMIT_AS not in in_cgroup
    # Sharing the agent's user, a process count would count the agent's too.
    shared = rlimits_for(need, options, memory_in_cgroup=False, own_user=False)
    assert resource.RLIMIT_NPROC not in shared
    # A flavor without disk sets no file size limit.
    no_disk = rlimits_for({**need, "disk_gb": 0}, options, memory_in_cgroup=True, own_user=True)
    assert resource.RLIMIT_FSIZE not in no_disk


def test_options_out_of_bounds_are_refused() -> None:
    with pytest.raises(DriverError, match="--server-max-processes"):
        SandboxOptions(max_processes=0).check()


# -- cgroups -------------------------------------------------------------------------

V1_MOUNTS = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
V1_SELF = """\
8:pids:/
4:memory:/jobs/j1
1:cpu:/
0::/
"""


def test_v1_hierarchies_are_found_where_this_process_is() -> None:
    found = find_hierarchies(V1_MOUNTS, V1_SELF)
    mem, cpu, pids = (Path(f"/sys/fs/cgroup/{c}") for c in ("memory", "cpu", "pids"))
    assert found == {
        "memory": Hierarchy("memory", 1, mem / "jobs/j1", mem),
        "cpu": Hierarchy("cpu", 1, cpu, cpu),
        "pids": Hierarchy("pids", 1, pids, pids),
    }


def test_v2_and_a_mount_of_a_subtree() -> None:
    mounts = "30 20 0:26 /system.slice /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"
    found = find_hierarchies(mounts, "0::/system.slice/agent.service\n")
    assert {h.version for h in found.values()} == {2}
    assert found["memory"].group == Path("/sys/fs/cgroup/agent.service")
    # A group outside the mounted subtree is not reachable: not found.
    assert find_hierarchies(mounts, "0::/user.slice/x\n") == {}


def test_a_controller_bound_to_v1_but_not_mounted_is_not_looked_for_on_v2() -> None:
    mounts = "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
    assert "memory" not in find_hierarchies(mounts, "4:memory:/\n0::/\n")


def test_a_mount_point_with_a_space_is_read() -> None:
    mounts = r"35 31 0:32 / /cg\040root/memory rw - cgroup cgroup rw,memory" + "\n"
    assert find_hierarchies(mounts, "4:memory:/\n")["memory"].group == Path("/cg root/memory")


@pytest.mark.parametrize("version", [1, 2])
def test_a_servers_group_gets_its_flavors_limits(tmp_path: Path, version: int) -> None:
    bases = {name: (version, tmp_path / name / "skyfed-t") for name in ("memory", "cpu", "pids")}
    for _, base in bases.values():
        base.mkdir(parents=True)
    group = Cgroups(bases).create("s1", vcpus=2, ram_mb=64, max_processes=20)
    assert [d.name for d in group.dirs] == ["s1"] * 3
    assert group.memory_version == version
    read = {name: (base / "s1") for name, (_, base) in bases.items()}
    if version == 1:
        assert (read["memory"] / "memory.limit_in_bytes").read_text() == str(64 * 1024**2)
        assert (read["cpu"] / "cpu.cfs_quota_us").read_text() == "200000"
        assert (read["cpu"] / "cpu.cfs_period_us").read_text() == "100000"
    else:
        assert (read["memory"] / "memory.max").read_text() == str(64 * 1024**2)
        assert (read["cpu"] / "cpu.max").read_text() == "200000 100000"
    assert (read["pids"] / "pids.max").read_text() == "20"
    assert group.procs_files == tuple(str(d / "cgroup.procs") for d in group.dirs)


def test_a_cgroup_parent_replaces_the_agents_own_group() -> None:
    found = find_hierarchies(V1_MOUNTS, V1_SELF, parent="/skyfed.slice")
    assert found["memory"].group == Path("/sys/fs/cgroup/memory/skyfed.slice")
    assert found["pids"].group == Path("/sys/fs/cgroup/pids/skyfed.slice")


def test_on_v2_the_controllers_are_enabled_down_to_the_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cgroup2 tree as the kernel shows it: what each group may hand to its children;
    # and as in cgroupfs, removing a group removes its control files.
    monkeypatch.setattr(Path, "rmdir", shutil.rmtree)
    root = tmp_path / "cg"
    for d in (root, root / "skyfed.slice"):
        d.mkdir(parents=True)
        (d / "cgroup.controllers").write_text("cpu memory pids\n")
        (d / "cgroup.subtree_control").write_text("")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(f"30 20 0:26 / {root} rw - cgroup2 cgroup2 rw\n")
    own = tmp_path / "cgroup"
    own.write_text("0::/agent.service\n")
    cgroups, unusable = Cgroups.probe(
        "t", parent="/skyfed.slice", mountinfo=mountinfo, proc_cgroup=own
    )
    assert unusable == {}
    assert cgroups.bases == dict.fromkeys(
        ("cpu", "memory", "pids"), (2, root / "skyfed.slice" / "skyfed-t")
    )
    assert (root / "cgroup.subtree_control").read_text().startswith("+")  # enabled on the way
    assert not list((root / "skyfed.slice" / "skyfed-t").glob("probe-*"))  # the trial is gone


def test_a_controller_not_available_on_v2_is_left_to_rlimits(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    root.mkdir()
    (root / "cgroup.controllers").write_text("hugetlb\n")  # the others are bound to v1
    (root / "cgroup.subtree_control").write_text("")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(f"41 31 0:38 / {root} rw - cgroup2 cgroup2 rw\n")
    own = tmp_path / "cgroup"
    own.write_text("0::/\n")
    cgroups, unusable = Cgroups.probe("t", mountinfo=mountinfo, proc_cgroup=own)
    assert cgroups.bases == {}
    assert set(unusable) == {"cpu", "memory", "pids"}
    assert "not available" in unusable["memory"]


@pytest.mark.parametrize("parent", ["skyfed", "/a/../b", "/x\x00"])
def test_a_cgroup_parent_must_be_a_path_from_the_top(parent: str) -> None:
    with pytest.raises(DriverError, match="--cgroup-parent"):
        SandboxOptions(cgroup_parent=parent).check()
