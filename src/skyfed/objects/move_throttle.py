"""Container moves' bandwidth per storage cluster: token buckets.

A cluster's `move_bandwidth` (bytes a second, 0: none) bounds what moves read from
it and write to it, in each zone process: a copy takes its bytes from both ends'
buckets before it sends them on. A bucket holds one second of its rate; a chunk
larger than what it holds is paid for by waiting, so over a minute a move's rate
stays within a chunk of the limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from skyfed.objects.models import StorageCluster

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
Take = Callable[[int], Awaitable[None]]


class TokenBucket:
    def __init__(
        self,
        rate: float,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        waited: Callable[[float], None] = lambda _: None,
    ) -> None:
        self.rate = rate
        self._waited = waited
        self.capacity = rate  # one second's worth
        self.tokens = rate
        self._clock, self._sleep = clock, sleep
        self._stamp = clock()
        self._lock = asyncio.Lock()  # takers wait their turn, first come first served

    async def take(self, amount: int) -> None:
        async with self._lock:
            now = self._clock()
            self.tokens = min(self.capacity, self.tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self.tokens -= amount
            if self.tokens < 0:  # in debt: wait until it is paid
                self._waited(-self.tokens / self.rate)
                await self._sleep(-self.tokens / self.rate)


class Throttles:
    """This process's buckets, by cluster; one made anew when its rate changes."""

    def __init__(self, waited: Callable[[float], None] = lambda _: None) -> None:
        self._buckets: dict[str, TokenBucket] = {}
        self._waited = waited  # told each wait (the metrics')

    def _bucket(self, cluster: StorageCluster) -> TokenBucket | None:
        rate = cluster.move_bandwidth
        if rate <= 0:
            self._buckets.pop(cluster.id, None)
            return None
        known = self._buckets.get(cluster.id)
        if known is None or known.rate != rate:
            known = self._buckets[cluster.id] = TokenBucket(float(rate), waited=self._waited)
        return known

    def taker(self, clusters: Iterable[StorageCluster]) -> Take | None:
        """What takes a chunk's bytes from each of `clusters`' buckets (None: no limit)."""
        buckets = [b for b in (self._bucket(c) for c in clusters) if b is not None]
        if not buckets:
            return None

        async def take(amount: int) -> None:
            for bucket in buckets:
                await bucket.take(amount)

        return take


async def throttled(body: AsyncIterator[bytes], take: Take | None) -> AsyncIterator[bytes]:
    """`body`, each chunk sent on once `take` allowed its bytes."""
    async for chunk in body:
        if take is not None:
            await take(len(chunk))
        yield chunk
