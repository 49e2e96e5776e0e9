"""Bounds on a server's `metadata` (pure).

Metadata is copied into every zone on the server's path, into each agent command
and into list answers, so it is bounded when the server is created: a document
nested too deep stops serialisers (an agent's command feed would fail for every
server on that agent), and one too large is copied level after level. PostgreSQL's
JSON cannot hold a NUL character or a non-finite number; they are refused here
rather than failing the insert.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 8  # containers inside containers: {"process": {"env": {...}}} is 3
MAX_BYTES = 16 * 1024  # the document as compact JSON
MAX_KEY = 255


class MetadataError(ValueError):
    """Metadata out of bounds, saying which bound and where."""


def check_metadata(value: dict[str, Any]) -> None:
    """Raise MetadataError unless `value` is within the bounds above."""
    # Iterative, so a document nested deeper than Python's stack is refused, not crashed on.
    stack: list[tuple[Any, int, str]] = [(value, 1, "metadata")]
    while stack:
        item, depth, where = stack.pop()
        if isinstance(item, dict):
            if depth > MAX_DEPTH:
                raise MetadataError(f"{where} is nested more than {MAX_DEPTH} levels deep")
            for key, child in item.items():
                if len(key) > MAX_KEY or "\x00" in key:
                    raise MetadataError(
                        f"{where} has a key longer than {MAX_KEY} characters or with a NUL"
                    )
                stack.append((child, depth + 1, f"{where}.{key[:40]}"))
        elif isinstance(item, list):
            if depth > MAX_DEPTH:
                raise MetadataError(f"{where} is nested more than {MAX_DEPTH} levels deep")
            stack.extend((child, depth + 1, f"{where}[{i}]") for i, child in enumerate(item))
        elif isinstance(item, str):
            if "\x00" in item:
                raise MetadataError(f"{where} contains a NUL character")
        elif isinstance(item, float) and not math.isfinite(item):
            raise MetadataError(f"{where} must be a finite number")
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_BYTES:
        raise MetadataError(f"metadata is {size:,} bytes as JSON; at most {MAX_BYTES:,}")
