"""Which hosts an agent may carry: exact names and anchored prefixes (pure, no I/O).

A pattern is a host name (`eu-dc1-std-00012`) or a prefix ending in one `*`
(`eu-dc1-*`: every name starting with `eu-dc1-`). There is no other wildcard: no
`?`, no `[...]`, no `*` inside, so what a grant covers is plain to read. `*`
alone covers every name; it is allowed because a zone with a single agent needs
it, and it is never a default: someone has to write it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from skyfed.schema_types import HOST_PATTERN

CATCH_ALL = "*"
_PATTERN = re.compile(HOST_PATTERN)


class PatternError(ValueError):
    pass


def check_pattern(pattern: str) -> str:
    if not _PATTERN.match(pattern):
        raise PatternError(
            f"host pattern {pattern!r} is neither a host name nor a name prefix ending in one "
            "'*' (letters, digits, '.', '_', '-'; at most 63)"
        )
    return pattern


@dataclass(frozen=True, slots=True)
class HostGrant:
    """What one agent may carry: hosts its patterns cover, at most `max_hosts` of them."""

    patterns: tuple[str, ...]
    max_hosts: int
    names: frozenset[str]
    prefixes: tuple[str, ...]

    @classmethod
    def of(cls, patterns: Iterable[str], max_hosts: int) -> HostGrant:
        kept = tuple(sorted({check_pattern(p) for p in patterns}))
        names = frozenset(p for p in kept if not p.endswith("*"))
        prefixes = tuple(p[:-1] for p in kept if p.endswith("*"))
        # A shorter prefix covers the longer ones it starts: keep only the short ones.
        prefixes = tuple(
            p for p in prefixes if not any(q != p and p.startswith(q) for q in prefixes)
        )
        return cls(kept, max_hosts, names, prefixes)

    @property
    def catch_all(self) -> bool:
        return "" in self.prefixes

    def covers(self, host: str) -> bool:
        if host in self.names:
            return True
        return any(host.startswith(p) for p in self.prefixes)

    def uncovered(self, hosts: Iterable[str]) -> list[str]:
        """The hosts of `hosts` this grant does not cover, in their order."""
        return [h for h in hosts if not self.covers(h)]
