"""Child credentials never appear in clear: not in the parent's database, not in any log."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import hosts

pytestmark = pytest.mark.integration


async def test_no_clear_password_or_token_at_rest_or_in_logs(federation) -> None:
    zones = [{"name": "parent"}, {"name": "child", "parents": ["parent"], "hosts": [hosts(5, "h")]}]
    async with federation(zones) as fed:
        async with fed.admin_client("parent") as parent:
            await parent.zone()
            detail = await parent.zone_detail("child")
            token = parent.token
        assert detail.state == "active"
        secret = fed.link_passwords["parent>child"].encode()
        state = fed.state_dir
    assert token
    parent_db = state / "parent" / "parent.db"
    files = [parent_db, *Path(state).glob("*/*.db-wal"), *Path(state).glob("*/*.log")]
    assert parent_db.stat().st_size > 0
    assert any(p.name == "zone.log" and p.stat().st_size > 0 for p in files)
    for path in files:
        data = path.read_bytes()
        assert secret not in data, f"child password in clear in {path}"
        assert token.encode() not in data, f"a bearer token in clear in {path}"
