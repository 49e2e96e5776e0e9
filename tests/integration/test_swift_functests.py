"""Swift's own functional tests (swift 2.38.3's test/functional, tests.swift_functests)
against a zone's Swift API, over two real clusters that both offer tiers gold and silver.

What fails today is listed, with why, in swift_functests_expected.txt. The test fails
on a failure not listed there, on a listed test that no longer fails (take it off the
list), and when nothing ran. The run's output and JUnit report stay in the test's
tmp_path (the failure message says where).

The zone places containers with `storage_placement = "account"`: each account's
containers stay on one cluster and the accounts spread over the two (test on one,
test2 on the other: the same each run). So what fails is the same each time, and
every cross-account test (copies, symlinks, ACLs between test and test2) goes from
one cluster to the other through skyfed. (Containers of one account on several
clusters are tested by tests/api/test_swift_account.py.)
"""

from __future__ import annotations

import contextlib
import shutil
import warnings
from pathlib import Path

import pytest

from skyfed.client import SkyfedClient
from skyfed.objects.local_swift import LocalSwift, LocalSwiftSet, free_base_port
from skyfed.settings import Settings
from skyfed.wire import SkyfedError
from tests.conftest import ServedZone, free_test_port, zone_settings
from tests.swift_functests import (
    FILES,
    SwiftUser,
    compare,
    func_test_conf,
    load_expected,
    run,
    swift_tests,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.xdist_group("swift_functests"),
    pytest.mark.timeout(3600),
]

EXPECTED = Path(__file__).with_name("swift_functests_expected.txt")
GiB = 1 << 30
TIERS = ("gold", "silver")
# Account listings' counts lag writes by the container-updater's interval.
OPTIONS = {"s3api": False, "updater_interval": 1.0}
# Swift's test accounts (test/sample.conf) as skyfed projects and users.
MAIN = SwiftUser("test", "tester", "testing-password-1")
SECOND = SwiftUser("test2", "tester2", "testing-password-2")
# A user of the main account that owns nothing there (Swift's ACL tests).
READER = SwiftUser("test", "tester3", "testing-password-3")
# A user of a third account, for the service-token tests (X-Service-Token on SERVICE_*).
SERVICE = SwiftUser("test5", "tester5", "testing-password-5")
# Swift's reseller admin (account quotas): a skyfed admin.
RESELLER = SwiftUser("test", "tester6", "testing-password-6")


async def accounts(admin: SkyfedClient) -> list[SwiftUser]:
    """The projects and users of the Swift test accounts; those that could be made."""
    for project in sorted({u.account for u in (MAIN, SECOND, SERVICE)}):
        await admin.create_project(project)
    made = [MAIN, SECOND, SERVICE, RESELLER]
    await admin.create_user(MAIN.user, MAIN.password, MAIN.account, ["member"])
    await admin.create_user(SECOND.user, SECOND.password, SECOND.account, ["member"])
    await admin.create_user(SERVICE.user, SERVICE.password, SERVICE.account, ["member"])
    await admin.create_user(RESELLER.user, RESELLER.password, RESELLER.account, ["admin"])
    try:
        await admin.create_user(READER.user, READER.password, READER.account, ["reader"])
        made.append(READER)
    except SkyfedError as exc:  # the role is being added; the tests that need it skip
        warnings.warn(f"no user {READER.user} (role reader refused: {exc})", stacklevel=1)
    return made


def conf_for(auth_uri: str, users: list[SwiftUser]) -> str:
    return func_test_conf(
        auth_uri,
        MAIN,
        SECOND,
        reader=READER if READER in users else None,
        service=SERVICE,
        service_prefix="SERVICE",
        reseller_admin=RESELLER,
    )


def functests_zone_settings(state_dir: Path) -> Settings:
    return zone_settings(
        state_dir,
        None,
        port=free_test_port(),
        allowed_storage_hosts=["127.0.0.1"],
        storage_placement="account",
    )


def drop_data(clusters: LocalSwiftSet) -> None:
    """The clusters' data (on tmpfs; stopped by then): their configs and logs stay in
    tmp_path with the run's output."""
    for swift in clusters:
        if (swift.etc_dir / "cluster.json").exists():
            shutil.rmtree(swift.data_dir, ignore_errors=True)


async def test_swift_functional_tests_through_a_zone(tmp_path: Path) -> None:
    src = swift_tests()
    first = free_base_port()
    clusters = LocalSwiftSet(
        [
            LocalSwift(tmp_path / "swift-a", first, "swift-a", TIERS, **OPTIONS),
            LocalSwift(tmp_path / "swift-b", free_base_port([first]), "swift-b", TIERS, **OPTIONS),
        ]
    )
    settings = functests_zone_settings(tmp_path / "zone")
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(drop_data, clusters)
        await stack.enter_async_context(clusters)
        zone = await stack.enter_async_context(ServedZone(settings))
        async with zone.client() as admin:
            for swift in clusters:
                creds = swift.reseller_admin
                await admin.add_storage_cluster(
                    swift.name, swift.auth_url, creds.user, creds.key,
                    tiers={t: t for t in TIERS}, capacity_bytes=10 * GiB,
                )  # fmt: skip
            users = await accounts(admin)
        conf = tmp_path / "test.conf"
        conf.write_text(conf_for(f"{zone.url}/auth/v1.0", users))
        result = await run(src, conf, tmp_path / "functests", FILES)
    problems = compare(result, load_expected(EXPECTED))
    # The accounts' containers were on both clusters (their proxies' logs say so).
    for swift in clusters:
        log = (swift.log_dir / "proxy-server.log").read_text(errors="replace")
        assert "PUT /v1/AUTH_" in log, f"no container was placed on {swift.name}"
    assert not problems, "\n".join([*problems, result.summary()])
