"""An in-process stand-in for memcached, for a Swift proxy running in one process.

tempauth keeps its tokens in memcache and fails without one, and one memcached shared
by several clusters would mix their keys. A proxy with `workers = 0` is a single
process, so a dict serves: the proxy pipeline loads this filter as its `cache`
(`paste.filter_factory = skyfed.objects.swift_cache:filter_factory`).

It mirrors what Swift uses of `swift.common.memcached.MemcacheRing`: a JSON round trip
when `serialize` is true, bytes otherwise, and memcached's TTLs (seconds, or an absolute
time beyond 30 days). Loaded by the Swift processes only (see swift_daemon.py).
"""

from __future__ import annotations

import json
import time as _time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

_THIRTY_DAYS = 30 * 24 * 3600

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


def _expiry(ttl: float | int | None) -> float | None:
    ttl = int(ttl or 0)
    if ttl <= 0:
        return None
    return float(ttl) if ttl > _THIRTY_DAYS else _time.time() + ttl


class InProcessMemcache:
    """The MemcacheRing methods Swift calls, over a dict: (kind, value, expires at)."""

    memcache_servers: list[str] = []

    def __init__(self) -> None:
        self._store: dict[str, tuple[str, Any, float | None]] = {}

    def _fetch(self, key: str) -> tuple[str, Any, float | None] | None:
        item = self._store.get(key)
        if item is not None and item[2] is not None and item[2] <= _time.time():
            del self._store[key]
            return None
        return item

    def set(
        self,
        key: str,
        value: Any,
        serialize: bool = True,
        time: float = 0,
        min_compress_len: int = 0,
        raise_on_error: bool = False,
    ) -> None:
        if serialize:
            if isinstance(value, bytes):
                value = value.decode("utf-8")
            self._store[key] = ("json", json.dumps(value), _expiry(time))
        else:
            raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
            self._store[key] = ("raw", raw, _expiry(time))

    def get(self, key: str, raise_on_error: bool = False) -> Any:
        item = self._fetch(key)
        if item is None:
            return None
        return json.loads(item[1]) if item[0] == "json" else item[1]

    def incr(self, key: str, delta: int = 1, time: float = 0) -> int:
        item = self._fetch(key)
        if item is None:
            new, expires = max(0, int(delta)), _expiry(time)
        else:
            new, expires = max(0, int(item[1]) + int(delta)), item[2]
        self._store[key] = ("raw", str(new).encode("ascii"), expires)
        return new

    def decr(self, key: str, delta: int = 1, time: float = 0) -> int:
        return self.incr(key, delta=-int(delta), time=time)

    def delete(self, key: str, server_key: str | None = None) -> None:
        self._store.pop(key, None)

    def set_multi(
        self,
        mapping: Mapping[str, Any],
        server_key: str,
        serialize: bool = True,
        time: float = 0,
        min_compress_len: int = 0,
    ) -> None:
        for key, value in mapping.items():
            self.set(key, value, serialize=serialize, time=time)

    def get_multi(self, keys: Iterable[str], server_key: str) -> list[Any]:
        return [self.get(key) for key in keys]


def filter_factory(global_conf: dict[str, str], **local_conf: str) -> Callable[[WsgiApp], WsgiApp]:
    """paste.deploy's entry: the middleware that hands every request the one cache."""
    cache = InProcessMemcache()

    def cache_filter(app: WsgiApp) -> WsgiApp:
        def middleware(env: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            env["swift.cache"] = cache
            return app(env, start_response)

        return middleware

    return cache_filter
