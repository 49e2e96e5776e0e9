"""Faults on the Swift data path with real processes: the zone killed with -9 in the
middle of an upload leaves no partial object, and serves again once restarted."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from swiftclient.client import ClientException, Connection

pytestmark = [pytest.mark.asyncio, pytest.mark.integration]
MiB = 1 << 20


def blocks(size: int, started: threading.Event, hold: threading.Event) -> Iterator[bytes]:
    """`size` bytes; after the first 4 MiB it tells `started` and waits for `hold` (the
    zone is killed meanwhile), at most 30 s."""
    block = hashlib.sha256(b"mid-upload").digest() * 2048  # 64 KiB
    for sent in range(0, size, len(block)):
        if sent == 4 * MiB:
            started.set()
            hold.wait(30)
        yield block


async def test_a_zone_killed_mid_upload_leaves_no_partial_object(
    federation: Callable[..., Any],
) -> None:
    zones = [{"name": "dc", "storage": [{"name": "dc-swift", "tiers": ["gold"], "capacity_gb": 4}]}]
    async with federation(zones) as fed:
        store = fed.manifest()["object_store"]
        user = f"{store['project']}:{store['username']}"

        def connect() -> Connection:
            return Connection(
                authurl=store["auth_url"], user=user, key=store["password"], retries=0
            )

        demo = connect()
        await asyncio.to_thread(demo.put_container, "uploads")
        await asyncio.to_thread(demo.put_object, "uploads", "whole", b"done")
        started, hold = threading.Event(), threading.Event()
        upload = asyncio.create_task(
            asyncio.to_thread(demo.put_object, "uploads", "half", blocks(64 * MiB, started, hold))
        )
        assert await asyncio.to_thread(started.wait, 30), "the upload began"
        zone = fed.zones["dc"]
        zone.kill()  # SIGKILL: no goodbye to the cluster nor to the client
        hold.set()
        with pytest.raises((ClientException, OSError, ConnectionError)):
            await upload
        zone.start()
        await zone.wait_ready()
        again = connect()  # its token is still good: tokens are in the zone's database
        with pytest.raises(ClientException) as missing:
            await asyncio.to_thread(again.head_object, "uploads", "half")
        assert missing.value.http_status == 404, "no part of the upload is visible"
        _, listing = await asyncio.to_thread(again.get_container, "uploads")
        assert [o["name"] for o in listing] == ["whole"]
        await asyncio.to_thread(again.put_object, "uploads", "half", b"second try")
        _, body = await asyncio.to_thread(again.get_object, "uploads", "half")
        assert body == b"second try"
