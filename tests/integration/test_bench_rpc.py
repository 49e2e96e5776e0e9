"""`skyfed bench rpc` end to end, small: real worker processes, the real broker, Celery."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import IN_CI

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("rabbitmqctl") is None and not IN_CI, reason="rabbitmqctl is not installed"
    ),
]


@pytest.mark.restarts_broker
def test_rpc_bench_prints_the_table_and_loses_nothing_when_workers_die_or_the_broker_restarts(
    amqp_url: str,
) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "skyfed",
            "bench",
            "rpc",
            "--broker",
            amqp_url,
            "--sizes",
            "1,50",
            "--workers",
            "1",
            "--fault-requests",
            "150",
            "--systems",
            "amqp,http,celery",
            "--timeout",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    lines = run.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    rows = result["rows"]
    assert {(r["system"], r["requests"], r["fault"]) for r in rows} >= {
        ("amqp", 50, ""),
        ("http", 50, ""),
        ("celery", 50, ""),
        ("amqp", 150, "1 worker killed"),
        ("amqp", 150, "2 workers killed"),
        ("amqp", 150, "broker restarted"),
        ("http", 150, "2 workers killed"),
    }
    # The restart landed mid-run (the link lost its connection before the last answer),
    # and the link still lost nothing.
    (restart,) = [r for r in rows if (r["system"], r["fault"]) == ("amqp", "broker restarted")]
    assert restart["fault_hit"], restart
    (said,) = [line for line in lines if line.startswith("amqp") and "broker restarted" in line]
    assert "Finished 150/150" in said and "MISSED" not in said, said
    assert all(r["lost"] == 0 for r in rows if r["system"] != "celery")
    assert result["fault_rows_lost"] == 0
    assert all(r["seconds"] > 0 for r in rows)
    assert any("Finished 50/50" in line for line in lines)  # the seed's table, line by line
