"""`skyfed bench move` end to end, tiny: two real Swift clusters, a real zone process,
rclone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from skyfed.objects.local_swift import INSTALL_HINT, swift_available
from tests.conftest import IN_CI

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not swift_available() and not IN_CI, reason=INSTALL_HINT),
]


def test_move_bench_prints_its_figures_beside_rclone() -> None:
    if shutil.which("rclone") is None:
        message = "rclone is not installed (apt-get install rclone; .ci/run does)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    options = "--objects 40 --min-kib 4 --max-kib 128 --repeat 1"
    run = subprocess.run(
        [sys.executable, "-m", "skyfed", "bench", "move", *options.split()],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    assert figures["bench"] == "move" and figures["objects"] == 40
    assert figures["bytes"] > 40 * 4096
    assert len(figures["rclone_s"]) == len(figures["move_switch_s"]) == 1
    assert figures["rclone_s"][0] > 0 and figures["move_switch_s"][0] > 0
    assert figures["move_vs_rclone"] > 0
    assert isinstance(figures["met"]["move_vs_rclone"], bool)
    # Used while it moved: nothing failed, nothing written was lost.
    assert figures["reads_during_move"] > 0 and figures["writes_during_move"] > 0
    assert figures["errors_during_move"] == 0, figures["first_error"]
    assert set(figures["goals"]) == {"move_vs_rclone", "errors_during_move"}


def test_move_bench_refuses_bad_options() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "skyfed", "bench", "move", "--min-kib", "9", "--max-kib", "8"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    assert "max-kib" in run.stdout + run.stderr
