"""cgroups for process servers: memory, CPU and process-count limits, where the host allows.

At start the agent probes each controller it uses (memory, cpu, pids): which
hierarchy holds it (cgroup v1: a mount of its own; v2: the unified one), where
its parent group is (the operator's `--cgroup-parent`, else the agent's own
group from /proc/self/cgroup, so whatever limits the agent is under, its
servers are under too), and whether it can make `<parent>/skyfed-<tag>/` there
and set a limit in a trial group below it. `tag` is a hash of the agent's state
directory, so agents sharing a parent do not mix their servers. On v2 the
controller is enabled in `cgroup.subtree_control` from the top of the hierarchy
down to the parent, which the kernel refuses for a group holding processes
other than the root: an agent in a group of its own (systemd's delegation)
needs a `--cgroup-parent` beside it.

Each server then gets `<...>/skyfed-<tag>/<server id>` in every usable
hierarchy, limited to its flavor (memory: ram_mb, without swap beyond it; cpu:
a quota of vcpus CPUs; pids: the agent's max processes), and its process joins
the group between fork and exec, before anything of the server runs. The group
is removed when the server's last process is gone. A controller that cannot be
used (not mounted, not writable, on v2 not delegated to the agent's group) is
left to rlimits, and the agent's log says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from skyfed.compute.agent.sigkill import sigkill_until_gone

CONTROLLERS = ("memory", "cpu", "pids")
CPU_PERIOD_US = 100_000
MIB = 1024 * 1024
REMOVE_ROUNDS = 50  # rmdir waits for the kernel to let go of exiting processes
ROUND_PAUSE = 0.02

# Per controller and version: the file a trial writes (with its "no limit" value).
_TRIAL = {
    ("memory", 1): ("memory.limit_in_bytes", "-1"),
    ("cpu", 1): ("cpu.cfs_quota_us", "-1"),
    ("pids", 1): ("pids.max", "max"),
    ("memory", 2): ("memory.max", "max"),
    ("cpu", 2): ("cpu.max", "max"),
    ("pids", 2): ("pids.max", "max"),
}


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """Where one controller is, seen from this process: its version, the hierarchy's
    mount point and the directory of the group servers go below."""

    controller: str
    version: int
    group: Path
    mount: Path


def _unescape(path: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \ooo (octal).
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def find_hierarchies(
    mountinfo: str, proc_cgroup: str, parent: str | None = None
) -> dict[str, Hierarchy]:
    """Each of CONTROLLERS -> the directory of `parent` (a cgroup path such as
    "/skyfed.slice"; default: this process's own group) in its hierarchy (pure).

    A controller bound to a v1 hierarchy is there; the others may be on the v2
    one, which the probe asks (its cgroup.controllers). A group outside what is
    mounted (another namespace's root) is not found.
    """
    v1_paths: dict[str, str] = {}
    v2_path: str | None = None
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, names, path = parts
        if parts[0] == "0" and names == "":
            v2_path = path
        for name in names.split(","):
            v1_paths[name] = path
    v1_mounts: dict[str, tuple[str, str]] = {}
    v2_mount: tuple[str, str] | None = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        dash = fields.index("-")
        if len(fields) < dash + 4 or dash < 5:
            continue
        fstype, options = fields[dash + 1], fields[dash + 3].split(",")
        root, point = _unescape(fields[3]), _unescape(fields[4])
        if fstype == "cgroup":
            for name in options:
                v1_mounts.setdefault(name, (root, point))
        elif fstype == "cgroup2" and v2_mount is None:
            v2_mount = (root, point)
    found: dict[str, Hierarchy] = {}
    for name in CONTROLLERS:
        if name in v1_paths:  # bound to a v1 hierarchy: it cannot be on v2 as well
            mount = v1_mounts.get(name)
            group = _inside(mount, parent or v1_paths[name]) if mount else None
            if mount and group is not None:
                found[name] = Hierarchy(name, 1, group, Path(mount[1]))
        elif v2_path is not None and v2_mount is not None:
            group = _inside(v2_mount, parent or v2_path)
            if group is not None:
                found[name] = Hierarchy(name, 2, group, Path(v2_mount[1]))
    return found


def _inside(mount: tuple[str, str], path: str) -> Path | None:
    root, point = mount
    root = root.rstrip("/") or "/"
    if root != "/" and path != root and not path.startswith(root + "/"):
        return None
    rest = path[len(root) :] if root != "/" else path
    return Path(point) / rest.lstrip("/")


def _write(path: Path, value: str) -> None:
    with path.open("w") as fh:
        fh.write(value)


@dataclass(frozen=True, slots=True)
class ServerGroup:
    """One server's groups (one directory per hierarchy used)."""

    dirs: tuple[Path, ...]
    memory_version: int | None = None  # where its memory limit is, to read OOM kills

    @property
    def procs_files(self) -> tuple[str, ...]:
        return tuple(str(d / "cgroup.procs") for d in self.dirs)

    def pids(self) -> set[int]:
        found: set[int] = set()
        for d in self.dirs:
            with contextlib.suppress(OSError, ValueError):
                found.update(int(p) for p in (d / "cgroup.procs").read_text().split())
        return found

    def oom_kills(self) -> int:
        """How many of its processes the kernel killed for want of memory (0 if unknown)."""
        name = {1: "memory.oom_control", 2: "memory.events"}.get(self.memory_version or 0)
        for d in self.dirs:
            path = d / name if name else None
            if path is None or not path.exists():
                continue
            with contextlib.suppress(OSError, ValueError):
                for line in path.read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        return 0

    async def kill(self) -> None:
        """SIGKILL everything in the groups until they are empty (bounded)."""
        await sigkill_until_gone(self.pids)

    async def remove(self) -> bool:
        """Remove the groups (after `kill`); True when they are gone."""
        left = list(self.dirs)
        for _ in range(REMOVE_ROUNDS):
            still = []
            for d in left:
                try:
                    d.rmdir()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                        raise
                    still.append(d)
            left = still
            if not left:
                return True
            await asyncio.sleep(ROUND_PAUSE)
        return False


class Cgroups:
    """The controllers this agent can use for its servers, found by trying at start."""

    def __init__(self, bases: Mapping[str, tuple[int, Path]]) -> None:
        self.bases = dict(bases)  # controller -> (version, the agent's skyfed-<tag> group)

    @property
    def controllers(self) -> list[str]:
        return sorted(self.bases)

    @classmethod
    def probe(
        cls,
        tag: str,
        *,
        parent: str | None = None,
        mountinfo: Path = Path("/proc/self/mountinfo"),
        proc_cgroup: Path = Path("/proc/self/cgroup"),
    ) -> tuple[Cgroups, dict[str, str]]:
        """The usable controllers, and for each of the others why not."""
        unusable: dict[str, str] = {}
        try:
            found = find_hierarchies(mountinfo.read_text(), proc_cgroup.read_text(), parent)
        except OSError as exc:
            return cls({}), dict.fromkeys(CONTROLLERS, f"cannot read {exc.filename}: {exc}")
        bases: dict[str, tuple[int, Path]] = {}
        for name in CONTROLLERS:
            where = found.get(name)
            if where is None:
                unusable[name] = "not mounted where this agent can see it"
                continue
            try:
                bases[name] = (where.version, _try(where, tag))
            except OSError as exc:
                reason = f"{exc.filename or where.group}: {exc.strerror or exc}"
                if where.version == 2 and exc.errno == errno.EBUSY:
                    reason += (
                        " (a v2 group holding processes cannot hand controllers to groups "
                        "below it: give --cgroup-parent a group beside the agent's)"
                    )
                unusable[name] = reason
        return cls(bases), unusable

    def create(self, server_id: str, *, vcpus: int, ram_mb: int, max_processes: int) -> ServerGroup:
        """The server's groups with its limits set (existing ones are reused and set again)."""
        dirs: list[Path] = []
        memory_version = None
        try:
            for name, (version, base) in sorted(self.bases.items()):
                d = base / server_id
                if d not in dirs:
                    d.mkdir(mode=0o755, exist_ok=True)
                    dirs.append(d)
                if name == "memory" and ram_mb > 0:
                    _memory_limit(d, version, ram_mb * MIB)
                    memory_version = version
                elif name == "cpu" and vcpus > 0:
                    _cpu_limit(d, version, vcpus)
                elif name == "pids":
                    _write(d / "pids.max", str(max_processes))
        except OSError:
            for d in dirs:
                with contextlib.suppress(OSError):
                    d.rmdir()
            raise
        return ServerGroup(tuple(dirs), memory_version)

    def close(self) -> None:
        """Remove the agent's own groups when no server's group is left in them."""
        for _, base in self.bases.values():
            with contextlib.suppress(OSError):
                base.rmdir()


def _enable_down_to(where: Hierarchy) -> None:
    """v2: the controller enabled for the children of every group from the top of the
    hierarchy down to `where.group` (made as needed)."""
    steps = [where.mount, *(where.mount / p for p in _prefixes(where.group, where.mount))]
    for d in steps:
        d.mkdir(mode=0o755, exist_ok=True)
        if where.controller not in (d / "cgroup.controllers").read_text().split():
            raise OSError(errno.ENOTSUP, "the controller is not available here", str(d))
        if where.controller not in (d / "cgroup.subtree_control").read_text().split():
            _write(d / "cgroup.subtree_control", f"+{where.controller}")


def _prefixes(group: Path, mount: Path) -> list[Path]:
    parts = group.relative_to(mount).parts
    return [Path(*parts[: i + 1]) for i in range(len(parts))]


def _try(where: Hierarchy, tag: str) -> Path:
    """Make the agent's group for servers in this hierarchy and prove a limit can be set."""
    if where.version == 2:
        _enable_down_to(where)
    else:
        where.group.mkdir(mode=0o755, parents=True, exist_ok=True)
    base = where.group / f"skyfed-{tag}"
    base.mkdir(mode=0o755, exist_ok=True)
    try:
        if where.version == 2:
            _write(base / "cgroup.subtree_control", f"+{where.controller}")
        trial = base / f"probe-{os.getpid()}"
        trial.mkdir(exist_ok=True)
        try:
            name, value = _TRIAL[(where.controller, where.version)]
            _write(trial / name, value)
        finally:
            trial.rmdir()
    except OSError:
        with contextlib.suppress(OSError):
            base.rmdir()
        raise
    return base


def _memory_limit(d: Path, version: int, limit: int) -> None:
    if version == 1:
        _write(d / "memory.limit_in_bytes", str(limit))
        # With swap accounting, memory plus swap gets the same limit: no swapping past it.
        if (d / "memory.memsw.limit_in_bytes").exists():
            with contextlib.suppress(OSError):
                _write(d / "memory.memsw.limit_in_bytes", str(limit))
        return
    _write(d / "memory.max", str(limit))
    for name, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
        if (d / name).exists():
            with contextlib.suppress(OSError):
                _write(d / name, value)


def _cpu_limit(d: Path, version: int, vcpus: int) -> None:
    quota = vcpus * CPU_PERIOD_US
    if version == 1:
        _write(d / "cpu.cfs_period_us", str(CPU_PERIOD_US))
        _write(d / "cpu.cfs_quota_us", str(quota))
    else:
        _write(d / "cpu.max", f"{quota} {CPU_PERIOD_US}")
