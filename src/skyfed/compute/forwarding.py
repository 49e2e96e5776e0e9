"""Creates passed down to child zones, coalesced: one request per child per burst.

The place tasks running at once in this zone each submit the server they chose
a child for; those bound for the same child with the same caller identity leave
together as one `POST /v1/servers/delegated`, and each task gets its own
server's answer. A failure of the whole request (the child unreachable, a 5xx)
reaches every task of the batch, which retries as it would alone.
"""

from __future__ import annotations

from typing import Any

from skyfed import trace_hooks
from skyfed.client import SkyfedError
from skyfed.coalesce import Coalescer
from skyfed.compute.models import Server
from skyfed.identity.principal import Principal
from skyfed.scheduling.request import PlacementRequest
from skyfed.transport.base import ZoneRequest
from skyfed.zones.links import ChildLinks
from skyfed.zones.models import ChildZone
from skyfed.zones.relay import refused

Key = tuple[str, Principal]  # (child id, the identity the creates carry)


TRACE_KEY = "_traceparent"  # in a body waiting in a batch, never sent as such


class ChildGone(Exception):
    """The child zone was removed while its batch waited."""


class ChildCreates:
    def __init__(
        self,
        links: ChildLinks,
        db: Any,
        *,
        wait: float,
        linger: float = 0.002,
        max_batch: int = 100,
    ) -> None:
        self.links = links
        self.db = db
        self.wait = wait
        # A request the child refuses as a whole (one server it cannot read fails its
        # validation) is asked again server by server, so only that one is refused.
        self.batches: Coalescer[Key, dict[str, Any], dict[str, Any]] = Coalescer(
            self._send, linger=linger, max_items=max_batch, retry_alone=refused
        )

    async def create(
        self, child: ChildZone, principal: Principal, body: dict[str, Any]
    ) -> dict[str, Any]:
        """This server's outcome at the child: `{"server": brief}` or `{"error": {...}}`."""
        try:
            return await self.batches.submit((child.id, principal), body)
        except SkyfedError as exc:
            if not refused(exc):
                raise
            return {"error": {"status": exc.status, "code": exc.code, "message": exc.message}}

    async def _send(self, key: Key, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        child_id, principal = key
        child = await self.links.row(child_id, self.db)
        if child is None:
            raise ChildGone(child_id)
        link = await self.links.link_for(child)
        # Each server's own trace: the call's header carries only the first's.
        traces = {b["id"]: b[TRACE_KEY] for b in bodies if b.get(TRACE_KEY)}
        bodies = [{k: v for k, v in b.items() if k != TRACE_KEY} for b in bodies]
        request: dict[str, Any] = {"servers": bodies, "wait": self.wait}
        if traces:
            request["traces"] = traces
        answer = await link.call(
            ZoneRequest(
                "POST",
                "/v1/servers/delegated",
                json={
                    "servers": bodies,
                    "wait": self.wait,
                    **({"traces": traces} if traces else {}),
                },
                principal=principal,
                timeout=self.wait + 10,
                idempotent=True,  # creates carry their ids: the child makes each once
            )
        )
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list) or len(results) != len(bodies):
            raise SkyfedError(502, "bad_response", "the child's answer does not match the request")
        for result in results:
            if not isinstance(result, dict) or not (
                isinstance(result.get("server"), dict) or isinstance(result.get("error"), dict)
            ):
                raise SkyfedError(502, "bad_response", "the child's answer names no outcome")
        return results


def delegated_body(server: Server, request: PlacementRequest) -> dict[str, Any]:
    """The create a parent sends its chosen child: same id, same time, the path below."""
    body: dict[str, Any] = {
        "id": server.id,
        "reservation_id": server.reservation_id,
        "created_at": server.created_at.isoformat(),
        "name": server.name,
        "vcpus": server.vcpus,
        "ram_mb": server.ram_mb,
        "disk_gb": server.disk_gb,
        "constraints": server.constraints or {},
        "metadata": server.meta or {},
    }
    if server.flavor:
        body["flavor"] = server.flavor
    if server.group_name:
        body["group"] = {"name": server.group_name, "policy": server.group_policy}
    if request.within:
        body["within"] = "/".join(request.within)
    if request.avoid:
        body["avoid"] = ["/".join(p) for p in request.avoid]
    trace = trace_hooks.traceparent()
    if trace:  # taken out into the request's `traces` when the batch is sent
        body[TRACE_KEY] = trace
    return body
