"""Independent one-replica OpenStack Swift clusters on loopback, brought up and down.

The tests, the benchmarks and `skyfed up` run real Swift clusters as object storage
backends through this module. A cluster with base port P listens on 127.0.0.1 only:

    P     proxy server: tempauth, tempurl, formpost, bulk, SLO, DLO, both versioning
          styles, symlink, container and account quotas, staticweb (s3api optional)
    P+1   account server      P+2   container server      P+3   object server
    P+9   (UDP) where the servers send syslog; nobody needs to listen there

plus a container-updater (an account listing's object and byte counts come from it).
Every server is a process of its own, in a session of its own, started through
`swift_daemon.py`, which points Swift at the cluster's own swift.conf.

The cluster's directory holds `etc/` (swift.conf, rings, server configs, `cluster.json`
with the hash path salts and the generated passwords, `test.conf` for Swift's functional
tests) and `log/` (one file per server). Object data goes to tmpfs (a directory under
/dev/shm, linked from `data`): ext4 keeps only about 4 KiB of user xattrs per file, and
Swift stores object metadata there (an object with a few KiB of metadata gets 507).
Data survives stop/start and kill/start; wipe() removes it.

Swift is an optional dependency (`pip install 'skyfed[swift]'`): nothing here imports
it, the child processes do.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import pwd
import random
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from skyfed.federation.process import ManagedProcess
from skyfed.objects.swift_daemon import ACCOUNT_OFFSET, CONTAINER_OFFSET, DEVICE, OBJECT_OFFSET

log = logging.getLogger(__name__)

INSTALL_HINT = "Swift is not installed: pip install 'skyfed[swift]' (swift and python-swiftclient)"
SYSLOG_OFFSET = 9
TCP_OFFSETS = (0, ACCOUNT_OFFSET, CONTAINER_OFFSET, OBJECT_OFFSET)
PORT_SPAN = SYSLOG_OFFSET + 1  # ports a cluster takes: P..P+9
SERVERS = ("account-server", "container-server", "object-server", "proxy-server")
TMPFS = Path("/dev/shm")
# Swift writes object metadata in xattrs of up to 254 bytes each.
XATTR_PROBE = (32, 254)

# tempauth's users, as Swift's SAIO has them (Swift's functional tests expect these
# names): (account, user, groups). Their passwords are generated per cluster.
USERS: tuple[tuple[str, str, str], ...] = (
    ("admin", "admin", ".admin .reseller_admin"),
    ("test", "tester", ".admin"),
    ("test", "tester2", ".admin"),
    ("test", "tester3", ""),
    ("test2", "tester2", ".admin"),
    ("test5", "tester5", "service"),
)
RESELLER_ADMIN = "admin:admin"
TEST_USER = "test:tester"


class SwiftStartError(RuntimeError):
    """A cluster did not come up (the message says why, with the end of its logs)."""


def swift_available() -> bool:
    """Whether the Swift servers are installed (the `swift` extra)."""
    return importlib.util.find_spec("swift") is not None


@dataclass(frozen=True)
class SwiftCredentials:
    """A tempauth user: `GET auth_url` with X-Auth-User `user` and X-Auth-Key `key`."""

    auth_url: str
    user: str  # "account:user"
    key: str

    @property
    def account(self) -> str:
        return self.user.partition(":")[0]


def ports_free(base: int) -> bool:
    """Whether a cluster can take `base`: TCP base..base+3 and UDP base+9 on 127.0.0.1.

    Probed with SO_REUSEADDR as the servers bind: connections of a previous run in
    TIME_WAIT do not hold a port, a listening or bound socket does."""
    probes = [(socket.SOCK_STREAM, base + off) for off in TCP_OFFSETS]
    probes.append((socket.SOCK_DGRAM, base + SYSLOG_OFFSET))
    for kind, port in probes:
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_base_port(avoid: Sequence[int] = (), attempts: int = 200) -> int:
    """A base port whose span is free, below the kernel's ephemeral range (32768 and up,
    where outgoing connections take ports meanwhile) and the tests' zones (20000 and up).
    Random, so that two processes picking at once rarely meet; `avoid`: bases already
    handed out and not bound yet."""
    for _ in range(attempts):
        base = random.randrange(10_000, 20_000 - PORT_SPAN, PORT_SPAN)
        if all(abs(base - other) >= PORT_SPAN for other in avoid) and ports_free(base):
            return base
    raise SwiftStartError(f"no free span of {PORT_SPAN} ports in {attempts} tries")


class _SwiftProcess(ManagedProcess):
    """One Swift server or daemon in its own session, signalled as a process group.

    Swift's daemons fork workers and, on SIGTERM, signal their whole process group:
    each gets a session of its own so that it signals only itself and its children, and
    we signal the group so that its forked children go too. The leader is reaped only
    after its group got SIGKILL: until it is reaped its pid (the group's id) cannot be
    reused, so the group signal reaches no stranger."""

    @property
    def running(self) -> bool:
        return self.process is not None and self.returncode is None

    @property
    def returncode(self) -> int | None:
        """How the leader ended (negative: the signal), None while it runs; read without
        reaping it (waitid's WNOWAIT), unlike Popen.poll()."""
        if self.process is None or self.process.returncode is not None:
            return None if self.process is None else self.process.returncode
        try:
            ended = os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return self.process.poll()
        if ended is None:
            return None
        return ended.si_status if ended.si_code == os.CLD_EXITED else -ended.si_status

    def signal_group(self, sig: int) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def terminate(self) -> None:
        self.signal_group(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        self.signal_group(signal.SIGTERM)

    def kill(self) -> None:
        self.signal_group(signal.SIGKILL)
        self.reap()

    def reap(self) -> None:
        """SIGKILL to what is left of the group (stragglers), then collect the leader."""
        if self.process is None or self.process.returncode is not None:
            return
        self.signal_group(signal.SIGKILL)
        self.process.wait(timeout=10)


class LocalSwift:
    """One Swift cluster on loopback: `root_dir` for its configs and logs, proxy on `port`
    (and the ports after it, see the module's docstring), storage policies `policies`
    (the first is the default)."""

    def __init__(
        self,
        root_dir: Path,
        port: int,
        name: str,
        policies: Sequence[str] = ("gold", "silver"),
        *,
        data_dir: Path | None = None,
        s3api: bool = True,
        daemons: Sequence[str] = ("container-updater",),
        updater_interval: float = 5.0,
        log_level: str = "INFO",
    ) -> None:
        if not policies:
            raise ValueError("a cluster needs at least one storage policy")
        if not 1024 <= port <= 65535 - SYSLOG_OFFSET:
            raise ValueError(f"a cluster takes ports {port}..{port + SYSLOG_OFFSET}")
        self.root_dir = Path(root_dir).absolute()
        self.port = port
        self.name = name
        self.policies = tuple(policies)
        self.s3api = s3api
        self.daemons = tuple(daemons)
        self.updater_interval = updater_interval
        self.log_level = log_level
        self._data_dir = data_dir
        self._state: dict[str, Any] | None = None
        self._processes: dict[str, _SwiftProcess] = {}

    # ----------------------------------------------------------------- addresses --
    @property
    def etc_dir(self) -> Path:
        return self.root_dir / "etc"

    @property
    def log_dir(self) -> Path:
        return self.root_dir / "log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth_url(self) -> str:
        return f"{self.url}/auth/v1.0"

    @property
    def info_url(self) -> str:
        return f"{self.url}/info"

    @property
    def data_dir(self) -> Path:
        return Path(self._load_state()["data_dir"])

    def credentials(self, user: str) -> SwiftCredentials:
        """The credentials of tempauth user `user` ("account:user", one of USERS)."""
        keys = self._load_state()["keys"]
        if user not in keys:
            raise KeyError(f"no user {user!r} in cluster {self.name}")
        return SwiftCredentials(self.auth_url, user, keys[user])

    @property
    def reseller_admin(self) -> SwiftCredentials:
        """A reseller admin: may act on every account (what skyfed uses)."""
        return self.credentials(RESELLER_ADMIN)

    @property
    def test_user(self) -> SwiftCredentials:
        """An admin of the account `test`, for tests and direct comparisons."""
        return self.credentials(TEST_USER)

    # ----------------------------------------------------------------- lifecycle --
    @property
    def running(self) -> bool:
        return any(p.running for p in self._processes.values())

    def pids(self) -> list[int]:
        """The leaders' pids of the servers and daemons that run (their forks excluded)."""
        return [p.pid for p in self._processes.values() if p.running and p.pid is not None]

    def exit_codes(self) -> dict[str, int | None]:
        """How each server's last run ended (negative: the signal that ended it); None
        while it runs."""
        return {name: p.returncode for name, p in self._processes.items()}

    async def start(self, timeout: float = 60.0) -> None:
        """Write the configs (and rings, the first time), start every server, and return
        once the proxy serves /info and authenticates the test user; SwiftStartError, with
        nothing left running, otherwise. Does nothing to a cluster that runs whole."""
        if self._processes and all(p.running for p in self._processes.values()):
            return
        await self.stop()  # what is left of an earlier run (a server that died...)
        if not swift_available():
            raise SwiftStartError(INSTALL_HINT)
        if not ports_free(self.port):
            raise SwiftStartError(
                f"swift cluster {self.name}: a port of {self.port}..{self.port + 3} (TCP) or "
                f"{self.port + SYSLOG_OFFSET} (UDP) is in use"
            )
        deadline = time.monotonic() + timeout
        try:
            self._write_configs()
            await self._build_rings(deadline)
            self._processes = {name: self._process(name) for name in (*SERVERS, *self.daemons)}
            for process in self._processes.values():
                process.start()
            await self._wait_ready(deadline, timeout)
        except BaseException:
            await self.kill()  # nothing left behind, also when cancelled
            raise

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to every server's process group; SIGKILL to what is left after
        `timeout` (and to any forked straggler)."""
        await self._end(signal.SIGTERM, timeout)

    async def kill(self) -> None:
        """SIGKILL to every server's process group: the abrupt death fault tests want."""
        await self._end(signal.SIGKILL, 10.0)

    async def wipe(self) -> None:
        """Stop the cluster and delete it: data, configs and logs."""
        await self.stop()
        self.drop_data()
        shutil.rmtree(self.root_dir, ignore_errors=True)
        self._state = None

    def drop_data(self) -> None:
        """Delete a stopped cluster's data (tmpfs is memory): a data directory it made
        goes whole; of one it was given, only the device it wrote to."""
        if (self.etc_dir / "cluster.json").exists():
            made = self._load_state().get("data_made", False)
            shutil.rmtree(self.data_dir if made else self.data_dir / DEVICE, ignore_errors=True)

    async def __aenter__(self) -> LocalSwift:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of every server's log, for error messages."""
        tails = []
        for name, process in self._processes.items():
            tail = process.log_tail(lines)
            if tail:
                tails.append(f"--- {self.name} {name} ({process.log_path}):\n{tail}")
        return "\n".join(tails)

    async def _end(self, sig: int, timeout: float) -> None:
        await asyncio.to_thread(self.end_now, sig, timeout)

    def end_now(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """`stop()` (or `kill()`, with SIGKILL) for a caller without an event loop, such
        as `skyfed up`'s last step; it blocks until every server has ended."""
        processes = list(self._processes.values())
        for process in processes:
            if sig == signal.SIGKILL:
                process.signal_group(sig)
            else:
                process.terminate()
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.05) + 1):
            if not any(p.running for p in processes) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        for process in processes:
            process.reap()

    def _process(self, name: str) -> _SwiftProcess:
        conf = self.etc_dir / (name if name in SERVERS else f"{name.split('-')[0]}-server")
        args = [sys.executable, "-m", "skyfed.objects.swift_daemon", "run", str(self.etc_dir)]
        # -v: the server logs to its standard error too, which is its log file
        args += [f"swift-{name}", f"{conf}.conf", "-v"]
        return _SwiftProcess(
            f"{self.name}-{name}", args, self.log_dir / f"{name}.log", kind="swift " + name
        )

    async def _build_rings(self, deadline: float) -> None:
        state = self._load_state()
        wanted = {"port": self.port, "policies": list(self.policies)}
        rings = [self.etc_dir / f"{r}.ring.gz" for r in ("account", "container", "object")]
        if state.get("rings") == wanted and all(r.exists() for r in rings):
            return
        args = ["rings", str(self.etc_dir), str(self.port), str(len(self.policies))]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "skyfed.objects.swift_daemon",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(
                proc.communicate(), max(1.0, deadline - time.monotonic())
            )
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise SwiftStartError(
                f"swift cluster {self.name}: building the rings timed out"
            ) from None
        if proc.returncode != 0:
            raise SwiftStartError(
                f"swift cluster {self.name}: building the rings failed:\n{output.decode()}"
            )
        state["rings"] = wanted
        self._save_state()

    async def _wait_ready(self, deadline: float, timeout: float) -> None:
        async with httpx.AsyncClient(timeout=2.0) as http:

            async def healthy() -> bool:
                for offset in TCP_OFFSETS:
                    answer = await http.get(f"http://127.0.0.1:{self.port + offset}/healthcheck")
                    if answer.status_code != 200:
                        return False
                return True

            async def info() -> bool:
                answer = await http.get(self.info_url)
                return answer.status_code == 200 and "swift" in answer.json()

            async def authenticates() -> bool:
                user = self.test_user
                answer = await http.get(
                    self.auth_url, headers={"X-Auth-User": user.user, "X-Auth-Key": user.key}
                )
                token = answer.headers.get("X-Auth-Token")
                storage_url = answer.headers.get("X-Storage-Url")
                if answer.status_code != 200 or not token or not storage_url:
                    return False
                account = await http.head(storage_url, headers={"X-Auth-Token": token})
                return account.is_success

            for what, check in [
                ("every server's /healthcheck", healthy),
                ("/info", info),
                ("the test user's authentication", authenticates),
            ]:
                await self._until(check, deadline, timeout, what)

    async def _until(
        self, check: Callable[[], Awaitable[bool]], deadline: float, timeout: float, what: str
    ) -> None:
        """`check()` until true, every 0.1 s while every server runs, until `deadline`."""
        problem = "no answer"
        for _ in range(int(timeout / 0.1) + 1):
            dead = [name for name, p in self._processes.items() if not p.running]
            if dead:
                problem = f"{', '.join(dead)} exited"
                break
            try:
                if await check():
                    return
                problem = "not yet"
            except (httpx.TransportError, ValueError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        raise SwiftStartError(
            f"swift cluster {self.name} on port {self.port}: no {what} after {timeout:g} s "
            f"({problem})\n{self.log_tail()}"
        )

    # ------------------------------------------------------------------- configs --
    def _load_state(self) -> dict[str, Any]:
        """cluster.json: what must outlive a restart (the hash path salts: without the
        same ones the data is not found again; passwords; where the data is)."""
        if self._state is not None:
            return self._state
        path = self.etc_dir / "cluster.json"
        if path.exists():
            self._state = json.loads(path.read_text())
        else:
            self._state = {
                "hash_prefix": secrets.token_hex(8),
                "hash_suffix": secrets.token_hex(8),
                "keys": {f"{a}:{u}": secrets.token_urlsafe(12) for a, u, _ in USERS},
                "data_dir": str(self._make_data_dir()),
                "data_made": self._data_dir is None,
            }
            self._save_state()
        return self._state

    def _save_state(self) -> None:
        self.etc_dir.mkdir(parents=True, exist_ok=True)
        _write_private(self.etc_dir / "cluster.json", json.dumps(self._state, indent=2))

    def _make_data_dir(self) -> Path:
        """The devices directory: on tmpfs unless told otherwise (see the docstring)."""
        if self._data_dir is not None:
            data = self._data_dir.absolute()
        elif TMPFS.is_dir():
            data = Path(tempfile.mkdtemp(prefix=f"skyfed-swift-{self.name}-", dir=TMPFS))
            link = self.root_dir / "data"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.unlink(missing_ok=True)
            link.symlink_to(data)  # for people looking for it
        else:
            data = self.root_dir / "data"
        (data / DEVICE).mkdir(parents=True, exist_ok=True)
        if not _holds_swift_xattrs(data / DEVICE):
            log.warning(
                "%s holds fewer than %d user xattrs of %d bytes: objects with a few KiB of "
                "metadata will get 507; put Swift's data on tmpfs or XFS",
                data,
                *XATTR_PROBE,
            )
        return data

    def _write_configs(self) -> None:
        """Every config file, written again at every start (the port may have changed)."""
        state = self._load_state()
        (self.root_dir / "cache").mkdir(parents=True, exist_ok=True)
        # Again: tmpfs is empty after a reboot (the cluster then starts empty).
        (self.data_dir / DEVICE).mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        files = {
            "swift.conf": self._swift_conf(state),
            "proxy-server.conf": self._proxy_conf(state),
            "account-server.conf": self._backend_conf("account", ACCOUNT_OFFSET),
            "container-server.conf": self._backend_conf("container", CONTAINER_OFFSET),
            "object-server.conf": self._backend_conf("object", OBJECT_OFFSET),
            "internal-client.conf": self._internal_client_conf(),
            "test.conf": self._test_conf(state),
        }
        for name, text in files.items():
            _write_private(self.etc_dir / name, text)  # the proxy's and test.conf: passwords

    def _swift_conf(self, state: dict[str, Any]) -> str:
        text = (
            "[swift-hash]\n"
            f"swift_hash_path_prefix = {state['hash_prefix']}\n"
            f"swift_hash_path_suffix = {state['hash_suffix']}\n"
        )
        for index, policy in enumerate(self.policies):
            text += f"\n[storage-policy:{index}]\nname = {policy}\npolicy_type = replication\n"
            if index == 0:
                text += "default = yes\n"
        return text + "\n[swift-constraints]\n"

    def _defaults(self, port: int) -> str:
        """[DEFAULT] of every server: loopback, one process, our user, our directories.
        (No log_name here: the daemons reading the same file would log under it.)"""
        return f"""[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {port}
workers = 0
user = {pwd.getpwuid(os.getuid()).pw_name}
swift_dir = {self.etc_dir}
devices = {self.data_dir}
mount_check = false
disable_fallocate = true
recon_cache_path = {self.root_dir / "cache"}
log_level = {self.log_level}
# No /dev/log to count on: without these Swift sends syslog to UDP port 514.
log_udp_host = 127.0.0.1
log_udp_port = {self.port + SYSLOG_OFFSET}
eventlet_debug = false
"""

    def _proxy_conf(self, state: dict[str, Any]) -> str:
        # The order of Swift's sample proxy pipeline; proxy-logging twice, so that the
        # requests middlewares make are logged too.
        pipeline = [
            "catch_errors", "gatekeeper", "healthcheck", "proxy-logging", "cache",
            "etag-quoter", "listing_formats", "bulk", "tempurl", "ratelimit", "crossdomain",
            "formpost", *(["s3api"] if self.s3api else []), "tempauth", "staticweb", "copy",
            "container-quotas", "account-quotas", "slo", "dlo", "versioned_writes",
            "symlink", "proxy-logging", "proxy-server",
        ]  # fmt: skip
        filters = {name: f"use = egg:swift#{name.replace('-', '_')}\n" for name in pipeline[:-1]}
        # In-process: with workers = 0 the proxy is one process, and tempauth needs a
        # memcache (one memcached shared by clusters would mix their keys).
        filters["cache"] = "paste.filter_factory = skyfed.objects.swift_cache:filter_factory\n"
        filters["tempauth"] += "reseller_prefix = AUTH, SERVICE\nSERVICE_require_group = service\n"
        filters["tempauth"] += "token_life = 86400\n"
        filters["tempauth"] += "".join(
            f"user_{account}_{user} = {state['keys'][f'{account}:{user}']} {groups}".rstrip() + "\n"
            for account, user, groups in USERS
        )
        # skyfed's container moves send objects' own timestamps (move_copy); skyfed
        # drops any a client sends.
        filters["gatekeeper"] += "shunt_inbound_x_timestamp = false\n"
        filters["etag-quoter"] += "enable_by_default = false\n"
        filters["versioned_writes"] += "allow_versioned_writes = true\n"
        filters["versioned_writes"] += "allow_object_versioning = true\n"
        if self.s3api:
            filters["s3api"] += "location = us-east-1\ncors_preflight_allow_origin = *\n"
        sections = "\n".join(f"[filter:{name}]\n{body}" for name, body in filters.items())
        return f"""{self._defaults(self.port)}
[pipeline:main]
pipeline = {" ".join(pipeline)}

[app:proxy-server]
use = egg:swift#proxy
log_name = proxy-server
allow_account_management = true
account_autocreate = true
node_timeout = 10
conn_timeout = 2

{sections}"""

    def _backend_conf(self, kind: str, offset: int) -> str:
        """An account, container or object server, with the daemons that read its file."""
        daemons = {
            "account": "[account-replicator]\n[account-auditor]\n[account-reaper]\n",
            "container": (
                "[container-replicator]\n[container-auditor]\n[container-sync]\n"
                f"[container-updater]\ninterval = {self.updater_interval}\nconcurrency = 1\n"
                "[container-sharder]\nauto_shard = false\n"
                f"internal_client_conf_path = {self.etc_dir / 'internal-client.conf'}\n"
            ),
            "object": (
                "[object-replicator]\n[object-reconstructor]\n[object-auditor]\n"
                f"[object-updater]\ninterval = {self.updater_interval}\nconcurrency = 1\n"
                f"[object-expirer]\ninterval = {self.updater_interval}\n"
                f"internal_client_conf_path = {self.etc_dir / 'internal-client.conf'}\n"
            ),
        }[kind]
        # recon: a cluster's disk use and capacity (GET /recon/diskusage on P+3).
        return f"""{self._defaults(self.port + offset)}
[pipeline:main]
pipeline = healthcheck recon {kind}-server

[app:{kind}-server]
use = egg:swift#{kind}
log_name = {kind}-server

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:recon]
use = egg:swift#recon

{daemons}"""

    def _internal_client_conf(self) -> str:
        # The object-expirer and container-sharder talk to the rings through a proxy of
        # their own, in process.
        return f"""{self._defaults(self.port)}
[pipeline:main]
pipeline = catch_errors proxy-logging cache symlink proxy-server

[app:proxy-server]
use = egg:swift#proxy
log_name = internal-client
account_autocreate = true

[filter:symlink]
use = egg:swift#symlink
[filter:cache]
paste.filter_factory = skyfed.objects.swift_cache:filter_factory
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:catch_errors]
use = egg:swift#catch_errors
"""

    def _test_conf(self, state: dict[str, Any]) -> str:
        """Swift's functional tests (test/functional) pointed at this cluster."""
        keys = state["keys"]
        s3_users = ("test:tester", "test:tester2", "test:tester3")
        func_s3 = "".join(
            f"s3_access_key{n} = {user}\ns3_secret_key{n} = {keys[user]}\n"
            for n, user in zip(("", "2", "3"), s3_users, strict=True)
        )
        s3api = "".join(
            f"access_key{n} = {user}\nsecret_key{n} = {keys[user]}\n"
            for n, user in enumerate(s3_users, 1)
        )
        return f"""[func_test]
auth_uri = {self.auth_url}
account = test
username = tester
password = {keys["test:tester"]}
account2 = test2
username2 = tester2
password2 = {keys["test2:tester2"]}
username3 = tester3
password3 = {keys["test:tester3"]}
account5 = test5
username5 = tester5
password5 = {keys["test5:tester5"]}
service_prefix = SERVICE
collate = C
insecure = no
storage_domain =
{func_s3}
[s3api_test]
endpoint = {self.url}
region = us-east-1
{s3api}
[unit_test]
fake_syslog = False

[swift-constraints]
"""


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read, from its creation on (it holds passwords)."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        out.write(text)


def _holds_swift_xattrs(directory: Path) -> bool:
    """Whether files in `directory` take as many user xattrs as Swift writes for an
    object with a few KiB of metadata (ext4 takes about 4 KiB in all)."""
    count, size = XATTR_PROBE
    fd, path = tempfile.mkstemp(dir=directory)
    try:
        for i in range(count):
            os.setxattr(fd, f"user.swift.metadata{i or ''}", b"x" * size)
    except OSError:
        return False
    finally:
        os.close(fd)
        os.unlink(path)
    return True


class LocalSwiftSet:
    """Several independent clusters, started and stopped together, concurrently."""

    def __init__(self, clusters: Sequence[LocalSwift]) -> None:
        self.clusters = list(clusters)

    @classmethod
    def create(
        cls,
        root_dir: Path,
        names: Sequence[str],
        ports: Sequence[int] | None = None,
        **options: Any,
    ) -> LocalSwiftSet:
        """One cluster per name in `root_dir`/name, on `ports` (free ones if not given);
        `options` go to every LocalSwift."""
        if ports is None:
            picked: list[int] = []
            for _ in names:
                picked.append(free_base_port(avoid=picked))
            ports = picked
        if len(ports) != len(names):
            raise ValueError("one port per cluster")
        return cls(
            [
                LocalSwift(Path(root_dir) / name, port, name, **options)
                for name, port in zip(names, ports, strict=True)
            ]
        )

    def __getitem__(self, name: str) -> LocalSwift:
        for cluster in self.clusters:
            if cluster.name == name:
                return cluster
        raise KeyError(name)

    def __iter__(self) -> Iterator[LocalSwift]:
        return iter(self.clusters)

    def __len__(self) -> int:
        return len(self.clusters)

    async def start(self, timeout: float = 60.0) -> None:
        """Start them all at once; if one fails, stop the others and raise its error."""
        results = await asyncio.gather(
            *(c.start(timeout) for c in self.clusters), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            await self.stop()
            raise failures[0]

    async def stop(self, timeout: float = 10.0) -> None:
        await asyncio.gather(*(c.stop(timeout) for c in self.clusters))

    async def kill(self) -> None:
        await asyncio.gather(*(c.kill() for c in self.clusters))

    async def wipe(self) -> None:
        await asyncio.gather(*(c.wipe() for c in self.clusters))

    async def __aenter__(self) -> LocalSwiftSet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
