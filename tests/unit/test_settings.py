"""Settings: the TOML file, SKYFED_* overrides, and refusals that name the problem."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from skyfed.settings import Settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "zone.toml"
    path.write_text(text)
    return path


def test_file_values_and_relative_state_dir(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'name = "eu-dc1"\nport = 9001\nstate_dir = "data"\n[capabilities]\nregion = "eu"\n',
    )
    settings = Settings.load(path)
    assert (settings.name, settings.port) == ("eu-dc1", 9001)
    assert settings.state_dir == tmp_path / "data"
    assert settings.capabilities == {"region": "eu"}
    assert settings.effective_database_url.endswith(f"{tmp_path}/data/eu-dc1.db")


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, 'name = "a"\nport = 9001\n')
    monkeypatch.setenv("SKYFED_PORT", "9002")
    monkeypatch.setenv("SKYFED_DATABASE_URL", "postgresql+asyncpg://x@db/a")
    monkeypatch.setenv("SKYFED_USERNAME", "not-a-setting")  # a CLI variable: ignored here
    settings = Settings.load(path)
    assert settings.port == 9002
    assert settings.effective_database_url == "postgresql+asyncpg://x@db/a"


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ('name = "bad name"', "name"),
        ("port = 70000", "port"),
        ("poll_interval = 1.0\npoll_timeout = 2.0", "poll_timeout must not exceed poll_interval"),
        ('service_username = "svc"', "service_username and service_password go together"),
        ('agent_password = "x"', "agent_username and agent_password go together"),
        ('[capabilities]\n"bad key!" = 1', "capability key"),
        ("[capabilities]\nssd = true", "must be a string or a number"),
        ("typo_setting = 1", "typo_setting"),
        ('process_servers = "everyone"', "process_servers"),
        (
            '[[flavors]]\nname = "a"\nvcpus = 1\nram_mb = 1\n'
            '[[flavors]]\nname = "a"\nvcpus = 2\nram_mb = 2',
            "unique",
        ),
    ],
)
def test_bad_settings_are_refused_with_the_reason(tmp_path: Path, toml: str, problem: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Settings.load(write(tmp_path, toml))
    assert problem in str(exc.value)


def test_the_shells_skyfed_variables_do_not_reach_the_tests() -> None:
    """tests/conftest.py drops them (SKYFED_TEST_* aside): an exported SKYFED_PORT must
    not override what a test sets for its zones."""
    assert [n for n in os.environ if n.startswith("SKYFED_") and "_TEST_" not in n] == []
