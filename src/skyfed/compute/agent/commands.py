"""The agent's side of the command protocol (docs/compute.md, "The agent protocol").

`CommandLoop` long-polls `GET /v1/agents/{agent}/commands?after=SEQ` for the
commands past the last one it was given, and every `resync` seconds (and after a
failed poll) asks for all pending ones (`after=0`), which also recovers a command
whose insert committed after a later one was delivered. It runs each command
through the driver (at most `concurrency` at once; commands on one server run
in the order they arrived), and posts the results to
`POST /v1/agents/{agent}/results` (those finishing within a few milliseconds of
each other in one request), retrying with backoff while the zone cannot be
reached. The zone sends a pending command again on every poll
until its result arrives, so a command already running is not run twice, and a
command whose result was posted but is delivered again (the answer to the post
was lost) gets the same result posted again, without running again.

`EventForwarder` takes what the driver announces on its own (a process that
exited) and posts it in batches to `POST /v1/agents/{agent}/events`. An event
about a server waits while a command on that server is in flight, and is
dropped when the server's status has moved on since (a reboot after the exit),
so the zone never sees a state older than one it was already told.

With a `Tracing` (the agent's `--otlp-endpoint` or `--trace-console`), each command
runs in a span `agent <action>` continuing the trace the zone sent with it (the
request the command serves), and its result is posted inside that span, so the
zone's handling of the result joins the trace too. Without one, OpenTelemetry is
never imported: an agent starts in a third of the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, TypeVar

from skyfed.client import SkyfedClient, SkyfedError
from skyfed.coalesce import Coalescer
from skyfed.compute.agent.driver import Driver, DriverError, ServerEvent, run_action

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from skyfed.observability.tracing import Tracing

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRYABLE = {0, 408, 429, 500, 502, 503, 504}  # 0: the zone could not be reached
MESSAGE_MAX = 255  # the zone keeps messages of at most this many characters


def _refused(exc: Exception) -> bool:
    return isinstance(exc, SkyfedError) and exc.status not in RETRYABLE


def clip(message: str) -> str:
    """A message the zone accepts: no NUL, at most MESSAGE_MAX characters."""
    message = message.replace("\x00", "")
    if len(message) <= MESSAGE_MAX:
        return message
    return message[: MESSAGE_MAX - 1] + "\u2026"


def backoff(failures: int, *, base: float = 0.2, cap: float = 5.0) -> float:
    """Exponential, capped, with jitter so many agents do not retry in step."""
    return min(cap, base * 2 ** min(max(failures - 1, 0), 10)) * random.uniform(0.8, 1.2)


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep; True when `stop` was set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


async def until_stop(stop: asyncio.Event, call: Awaitable[T]) -> tuple[bool, T | None]:
    """Run `call` unless `stop` is set first (then cancel it): (stopped, its result)."""
    task = asyncio.ensure_future(call)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if task.done():
        return False, task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return True, None


class Malformed(ValueError):
    pass


def parse_command(raw: Any) -> tuple[str, str, str, str, Mapping[str, Any]]:
    """(id, action, host, server_id, server) of one delivered command."""
    if not isinstance(raw, Mapping):
        raise Malformed(f"a command must be an object, not {type(raw).__name__}")
    fields = {}
    for key in ("id", "action", "host", "server_id"):
        value = raw.get(key)
        if not isinstance(value, str) or not value:
            raise Malformed(f"command field {key!r} must be a non-empty string, not {value!r}")
        fields[key] = value
    server = raw.get("server") or {}
    if not isinstance(server, Mapping):
        raise Malformed("command field 'server' must be an object")
    return fields["id"], fields["action"], fields["host"], fields["server_id"], server


def traceparent_of(raw: Mapping[str, Any]) -> str | None:
    """The trace a delivered command continues; None when it has none or it is not one
    (a new trace then starts: a command is never refused for its trace)."""
    value = raw.get("traceparent")
    return value if isinstance(value, str) and 0 < len(value) <= 128 else None


class CommandLoop:
    def __init__(
        self,
        client: SkyfedClient,
        driver: Driver,
        agent: str,
        *,
        wait: int = 20,
        limit: int = 100,
        concurrency: int = 64,
        idle_pause: float = 0.5,
        remember: int = 10_000,
        resync: float = 5.0,
        tracing: Tracing | None = None,
    ) -> None:
        self.client = client
        self.tracing = tracing
        self.driver = driver
        self.agent = agent
        self.wait = wait
        self.limit = limit
        self.idle_pause = idle_pause
        self.remember = remember
        self.resync = resync
        self.cursor = 0  # the highest command seq delivered to us
        self._slots = asyncio.Semaphore(concurrency)
        self.in_flight: dict[str, asyncio.Task[None]] = {}  # until its result is posted
        self.busy_servers: Counter[str] = Counter()
        self.done: OrderedDict[str, dict[str, Any]] = OrderedDict()  # id -> result posted
        self.executed = 0  # commands the driver ran (not re-posts)
        self._finished = asyncio.Event()
        # Results finishing together go to the zone in one request; a batch the zone
        # refuses as a whole is posted result by result, so only a bad one is refused.
        self.results: Coalescer[None, tuple[str, dict[str, Any]], bool] = Coalescer(
            self._send_results, linger=0.005, max_items=500, retry_alone=_refused
        )
        # Called with the server id when a command is done (the event forwarder's kick).
        self.on_finish: list[Callable[[str | None], None]] = []

    # -- polling -----------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        loop = asyncio.get_running_loop()
        last_full = -float("inf")
        while not stop.is_set():
            self._finished.clear()
            began = loop.time()
            full = began - last_full >= self.resync
            after = 0 if full else self.cursor
            poll = self.client.agent_commands(
                self.agent, wait=self.wait, limit=self.limit, after=after
            )
            try:
                stopped, commands = await until_stop(stop, poll)
            except SkyfedError as exc:
                last_full = -float("inf")
                failures += 1
                log.warning(
                    "polling for commands failed",
                    extra={"error": str(exc), "failures": failures},
                )
                await sleep_or_stop(stop, backoff(failures, base=0.5, cap=10.0))
                continue
            if stopped:
                return
            if failures:
                log.info("the zone answers polls again", extra={"after_failures": failures})
            failures = 0
            if full:
                last_full = began
            for raw in commands or []:
                seq = raw.get("seq") if isinstance(raw, Mapping) else None
                if isinstance(seq, int) and seq > self.cursor:
                    self.cursor = seq
            new = sum(self.accept(raw) for raw in commands or [])
            if not new and (commands or loop.time() - began < min(1.0, self.wait / 2)):
                # Only commands we are running (the zone re-sends pending ones at once), or an
                # early empty answer: wait for one of ours to finish, or a moment, not spin.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._finished.wait(), timeout=self.idle_pause)

    def accept(self, raw: Any) -> bool:
        """Take one delivered command; True when it is new work."""
        try:
            command_id, action, host, server_id, server = parse_command(raw)
        except Malformed as exc:
            cid = raw.get("id") if isinstance(raw, Mapping) else None
            log.error("malformed command", extra={"error": str(exc), "command_id": cid})
            if isinstance(cid, str) and cid and cid not in self.in_flight:
                result = {
                    "ok": False,
                    "status": "ERROR",
                    "message": clip(str(exc)),
                    "exit_code": None,
                }
                self._track(cid, None, self._post(cid, None, result))
            return False
        if command_id in self.in_flight:
            return False  # a re-delivery of a command still running (or posting its result)
        if command_id in self.done:  # its result was posted, but the zone did not see it
            self._track(
                command_id, server_id, self._post(command_id, server_id, self.done[command_id])
            )
            return False
        trace = traceparent_of(raw)
        self._track(
            command_id, server_id, self._execute(command_id, action, host, server_id, server, trace)
        )
        return True

    def _track(self, command_id: str, server_id: str | None, work: Awaitable[None]) -> None:
        if server_id is not None:
            self.busy_servers[server_id] += 1
        task = asyncio.ensure_future(work)
        self.in_flight[command_id] = task

        def finished(_: asyncio.Future[None]) -> None:
            self.in_flight.pop(command_id, None)
            if server_id is not None:
                self.busy_servers[server_id] -= 1
                if self.busy_servers[server_id] <= 0:
                    del self.busy_servers[server_id]
            self._finished.set()
            for callback in self.on_finish:
                callback(server_id)

        task.add_done_callback(finished)

    # -- running and reporting -----------------------------------------------------

    async def _execute(
        self,
        command_id: str,
        action: str,
        host: str,
        server_id: str,
        server: Mapping[str, Any],
        traceparent: str | None = None,
    ) -> None:
        with self._span(command_id, action, host, server_id, traceparent) as span:
            async with self._slots:
                self.executed += 1
                try:
                    outcome = await run_action(self.driver, action, host, server_id, server)
                    result: dict[str, Any] = {
                        "ok": True,
                        "status": outcome.status,
                        "message": clip(outcome.message),
                        "exit_code": outcome.exit_code,
                    }
                except DriverError as exc:
                    result = {
                        "ok": False,
                        "status": "ERROR",
                        "message": clip(str(exc)),
                        "exit_code": None,
                    }
                except Exception as exc:  # a driver bug must not end the agent
                    log.exception("driver failed", extra={"command_id": command_id})
                    result = {
                        "ok": False,
                        "status": "ERROR",
                        "message": clip(f"agent error: {type(exc).__name__}: {exc}"),
                        "exit_code": None,
                    }
            if span is not None:
                _describe(span, result)
            log.info(
                "command done",
                extra={
                    "command_id": command_id,
                    "action": action,
                    "server_id": server_id,
                    "host": host,
                    "ok": result["ok"],
                    "status": result["status"],
                },
            )
            # Inside the span: the post carries its traceparent to the zone.
            await self._post(command_id, server_id, result)

    def _span(
        self, command_id: str, action: str, host: str, server_id: str, traceparent: str | None
    ) -> AbstractContextManager[Span | None]:
        if self.tracing is None:
            return nullcontext()
        return self.tracing.span(
            f"agent {action}",
            parent=traceparent,
            attributes={
                "skyfed.agent": self.agent,
                "skyfed.command.id": command_id,
                "skyfed.command.action": action,
                "skyfed.host": host,
                "skyfed.server.id": server_id,
            },
        )

    async def _send_results(self, _: None, results: list[tuple[str, dict[str, Any]]]) -> list[bool]:
        return await self.client.command_results(self.agent, results)

    async def _post(self, command_id: str, server_id: str | None, result: dict[str, Any]) -> None:
        failures = 0
        while True:
            try:
                if not await self.results.submit(None, (command_id, result)):
                    log.error(
                        "the zone does not know a command it was given a result for",
                        extra={"command_id": command_id},
                    )
                break
            except SkyfedError as exc:
                if exc.status not in RETRYABLE:
                    log.error(
                        "the zone refused a command result",
                        extra={"command_id": command_id, "error": str(exc)},
                    )
                    break
                failures += 1
                if failures == 1 or failures % 10 == 0:
                    log.warning(
                        "posting a command result failed; retrying",
                        extra={"command_id": command_id, "error": str(exc), "failures": failures},
                    )
                await asyncio.sleep(backoff(failures))
        self.done[command_id] = result
        self.done.move_to_end(command_id)
        while len(self.done) > self.remember:
            self.done.popitem(last=False)

    async def drain(self, timeout: float) -> None:
        """Give running commands (and their result posts) `timeout` seconds, then cancel them."""
        tasks = list(self.in_flight.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if pending:
            log.warning(
                "commands left unfinished at shutdown; the zone will send them again",
                extra={"count": len(pending)},
            )


def _describe(span: Span, result: Mapping[str, Any]) -> None:
    # Only reached with tracing on, so OpenTelemetry is loaded already.
    from skyfed.observability.tracing import failed

    span.set_attribute("skyfed.command.status", str(result["status"]))
    if not result["ok"]:
        failed(span, str(result["message"]))


class EventForwarder:
    def __init__(
        self,
        client: SkyfedClient,
        driver: Driver,
        agent: str,
        commands: CommandLoop | None = None,
        *,
        batch: int = 500,
        linger: float = 0.05,
    ) -> None:
        self.client = client
        self.driver = driver
        self.agent = agent
        self.commands = commands
        self.batch = batch
        self.linger = linger
        self.pending: list[ServerEvent] = []
        self.sent = 0
        self._kick = asyncio.Event()
        if commands is not None:
            commands.on_finish.append(lambda _server_id: self._kick.set())

    def _take_queued(self) -> None:
        while True:
            try:
                self.pending.append(self.driver.events.get_nowait())
            except asyncio.QueueEmpty:
                return

    def _ready(self) -> list[ServerEvent]:
        """Events to send now, oldest first; held ones stay pending, stale ones go."""
        busy = self.commands.busy_servers if self.commands is not None else {}
        ready: list[ServerEvent] = []
        held: list[ServerEvent] = []
        for event in self.pending:
            if event["server_id"] in busy:
                held.append(event)
            elif self.driver.status(event["server_id"]) == event["status"]:
                ready.append(event)
            else:
                log.info("dropping a superseded event", extra={"event": event})
        self.pending = held
        return ready

    async def flush(self) -> None:
        """Post every event that is ready; on failure they stay pending and this raises."""
        self._take_queued()
        ready = self._ready()
        while ready:
            chunk = ready[: self.batch]
            try:
                answer = await self.client.agent_events(
                    self.agent, [{**e, "message": clip(e["message"])} for e in chunk]
                )
            except SkyfedError:
                self.pending[:0] = ready  # keep order for the next try
                raise
            if answer.get("refused"):
                # Servers of hosts this agent no longer carries (another agent took them).
                log.warning("the zone refused events", extra={"refused": answer["refused"]})
            self.sent += len(chunk)
            ready = ready[self.batch :]

    async def run(self, stop: asyncio.Event) -> None:
        async def pump() -> None:
            while True:
                # Await first: `self.pending` is replaced while we wait, so look it up after.
                event = await self.driver.events.get()
                self.pending.append(event)
                self._kick.set()

        pumping = asyncio.ensure_future(pump())
        failures = 0
        try:
            while not stop.is_set():
                stopped, _ = await until_stop(stop, self._kick.wait())
                if stopped:
                    return
                await asyncio.sleep(self.linger)  # let a burst gather into one batch
                self._kick.clear()
                try:
                    await self.flush()
                    failures = 0
                except SkyfedError as exc:
                    failures += 1
                    if exc.status not in RETRYABLE:
                        log.error(
                            "the zone refused events; dropping them",
                            extra={"error": str(exc), "count": len(self.pending)},
                        )
                        self.pending.clear()
                        continue
                    log.warning(
                        "forwarding events failed; retrying",
                        extra={"error": str(exc), "failures": failures},
                    )
                    if await sleep_or_stop(stop, backoff(failures)):
                        return
                    self._kick.set()
        finally:
            pumping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pumping
