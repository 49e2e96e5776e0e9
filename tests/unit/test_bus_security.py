"""The pure parts of the bus's security: signatures, reply queue names, broker
permissions and which calls each queue serves."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
from typing import Any

import pytest

from skyfed.federation.broker import (
    BrokerUser,
    Permissions,
    agent_permissions,
    link_permissions,
    password_hash,
    url_for,
    zone_permissions,
)
from skyfed.identity.principal import AGENT, SERVICE, Principal
from skyfed.transport.envelope import Envelope
from skyfed.transport.names import is_reply_queue_of, reply_queue_for
from skyfed.transport.queue_policy import AGENT_CALLS, PARENT_CALLS
from skyfed.transport.signing import SigningError, answer_signature, call_signature, same

KEY = hashlib.sha256(b"a link key").digest()
ENVELOPE = Envelope(
    method="POST",
    target="/v1/servers?x=1",
    headers={"content-type": "application/json", "x-skyfed-user-id": "u-1"},
    route=("top", "eu"),
    hops=2,
    hop_limit=16,
    deadline=1_900_000_000.123,
    request_id="req-1",
)
CALL: dict[str, Any] = {
    "account": "link-top",
    "call_id": "c-1",
    "queue": "skyfed.zone.eu",
    "reply_to": "skyfed.reply.link-top." + "a" * 32,
    "envelope": ENVELOPE,
    "body": b'{"name": "web"}',
}


def test_a_call_signature_covers_every_field_the_zone_acts_on() -> None:
    signed = call_signature(KEY, **CALL)
    assert call_signature(KEY, **CALL) == signed  # deterministic: the zone makes it again
    changes: list[dict[str, Any]] = [
        {"account": "link-other"},
        {"call_id": "c-2"},
        {"queue": "skyfed.zone.us"},
        {"reply_to": "skyfed.reply.link-top." + "b" * 32},
        {"body": b'{"name": "wob"}'},
        *(
            {"envelope": dataclasses.replace(ENVELOPE, **{field: value})}
            for field, value in [
                ("method", "PUT"),
                ("target", "/v1/servers?x=2"),
                ("headers", {**ENVELOPE.headers, "x-skyfed-roles": "admin"}),
                ("route", ("top",)),
                ("hops", 1),
                ("hop_limit", 99),
                ("deadline", 1_900_000_001.123),
                ("request_id", "req-2"),
            ]
        ),
    ]
    for change in changes:
        assert call_signature(KEY, **{**CALL, **change}) != signed, change
    assert call_signature(hashlib.sha256(b"another").digest(), **CALL) != signed


def test_a_deadline_signs_as_it_travels_in_whole_milliseconds() -> None:
    """The zone rebuilds the deadline from the header's milliseconds: the same signature."""
    for deadline in (1_900_000_000.1235, 1_700_000_000.123, 1_800_000_000.9999):
        sent = dataclasses.replace(ENVELOPE, deadline=deadline)
        received = Envelope.from_headers(sent.to_headers())
        assert call_signature(KEY, **{**CALL, "envelope": sent}) == call_signature(
            KEY, **{**CALL, "envelope": received}
        )


def test_an_answer_signature_covers_id_status_headers_and_body() -> None:
    answer: dict[str, Any] = {
        "call_id": "c-1",
        "status": 200,
        "headers": {"content-type": "application/json"},
        "body": b"{}",
    }
    signed = answer_signature(KEY, **answer)
    for change in (
        {"call_id": "c-2"},
        {"status": 201},
        {"headers": {"content-type": "text/plain"}},
        {"body": b"[]"},
    ):
        assert answer_signature(KEY, **{**answer, **change}) != signed, change
    assert same(signed, signed) and same(signed, signed.encode())
    assert not same(signed, signed[:-1] + "0") and not same(signed, None)
    assert not same(signed, 42) and not same(signed, "é")


def test_reply_queues_belong_to_one_account() -> None:
    queue = reply_queue_for("link-a.b")
    assert re.fullmatch(r"skyfed\.reply\.link-a\.b\.[0-9a-f]{32}", queue)
    assert is_reply_queue_of(queue, "link-a.b")
    assert not is_reply_queue_of(queue, "link-a")  # the random tail is exactly 32 hex digits
    assert not is_reply_queue_of(queue, "b")
    for other in (
        "skyfed.zone.eu",
        "skyfed.reply.link-a.b",
        "skyfed.reply.link-a.b." + "A" * 32,
        "skyfed.reply.link-a.b." + "a" * 31,
        "xskyfed.reply.link-a.b." + "a" * 32,
        "skyfed.reply.link-a.b." + "a" * 32 + "\n",
    ):
        assert not is_reply_queue_of(other, "link-a.b"), other


def allows(pattern: str, name: str) -> bool:
    # RabbitMQ matches with PCRE; these patterns use nothing Python's re reads otherwise.
    return re.search(pattern, name) is not None


def test_the_zone_user_reaches_its_own_names_only() -> None:
    own = zone_permissions("eu-dc1")
    mine = ["skyfed.zone.eu-dc1", "skyfed.agents.eu-dc1", "skyfed.zone.eu-dc1.tasks"]
    waker = "skyfed.zone.eu-dc1.tasks." + "f" * 32
    for name in [*mine, waker, "skyfed.calls", "skyfed.agents"]:
        assert allows(own.configure, name) and allows(own.read, name), name
    for name in [*mine, waker, "amq.default"]:
        assert allows(own.write, name), name
    others = ["skyfed.zone.eu-dc2", "skyfed.zone.eu-dc10", "skyfed.zone.euxdc1", "amq.gen-x"]
    others += ["skyfed.reply.link-eu." + "a" * 32, "skyfed.zone.eu-dc1.tasks.x"]
    for name in others:
        assert not any(allows(p, name) for p in (own.configure, own.write, own.read)), name


@pytest.mark.parametrize(
    ("permissions", "exchange", "other_exchange"),
    [
        (link_permissions("link-eu"), "skyfed.calls", "skyfed.agents"),
        (agent_permissions("eu-dc1-agent"), "skyfed.agents", "skyfed.calls"),
    ],
)
def test_callers_write_to_their_exchange_and_read_their_own_replies(
    permissions: Permissions, exchange: str, other_exchange: str
) -> None:
    account = "link-eu" if exchange == "skyfed.calls" else "eu-dc1-agent"
    replies = reply_queue_for(account)
    assert allows(permissions.configure, replies) and allows(permissions.read, replies)
    assert allows(permissions.write, exchange)
    refused = [
        other_exchange,
        "amq.default",
        "skyfed.zone.eu-dc1",
        "skyfed.agents.eu-dc1",
        replies,  # nothing published straight into a queue, not even its own
        reply_queue_for("link-us"),
        reply_queue_for(account + ".x"),
    ]
    for name in refused:
        assert not allows(permissions.write, name), name
    for name in [n for n in refused if n != replies]:
        assert not allows(permissions.configure, name), name
        assert not allows(permissions.read, name), name


def test_each_queue_serves_its_callers_and_routes() -> None:
    service = Principal("1", "link-top", "p", frozenset({SERVICE}))
    agent = Principal("2", "dc-agent", "p", frozenset({AGENT}))
    assert PARENT_CALLS.refusal(service, "GET", "/v1/zone") is None
    assert PARENT_CALLS.refusal(service, "POST", "/v1/servers?x=1") is None
    assert PARENT_CALLS.refusal(service, "POST", "/v1/auth/tokens")  # no logins over a bus
    assert PARENT_CALLS.refusal(agent, "GET", "/v1/zone")  # an agent's key: not here
    for method, target in [
        ("PUT", "/v1/hosts"),
        ("PUT", "/v1/hosts/h-1"),
        ("GET", "/v1/agents/dc-agent/commands?wait=20"),
        ("POST", "/v1/agents/dc-agent/commands/3f2a/result"),
    ]:
        assert AGENT_CALLS.refusal(agent, method, target) is None, target
    for method, target in [
        ("GET", "/v1/hosts"),
        ("POST", "/v1/hosts/h-1/disable"),
        ("GET", "/v1/zone"),
        ("POST", "/v1/users"),
        ("GET", "/v1/agents/../users"),
        ("PUT", "/v1/hosts/.."),
    ]:
        assert AGENT_CALLS.refusal(agent, method, target), target
    assert AGENT_CALLS.refusal(service, "PUT", "/v1/hosts")  # a parent's key: not here


def test_broker_passwords_are_handed_over_hashed_and_urls_quoted() -> None:
    stored = base64.b64decode(password_hash("s3cret"))
    salt, digest = stored[:4], stored[4:]
    assert digest == hashlib.sha256(salt + b"s3cret").digest()
    user = BrokerUser("skyfed-1-eu", "p@ss/word", "skyfed-1-eu", zone_permissions("eu"))
    assert "p@ss" not in repr(user)
    url = url_for("amqps://guest:guest@mq.example:5671/old", user)
    assert url == "amqps://skyfed-1-eu:p%40ss%2Fword@mq.example:5671/skyfed-1-eu"


def test_a_field_holding_a_nul_cannot_be_signed() -> None:
    """Fields are joined by NUL: one that held a NUL could move a boundary, so two
    different calls would sign alike; it is refused instead."""
    for change in (
        {"call_id": "c\x001"},
        {"envelope": dataclasses.replace(ENVELOPE, headers={"x-a": "1\x00x-b"})},
        {"envelope": dataclasses.replace(ENVELOPE, route=("top\x00eu",))},
    ):
        with pytest.raises(SigningError):
            call_signature(KEY, **{**CALL, **change})
    with pytest.raises(SigningError):
        answer_signature(KEY, call_id="c\x00", status=200, headers={}, body=b"")
