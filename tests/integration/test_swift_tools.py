"""The tools people already use with Swift, unchanged, against skyfed's Swift API:
python-swiftclient's `swift` command and rclone, over two real clusters."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.conftest import IN_CI, ServedZone, free_test_port, zone_settings
from tests.swift_clusters import clusters, register

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.xdist_group("swift_tools")]
PASSWORD = "member-password-1"
SWIFT = str(Path(sys.executable).with_name("swift"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def zone(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServedZone]:
    root = tmp_path_factory.mktemp("tools")
    # With the object-updater: a listing that missed a write or delete under load
    # (the update left pending) catches up, as on any Swift.
    swifts = clusters(
        root, ("east", ("gold",)), ("west", ("gold",)),
        updater_interval=1.0, daemons=("container-updater", "object-updater"),
    )  # fmt: skip
    settings = zone_settings(
        root / "zone", None, port=free_test_port(), allowed_storage_hosts=["127.0.0.1"]
    )
    async with swifts, ServedZone(settings) as served, served.client() as admin:
        for swift in swifts:
            await register(admin, swift)
        await admin.create_project("p1")
        await admin.create_user("mia", PASSWORD, "p1", ["member"])
        yield served


def tree(root: Path) -> Path:
    """A few files in nested folders, one of 3 MiB."""
    (root / "a" / "b").mkdir(parents=True)
    (root / "top.txt").write_text("top\n")
    (root / "a" / "one.txt").write_text("one\n" * 100)
    (root / "a" / "b" / "two.bin").write_bytes(os.urandom(3 << 20))
    (root / "a" / "b" / "é ü.txt").write_text("names in UTF-8\n")
    return root


async def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = await asyncio.to_thread(
        subprocess.run, list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{args[:3]} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


async def eventually_ok(command: list[str], tries: int = 20, want_ok: bool = True) -> None:
    """`command` run until it succeeds (or, `want_ok` False, fails), at most `tries`
    times a second apart."""
    for _ in range(tries):
        done = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, timeout=60
        )
        if (done.returncode == 0) == want_ok:
            return
        await asyncio.sleep(1.0)
    raise AssertionError(f"{command[-3:]}: {done.returncode}\n{done.stdout}\n{done.stderr}")


async def test_swift_command_uploads_lists_posts_downloads_and_deletes(
    zone: ServedZone, tmp_path: Path
) -> None:
    source = tree(tmp_path / "src")
    swift = [SWIFT, "-A", f"{zone.url}/auth/v1.0", "-U", "p1:mia", "-K", PASSWORD]
    await run(*swift, "upload", "photos", ".", cwd=source)
    await run(*swift, "upload", "notes", "top.txt", cwd=source)
    listed = (await run(*swift, "list", "photos")).splitlines()
    assert sorted(listed) == sorted(["top.txt", "a/one.txt", "a/b/two.bin", "a/b/é ü.txt"])
    assert (await run(*swift, "list")).split() == ["notes", "photos"]
    await run(*swift, "post", "-m", "Color:blue", "photos")
    stat = await run(*swift, "stat", "photos")
    assert "Meta Color: blue" in stat and "Objects: 4" in stat
    account = await run(*swift, "stat")
    assert "Containers: 2" in account
    await run(*swift, "download", "photos", "-D", str(tmp_path / "back"))
    for name in ("top.txt", "a/one.txt", "a/b/two.bin", "a/b/é ü.txt"):
        assert (tmp_path / "back" / name).read_bytes() == (source / name).read_bytes()
    # Segmented: a DLO (/info offers no SLO), its segments in a container of their own,
    # which may be on the other cluster.
    await run(*swift, "upload", "-S", str(1 << 20), "big", "a/b/two.bin", cwd=source)
    await run(*swift, "download", "big", "a/b/two.bin", "-o", str(tmp_path / "two.bin"))
    assert (tmp_path / "two.bin").read_bytes() == (source / "a/b/two.bin").read_bytes()
    segments = (await run(*swift, "list", "big_segments")).split()
    assert len(segments) == 3
    await run(*swift, "delete", "photos")
    await run(*swift, "delete", "big")  # and its segments, not their container
    for segment in segments:  # read each (a listing may lag a delete under load)
        await eventually_ok([*swift, "stat", "big_segments", segment], want_ok=False)
    await eventually_ok([*swift, "delete", "big_segments"])  # once its listing caught up
    assert (await run(*swift, "list")).split() == ["notes"]


async def test_rclone_copies_syncs_and_checks(zone: ServedZone, tmp_path: Path) -> None:
    rclone = shutil.which("rclone")
    if rclone is None:
        message = "rclone is not installed (apt-get install rclone; .ci/run does)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    env = {
        **os.environ,
        "RCLONE_CONFIG_SKY_TYPE": "swift",
        "RCLONE_CONFIG_SKY_AUTH": f"{zone.url}/auth/v1.0",
        "RCLONE_CONFIG_SKY_USER": "p1:mia",
        "RCLONE_CONFIG_SKY_KEY": PASSWORD,
        "RCLONE_CONFIG": str(tmp_path / "none.conf"),
    }
    source = tree(tmp_path / "src")
    await run(rclone, "copy", str(source), "sky:backup", env=env)
    await run(rclone, "check", str(source), "sky:backup", env=env)
    # A change on each side: sync makes the remote the same again, check agrees.
    (source / "top.txt").write_text("changed\n")
    (source / "a" / "one.txt").unlink()
    (source / "new.txt").write_text("new\n")
    await run(rclone, "sync", str(source), "sky:backup", env=env)
    await run(rclone, "check", str(source), "sky:backup", env=env)
    listed = (await run(rclone, "lsf", "-R", "--files-only", "sky:backup", env=env)).split("\n")
    assert sorted(filter(None, listed)) == sorted(
        ["a/b/two.bin", "a/b/é ü.txt", "new.txt", "top.txt"]
    )
    assert "backup" in await run(rclone, "lsd", "sky:", env=env)
    # And a difference is found: check fails once the remote lacks a file.
    (source / "late.txt").write_text("late\n")
    done = await asyncio.to_thread(
        subprocess.run, [rclone, "check", str(source), "sky:backup"], env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0 and "late.txt" in done.stderr
