"""Which proxy httpx's pool goes through for a child: the environment's, as curl reads it."""

from __future__ import annotations

import pytest

from skyfed.transport.httpx_pool import environment_proxy

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def test_none_without_proxy_variables() -> None:
    assert environment_proxy("https://eu.zones.example.net:8700") is None


def test_by_scheme_then_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.net:3128")
    monkeypatch.setenv("ALL_PROXY", "http://other.example.net:3128")
    assert environment_proxy("https://eu.zones.example.net") == "http://proxy.example.net:3128"
    assert environment_proxy("http://eu.zones.example.net") == "http://other.example.net:3128"


def test_no_proxy_exempts_a_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.net:3128")
    monkeypatch.setenv("NO_PROXY", ".zones.example.net,10.20.0.5")
    assert environment_proxy("https://eu.zones.example.net") is None
    assert environment_proxy("https://10.20.0.5:8700") is None
    assert environment_proxy("https://elsewhere.example.org") == "http://proxy.example.net:3128"
