"""The poller against misbehaving children and concurrent admin edits."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from skyfed.client import SkyfedError
from tests.conftest import SERVICE_PASSWORD, InProcessZone, ServedApp, ServedZone


def impostor(login: Any, zone: Any = None) -> Starlette:
    """An HTTP server that answers like a skyfed zone only in shape."""

    async def tokens(_: Any) -> Response:
        return JSONResponse(login, status_code=201) if login is not None else Response("<html>")

    async def this_zone(_: Any) -> Response:
        return JSONResponse(zone)

    return Starlette(
        routes=[
            Route("/v1/auth/tokens", tokens, methods=["POST"]),
            Route("/v1/zone", this_zone),
        ]
    )


@pytest.mark.parametrize(
    ("login", "report"),
    [
        (None, None),  # HTML
        ({}, None),  # JSON without a token
        ([1, 2], None),
        ({"token": "t", "user": {"roles": ["service"]}}, {"id": "x", "name": "n"}),
        (
            {"token": "t", "user": {"roles": ["service"]}},
            {"id": "6f1d3f0a-9a8e-4a59-9d55-111111111111", "name": "n" * 300, "summary": {}},
        ),
    ],
)
async def test_adding_a_non_zone_is_a_400(admin, login: Any, report: Any) -> None:
    async with ServedApp(impostor(login, report)) as fake:
        with pytest.raises(SkyfedError) as exc:
            await admin.add_zone("fake", fake.url, "svc", SERVICE_PASSWORD)
    assert (exc.value.status, exc.value.code) == (400, "child_invalid")
    assert await admin.list_zones() == []


async def test_a_child_turned_impostor_fails_alone(
    zone: InProcessZone, admin, child_zone: ServedZone, tmp_path
) -> None:
    """One child answering garbage is marked failed; the others are still polled."""
    from skyfed.federation.process import free_port
    from tests.conftest import zone_settings

    other = ServedZone(zone_settings(tmp_path / "other", None, name="other", port=free_port()))
    async with other:
        await admin.add_zone("child", child_zone.url, "svc", SERVICE_PASSWORD)
        await admin.add_zone("other", other.url, "svc", SERVICE_PASSWORD)
    # "other" is gone; an impostor now answers at its port.
    async with ServedApp(impostor({}, None), port=other.port):
        result = await zone.process.tree.poller.cycle()
    assert (result.polled, result.ok) == (2, 1)
    detail = await admin.zone_detail("other")
    assert detail.failures == 1
    assert "bad_response" in detail.last_error
    assert (await admin.zone_detail("child")).failures == 0


async def test_a_poll_never_undoes_an_edit_made_meanwhile(
    zone: InProcessZone, admin, child_zone: ServedZone
) -> None:
    await admin.add_zone("child", child_zone.url, "svc", SERVICE_PASSWORD)
    poller = zone.process.tree.poller
    real_poll = poller._poll

    async def poll_while_admin_edits(child: Any) -> Any:
        outcome = await real_poll(child)
        await admin.update_zone("child", weight_offset=7.0, labels={"edited": "yes"})
        return outcome

    poller._poll = poll_while_admin_edits
    try:
        await poller.cycle()
    finally:
        poller._poll = real_poll
    detail = await admin.zone_detail("child")
    assert (detail.weight_offset, detail.labels) == (7.0, {"edited": "yes"})
    snapshot = next(iter(zone.process.tree.view.children.values()))
    assert snapshot.weight_offset == 7.0
    # The next poll records normally.
    assert (await poller.cycle()).ok == 1


async def test_a_child_deleted_during_a_poll_stays_deleted(
    zone: InProcessZone, admin, child_zone: ServedZone
) -> None:
    await admin.add_zone("child", child_zone.url, "svc", SERVICE_PASSWORD)
    poller = zone.process.tree.poller
    real_poll = poller._poll

    async def poll_while_admin_deletes(child: Any) -> Any:
        outcome = await real_poll(child)
        await admin.delete_zone("child")
        return outcome

    poller._poll = poll_while_admin_deletes
    try:
        await poller.cycle()
    finally:
        poller._poll = real_poll
    assert await admin.list_zones() == []
    me = await admin.zone()
    assert me.children == []


async def test_one_process_of_a_postgres_zone_polls_the_others_follow(
    tmp_path, postgres_database: str, child_zone: ServedZone
) -> None:
    """Two processes of one zone share a database: one polls, both see the children."""
    from tests.conftest import zone_settings

    settings = zone_settings(tmp_path, postgres_database)
    async with InProcessZone(settings) as first, InProcessZone(settings) as second:
        async with first.client() as admin:
            await admin.add_zone("child", child_zone.url, "svc", SERVICE_PASSWORD)
        a = await first.process.tree.poller.cycle()
        b = await second.process.tree.poller.cycle()
        assert sorted([a.leader, b.leader]) == [False, True]
        leader = a if a.leader else b
        assert (leader.polled, leader.ok) == (1, 1)
        for zone in (first, second):
            assert [c.name for c in zone.process.tree.view.children.values()] == ["child"]
        # The follower takes over when the leader's process goes away.
        leading, following = (first, second) if a.leader else (second, first)
        await leading.process.tree.poller.close()
        assert (await following.process.tree.poller.cycle()).leader
