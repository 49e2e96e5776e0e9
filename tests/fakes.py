"""Test doubles that speak skyfed's real protocols over the real API."""

from __future__ import annotations

from typing import Any

from skyfed.client import SkyfedClient


class ScriptedAgent:
    """An agent that answers its zone's commands as the test says (no real hosts)."""

    def __init__(self, client: SkyfedClient, name: str | None = None) -> None:
        self.client = client
        # An agent's name is its account's user name.
        self.name = name or str(client.username)
        self.seen: list[dict[str, Any]] = []

    async def beat(self, hosts: dict[str, dict[str, int]], **capabilities: Any) -> None:
        await self.client.heartbeat_batch(
            [
                {
                    "name": host,
                    "resources": resources,
                    "capabilities": dict(capabilities),
                    "agent": self.name,
                }
                for host, resources in hosts.items()
            ]
        )

    async def commands(self, wait: float = 0.0) -> list[dict[str, Any]]:
        return await self.client.agent_commands(self.name, wait=wait)

    async def answer(self, command: dict[str, Any], ok: bool = True, **fields: Any) -> None:
        status = {
            "boot": "ACTIVE",
            "reboot": "ACTIVE",
            "start": "ACTIVE",
            "stop": "STOPPED",
            "delete": "DELETED",
        }[command["action"]]
        result = {"ok": ok, "status": status if ok else "ERROR", **fields}
        await self.client.command_result(self.name, command["id"], result)
        self.seen.append(command)

    async def answer_all(self, wait: float = 0.0, ok: bool = True) -> list[dict[str, Any]]:
        found = await self.commands(wait)
        for command in found:
            await self.answer(command, ok)
        return found
