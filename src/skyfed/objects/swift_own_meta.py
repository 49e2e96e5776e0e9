"""skyfed's own metadata on objects: never a client's to set nor to see.

A static link to an object elsewhere keeps its target's ETag and size in it
(swift_refs); a static large object whose segments are elsewhere, its ETag and
size (swift_slo_marks).
"""

from __future__ import annotations

from skyfed.objects.swift_slo_marks import MARKS

STATIC_ETAG = "x-object-meta-skyfed-symlink-target-etag"
STATIC_BYTES = "x-object-meta-skyfed-symlink-target-bytes"
STATIC = frozenset({STATIC_ETAG, STATIC_BYTES})
OWN_META = STATIC | MARKS
