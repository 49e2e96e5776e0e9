"""Stopping a feature's background loops when its zone process stops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)


async def stop(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Cancel the loops and wait until each has ended; one that had failed earlier is
    logged, and the rest are still stopped."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("background task failed", extra={"task": task.get_name()})
