"""Bounded waits for tests of real processes: a condition within a deadline, a pid alive."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import psutil


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def until(check: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """`check()`'s first true value, looked at every 20 ms; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or check}")
        await asyncio.sleep(0.02)
