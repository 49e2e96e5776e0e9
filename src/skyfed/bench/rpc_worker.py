"""A worker process of `skyfed bench rpc`: serves `add` behind a zone's end of a link.

`--transport amqp`: consumes the queue with `ZoneQueueServer` (what a zone runs for
parents linked over AMQP). `--transport http`: serves it with uvicorn on a port
shared by every worker (SO_REUSEPORT, so the kernel spreads connections as it
would behind one address). The app authenticates callers like a zone (over
HTTP bearer tokens from `POST /v1/auth/tokens`; over AMQP the signature of each
call, checked by `ZoneQueueServer` with the link key of the `bench` account) and
records each `add` it runs in `--record`, one key per line written straight to
the file, so a worker killed with -9 leaves behind what it did. A call marked
`hold` waits while the file `--hold` exists (the broker restart row's way to keep
calls in flight until the broker has gone).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import os
import secrets
import signal
import socket
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from skyfed.transport.signing import BUS_CALLER

BENCH_ACCOUNT = "bench"
BENCH_PASSWORD = "bench-password"


class HoldGate:
    """Calls marked `hold` pass once the hold file is gone; one watcher looks for all."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._open: asyncio.Task[None] | None = None

    async def passed(self) -> None:
        if self.path is None:
            return
        if self._open is None:  # a worker serves one fault row: once open, it stays open
            self._open = asyncio.create_task(self._until_gone(self.path))
        await asyncio.shield(self._open)

    @staticmethod
    async def _until_gone(path: Path) -> None:
        # The bench, another process, removes it; a file has nothing to await: one stat
        # every 10 ms, in one task for every held call.
        while path.exists():  # noqa: ASYNC110, ASYNC240
            await asyncio.sleep(0.01)


def adder_app(record_fd: int, hold: Path | None = None) -> Starlette:
    # Every worker honours every worker's tokens, as a zone's processes share theirs
    # through the database: a token is signed with a key all workers derive alike.
    key = hashlib.sha256(BENCH_PASSWORD.encode()).digest()
    gate = HoldGate(hold)

    def sign(nonce: str) -> str:
        return hmac.new(key, nonce.encode(), hashlib.sha256).hexdigest()

    async def login(request: Request) -> JSONResponse:
        body = await request.json()
        if body.get("password") != BENCH_PASSWORD:
            return JSONResponse({"error": {"code": "unauthorized", "message": "no"}}, 401)
        nonce = secrets.token_hex(8)
        token = f"{nonce}.{sign(nonce)}"
        return JSONResponse({"token": token, "user": {"roles": ["service"]}}, 201)

    def valid(token: str) -> bool:
        nonce, _, mac = token.partition(".")
        return hmac.compare_digest(mac, sign(nonce))

    async def add(request: Request) -> JSONResponse:
        signed = request.scope.get(BUS_CALLER) is not None  # verified by the bus server
        if not signed and not valid(
            request.headers.get("authorization", "").removeprefix("Bearer ")
        ):
            return JSONResponse({"error": {"code": "unauthorized", "message": "log in"}}, 401)
        body = await request.json()
        if body.get("hold"):
            await gate.passed()
        os.write(record_fd, f"{body['key']}\n".encode())
        return JSONResponse({"sum": body["a"] + body["b"], "pid": os.getpid()})

    return Starlette(
        routes=[
            Route("/v1/auth/tokens", login, methods=["POST"]),
            Route("/v1/add", add, methods=["POST"]),
        ]
    )


async def serve_amqp(app: Any, broker: str, queue: str) -> None:
    from skyfed.transport.amqp_server import ZoneQueueServer
    from skyfed.transport.signing import StaticAccounts

    accounts = StaticAccounts({BENCH_ACCOUNT: BENCH_PASSWORD})  # the key derived once, here
    server = ZoneQueueServer(app, broker, queue, zone="bench", accounts=accounts, prefetch=64)
    await server.start()
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop()


async def serve_http(app: Any, port: int) -> None:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    # Accepted connections inherit it; uvicorn sets it only on sockets it binds itself.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", port))
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, backlog=4096)
    )
    print("ready", flush=True)
    await server.serve(sockets=[sock])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", choices=["amqp", "http"], required=True)
    parser.add_argument("--broker", default="")
    parser.add_argument("--queue", default="")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--record", required=True)
    parser.add_argument("--hold", type=Path, default=None)
    args = parser.parse_args()
    fd = os.open(args.record, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    app = adder_app(fd, args.hold)
    serve = (
        serve_amqp(app, args.broker, args.queue)
        if args.transport == "amqp"
        else serve_http(app, args.port)
    )
    run_loop(serve)


def run_loop(main: Any) -> Any:
    """Run on uvloop when it is installed, as a zone's processes do under uvicorn."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


if __name__ == "__main__":
    main()
