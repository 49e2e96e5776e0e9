"""The probe of a would-be child goes through `ZoneLink.call` alone, whatever the link."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from skyfed.errors import BadRequest
from skyfed.transport.base import ZoneLink, ZoneRequest
from skyfed.wire import SkyfedError, ZoneUnreachable
from skyfed.zones.links import Reach
from skyfed.zones.probe import probe_child

REACH = Reach(name="eu", transport="http", api_url="http://eu.test", username="svc", password="pw")
REPORT = {"id": str(uuid.uuid4()), "name": "eu", "capabilities": {}, "summary": {}}
WHOAMI, ZONE = "/v1/auth/whoami", "/v1/zone"
REFUSED = ZoneUnreachable("http://eu.test", "connection refused")
LATE = ZoneUnreachable("http://eu.test", "timed out", timed_out=True)


class Answers(ZoneLink):
    """A link that answers each path from a table (raising what is an exception), and
    records what it was asked."""

    kind = "fake"

    def __init__(self, path: str = "", answer: Any = None) -> None:
        self.answers: dict[str, Any] = {WHOAMI: {"roles": ["service"]}, ZONE: REPORT}
        if path:
            self.answers[path] = answer
        self.asked: list[tuple[str, str]] = []

    async def call(self, request: ZoneRequest) -> Any:
        self.asked.append((request.method, request.path))
        answer = self.answers[request.path]
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def aclose(self) -> None:
        raise AssertionError("the probe closes no link: its caller does")


async def test_a_service_account_and_a_report() -> None:
    link = Answers()
    report = await probe_child(link, REACH)
    assert (report.id, report.name) == (REPORT["id"], "eu")
    assert link.asked == [("GET", WHOAMI), ("GET", ZONE)]


@pytest.mark.parametrize(
    ("path", "answer", "code"),
    [
        (WHOAMI, {"roles": ["member"]}, "child_not_service"),
        (WHOAMI, None, "child_not_service"),  # nothing a skyfed zone would answer
        (WHOAMI, SkyfedError(401, "unauthorized", "no"), "child_auth_failed"),
        (WHOAMI, SkyfedError(200, "bad_response", "no token"), "child_invalid"),
        (WHOAMI, SkyfedError(500, "internal_error", "x"), "child_unreachable"),
        (WHOAMI, REFUSED, "child_unreachable"),
        (ZONE, LATE, "child_unreachable"),
        (ZONE, {"id": "not a uuid"}, "child_invalid"),
        (ZONE, SkyfedError(404, "not_found", "no zone here"), "child_invalid"),
    ],
)
async def test_what_failed_is_said(path: str, answer: Any, code: str) -> None:
    with pytest.raises(BadRequest) as refused:
        await probe_child(Answers(path, answer), REACH)
    assert refused.value.code == code
    assert "eu" in refused.value.message
