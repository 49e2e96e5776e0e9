"""`skyfed agent` refuses bad options before it starts anything."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from skyfed.cli.main import app


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.json"
    path.write_text(json.dumps({"prefix": "dc", "groups": [{"count": 2, "vcpus": 4}]}))
    return path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["agent", "--url", "http://127.0.0.1:9", "-u", "agent", "-p", "pw", *args]
    )
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--driver", "kvm"], "unknown driver 'kvm'; this build has: sim, process"),
        (["--failure-rate", "1.5"], "--failure-rate within 0..1"),
        (["--boot-delay", "-1"], "--boot-delay must be >= 0"),
        (["--poll-wait", "0"], "--poll-wait 1..60"),
        (["--name", "bad name!"], "agent name 'bad name!' is not a name"),
        (["--name", "other"], "an agent's name is its account's user name"),
        (["--otlp-endpoint", "collector:4318"], "is not an http(s) URL"),
    ],
)
def test_bad_options_exit_2_with_a_reason(spec: Path, args: list[str], message: str) -> None:
    code, output = run("--spec", str(spec), *args)
    assert code == 2
    assert message in output


def test_a_bad_spec_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "hosts.json"
    bad.write_text(json.dumps({"groups": [{"count": 1, "cpus": 4}]}))
    code, output = run("--spec", str(bad))
    assert code == 2
    assert f"bad spec {bad}" in output and "unknown keys ['cpus']" in output


def test_the_process_driver_needs_a_host(tmp_path: Path) -> None:
    empty = tmp_path / "hosts.json"
    empty.write_text(json.dumps({"groups": []}))
    code, output = run("--spec", str(empty), "--driver", "process")
    assert code == 2
    assert "needs at least one host" in output


@pytest.mark.skipif(os.geteuid() != 0, reason="the uid range is checked by a root agent")
def test_a_uid_range_that_could_hand_out_root_is_refused_at_start(spec: Path) -> None:
    code, output = run("--spec", str(spec), "--driver", "process", "--server-uid-base", "0")
    assert code == 2
    assert "must lie within 1000" in output


def test_an_agent_that_is_not_root_needs_consent_to_share_its_user(
    spec: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The agent as an unprivileged user sees it (whoever runs the tests).
    from skyfed.compute.agent import process_driver

    monkeypatch.setattr(process_driver.os, "geteuid", lambda: 4321)
    code, output = run("--spec", str(spec), "--driver", "process")
    assert code == 2
    assert "--insecure-shared-user" in output
