"""How the process driver confines a server: its own user, a private home, limits.

An agent running as root runs each server as a user of its own (`uid_ledger`),
without supplementary groups, with `no_new_privs` (setuid programs give it
nothing), umask 077, in a home only it can enter, and with rlimits: open files,
processes (RLIMIT_NPROC counts the uid's processes, and the uid is the
server's alone), file size (disk_gb), no core files, and memory (RLIMIT_AS)
where no memory cgroup holds it (`cgroups`). An agent that is not root cannot
switch users: it refuses to run the process driver unless the operator asked
for servers under the agent's own user (`insecure_shared_user`).

All of it happens in the child between fork and exec (`Confinement.preexec`),
in this order: join the server's cgroups and set the rlimits while still root,
drop to the server's user, refuse to go on if any id is still 0, then enter the
working directory as the server (so a `cwd` it could not reach itself is refused,
not entered with root's rights). Popen's own `user=`/`group=` switch users before
`preexec_fn` runs, too early to join a cgroup as root, so the switch is done here.
The preexec function does little beyond system calls (no imports, no locks),
which is what keeps it safe in a process that has threads.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from skyfed.compute.agent.driver import DriverError
from skyfed.compute.agent.sigkill import sigkill_until_gone
from skyfed.compute.agent.uid_ledger import UID_BASE, UID_COUNT

MIB = 1024 * 1024
GIB = 1024 * MIB
PR_SET_NO_NEW_PRIVS = 38
MAX_PROCESSES = 1024  # per server, by default (--server-max-processes)
MAX_OPEN_FILES = 4096  # per server process, by default (--server-max-open-files)

UserMode = Literal["own-users", "shared-user"]


@dataclass(frozen=True, slots=True)
class SandboxOptions:
    """What the operator chose (agent options `--server-*`)."""

    uid_base: int = UID_BASE
    uid_count: int = UID_COUNT
    max_processes: int = MAX_PROCESSES
    max_open_files: int = MAX_OPEN_FILES
    cgroups: bool = True  # use the cgroups a probe finds writable
    # The group servers' groups go below, as a path in each hierarchy ("/skyfed.slice");
    # None: the agent's own group.
    cgroup_parent: str | None = None
    insecure_shared_user: bool = False  # a non-root agent runs servers as itself

    def check(self) -> None:
        if self.max_processes < 1 or self.max_open_files < 16:
            raise DriverError("--server-max-processes must be >= 1, --server-max-open-files >= 16")
        parent = self.cgroup_parent
        if parent is not None and (
            not parent.startswith("/") or ".." in parent.split("/") or "\x00" in parent
        ):
            raise DriverError(
                f"--cgroup-parent {parent!r} must be a cgroup path from the top of the "
                "hierarchy, such as /skyfed.slice"
            )


def user_mode(euid: int, *, insecure_shared_user: bool) -> UserMode:
    """Whom servers run as, from the agent's effective uid (pure).

    Root: each server as its own user, always (the flag changes nothing: no
    server ever runs as root). Not root: the agent cannot switch users, so only
    with the operator's explicit consent do servers run as the agent's own user,
    and then they can read its state.
    """
    if euid == 0:
        return "own-users"
    if insecure_shared_user:
        return "shared-user"
    raise DriverError(
        f"the process driver runs each server as a user of its own, which needs root (this "
        f"agent runs as uid {euid}); run the agent as root, or pass --insecure-shared-user "
        "to run servers as the agent's own user (they can then read the agent's state and "
        "each other's files)"
    )


def rlimits_for(
    need: Mapping[str, int], options: SandboxOptions, *, memory_in_cgroup: bool, own_user: bool
) -> dict[int, int]:
    """The rlimits of a server's processes (pure). A flavor value of 0 sets no limit of
    its kind (the API never sends 0 vcpus or ram_mb; disk_gb 0 is a flavor without disk)."""
    limits = {resource.RLIMIT_CORE: 0, resource.RLIMIT_NOFILE: options.max_open_files}
    if own_user:  # shared, the count would include the agent and every other server
        limits[resource.RLIMIT_NPROC] = options.max_processes
    if need.get("disk_gb", 0) > 0:  # per file, not in total: a quota would be (not here)
        limits[resource.RLIMIT_FSIZE] = need["disk_gb"] * GIB
    if need.get("ram_mb", 0) > 0 and not memory_in_cgroup:
        # Address space is a blunt stand-in for memory (runtimes that reserve much and
        # use little suffer); the memory cgroup, where there is one, counts what is used.
        limits[resource.RLIMIT_AS] = need["ram_mb"] * MIB
    return limits


def _load_prctl() -> Callable[..., int] | None:
    with contextlib.suppress(OSError, AttributeError):
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
        return prctl
    return None


_PRCTL = _load_prctl()  # looked up here: nothing is imported or loaded after the fork


@dataclass(frozen=True, slots=True)
class Confinement:
    """What a server's process is set up with between fork and exec."""

    uid: int | None  # None: stay the agent's user (shared-user mode)
    gid: int | None
    cwd: str
    tmp: str  # made (as the server) when missing: its TMPDIR
    rlimits: tuple[tuple[int, int], ...]
    join: tuple[str, ...] = ()  # cgroup.procs files

    def preexec(self, report: int) -> Callable[[], None]:
        """The child's setup; a failure writes what failed to the fd `report` and raises."""
        address_space = [(r, v) for r, v in self.rlimits if r == resource.RLIMIT_AS]
        others = [(r, v) for r, v in self.rlimits if r != resource.RLIMIT_AS]
        uid, gid, cwd, tmp, join = self.uid, self.gid, self.cwd, self.tmp, self.join

        def setup() -> None:
            step = "joining its cgroup"
            try:
                for path in join:
                    fd = os.open(path, os.O_WRONLY)
                    try:
                        os.write(fd, b"0")  # 0: the writing process
                    finally:
                        os.close(fd)
                step = "setting its limits"
                for res, value in others:
                    resource.setrlimit(res, (value, value))
                if uid is not None and gid is not None:
                    step = f"switching to uid {uid}"
                    os.setgroups([])
                    os.setresgid(gid, gid, gid)
                    os.setresuid(uid, uid, uid)
                if 0 in os.getresuid() or 0 in os.getresgid():
                    step = "refusing to run as root"
                    raise PermissionError(1, "a server never runs as root")
                if _PRCTL is not None and _PRCTL(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                    step = "setting no_new_privs"
                    raise OSError(ctypes.get_errno(), "prctl failed")
                step = f"entering its working directory {cwd}"
                os.chdir(cwd)
                with contextlib.suppress(OSError):
                    os.mkdir(tmp, 0o700)
                os.umask(0o077)
                step = "setting its memory limit"
                for res, value in address_space:  # last: Python allocates above
                    resource.setrlimit(res, (value, value))
            except BaseException as exc:
                reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                with contextlib.suppress(OSError):
                    os.write(report, f"{step}: {reason}".encode()[:512])
                raise

        return setup


def capped(limits: Mapping[int, int], *, can_raise: bool) -> tuple[tuple[int, int], ...]:
    """`limits` within the agent's own hard limits, unless it may raise them (root)."""
    out = []
    for res, value in sorted(limits.items()):
        hard = resource.getrlimit(res)[1]
        if not can_raise and hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        out.append((res, value))
    return tuple(out)


# -- private files and directories -------------------------------------------------


def private_dir(path: Path, mode: int = 0o700) -> Path:
    """`path` as a directory of ours with `mode` (made, or its mode set, as needed)."""
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode):
        raise DriverError(f"{path} is not a directory")
    if st.st_uid != os.geteuid():
        raise DriverError(f"{path} belongs to uid {st.st_uid}, not to this agent")
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)
    return path


def open_private(path: Path, flags: int) -> int:
    """An fd on `path` (0600, also when it existed with a wider mode; never a symlink)."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except OSError:
        os.close(fd)
        raise
    return fd


def server_home(homes: Path, server_id: str, uid: int, gid: int) -> Path:
    """The server's home, `homes/<id>`, owned by its user, 0700.

    `homes` is the agent's (the server cannot put a link in place of its home),
    and nothing is done inside the home as root: that is the server's.
    """
    home = homes / server_id
    try:
        os.mkdir(home, 0o700)
        os.chown(home, uid, gid)
    except FileExistsError:
        st = home.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
            raise DriverError(
                f"server {server_id}'s home {home} exists but does not belong to its uid "
                f"{uid} (it belongs to {st.st_uid}); remove it to start the server"
            ) from None
    os.chmod(home, 0o700)  # checked above: our own directory's entry, not a link
    return home


def blocked_ancestor(path: Path) -> Path | None:
    """The first directory above `path` other users cannot pass through (no o+x), if any."""
    for parent in reversed(path.parents):
        try:
            mode = parent.stat().st_mode
        except OSError:
            return parent
        if not mode & stat.S_IXOTH:
            return parent
    return None


# -- processes of a uid ------------------------------------------------------------


def proc_uid(pid: int) -> int | None:
    """The real uid of a live process, from /proc (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def uid_pids(uid: int) -> list[int]:
    return [
        int(name)
        for name in os.listdir("/proc")
        if name.isdigit() and int(name) != os.getpid() and proc_uid(int(name)) == uid
    ]


def live_uids() -> set[int]:
    """The real uids of every process now (one pass over /proc)."""
    found = {proc_uid(int(name)) for name in os.listdir("/proc") if name.isdigit()}
    return {uid for uid in found if uid is not None}


async def kill_uid(uid: int) -> None:
    """SIGKILL every process of `uid` until none is left (bounded).

    Only for a uid that is one server's alone: whatever it started, in its
    process group or not, goes with it.
    """
    if uid == 0 or uid == os.getuid():
        raise DriverError(f"refusing to kill every process of uid {uid}")
    await sigkill_until_gone(lambda: uid_pids(uid))
