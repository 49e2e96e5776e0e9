"""What a feature declares for each kind of task it queues: how to run it and its hooks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.tasks.models import Task

# Runs one attempt; its result is stored with the task. Must be idempotent: after a
# crash the task runs again from the start.
Handler = Callable[[Task], Awaitable[dict[str, Any] | None]]
# Told once the task failed for good (attempts spent, or a permanent error).
GiveUp = Callable[[Task, str], Awaitable[None]]
# Undoes what accepting the request set up (a reservation), in the cancel's own
# transaction: a crash leaves both or neither.
CancelHook = Callable[[AsyncSession, Task], Awaitable[None]]
# Makes a task's resource ready to run it again (a failed placement pending again), in
# the transaction that queues the task again.
RetryHook = Callable[[AsyncSession, Task], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Kind:
    """How to run one kind of task, and what its failure, cancel and retry do."""

    run: Handler
    _: KW_ONLY
    give_up: GiveUp | None = None
    # A kind without one had no effect before its first attempt: cancelling it undoes
    # nothing, and a cancelled task of it may run again.
    cancel: CancelHook | None = None
    retry: RetryHook | None = None
