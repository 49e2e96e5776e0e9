"""How long to wait before starting a dead process again (pure).

A process that dies soon after each start waits twice as long each time, up to a
cap, so a zone that cannot start (a broken config, a port taken) costs a few lines
a minute, not a busy loop; one that ran a while before dying was healthy, and its
next death counts as a first one again.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    first: float = 1.0  # seconds before the first restart
    cap: float = 30.0  # never more than this
    settle: float = 60.0  # a process up this long starts its backoff again from `first`

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.cap or self.settle < 0:
            raise ValueError("want 0 < first <= cap and settle >= 0")

    def delay(self, previous: float | None, uptime: float) -> float:
        """The wait before the next start, given the last wait (None: never restarted)
        and how long the process ran before it died."""
        if previous is None or uptime >= self.settle:
            return self.first
        return min(previous * 2, self.cap)
