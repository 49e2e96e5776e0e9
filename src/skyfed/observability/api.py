"""`GET /metrics`: the process's figures, for the admin or a scraper's service account."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from skyfed.core import CoreDep
from skyfed.identity.deps import PeerDep
from skyfed.observability.metrics import CONTENT_TYPE

router = APIRouter(tags=["observability"])


@router.get("/metrics", response_class=Response)
async def metrics(_: PeerDep, core: CoreDep) -> Response:
    """Prometheus text format. A scraper without a token uses `metrics_port` instead."""
    return Response(await core.metrics.render(), media_type=CONTENT_TYPE)
