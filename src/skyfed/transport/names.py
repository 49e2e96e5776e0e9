"""Names on a zone's broker: where calls go in, where answers come back.

RabbitMQ grants rights by name (a regex per vhost for configure, write and
read), so these names are what the broker's permissions are written against
(`federation/broker.py`, docs/zone-links.md). Publishing through the default
exchange reaches any queue, so callers never get it: parents publish to the
`skyfed.calls` exchange and agents to `skyfed.agents`, which the zone declares
and binds to its own queues. Answers come back on a reply queue named for the
calling account, which only that account may declare and read.
"""

from __future__ import annotations

import functools
import re
import secrets

# Exchanges the zone declares; the only ones its callers may publish to.
CALLS_EXCHANGE = "skyfed.calls"  # parents' calls, to `skyfed.zone.<name>`
AGENTS_EXCHANGE = "skyfed.agents"  # host agents' calls, to `skyfed.agents.<name>`

REPLY_PREFIX = "skyfed.reply."
# The random end of reply and notice queue names, as a regex (the broker's permissions
# are written with it, federation/broker.py).
RANDOM_TAIL = r"[0-9a-f]{32}"
_REPLY_SUFFIX = re.compile(rf"\.{RANDOM_TAIL}\Z")


def queue_for(zone: str) -> str:
    """The durable queue a zone consumes its parents' calls from, on its own broker."""
    return f"skyfed.zone.{zone}"


def agent_queue_for(zone: str) -> str:
    """The durable queue a zone consumes its host agents' calls from."""
    return f"skyfed.agents.{zone}"


def wakeups_exchange_for(zone: str) -> str:
    """The fanout exchange on which a zone's processes wake each other for tasks."""
    return f"skyfed.zone.{zone}.tasks"


def commands_exchange_for(zone: str) -> str:
    """The fanout exchange on which a zone's processes wake agents' polls and the tasks
    waiting for an agent's answer."""
    return f"skyfed.zone.{zone}.commands"


def notice_queue_for(exchange: str) -> str:
    """A process's own queue on a fanout exchange of its zone: `<exchange>.<32 hex>`."""
    return f"{exchange}.{secrets.token_hex(16)}"


def reply_queue_for(account: str) -> str:
    """A fresh reply queue of `account`: `skyfed.reply.<account>.<32 hex digits>`."""
    return f"{REPLY_PREFIX}{account}.{secrets.token_hex(16)}"


@functools.lru_cache(maxsize=4096)  # asked for every call; the queues of a link repeat
def is_reply_queue_of(queue: str, account: str) -> bool:
    """Whether `queue` is one of `account`'s reply queues (and so no other queue: a
    zone's own, another account's, or one of no skyfed kind). The random part is
    exactly 32 hex digits at the end, so `link-a.b`'s queues are never `link-a`'s."""
    return (
        queue.startswith(REPLY_PREFIX)
        and _REPLY_SUFFIX.search(queue) is not None
        and queue[len(REPLY_PREFIX) : -33] == account
    )
