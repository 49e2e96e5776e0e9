"""Signatures on calls and answers over a broker, with the calling account's link key.

Whoever can publish on a zone's broker could otherwise send the zone calls, and
whoever can publish into a caller's reply queue could answer in the zone's
name. So each call carries the name of the account it comes from and an
HMAC-SHA256, with that account's link key (identity/link_keys.py: derived from
its password on both ends, never sent), over everything the zone acts on: the
call's id, its method and target, every header the app will see, the route,
hops and hop limit, the deadline, the request id, the queue it was sent to, the
reply queue, and a digest of the body. The zone answers with an HMAC of the same
key over the call's id, the status, the headers it keeps and a digest of the
body. A batch is only a way to carry calls: each call in it is signed alone.

The zone runs a verified call as the account that signed it: the bus server
hands the account's identity to the app in the ASGI scope under `BUS_CALLER`, a
key no HTTP request can set (a server builds the scope itself). So no bearer
token travels: a message holds nothing that would let its reader in anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from itertools import chain

from skyfed.identity.link_keys import LinkAccount, derive_link_key
from skyfed.identity.principal import SERVICE, Principal
from skyfed.transport.envelope import Envelope

# The ASGI scope key under which the bus server puts the verified caller (a Principal).
BUS_CALLER = "skyfed.bus_caller"
# Message (and batch record) headers.
ACCOUNT_HEADER = "x-account"
SIGNATURE_HEADER = "x-signature"

_CALL = "skyfed-call-v1"
_ANSWER = "skyfed-answer-v1"


# The zone's lookup of an account by name: None when it has no usable key.
AccountResolver = Callable[[str], Awaitable[LinkAccount | None]]


def call_signature(
    key: bytes,
    *,
    account: str,
    call_id: str,
    queue: str,
    reply_to: str,
    envelope: Envelope,
    body: bytes,
) -> str:
    """The hex HMAC a call carries (the caller makes it; the zone makes it again)."""
    headers = sorted(envelope.headers.items())
    return _mac(
        key,
        [
            _CALL,
            account,
            call_id,
            queue,
            reply_to,
            envelope.method,
            envelope.target,
            str(len(headers)),
            *chain.from_iterable(headers),
            str(len(envelope.route)),
            *envelope.route,
            str(envelope.hops),
            str(envelope.hop_limit),
            str(envelope.deadline_ms),
            envelope.request_id,
            hashlib.sha256(body).hexdigest(),
        ],
    )


def answer_signature(
    key: bytes, *, call_id: str, status: int, headers: Mapping[str, str], body: bytes
) -> str:
    """The hex HMAC an answer carries (the zone makes it; the caller makes it again)."""
    kept = sorted(headers.items())
    return _mac(
        key,
        [
            _ANSWER,
            call_id,
            str(status),
            str(len(kept)),
            *chain.from_iterable(kept),
            hashlib.sha256(body).hexdigest(),
        ],
    )


def same(expected: str, given: object) -> bool:
    """Whether a signature received equals the one expected, in constant time."""
    if isinstance(given, bytes):
        given = given.decode("ascii", "replace")
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(expected.encode(), given.encode("ascii", "replace"))


class SigningError(ValueError):
    """A field that cannot be signed (it holds a NUL): the message is refused."""


def _mac(key: bytes, fields: list[str]) -> str:
    # Fields joined by NUL, which none may hold, and lists preceded by their count: no
    # field can run into the next, so no two calls sign alike. (Four of these run per
    # call: joined in C, this is a third of what length prefixes or JSON cost.)
    data = "\0".join(fields)
    if data.count("\0") != len(fields) - 1:
        raise SigningError("a signed field holds a NUL character")
    return hmac.digest(key, data.encode(), "sha256").hex()


class StaticAccounts:
    """Accounts given by name and password, for a served app that keeps no users
    (tests, the rpc benchmark's workers); the keys are derived once, here."""

    def __init__(self, passwords: Mapping[str, str], role: str = SERVICE) -> None:
        self._accounts = {
            name: LinkAccount(
                derive_link_key(name, password),
                Principal(f"id-{name}", name, "service", frozenset({role})),
            )
            for name, password in passwords.items()
        }

    async def __call__(self, name: str) -> LinkAccount | None:
        return self._accounts.get(name)
