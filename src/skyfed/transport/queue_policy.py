"""Which calls a zone serves from each of its queues, and from which accounts.

A zone consumes two queues: its parents' (`skyfed.zone.<name>`, service accounts,
the whole API but logins: over a bus nobody needs a token) and its host agents'
(`skyfed.agents.<name>`, agent accounts, heartbeats and the agent protocol only).
The API checks every call's rights as it would over HTTP; this is the bus's own
fence around it, so an agent's key is worth nothing on any other route.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from skyfed.identity.principal import AGENT, SERVICE, Principal

ANY_METHOD = "*"


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    role: str  # the role a caller's account must have
    # (method or ANY_METHOD, path pattern) a call must match; empty: any route ...
    routes: tuple[tuple[str, re.Pattern[str]], ...] = ()
    # ... except these paths.
    refused: tuple[re.Pattern[str], ...] = ()

    def refusal(self, caller: Principal, method: str, target: str) -> str | None:
        """Why this queue does not serve the call; None when it does."""
        if self.role not in caller.roles:
            return f"this queue serves '{self.role}' accounts only"
        path = target.partition("?")[0]
        for pattern in self.refused:
            if pattern.fullmatch(path):
                return f"{path} is not served over the bus"
        if not self.routes:
            return None
        for allowed, pattern in self.routes:
            if allowed in (method, ANY_METHOD) and pattern.fullmatch(path):
                return None
        return f"{method} {path} is not served on this queue"


_SEGMENT = r"[A-Za-z0-9_-][A-Za-z0-9._-]*"  # a name or id; never "." or ".."

PARENT_CALLS = QueuePolicy(role=SERVICE, refused=(re.compile(r"/v1/auth/tokens"),))
AGENT_CALLS = QueuePolicy(
    role=AGENT,
    routes=(
        ("PUT", re.compile(rf"/v1/hosts(/{_SEGMENT})?")),  # heartbeats, one or a batch
        (ANY_METHOD, re.compile(rf"/v1/agents/{_SEGMENT}(/{_SEGMENT})*")),  # the agent protocol
    ),
)
