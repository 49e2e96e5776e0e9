"""Real Swift clusters on loopback (skyfed.objects.local_swift), through python-swiftclient."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import pytest_asyncio
import requests
from swiftclient.client import ClientException, Connection

from skyfed.objects.local_swift import (
    PORT_SPAN,
    LocalSwift,
    LocalSwiftSet,
    SwiftCredentials,
    SwiftStartError,
)
from tests.conftest import free_test_port
from tests.waiting import eventually

pytestmark = pytest.mark.integration


def shared(test: Callable[..., Any]) -> Any:
    """A test of the module's clusters: on the process that holds them, in the module's loop."""
    return pytest.mark.xdist_group("local_swift")(pytest.mark.asyncio(loop_scope="module")(test))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def clusters(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalSwiftSet]:
    """Two clusters, started concurrently; each test leaves them running."""
    swifts = LocalSwiftSet.create(
        tmp_path_factory.mktemp("swift"),
        ["east", "west"],
        ports=[free_test_port(PORT_SPAN) for _ in range(2)],
        updater_interval=1.0,  # account listings catch up within a second
    )
    try:
        await swifts.start()
        yield swifts
    finally:
        await swifts.wipe()


def connect(credentials: SwiftCredentials, retries: int = 2) -> Connection:
    return Connection(
        authurl=credentials.auth_url,
        user=credentials.user,
        key=credentials.key,
        retries=retries,
        starting_backoff=0.2,
    )


@contextlib.contextmanager
def container(
    cluster: LocalSwift, name: str, policy: str | None = None, **objects: bytes
) -> Iterator[Connection]:
    """A container of the test account holding `objects`; emptied and deleted at the end
    (through a new connection: the cluster may have restarted meanwhile)."""
    swift = connect(cluster.test_user)
    swift.put_container(name, headers={"X-Storage-Policy": policy} if policy else {})
    for obj, body in objects.items():
        swift.put_object(name, obj, body)
    yield swift
    swift = connect(cluster.test_user)
    for entry in swift.get_container(name, full_listing=True)[1]:
        swift.delete_object(name, entry["name"])
    swift.delete_container(name)


def swift_processes(*clusters: LocalSwift) -> list[psutil.Process]:
    """Our processes (children of children included) that run Swift for `clusters`: their
    command lines name the cluster's directory."""
    found = []
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            command = " ".join(process.cmdline())
            if "skyfed.objects.swift_daemon" in command and any(
                str(c.etc_dir) in command for c in clusters
            ):
                found.append(process)
    return found


def group_processes(cluster: LocalSwift) -> list[psutil.Process]:
    """Every process of the cluster's servers, their forks included."""
    found = []
    for pid in cluster.pids():
        leader = psutil.Process(pid)
        found += [leader, *leader.children(recursive=True)]
    return found


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # gone between the two questions
        return False


def refuses(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        try:
            sock.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
    return False


@shared
async def test_each_cluster_serves_objects_in_both_policies(clusters: LocalSwiftSet) -> None:
    for cluster in clusters:
        for policy in ("gold", "silver"):
            with container(cluster, f"c-{policy}", policy) as swift:
                assert swift.head_container(f"c-{policy}")["x-storage-policy"] == policy
                body = f"{cluster.name} {policy} ".encode() * 1000
                etag = swift.put_object(f"c-{policy}", "dir/obj", body, content_type="text/plain")
                head = swift.head_object(f"c-{policy}", "dir/obj")
                assert (head["etag"], int(head["content-length"])) == (etag, len(body))
                assert swift.get_object(f"c-{policy}", "dir/obj")[1] == body
                swift.delete_object(f"c-{policy}", "dir/obj")
                with pytest.raises(ClientException) as gone:
                    swift.get_object(f"c-{policy}", "dir/obj")
                assert gone.value.http_status == 404


@shared
async def test_the_default_policy_is_gold_and_big_metadata_fits(clusters: LocalSwiftSet) -> None:
    with container(clusters["east"], "plain") as swift:
        assert swift.head_container("plain")["x-storage-policy"] == "gold"
        # About 3.7 KB of metadata: more than ext4's xattrs hold (507 there), fine on tmpfs.
        metadata = {f"X-Object-Meta-Key{i}": "v" * 200 for i in range(18)}
        swift.put_object("plain", "meta", b"x", headers=metadata)
        assert swift.head_object("plain", "meta")["x-object-meta-key17"] == "v" * 200


@shared
async def test_the_clusters_are_independent(clusters: LocalSwiftSet) -> None:
    east, west = clusters["east"], clusters["west"]
    assert east.test_user.key != west.test_user.key
    assert east.data_dir != west.data_dir
    with container(east, "only-east"), pytest.raises(ClientException) as absent:
        connect(west.test_user).head_container("only-east")
    assert absent.value.http_status == 404
    elsewhere = SwiftCredentials(west.auth_url, east.test_user.user, east.test_user.key)
    with pytest.raises(ClientException) as refused:  # one cluster's password on the other
        connect(elsewhere, retries=0).head_account()
    assert refused.value.http_status == 401


@shared
async def test_info_advertises_the_middlewares_and_policies(clusters: LocalSwiftSet) -> None:
    with urllib.request.urlopen(clusters["west"].info_url, timeout=5) as answer:
        info = json.load(answer)
    # DLO is always on in Swift and has no /info entry (below, it works).
    for feature in ("slo", "symlink", "tempurl", "versioned_writes", "object_versioning",
                    "formpost", "staticweb", "bulk_delete", "account_quotas",
                    "container_quotas", "s3api", "tempauth"):  # fmt: skip
        assert feature in info, feature
    policies = info["swift"]["policies"]
    assert [(p["name"], p.get("default", False)) for p in policies] == [
        ("gold", True),
        ("silver", False),
    ]


@shared
async def test_a_dynamic_large_object_joins_its_segments(clusters: LocalSwiftSet) -> None:
    segments = {f"big/{i:03d}": f"part{i};".encode() for i in range(3)}
    with container(clusters["west"], "segments", "silver", **segments) as swift:
        swift.put_object("segments", "big", b"", headers={"X-Object-Manifest": "segments/big/"})
        assert swift.get_object("segments", "big")[1] == b"part0;part1;part2;"


@shared
async def test_the_account_listing_counts_objects(clusters: LocalSwiftSet) -> None:
    """The counts come from the container-updater, running beside the servers."""
    with container(clusters["east"], "counted", a=b"12345") as swift:

        async def counted() -> bool:
            listing = swift.get_account()[1]
            return any(c["name"] == "counted" and c["count"] == 1 for c in listing)

        await eventually(counted, timeout=20, what="the account listing's object count")


@shared
async def test_a_killed_cluster_refuses_then_restarts_with_its_data(
    clusters: LocalSwiftSet,
) -> None:
    west = clusters["west"]
    with container(west, "survivor", "silver", obj=b"still here"):
        processes = group_processes(west)
        await west.kill()
        assert not any(alive(p) for p in processes)
        assert refuses(west.port)
        with pytest.raises(requests.ConnectionError):
            connect(west.test_user, retries=0).head_account()
        assert connect(clusters["east"].test_user).head_account()  # the other one serves on
        await west.start()
        swift = connect(west.test_user)
        assert swift.get_object("survivor", "obj")[1] == b"still here"
        assert swift.head_container("survivor")["x-storage-policy"] == "silver"


@shared
async def test_stop_leaves_no_process_and_start_serves_again(clusters: LocalSwiftSet) -> None:
    with container(clusters["east"], "kept", obj=b"kept"):
        processes = [p for cluster in clusters for p in group_processes(cluster)]
        assert len(processes) >= 10  # five servers each, their forks besides
        await clusters.stop()
        assert not any(alive(p) for p in processes)
        assert swift_processes(*clusters) == []
        assert all(refuses(cluster.port) for cluster in clusters)
        for cluster in clusters:  # each ended on SIGTERM, none waited for SIGKILL
            assert -signal.SIGKILL not in cluster.exit_codes().values(), cluster.exit_codes()
        await clusters.start()
        assert connect(clusters["east"].test_user).get_object("kept", "obj")[1] == b"kept"


async def test_a_server_that_exits_fails_the_start_and_leaves_nothing(tmp_path: Path) -> None:
    # Two policies of one name: every server refuses swift.conf and exits.
    broken = LocalSwift(tmp_path / "broken", free_test_port(PORT_SPAN), "broken", ("a", "a"))
    try:
        with pytest.raises(SwiftStartError) as failed:
            await broken.start(timeout=30)
        said = str(failed.value)
        exited = re.search(r"\(([a-z, -]+) exited\)", said)
        assert exited is not None, said
        for server in exited.group(1).split(", "):  # each with the end of its log
            assert f"{server}.log" in said, said
        assert broken.pids() == []
        assert swift_processes(broken) == []
    finally:
        await broken.wipe()


async def test_a_port_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    port = free_test_port(PORT_SPAN)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port + 2))
        taken.listen()
        cluster = LocalSwift(tmp_path / "c", port, "c")
        with pytest.raises(SwiftStartError, match="in use"):
            await cluster.start()
    assert not (tmp_path / "c").exists()
