"""Which hosts a parent may call: exact names, anchored domains, networks; never the
addresses no child has (the SSRF holes of fnmatch patterns and a '*' default)."""

from __future__ import annotations

import pytest

from skyfed.settings import Settings
from skyfed.zones.reach_policy import (
    HostPattern,
    PatternError,
    forbidden_address,
    host_allowed,
    parse_patterns,
)


@pytest.mark.parametrize(
    ("pattern", "host", "allowed"),
    [
        ("zone1.example.net", "zone1.example.net", True),
        ("zone1.example.net", "ZONE1.example.net.", True),
        ("zone1.example.net", "zone1.example.net.attacker.example", False),
        ("zone1.example.net", "x.zone1.example.net", False),
        ("*.example.net", "eu-dc1.example.net", True),
        ("*.example.net", "a.b.example.net", True),
        ("*.example.net", "example.net", False),
        ("*.example.net", "badexample.net", False),
        ("*.example.net", "eu-dc1.example.net.attacker.example", False),
        ("10.0.0.0/16", "10.0.3.4", True),
        ("10.0.0.0/16", "10.1.0.1", False),
        # The review's finding: with fnmatch, '10.0.*' matched this name.
        ("10.0.0.0/16", "10.0.0.5.attacker.example", False),
        ("10.0.0.5", "10.0.0.5", True),
        ("10.0.0.5", "10.0.0.50", False),
        ("fd00::/8", "fd00::1", True),
        ("::1", "::1", True),
        ("localhost", "localhost", True),
    ],
)
def test_patterns_match_exactly(pattern: str, host: str, allowed: bool) -> None:
    assert host_allowed(host, parse_patterns([pattern])) is allowed


@pytest.mark.parametrize(
    "pattern", ["*", "10.0.*", "zone?.example.net", "*.net", "a b", "1.2.3.4/99"]
)
def test_globs_and_catch_alls_are_refused(pattern: str) -> None:
    with pytest.raises(PatternError):
        HostPattern.parse(pattern)


def test_settings_refuse_a_glob_and_default_to_allowing_nothing() -> None:
    assert Settings().allowed_child_hosts == []
    assert not host_allowed("127.0.0.1", parse_patterns(Settings().allowed_child_hosts))
    with pytest.raises(ValueError, match="allowed_child_hosts"):
        Settings(allowed_child_hosts=["10.0.*"])


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("169.254.169.254", "metadata"),
        ("169.254.10.1", "link-local"),
        ("fe80::1", "link-local"),
        ("::ffff:169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("255.255.255.255", "broadcast"),
    ],
)
def test_addresses_no_child_has(address: str, why: str) -> None:
    reason = forbidden_address(address)
    assert reason is not None and why in reason


@pytest.mark.parametrize("address", ["10.0.0.5", "127.0.0.1", "192.168.1.1", "2001:db8::1"])
def test_ordinary_addresses_pass(address: str) -> None:
    assert forbidden_address(address) is None
