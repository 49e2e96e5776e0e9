"""tests/unit is the pure core: no socket, no process. Tests that need one belong in
tests/api, tests/contract or tests/integration; here any attempt fails the test."""

from __future__ import annotations

import socket
import subprocess
from typing import Any

import pytest


def _refused(what: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a unit test {what}: move it to tests/api or tests/integration")

    return refuse


@pytest.fixture(autouse=True)
def no_sockets_or_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _refused("opened a connection"))
    monkeypatch.setattr(socket.socket, "connect_ex", _refused("opened a connection"))
    monkeypatch.setattr(socket.socket, "bind", _refused("bound a socket"))
    monkeypatch.setattr(subprocess.Popen, "__init__", _refused("started a process"))
