"""Coalescer: callers' items leave in batches, and each caller gets its own outcome."""

from __future__ import annotations

import asyncio

import pytest

from skyfed.coalesce import Coalescer
from tests.waiting import until


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, list[int]]] = []
        self.gate: asyncio.Event | None = None

    async def send(self, key: str, items: list[int]) -> list[object]:
        self.sent.append((key, list(items)))
        if self.gate is not None:
            await self.gate.wait()
        return [ValueError(f"odd {i}") if i < 0 else i * 10 for i in items]


async def test_items_submitted_together_leave_in_one_batch_with_their_own_outcomes() -> None:
    rec = Recorder()
    batches = Coalescer(rec.send, linger=0.01)
    results = await asyncio.gather(*(batches.submit("a", i) for i in range(5)))
    assert results == [0, 10, 20, 30, 40]
    assert rec.sent == [("a", [0, 1, 2, 3, 4])]


async def test_each_key_has_its_own_batches() -> None:
    rec = Recorder()
    batches = Coalescer(rec.send, linger=0.01)
    await asyncio.gather(batches.submit("a", 1), batches.submit("b", 2), batches.submit("a", 3))
    assert sorted(rec.sent) == [("a", [1, 3]), ("b", [2])]


async def test_max_items_splits_a_burst() -> None:
    rec = Recorder()
    batches = Coalescer(rec.send, linger=0.01, max_items=3, max_in_flight=10)
    await asyncio.gather(*(batches.submit("a", i) for i in range(7)))
    assert [items for _, items in rec.sent] == [[0, 1, 2], [3, 4, 5], [6]]


async def test_a_failed_send_reaches_every_caller_of_that_batch_only() -> None:
    calls = 0

    async def send(key: str, items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("down")
        return items

    batches = Coalescer(send, linger=0.01)
    first = await asyncio.gather(
        *(batches.submit("a", i) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, ConnectionError) for r in first)
    assert await batches.submit("a", 7) == 7


async def test_an_outcome_that_is_an_exception_is_raised_to_its_caller_alone() -> None:
    batches = Coalescer(Recorder().send, linger=0.01)
    results = await asyncio.gather(
        batches.submit("a", 1), batches.submit("a", -1), return_exceptions=True
    )
    assert results[0] == 10
    assert isinstance(results[1], ValueError) and str(results[1]) == "odd -1"


async def test_items_wait_while_the_key_has_max_in_flight_and_then_leave_together() -> None:
    rec = Recorder()
    rec.gate = asyncio.Event()
    batches = Coalescer(rec.send, linger=0.001, max_in_flight=1)
    first = asyncio.ensure_future(batches.submit("a", 0))
    await until(lambda: rec.sent, what="the first batch")  # an idle key sends after the linger
    assert rec.sent == [("a", [0])]
    later = [asyncio.ensure_future(batches.submit("a", i)) for i in range(1, 6)]
    await asyncio.sleep(0)  # their callers have queued them
    # Held back while the first batch is out: waiting, with no timer that would send them
    # (rather than a sleep and nothing seen sent during it).
    assert [item for item, _ in batches._open["a"]] == [1, 2, 3, 4, 5]
    assert "a" not in batches._timers
    assert len(rec.sent) == 1
    rec.gate.set()
    assert await asyncio.gather(first, *later) == [0, 10, 20, 30, 40, 50]
    assert rec.sent == [("a", [0]), ("a", [1, 2, 3, 4, 5])]


async def test_a_cancelled_caller_is_left_out_and_aclose_sends_what_waits() -> None:
    rec = Recorder()
    batches = Coalescer(rec.send, linger=10.0)
    gone = asyncio.ensure_future(batches.submit("a", 1))
    kept = asyncio.ensure_future(batches.submit("a", 2))
    await asyncio.sleep(0)
    gone.cancel()
    await batches.aclose()
    assert await kept == 20
    assert rec.sent == [("a", [2])]


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Coalescer(Recorder().send, max_items=0)


async def test_retry_alone_keeps_one_bad_item_from_failing_the_others() -> None:
    sent: list[list[int]] = []

    async def send(key: str, items: list[int]) -> list[int]:
        sent.append(list(items))
        if 13 in items:
            raise LookupError("13 breaks the transaction")
        return items

    batches = Coalescer(send, linger=0.01, retry_alone=True)
    results = await asyncio.gather(
        *(batches.submit("a", i) for i in (12, 13, 14)), return_exceptions=True
    )
    assert results[0] == 12 and results[2] == 14
    assert isinstance(results[1], LookupError)
    assert sent == [[12, 13, 14], [12], [13], [14]]
