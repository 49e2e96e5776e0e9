"""The moves' token buckets hold a cluster's rate over a minute, whatever the chunks."""

from __future__ import annotations

import asyncio

import pytest

from skyfed.objects.models import StorageCluster
from skyfed.objects.move_throttle import Throttles, TokenBucket, throttled


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


@pytest.mark.parametrize("chunk", [1024, 4096, 65536, 3_000_000])
async def test_a_minute_of_copies_keeps_within_ten_percent_of_the_limit(chunk: int) -> None:
    time = FakeTime()
    rate = 1_000_000.0
    bucket = TokenBucket(rate, clock=time.clock, sleep=time.sleep)
    start, sent = time.now, 0
    while time.now - start < 60.0:
        await bucket.take(chunk)
        sent += chunk
        time.now += 0.0001  # the copy's own work between chunks
    elapsed = time.now - start
    assert abs(sent / elapsed - rate) <= 0.1 * rate, (sent / elapsed, chunk)


async def test_takers_wait_their_turn_and_share_the_rate() -> None:
    time = FakeTime()
    bucket = TokenBucket(100_000.0, clock=time.clock, sleep=time.sleep)
    sent = [0, 0]

    async def copy(who: int) -> None:
        for _ in range(200):
            await bucket.take(10_000)
            sent[who] += 10_000

    start = time.now
    await asyncio.gather(copy(0), copy(1))
    elapsed = time.now - start
    # 4 MB at 100 kB/s, less the bucket's first second.
    assert 39.0 - 0.1 <= elapsed <= 40.0 + 0.1
    assert sent == [2_000_000, 2_000_000]


async def test_no_limit_takes_nothing_and_a_new_rate_is_a_new_bucket() -> None:
    throttles = Throttles()
    free = StorageCluster(id="a", move_bandwidth=0)
    assert throttles.taker([free]) is None
    slow = StorageCluster(id="b", move_bandwidth=1000)
    first = throttles._bucket(slow)
    assert first is not None and first.rate == 1000
    assert throttles._bucket(slow) is first
    slow.move_bandwidth = 2000
    second = throttles._bucket(slow)
    assert second is not first and second is not None and second.rate == 2000

    async def body() -> object:
        for piece in (b"ab", b"cde"):
            yield piece

    taken: list[int] = []

    async def take(amount: int) -> None:
        taken.append(amount)

    assert [c async for c in throttled(body(), take)] == [b"ab", b"cde"]  # type: ignore[arg-type]
    assert taken == [2, 3]
