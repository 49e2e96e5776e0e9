"""Metadata skyfed keeps itself (an account's `X-Account-Meta-*`, a container's
`X-Container-Attr-*`), with Swift's limits and its way of setting and removing."""

from __future__ import annotations

from collections.abc import Mapping

from skyfed.errors import BadRequest

MAX_META_NAME_LENGTH = 128
MAX_META_VALUE_LENGTH = 256
MAX_META_COUNT = 90
MAX_META_OVERALL_SIZE = 4096
MAX_HEADER_SIZE = 8192


def check_metadata(headers: Mapping[str, str], prefix: str) -> None:
    """Swift's checks of a request's `x-<prefix>-*` headers (lower-cased keys)."""
    count = size = 0
    start = f"x-{prefix}-"
    for key, value in headers.items():
        if len(value) > MAX_HEADER_SIZE:
            raise BadRequest(f"Header value too long: {key[:MAX_META_NAME_LENGTH]}")
        if not key.startswith(start):
            continue
        name = key[len(start) :]
        if not name:
            raise BadRequest("Metadata name cannot be empty")
        count += 1
        size += len(name) + len(value)
        if len(name) > MAX_META_NAME_LENGTH:
            raise BadRequest(f"Metadata name too long: {key}")
        if len(value) > MAX_META_VALUE_LENGTH:
            raise BadRequest(f"Metadata value longer than {MAX_META_VALUE_LENGTH}: {key}")
        if count > MAX_META_COUNT:
            raise BadRequest(f"Too many metadata items; max {MAX_META_COUNT}")
        if size > MAX_META_OVERALL_SIZE:
            raise BadRequest(f"Total metadata too large; max {MAX_META_OVERALL_SIZE}")


def meta_updates(
    current: dict[str, str], headers: Mapping[str, str], prefix: str
) -> dict[str, str]:
    """`current` with the request's `x-<prefix>-name: value` set (an empty value
    removes) and its `x-remove-<prefix>-name` removed."""
    start, remove = f"x-{prefix}-", f"x-remove-{prefix}-"
    for key, value in headers.items():
        if key.startswith(start) and key[len(start) :]:
            name = key[len(start) :]
            if value:
                current[name] = value
            else:
                current.pop(name, None)
        elif key.startswith(remove):
            current.pop(key[len(remove) :], None)
    return current


def has_updates(headers: Mapping[str, str], prefix: str) -> bool:
    return any(k.startswith((f"x-{prefix}-", f"x-remove-{prefix}-")) for k in headers)


def check_stored(metadata: Mapping[str, str]) -> None:
    """What an account keeps after an update stays within Swift's overall limits."""
    if len(metadata) > MAX_META_COUNT:
        raise BadRequest(f"Too many metadata items; max {MAX_META_COUNT}")
    if sum(len(k) + len(v) for k, v in metadata.items()) > MAX_META_OVERALL_SIZE:
        raise BadRequest(f"Total metadata too large; max {MAX_META_OVERALL_SIZE}")
