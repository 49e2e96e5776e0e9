"""What a `process` server runs: its `metadata.process` spec, parsed and checked (pure).

The API checks it when a server is created, so a bad spec is refused there (422)
rather than found at boot on a host; the process driver parses it again to run it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class ProcessSpecError(ValueError):
    """A `metadata.process` that cannot be run, with what it should look like."""


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    command: list[str]
    env: dict[str, str]
    cwd: str | None

    @classmethod
    def parse(cls, server_id: str, server: Mapping[str, Any]) -> ProcessSpec:
        metadata = server.get("metadata") or {}
        spec = metadata.get("process") if isinstance(metadata, Mapping) else None
        if not isinstance(spec, Mapping):
            raise ProcessSpecError(
                f"server {server_id} has no metadata.process; the process driver needs "
                '{"process": {"command": ["program", "arg", ...], "env": {...}, "cwd": "..."}}'
            )
        command = spec.get("command")
        if (
            not isinstance(command, list)
            or not command
            or not all(isinstance(a, str) and a and "\x00" not in a for a in command)
        ):
            raise ProcessSpecError(
                f"server {server_id}: metadata.process.command must be a non-empty list of "
                "strings (the program and its arguments, no shell)"
            )
        env = spec.get("env") or {}
        if not isinstance(env, Mapping) or not all(
            isinstance(k, str) and k and "=" not in k and isinstance(v, str) for k, v in env.items()
        ):
            raise ProcessSpecError(
                f"server {server_id}: metadata.process.env must map variable names to strings"
            )
        cwd = spec.get("cwd")
        if cwd is not None and (not isinstance(cwd, str) or not cwd):
            raise ProcessSpecError(f"server {server_id}: metadata.process.cwd must be a path")
        unknown = set(spec) - {"command", "env", "cwd"}
        if unknown:
            raise ProcessSpecError(
                f"server {server_id}: metadata.process has unknown keys {sorted(unknown)}; "
                "it takes command, env and cwd"
            )
        return cls(list(command), dict(env), cwd)

    def as_json(self) -> dict[str, Any]:
        return {"command": self.command, "env": self.env, "cwd": self.cwd}
