"""Encrypts secrets at rest (child zone credentials) with a key the database never sees."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from skyfed.identity.secret_files import read_or_create


class VaultError(Exception):
    pass


class Vault:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def from_secret(cls, secret: str) -> Vault:
        """Use a Fernet key as given, or derive one from any other passphrase (scrypt)."""
        raw = secret.encode()
        try:
            if len(base64.urlsafe_b64decode(raw)) == 32:
                return cls(raw)
        except ValueError:
            pass
        # A fixed salt: the same passphrase must give the same key on every start.
        key = hashlib.scrypt(raw, salt=b"skyfed-vault-v1", n=2**14, r=8, p=1, dklen=32)
        return cls(base64.urlsafe_b64encode(key))

    @classmethod
    def from_key_file(cls, path: Path) -> Vault:
        """Read the key file, creating it (mode 0600) on first use."""
        key, _ = read_or_create(path, lambda: Fernet.generate_key().decode())
        return cls(key.encode())

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def decrypt(self, ciphertext: bytes) -> str:
        try:
            return self._fernet.decrypt(ciphertext).decode()
        except InvalidToken as exc:
            raise VaultError("stored secret cannot be decrypted with this zone's key") from exc
