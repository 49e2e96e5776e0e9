"""Password hashing with Argon2id, off the event loop.

Hashing is slow and memory-hard on purpose (by default 64 MiB and 3 passes a
call, the zone's `password_hash_memory_kib` and `password_hash_time_cost`), so
it runs on two threads of its own: a flood of logins queues there instead of
taking every core and all memory from the zone's other work. A hash records
its own parameters, so a zone whose settings change still verifies the hashes
made before.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

DEFAULT_TIME_COST = 3
DEFAULT_MEMORY_KIB = 64 * 1024

_threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")


class PasswordHashing:
    """Argon2id with one zone's cost parameters."""

    def __init__(
        self, *, time_cost: int = DEFAULT_TIME_COST, memory_kib: int = DEFAULT_MEMORY_KIB
    ) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)
        # Verified against when the user does not exist, so timing does not reveal which
        # names exist: made with the same parameters as the real hashes.
        self._dummy = self._hasher.hash("not-a-real-password")

    def hash_sync(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify_sync(self, password_hash: str | None, password: str) -> bool:
        try:
            return (
                self._hasher.verify(password_hash or self._dummy, password)
                and password_hash is not None
            )
        except (VerificationError, InvalidHashError):
            return False

    async def hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(_threads, self.hash_sync, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_threads, self.verify_sync, password_hash, password)
