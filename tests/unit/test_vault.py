"""The credential vault: secrets at rest are encrypted with a key the database never sees."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken
from hypothesis import given, settings
from hypothesis import strategies as st

from skyfed.identity.vault import Vault, VaultError

SECRET = "s3cret-child-password"


@pytest.fixture
def vault() -> Vault:
    return Vault(Fernet.generate_key())


def test_round_trip(vault: Vault) -> None:
    token = vault.encrypt(SECRET)
    assert isinstance(token, bytes)
    assert vault.decrypt(token) == SECRET


def test_round_trip_empty_and_unicode(vault: Vault) -> None:
    for text in ("", "pässwörd ✓ 密码", "x" * 10_000, "line\nbreak\0nul"):
        assert vault.decrypt(vault.encrypt(text)) == text


@given(text=st.text(max_size=200))
@settings(max_examples=100)
def test_round_trip_any_text(text: str) -> None:
    vault = Vault(b"A" * 43 + b"=")
    assert vault.decrypt(vault.encrypt(text)) == text


def test_ciphertext_does_not_contain_the_plaintext(vault: Vault) -> None:
    token = vault.encrypt(SECRET)
    assert SECRET.encode() not in token
    assert SECRET.encode() not in base64.urlsafe_b64decode(token)
    assert base64.b64encode(SECRET.encode()) not in token
    assert base64.urlsafe_b64encode(SECRET.encode()).rstrip(b"=") not in token


def test_encrypting_twice_gives_different_ciphertexts(vault: Vault) -> None:
    a, b = vault.encrypt(SECRET), vault.encrypt(SECRET)
    assert a != b
    assert vault.decrypt(a) == vault.decrypt(b) == SECRET


def test_wrong_key_raises_vault_error(vault: Vault) -> None:
    token = vault.encrypt(SECRET)
    other = Vault(Fernet.generate_key())
    with pytest.raises(VaultError, match="cannot be decrypted"):
        other.decrypt(token)


@pytest.mark.parametrize("garbage", [b"", b"not a token", b"gAAAAA" + b"A" * 100])
def test_garbage_raises_vault_error(vault: Vault, garbage: bytes) -> None:
    with pytest.raises(VaultError):
        vault.decrypt(garbage)


def test_tampered_ciphertext_raises_vault_error(vault: Vault) -> None:
    raw = bytearray(base64.urlsafe_b64decode(vault.encrypt(SECRET)))
    raw[-40] ^= 1
    with pytest.raises(VaultError):
        vault.decrypt(base64.urlsafe_b64encode(bytes(raw)))


def test_invalid_key_is_refused() -> None:
    with pytest.raises(ValueError):
        Vault(b"too short")


# -- key files -------------------------------------------------------------------------------


def test_key_file_is_created_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "state" / "zone" / "secret.key"
    vault = Vault.from_key_file(path)
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = path.read_bytes()
    assert len(base64.urlsafe_b64decode(key)) == 32
    # The key in the file is the vault's key.
    assert Fernet(key).decrypt(vault.encrypt(SECRET)).decode() == SECRET


def test_key_file_mode_ignores_a_lax_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        Vault.from_key_file(tmp_path / "secret.key")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "secret.key").stat().st_mode) == 0o600


def test_key_file_is_reused(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    first = Vault.from_key_file(path)
    key = path.read_bytes()
    token = first.encrypt(SECRET)
    second = Vault.from_key_file(path)
    assert path.read_bytes() == key
    assert second.decrypt(token) == SECRET
    assert first.decrypt(second.encrypt("other")) == "other"


def test_existing_key_file_with_newline_is_used(tmp_path: Path) -> None:
    key = Fernet.generate_key()
    path = tmp_path / "secret.key"
    path.write_bytes(key + b"\n")
    vault = Vault.from_key_file(path)
    assert vault.decrypt(Fernet(key).encrypt(b"hello")) == "hello"
    assert path.read_bytes() == key + b"\n"


def test_different_key_files_do_not_share_keys(tmp_path: Path) -> None:
    a = Vault.from_key_file(tmp_path / "a" / "secret.key")
    b = Vault.from_key_file(tmp_path / "b" / "secret.key")
    with pytest.raises(VaultError):
        b.decrypt(a.encrypt(SECRET))


# -- secrets from settings -------------------------------------------------------------------------


def test_from_secret_accepts_a_fernet_key() -> None:
    key = Fernet.generate_key()
    vault = Vault.from_secret(key.decode())
    assert Fernet(key).decrypt(vault.encrypt(SECRET)).decode() == SECRET
    assert vault.decrypt(Fernet(key).encrypt(b"x")) == "x"


def test_from_secret_derives_a_key_from_a_passphrase() -> None:
    passphrase = "correct horse battery staple"
    vault = Vault.from_secret(passphrase)
    # A slow KDF (scrypt), not a bare hash: a stolen ciphertext resists guessing.
    key = hashlib.scrypt(passphrase.encode(), salt=b"skyfed-vault-v1", n=2**14, r=8, p=1, dklen=32)
    assert Fernet(base64.urlsafe_b64encode(key)).decrypt(vault.encrypt(SECRET)).decode() == SECRET
    weak = base64.urlsafe_b64encode(hashlib.sha256(passphrase.encode()).digest())
    with pytest.raises(InvalidToken):
        Fernet(weak).decrypt(vault.encrypt(SECRET))
    # The same passphrase gives the same key, in any process.
    assert Vault.from_secret(passphrase).decrypt(vault.encrypt(SECRET)) == SECRET


def test_from_secret_different_passphrases_differ() -> None:
    token = Vault.from_secret("one passphrase").encrypt(SECRET)
    with pytest.raises(VaultError):
        Vault.from_secret("another passphrase").decrypt(token)


@pytest.mark.parametrize("passphrase", ["short", "", "ünïcödé pass", "a" * 44, "!!!!" * 11])
def test_from_secret_accepts_any_passphrase(passphrase: str) -> None:
    vault = Vault.from_secret(passphrase)
    assert vault.decrypt(vault.encrypt(SECRET)) == SECRET


@given(passphrase=st.text(max_size=80))
@settings(max_examples=100)
def test_from_secret_never_fails_and_is_deterministic(passphrase: str) -> None:
    token = Vault.from_secret(passphrase).encrypt(SECRET)
    assert Vault.from_secret(passphrase).decrypt(token) == SECRET
