"""Real skyfed processes on loopback: a zone (`skyfed serve`) or a host agent (`skyfed agent`).

`skyfed up` and the integration tests start, kill and restart zones through this;
`supervisor.py` watches them and starts again the ones that die.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _inherited_env() -> dict[str, str]:
    """Our environment minus SKYFED_* settings: one SKYFED_PORT must not reach every zone."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SKYFED_")}


class ProcessFailed(RuntimeError):
    pass


class ManagedProcess:
    """One child process with its output in a log file, stopped politely then firmly.

    Started again with the same arguments and environment, it is the same program on
    the same port, state and credentials: they all come from its arguments."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        kind: str = "process",
    ) -> None:
        self.name = name
        self.kind = kind  # what it is, for people: "zone", "host agent"
        self.args = list(args)
        self.log_path = log_path
        self.env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None  # time.monotonic() of the last start

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def returncode(self) -> int | None:
        """How the last run ended (negative: the signal that killed it); None while it runs."""
        return self.process.poll() if self.process else None

    def start(self) -> None:
        if self.running:
            return
        self.started_at = time.monotonic()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**_inherited_env(), **self.env},
                # Its own process group: Ctrl-C at `skyfed up` reaches us, and we stop it in order.
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """A plain process has no readiness to ask: started and not dead is all we know."""
        if not self.running:
            raise ProcessFailed(f"{self.kind} {self.name} exited:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: the abrupt death fault tests want."""
        if self.running:
            assert self.process is not None
            self.process.kill()
            self.process.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: the process holds its sockets but answers nothing (a hung zone)."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGCONT)

    def terminate(self) -> None:
        """SIGTERM without waiting: `stop_all` asks every process at once."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGCONT)  # a paused process cannot act on SIGTERM
            self.process.send_signal(signal.SIGTERM)

    def wait_stopped(self, deadline: float) -> None:
        """Wait until `deadline` (monotonic) for the process to end, then kill it."""
        if self.process is None:
            return
        try:
            self.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        stop_all([self], timeout)


def stop_all(processes: Sequence[ManagedProcess], timeout: float = 10.0) -> None:
    """Stop processes in the order given, each given up to `timeout` to end by itself,
    all at once: a federation of n zones stops in one timeout, not n."""
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + timeout
    for process in processes:
        process.wait_stopped(deadline)


class ZoneProcess(ManagedProcess):
    def __init__(self, name: str, config: Path, port: int, log_path: Path) -> None:
        super().__init__(
            name,
            [sys.executable, "-m", "skyfed", "serve", "--config", str(config)],
            log_path,
            kind="zone",
        )
        self.config = config
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if not self.running:
                    raise ProcessFailed(f"zone {self.name} exited:\n{self.log_tail()}")
                try:
                    if (await http.get(f"{self.url}/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise ProcessFailed(f"zone {self.name} not ready after {timeout:g}s:\n{self.log_tail()}")

    def restart(self) -> None:
        self.stop()
        self.start()
