"""Per-feature sections of a zone summary: capacity that is not hosts (pure).

A feature whose resources are not servers on hosts reports its capacity in a
section of its own, named for it (`storage`: free and used bytes per tier, clusters
up and down; `volumes`: free GiB per tier). A section holds two kinds of numbers,
and merging them up the tree is fixed by the kind, so every zone merges sections
it knows nothing about the same way: `sum` counters add up (free bytes of a tier,
clusters up), `max` figures keep the largest (the most free bytes in any one
cluster of a tier: what one container could still get, the way `fits` is for
servers). Bounded, and checked when read from a child.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from skyfed.zones.capabilities import is_finite

MAX_SECTIONS = 16
MAX_SECTION_KEYS = 256  # per kind of number, per section
SECTION_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
SECTION_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,96}$")


class SectionError(ValueError):
    """A section that is not well formed (from a broken or hostile child)."""


@dataclass(frozen=True, slots=True)
class Section:
    sum: Mapping[str, float] = field(default_factory=dict)
    max: Mapping[str, float] = field(default_factory=dict)

    def merged(self, other: Section) -> Section:
        sums = dict(self.sum)
        for key, value in other.sum.items():
            sums[key] = sums.get(key, 0) + value
        maxes = dict(self.max)
        for key, value in other.max.items():
            maxes[key] = value if key not in maxes else max(maxes[key], value)
        return Section(sums, maxes)

    def to_dict(self) -> dict[str, Any]:
        return {"sum": dict(sorted(self.sum.items())), "max": dict(sorted(self.max.items()))}

    @classmethod
    def from_dict(cls, data: Any) -> Section:
        if not isinstance(data, dict):
            raise SectionError("a section must be an object")
        return cls(_figures(data.get("sum", {})), _figures(data.get("max", {})))


def merge_sections(a: Mapping[str, Section], b: Mapping[str, Section]) -> dict[str, Section]:
    merged = dict(a)
    for name, section in b.items():
        mine = merged.get(name)
        merged[name] = section if mine is None else mine.merged(section)
    return merged


def sections_from_dict(data: Any) -> dict[str, Section]:
    """A summary's sections from an untrusted document; SectionError when malformed."""
    if data is None:
        return {}
    if not isinstance(data, dict) or len(data) > MAX_SECTIONS:
        raise SectionError(f"sections must be an object of at most {MAX_SECTIONS}")
    sections = {}
    for name, section in data.items():
        if not isinstance(name, str) or not SECTION_NAME.fullmatch(name):
            raise SectionError(f"bad section name {name!r}")
        sections[name] = Section.from_dict(section)
    return sections


def _figures(data: Any) -> dict[str, float]:
    if not isinstance(data, dict) or len(data) > MAX_SECTION_KEYS:
        raise SectionError(f"section figures must be an object of at most {MAX_SECTION_KEYS}")
    figures = {}
    for key, value in data.items():
        if not isinstance(key, str) or not SECTION_KEY.fullmatch(key):
            raise SectionError(f"bad section key {key!r}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not is_finite(value):
            raise SectionError(f"section figure {key!r} is not a finite number")
        if value < 0:
            raise SectionError(f"section figure {key!r} is negative")
        figures[key] = value
    return figures
