"""Coalescing: many callers' items for one destination leave as one request.

`submit(key, item)` waits for that item's own outcome. Items submitted for the
same key within `linger` seconds of the first (or until `max_items` are
waiting) are handed together to `send(key, items)`, which returns one outcome
per item, in order (an outcome that is an exception is raised to its caller
alone). When `send` raises, every item of that batch gets the exception.

With `retry_alone` (True, or a test of the exception), a batch whose `send`
raises is sent again item by item, so one bad item (a constraint it breaks in
a shared transaction, a field the receiver refuses) fails alone.

At most `max_in_flight` batches per key are in flight at once. While that many
are, new items wait and leave together as soon as one comes back, so a batch
grows with the load (as Nagle's algorithm does) and an idle key sends at once.

Why: a request between processes costs far more CPU (HTTP client, server,
framework, a transaction) than the work one item carries, so under load a
zone sends each child one request per burst, not one per server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
I = TypeVar("I")  # noqa: E741 - an item
O = TypeVar("O")  # noqa: E741 - its outcome

Send = Callable[[K, list[I]], Awaitable[list[O]]]
RetryAlone = bool | Callable[[Exception], bool]


class Coalescer(Generic[K, I, O]):
    def __init__(
        self,
        send: Send[K, I, O],
        *,
        linger: float = 0.002,
        max_items: int = 100,
        max_in_flight: int = 4,
        retry_alone: RetryAlone = False,
    ):
        if max_items < 1 or max_in_flight < 1:
            raise ValueError("max_items and max_in_flight must be at least 1")
        self.send = send
        self.linger = linger
        self.max_items = max_items
        self.max_in_flight = max_in_flight
        self.retry_alone = retry_alone
        self._open: dict[K, list[tuple[I, asyncio.Future[O]]]] = {}
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._in_flight: dict[K, int] = {}
        self._sending: set[asyncio.Task[None]] = set()

    async def submit(self, key: K, item: I) -> O:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[O] = loop.create_future()
        batch = self._open.setdefault(key, [])
        batch.append((item, future))
        if len(batch) >= self.max_items:
            self._close(key)
        elif key not in self._timers and self._in_flight.get(key, 0) < self.max_in_flight:
            self._timers[key] = loop.call_later(self.linger, self._close, key)
        return await future

    def _close(self, key: K) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if self._in_flight.get(key, 0) >= self.max_in_flight:
            return  # it leaves when a batch in flight comes back
        batch = self._open.pop(key, None)
        if not batch:
            return
        if len(batch) > self.max_items:
            batch, self._open[key] = batch[: self.max_items], batch[self.max_items :]
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        task = asyncio.ensure_future(self._send(key, batch))
        self._sending.add(task)
        task.add_done_callback(lambda done: self._sent(key, done))

    def _sent(self, key: K, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        left = self._in_flight[key] - 1
        if left:
            self._in_flight[key] = left
        else:
            del self._in_flight[key]
        if self._open.get(key):
            self._close(key)  # these waited for a batch to come back: no linger

    async def _send(self, key: K, batch: list[tuple[I, asyncio.Future[O]]]) -> None:
        live = [(item, future) for item, future in batch if not future.cancelled()]
        try:
            await self._deliver(key, live)
        finally:  # cancelled midway (shutdown): nobody may wait for ever
            for _, future in live:
                if not future.done():
                    future.cancel()

    async def _deliver(self, key: K, live: list[tuple[I, asyncio.Future[O]]]) -> None:
        if not live:
            return
        try:
            outcomes: list[Any] = await self.send(key, [item for item, _ in live])
            if len(outcomes) != len(live):
                raise RuntimeError(f"{len(outcomes)} outcomes for {len(live)} items")
        except Exception as exc:
            alone = self.retry_alone(exc) if callable(self.retry_alone) else self.retry_alone
            if not alone or len(live) == 1:
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                return
            outcomes = [await self._alone(key, item) for item, _ in live]
        for (_, future), outcome in zip(live, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    async def _alone(self, key: K, item: I) -> Any:
        try:
            [outcome] = await self.send(key, [item])
        except Exception as exc:
            return exc
        return outcome

    async def aclose(self) -> None:
        """Send what is waiting now and wait for every batch in flight."""
        while self._open or self._sending:
            for key in list(self._open):
                self._close(key)
            if self._sending:
                await asyncio.gather(*list(self._sending), return_exceptions=True)
