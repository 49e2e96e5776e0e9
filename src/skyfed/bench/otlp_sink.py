"""An in-memory OTLP/HTTP trace collector for `skyfed bench e2e`: it takes what the
zones and agents export, counts spans and traces, and keeps nothing else.

It runs as a process of its own (`python -m skyfed.bench.otlp_sink`), so its CPU
is measured apart from the zones': the benchmark charges skyfed for recording
and exporting spans, not for a collector's work. On SIGTERM it writes its counts
as one JSON line to standard output.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

MAX_BODY = 64 * 1024 * 1024
_OK = ExportTraceServiceResponse().SerializeToString()


class Sink:
    def __init__(self) -> None:
        self.requests = 0
        self.spans = 0
        self.bad = 0
        self.traces: set[bytes] = set()
        self.zones: set[str] = set()

    def take(self, body: bytes) -> bool:
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
        except Exception:  # protobuf's DecodeError, or worse: counted, answered 400
            self.bad += 1
            return False
        self.requests += 1
        for resource_spans in request.resource_spans:
            for attribute in resource_spans.resource.attributes:
                if attribute.key == "skyfed.zone":
                    self.zones.add(attribute.value.string_value)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans += 1
                    self.traces.add(span.trace_id)
        return True

    def counts(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "spans": self.spans,
            "traces": len(self.traces),
            "zones": sorted(self.zones),
            "bad": self.bad,
        }

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # the exporter keeps its connection open between batches
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                if length > MAX_BODY:
                    return
                ok = self.take(await reader.readexactly(length))
                status = b"200 OK" if ok else b"400 Bad Request"
                body = _OK if ok else b""
                writer.write(
                    b"HTTP/1.1 " + status + b"\r\nContent-Type: application/x-protobuf\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
                )
                await writer.drain()
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
            ValueError,
        ):
            pass
        finally:
            writer.close()


async def main(port: int) -> None:
    sink = Sink()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = await asyncio.start_server(sink.serve, "127.0.0.1", port, limit=65536)
    print(json.dumps({"listening": server.sockets[0].getsockname()[1]}), flush=True)
    await stop.wait()
    server.close()
    print(json.dumps(sink.counts()), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(main(parser.parse_args().port))
    sys.exit(0)
