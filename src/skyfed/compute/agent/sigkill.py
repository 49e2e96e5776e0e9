"""SIGKILL a set of processes until none is left: what a server leaves when it ends."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Iterable

ROUNDS = 50  # kill, then look again: a fork in flight lands after the first round
PAUSE = 0.02


async def sigkill_until_gone(find: Callable[[], Iterable[int]]) -> None:
    """SIGKILL every pid `find()` names, again and again while it names any (bounded)."""
    for _ in range(ROUNDS):
        pids = list(find())
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(PAUSE)
