"""Password hashing with Argon2id, off the event loop.

Hashing is slow and memory-hard on purpose (64 MiB a call), so it runs on two
threads of its own: a flood of logins queues there instead of taking every
core and all memory from the zone's other work.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
_threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")
# Verified against when the user does not exist, so timing does not reveal which names exist.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def hash_password_sync(password: str) -> str:
    return _hasher.hash(password)


def verify_password_sync(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


async def hash_password(password: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(_threads, hash_password_sync, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_threads, verify_password_sync, password_hash, password)
