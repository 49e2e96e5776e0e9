"""Argon2id hashing: the production cost by default, a zone's own cost when set, and
every hash verifiable whatever the cost of the zone that checks it."""

from __future__ import annotations

from skyfed.identity.passwords import PasswordHashing
from skyfed.settings import Settings


async def test_the_default_is_argon2id_at_the_production_cost() -> None:
    settings = Settings()
    assert (settings.password_hash_time_cost, settings.password_hash_memory_kib) == (3, 65536)
    hashing = PasswordHashing()
    made = await hashing.hash("correct horse")
    assert made.startswith("$argon2id$") and "m=65536,t=3" in made
    assert await hashing.verify(made, "correct horse")
    assert not await hashing.verify(made, "wrong horse")


async def test_a_hash_keeps_its_cost_and_verifies_under_another() -> None:
    cheap = PasswordHashing(time_cost=1, memory_kib=1024)
    made = await cheap.hash("pw-1234567")
    assert "m=1024,t=1" in made
    assert await PasswordHashing().verify(made, "pw-1234567")


async def test_no_user_and_a_broken_hash_never_verify() -> None:
    hashing = PasswordHashing(time_cost=1, memory_kib=1024)
    assert not await hashing.verify(None, "not-a-real-password")  # the dummy's own password
    assert not await hashing.verify("not-a-hash", "x")
