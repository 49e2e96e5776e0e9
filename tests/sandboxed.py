"""For tests of process servers, which run as users of their own when the agent is root.

Such a server can neither run this test's Python (it may live under /root, 0700)
nor reach pytest's tmp_path (/tmp/pytest-of-<user> is 0700): these give it a
Python every user can run and a directory other users may pass through.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from skyfed.compute.agent.sandbox import SandboxOptions, blocked_ancestor
from skyfed.compute.agent.sim import SimHost

ROOT = os.geteuid() == 0
needs_root = "servers run as users of their own only under a root agent"
# The xdist group of tests with process servers: they run one at a time, since servers of
# different agents may get the same uid (every agent's range starts at the same base), and
# deleting one kills every process of its uid.
PROCESS_SERVERS_GROUP = "process_servers"


def _runnable_by_all(path: Path) -> bool:
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return bool(mode & stat.S_IXOTH) and blocked_ancestor(path) is None


def server_python() -> str:
    """A Python 3 that a server's own user can run."""
    for candidate in (
        Path(sys.executable).resolve(),
        Path("/usr/local/bin/python3"),
        Path("/usr/bin/python3"),
    ):
        if _runnable_by_all(candidate.resolve()):
            return str(candidate)
    raise RuntimeError("no Python 3 on this host that any user may run")


def sandbox_options() -> SandboxOptions:
    """The driver's defaults; as a non-root test process, servers share its user."""
    return SandboxOptions(insecure_shared_user=not ROOT)


# A server's Python that says it is up, then waits a minute.
SLEEPER = "import time; print('up', flush=True); time.sleep(60)"


def host(name: str = "h0", vcpus: int = 8) -> SimHost:
    """One host for a process driver, with room for a few servers."""
    resources = {"vcpus": vcpus, "ram_mb": 16384, "disk_gb": 100}
    return SimHost(name, {}, resources, dict.fromkeys(resources, 0))


@contextmanager
def passable_dir(prefix: str = "skyfed-test-") -> Iterator[Path]:
    """A fresh directory under the system's temp dir that other users may pass through."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        os.chmod(path, 0o711)
        if blocked_ancestor(path) is not None:
            raise RuntimeError(f"{path} sits below a directory other users cannot pass")
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def start_agent(
    url: str, base: Path, log: Path, *options: str, prefix: str = "lz"
) -> subprocess.Popen[bytes]:
    """`skyfed agent` with the process driver and one 2-vCPU host (`<prefix>-g0-00000`),
    its state under `base`, its stderr appended to `log`."""
    spec = base / "hosts.json"
    spec.write_text(json.dumps({"prefix": prefix, "groups": [{"count": 1, "vcpus": 2}]}))
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "skyfed",
                "agent",
                "--url",
                url,
                "--username",
                "agent",
                "--spec",
                str(spec),
                "--driver",
                "process",
                "--state-dir",
                str(base / "state"),
                "--interval",
                "0.5",
                "--poll-wait",
                "1",
                "--stop-grace",
                "2",
                *([] if ROOT else ["--insecure-shared-user"]),
                *options,
            ],
            env={**os.environ, "SKYFED_PASSWORD": "pw"},
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
