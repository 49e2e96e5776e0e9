"""The server lifecycle (pure): what each action needs, what it leads to, what a result means.

A server has a status and, while an action runs, a task_state. An action the
current state does not allow is refused with a message naming that state.
"""

from __future__ import annotations

from dataclasses import dataclass

BUILDING = "BUILDING"
ACTIVE = "ACTIVE"
STOPPED = "STOPPED"
REBOOTING = "REBOOTING"
DELETING = "DELETING"
DELETED = "DELETED"
ERROR = "ERROR"
STATUSES = (BUILDING, ACTIVE, STOPPED, REBOOTING, DELETING, DELETED, ERROR)

STOPPING = "stopping"
STARTING = "starting"
SCHEDULING = "scheduling"
SPAWNING = "spawning"

ACTIONS = ("reboot", "stop", "start")

# action -> statuses it may start from (with no action in progress)
_ALLOWED_FROM = {
    "reboot": (ACTIVE, STOPPED, ERROR),
    "stop": (ACTIVE,),
    "start": (STOPPED,),
}
# action -> (status, task_state) while it runs
_WHILE = {
    "reboot": (REBOOTING, None),
    "stop": (ACTIVE, STOPPING),
    "start": (STOPPED, STARTING),
}
# command -> status once the host carried it out
SUCCESS_STATUS = {
    "boot": ACTIVE,
    "reboot": ACTIVE,
    "start": ACTIVE,
    "stop": STOPPED,
    "delete": DELETED,
}


class LifecycleConflict(Exception):
    def __init__(self, message: str, status: str, task_state: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.task_state = task_state


@dataclass(frozen=True, slots=True)
class State:
    status: str
    task_state: str | None = None

    def describe(self) -> str:
        return f"{self.status} ({self.task_state})" if self.task_state else self.status


def begin_action(state: State, action: str) -> State:
    """The state while `action` runs; LifecycleConflict when `state` does not allow it."""
    if action not in _ALLOWED_FROM:
        raise ValueError(f"unknown action {action!r}")
    if state.task_state is not None or state.status not in _ALLOWED_FROM[action]:
        allowed = ", ".join(_ALLOWED_FROM[action])
        raise LifecycleConflict(
            f"cannot {action} a server that is {state.describe()}; {action} needs {allowed}"
            " with no other action in progress",
            state.status,
            state.task_state,
        )
    status, task_state = _WHILE[action]
    return State(status, task_state)


def begin_delete(state: State) -> State:
    if state.status in (DELETING, DELETED):
        raise LifecycleConflict(
            f"the server is already {state.status}", state.status, state.task_state
        )
    return State(DELETING, None)


def after_command(state: State, command: str, ok: bool, reported: str | None) -> State:
    """The state once a host answered `command` (ok or not)."""
    if ok:
        return State(reported if reported in STATUSES else SUCCESS_STATUS[command], None)
    if command == "stop":
        return State(ACTIVE, None)  # it still runs; the fault says why it did not stop
    return State(ERROR, None)


def after_exit(state: State) -> State:
    """A server's process ended on its own: a running server is now STOPPED."""
    if state.status == ACTIVE and state.task_state is None:
        return State(STOPPED, None)
    return state
