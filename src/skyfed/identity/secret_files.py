"""Secrets generated once and kept in a file only their owner can read (mode 0600)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    """Replace `path` with `text`, readable by its owner only from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def read_or_create(path: Path, make: Callable[[], str]) -> tuple[str, bool]:
    """The secret in `path`, or a new one from `make()` written there; True when it is new.

    The file appears complete or not at all (written aside, then hard-linked into
    place), so processes starting together agree on one secret.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return path.read_text().strip(), False
    secret = make()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(secret + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            return path.read_text().strip(), False
    finally:
        os.unlink(tmp)
    return secret, True
