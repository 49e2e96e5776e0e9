"""The Celery side of `skyfed bench rpc`: the same `add`, on the same broker.

Configured from the environment so the worker (`celery -A skyfed.bench.rpc_celery
worker`) and the client agree: SKYFED_BENCH_BROKER, SKYFED_BENCH_QUEUE,
SKYFED_BENCH_RECORD (where the worker writes each key it runs) and
SKYFED_BENCH_HOLD (while that file exists, a call marked `hold` waits). Results come
back over the `rpc://` backend (replies on the broker, as the seed's spike had).
"""

from __future__ import annotations

import os
import time

from celery import Celery

app = Celery(
    "skyfed_bench",
    broker=os.environ.get("SKYFED_BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
    backend="rpc://",
)
app.conf.update(
    task_default_queue=os.environ.get("SKYFED_BENCH_QUEUE", "skyfed-bench-celery"),
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    result_expires=600,
)
_record_fd: int | None = None


@app.task(name="skyfed_bench.add")
def add(key: str, a: int, b: int, hold: bool = False) -> int:
    global _record_fd
    held = os.environ.get("SKYFED_BENCH_HOLD")
    while hold and held and os.path.exists(held):  # one task at a time per pool process
        time.sleep(0.01)
    if _record_fd is None:
        _record_fd = os.open(
            os.environ["SKYFED_BENCH_RECORD"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
        )
    os.write(_record_fd, f"{key}\n".encode())
    return a + b
