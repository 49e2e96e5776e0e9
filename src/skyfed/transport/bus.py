"""A zone's long-lived connections to its broker: made, and set up, until they hold.

Used by what a zone runs on its bus (its queue server, task wake-ups). A broker
that is down at start is tried again every few seconds; so is a setup that
fails midway (a broker restarting at that moment), without leaving half-made
connections behind. Once up, aio-pika's robust connection restores channels,
queues and consumers by itself after a broker restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import aio_pika
from aio_pika.abc import AbstractRobustConnection
from yarl import URL

from skyfed.transport.envelope import RECONNECT_INTERVAL

log = logging.getLogger("skyfed.transport.bus")


async def connect_and_set_up(
    broker_url: str,
    name: str,
    set_up: Callable[[AbstractRobustConnection], Awaitable[None]],
    *,
    retry_interval: float = 2.0,
) -> AbstractRobustConnection:
    """A connection on which `set_up` succeeded; tries again until it does."""
    while True:
        connection = aio_pika.RobustConnection(
            URL(broker_url),
            reconnect_interval=RECONNECT_INTERVAL,
            client_properties={"connection_name": f"skyfed {name}"},
        )
        try:
            await connection.connect(timeout=5.0)
            await set_up(connection)
            return connection
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(connection.close())
            raise
        except Exception as exc:
            log.warning(
                "zone bus not usable yet; trying again",
                extra={"what": name, "error": str(exc) or type(exc).__name__},
            )
            with contextlib.suppress(Exception):
                await connection.close()
        await asyncio.sleep(retry_interval)
