"""Task routes: see what a request became, retry a failed task, cancel one not yet begun."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel

from skyfed.core import provided
from skyfed.errors import NotFound
from skyfed.identity.deps import DirectUserDep
from skyfed.identity.principal import Principal
from skyfed.tasks.models import STATES, Task
from skyfed.tasks.store import TaskStore

StoreDep = Annotated[TaskStore, Depends(provided(TaskStore))]
router = APIRouter(prefix="/v1/tasks", tags=["tasks"])
TaskId = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")]


class TaskOut(BaseModel):
    id: str
    seq: int
    kind: str
    resource_type: str
    resource_id: str
    project_id: str | None
    state: str
    attempts: int
    max_attempts: int
    error: str
    result: dict[str, Any] | None
    request_id: str
    traceparent: str | None = None  # the trace its attempts continue (W3C)
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class TaskList(BaseModel):
    tasks: list[TaskOut]
    next_marker: int | None = None


def _visible(task: Task, principal: Principal) -> TaskOut:
    if not (principal.is_admin or task.project_id == principal.project_id):
        raise NotFound(f"task '{task.id}' not found")
    return TaskOut.model_validate(task, from_attributes=True)


@router.get("", response_model=TaskList)
async def list_tasks(
    principal: DirectUserDep,
    store: StoreDep,
    state: Annotated[str | None, Query(pattern="^(" + "|".join(STATES) + ")$")] = None,
    resource_id: Annotated[str | None, Query(max_length=64)] = None,
    kind: Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    marker: Annotated[int | None, Query(ge=0, le=2**62)] = None,
) -> TaskList:
    """Newest first; page with `marker` (the `next_marker` of the previous page)."""
    project = None if principal.is_admin else principal.project_id
    tasks = await store.list(
        project_id=project,
        state=state,
        resource_id=resource_id,
        kind=kind,
        limit=limit + 1,
        before=marker,
    )
    page = tasks[:limit]
    return TaskList(
        tasks=[TaskOut.model_validate(t, from_attributes=True) for t in page],
        next_marker=page[-1].seq if len(tasks) > limit else None,
    )


@router.get("/{task_id}", response_model=TaskOut)
async def get_task(task_id: TaskId, principal: DirectUserDep, store: StoreDep) -> TaskOut:
    return _visible(await store.get(task_id), principal)


@router.post("/{task_id}/retry", response_model=TaskOut)
async def retry_task(task_id: TaskId, principal: DirectUserDep, store: StoreDep) -> TaskOut:
    """Run a failed or cancelled task again (409 otherwise)."""
    _visible(await store.get(task_id), principal)
    return TaskOut.model_validate(await store.retry(task_id), from_attributes=True)


@router.post("/{task_id}/cancel", response_model=TaskOut)
async def cancel_task(task_id: TaskId, principal: DirectUserDep, store: StoreDep) -> TaskOut:
    """Cancel a queued task that has not begun (409 otherwise: one queued again after an
    attempt may already have had effects), putting its resource back as it was."""
    _visible(await store.get(task_id), principal)
    return TaskOut.model_validate(await store.cancel(task_id), from_attributes=True)
