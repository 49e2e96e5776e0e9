"""Calls published by hand onto a zone's queue, signed (or not) as a parent would."""

from __future__ import annotations

import json
import time
from typing import Any

import aio_pika

from skyfed.identity.link_keys import derive_link_key
from skyfed.transport.envelope import HOP_LIMIT, Envelope
from skyfed.transport.signing import ACCOUNT_HEADER, SIGNATURE_HEADER, call_signature


def envelope(
    method: str = "POST",
    target: str = "/v1/add",
    *,
    deadline: float | None = None,
    headers: dict[str, str] | None = None,
) -> Envelope:
    return Envelope(
        method=method,
        target=target,
        headers={"content-type": "application/json", **(headers or {})},
        route=("parent",),
        hops=1,
        hop_limit=HOP_LIMIT,
        deadline=time.time() + 5 if deadline is None else deadline,
        request_id="req-1",
    )


def call_message(
    *,
    account: str,
    password: str | None,
    queue: str,
    reply_to: str,
    call_id: str,
    body: Any,
    env: Envelope | None = None,
    key: bytes | None = None,
) -> aio_pika.Message:
    """A call as `account` would send it; signed with the key of `password` (or `key`),
    or unsigned when both are None."""
    env = env or envelope()
    raw = b"" if body is None else json.dumps(body).encode()
    headers: dict[str, Any] = {**env.to_headers(), ACCOUNT_HEADER: account}
    if key is None and password is not None:
        key = derive_link_key(account, password)
    if key is not None:
        headers[SIGNATURE_HEADER] = call_signature(
            key,
            account=account,
            call_id=call_id,
            queue=queue,
            reply_to=reply_to,
            envelope=env,
            body=raw,
        )
    return aio_pika.Message(
        raw, headers=headers, message_id=call_id, correlation_id=call_id, reply_to=reply_to
    )
