"""One Swift cluster, as skyfed's reseller admin sees it: v1 auth, `/info`, account use.

Every call is bounded (a timeout, an answer of at most `MAX_ANSWER` bytes) and goes
only to addresses a cluster may have (checked at connect, as for child zones): the
URL came from an admin, and skyfed sends the cluster its credentials.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from skyfed.transport.httpx_pool import HttpxTransport
from skyfed.zones.reach_policy import forbidden_address

MAX_ANSWER = 1024 * 1024


class BackendError(Exception):
    """The cluster could not be used: unreachable, refused the login, or answered badly."""

    def __init__(self, reason: str, *, auth_failed: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.auth_failed = auth_failed


class SwiftBackend:
    def __init__(self, auth_url: str, username: str, password: str, *, timeout: float) -> None:
        self.auth_url = auth_url
        self.username = username
        self.password = password
        parts = urlsplit(auth_url)
        self.info_url = f"{parts.scheme}://{parts.netloc}/info"
        self.http = httpx.AsyncClient(
            transport=HttpxTransport(
                max_connections=8, max_answer_bytes=MAX_ANSWER, address_check=forbidden_address
            ),
            timeout=timeout,
            follow_redirects=False,
        )
        self.token: str | None = None
        self.storage_url: str | None = None

    async def authenticate(self) -> tuple[str, str]:
        """A token and the reseller admin's own storage URL (Swift v1 auth)."""
        answer = await self._send(
            "GET",
            self.auth_url,
            headers={"X-Auth-User": self.username, "X-Auth-Key": self.password},
        )
        if answer.status_code in (401, 403):
            raise BackendError(
                f"the cluster refused the login ({answer.status_code})", auth_failed=True
            )
        token = answer.headers.get("x-auth-token")
        storage_url = answer.headers.get("x-storage-url")
        if answer.status_code // 100 != 2 or not token or not storage_url:
            raise BackendError(f"not a Swift v1 auth answer ({answer.status_code})")
        self.token, self.storage_url = token, storage_url
        return token, storage_url

    async def info(self) -> dict[str, Any]:
        """`/info`: Swift's version, its storage policies and the middleware it runs."""
        answer = await self._send("GET", self.info_url)
        try:
            info = answer.json() if answer.status_code == 200 else None
        except ValueError:
            info = None
        if not isinstance(info, dict) or not isinstance(info.get("swift"), dict):
            raise BackendError(f"not a Swift /info answer ({answer.status_code})")
        return info

    async def account_bytes(self, account: str) -> int:
        """Bytes used by `account` (e.g. AUTH_<project>); 0 for one not made yet."""
        if self.storage_url is None:
            await self.authenticate()
        answer = await self._authorized("HEAD", self._account_url(account))
        if answer.status_code == 404:
            return 0
        if answer.status_code // 100 != 2:
            raise BackendError(f"HEAD of account {account} answered {answer.status_code}")
        try:
            return max(0, int(answer.headers.get("x-account-bytes-used", "0")))
        except ValueError as exc:
            raise BackendError(f"account {account}: bytes used is not a number") from exc

    def _account_url(self, account: str) -> str:
        assert self.storage_url is not None
        base = self.storage_url.rstrip("/").rsplit("/", 1)[0]  # …/v1/AUTH_admin -> …/v1
        return f"{base}/{quote(account, safe='')}"

    async def _authorized(self, method: str, url: str) -> httpx.Response:
        answer = await self._send(method, url, headers={"X-Auth-Token": str(self.token)})
        if answer.status_code == 401:  # the token expired: once more with a new one
            await self.authenticate()
            answer = await self._send(method, url, headers={"X-Auth-Token": str(self.token)})
        return answer

    async def _send(
        self, method: str, url: str, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        try:
            return await self.http.request(method, url, headers=headers)
        except httpx.TimeoutException as exc:
            raise BackendError(f"no answer in time from {url}") from exc
        except httpx.HTTPError as exc:
            raise BackendError(f"cannot reach {url}: {exc or type(exc).__name__}") from exc

    async def aclose(self) -> None:
        await self.http.aclose()
