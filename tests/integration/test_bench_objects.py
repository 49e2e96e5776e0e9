"""`skyfed bench objects` end to end, tiny: three real Swift clusters, a real zone process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from skyfed.objects.local_swift import INSTALL_HINT, swift_available
from tests.conftest import IN_CI

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not swift_available() and not IN_CI, reason=INSTALL_HINT),
]

RATIOS = ("large_put_ratio", "large_get_ratio", "small_put_ratio", "small_get_ratio")


def test_objects_bench_prints_the_table_and_its_figures() -> None:
    options = "--large-mib 2 --large-repeat 1 --small-seconds 0.5 --small-repeat 1"
    options += " --concurrency 4 --containers 6 --list-repeat 1 --upload-mib 8"
    run = subprocess.run(
        [sys.executable, "-m", "skyfed", "bench", "objects", *options.split()],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    *table, last = run.stdout.strip().splitlines()
    assert "direct (baseline)" in "\n".join(table)
    figures = json.loads(last)
    assert figures["bench"] == "objects"
    for key in RATIOS:
        kind = key.removesuffix("_ratio")
        unit = "mb_s" if kind.startswith("large") else "ops_s"
        assert figures[f"{kind}_{unit}"] > 0
        assert figures[f"baseline_{kind}_{unit}"] > 0
        assert figures[key] > 0
        assert len(figures[f"{kind}_round_ratios"]) == 1
        assert isinstance(figures["met"][key], bool)
    assert figures["errors"] == {}
    # Six containers, two on each cluster, listed through skyfed's account GET.
    assert figures["containers_spread"] == {"swift-a": 2, "swift-b": 2, "swift-c": 2}
    assert figures["baseline_list_containers_per_s"] > 0
    assert figures["container_creates_per_s"] > 0
    assert figures["list_ratio"] > 0 and figures["list_error"] is None
    assert isinstance(figures["met"]["list_ratio"], bool)
    assert 0 <= figures["upload_rss_growth_mb"] < figures["rss_peak_mb"]
    assert figures["upload_mb_s"] > 0
    assert set(figures["goals"]) == set(figures["met"]) == {*RATIOS, "list_ratio",
                                                             "upload_rss_growth_mb"}  # fmt: skip
    assert len(figures["loadavg_before"]) == len(figures["loadavg_after"]) == 3


def test_objects_bench_refuses_bad_options() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "skyfed", "bench", "objects", "--small-seconds", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
