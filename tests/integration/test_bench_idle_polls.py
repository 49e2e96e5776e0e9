"""`skyfed bench idle-polls` end to end, small: two real zone processes, real polls."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_idle_polls_bench_prints_the_table_and_its_figures() -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "skyfed",
            "bench",
            "idle-polls",
            "--polls",
            "20",
            "--seconds",
            "1",
            "--repeat",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    *table, last = run.stdout.strip().splitlines()
    assert "re-read every 0.25 s (before)" in "\n".join(table)
    figures = json.loads(last)
    assert (figures["bench"], figures["polls"], figures["seconds"]) == ("idle-polls", 20, 1.0)
    assert figures["baseline"] == "re-read every 0.25 s"
    for key in ("cpu_s", "baseline_cpu_s", "no_polls_cpu_s"):
        assert figures[key] >= 0
    assert {k: len(v) for k, v in figures["runs"].items()} == {
        "event": 1,
        "baseline": 1,
        "no_polls": 1,
    }


def test_idle_polls_bench_refuses_bad_options() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "skyfed", "bench", "idle-polls", "--seconds", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
