"""Bounded waits for tests of real processes: a condition (plain or awaited) within a
deadline, a pid alive."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
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


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout: float = 10.0, what: str = "", every: float = 0.2
) -> Any:
    """`await check()`'s first true value, tried every `every` s, at most `timeout / every + 1`
    times and each within what is left of `timeout`; AssertionError after that."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / every) + 1):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            value = await asyncio.wait_for(check(), left)
        except TimeoutError:
            break
        if value:
            return value
        await asyncio.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or check}")
