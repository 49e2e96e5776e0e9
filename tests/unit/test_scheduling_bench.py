"""`skyfed bench placement` on a small tree: it runs, checks its decisions, and
ends with one JSON line of figures."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from skyfed.bench.placement import build_tree, make_requests, run_placement_bench
from skyfed.cli.main import app
from skyfed.settings import DEFAULT_FLAVORS


def test_the_tree_summarises_every_host() -> None:
    tree = build_tree(2, 2, 3, 10, DEFAULT_FLAVORS, seed=1, say=lambda _: None)
    assert len(tree.hosts) == 120 and tree.huddles == 12
    root = tree.root.summary
    online = sum(h.online for h in tree.hosts)
    assert root.hosts == online and root.zones == 1 + 2 + 4 + 12
    assert root.fits["m1.tiny"] == sum(
        min(h.free_vcpus // 1, h.free_ram_mb // 512, h.free_disk_gb // 1)
        for h in tree.hosts
        if h.online and h.enabled
    )
    assert 40 * 120 < tree.instances < 80 * 120


def test_the_request_mix_is_reproducible() -> None:
    a, b = make_requests(500, 5, 5, seed=3), make_requests(500, 5, 5, seed=3)
    assert a == b and len({r.server_id for r in a}) == 500
    assert any(r.group_policy == "anti-affinity" for r in a) and any(r.constraints for r in a)


def test_bench_placement_runs_and_prints_one_json_line() -> None:
    result = run_placement_bench(
        regions=2, dcs=2, huddles=3, hosts_per_huddle=20, decisions=300, baseline_decisions=2
    )
    assert result["hosts"] == 240 and result["decisions"] == 300
    assert result["placed"] + result["failed"] == 300 and result["placed"] > 200
    assert result["baseline_decisions"] == 2 and result["decisions_per_s"] > 0
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    args = "bench placement --regions 1 --dcs 1 --huddles 2 --hosts-per-huddle 10"
    out = CliRunner().invoke(app, [*args.split(), "--decisions", "50", "--baseline-decisions", "1"])
    assert out.exit_code == 0, out.output
    last = json.loads(out.output.strip().splitlines()[-1])
    assert last["bench"] == "placement" and last["decisions"] == 50
