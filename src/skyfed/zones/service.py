"""Child zone registry: add (after logging in to the child), read, update, delete."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete as sa_delete
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from skyfed.db.base import utcnow
from skyfed.errors import BadRequest, Conflict, NotFound
from skyfed.identity.vault import Vault, VaultError
from skyfed.transport.amqp import without_password
from skyfed.transport.names import queue_for
from skyfed.zones.links import ChildLinks, Reach
from skyfed.zones.models import ChildZone, Location
from skyfed.zones.probe import probe_child
from skyfed.zones.reach_policy import HostPattern, check_reach
from skyfed.zones.report import ZoneReport
from skyfed.zones.schemas import ZoneCreate, ZoneUpdate, check_bus
from skyfed.zones.view import ZoneView, snapshot_of


@dataclass(frozen=True, slots=True)
class ZoneContext:
    """What the registry needs from the running zone."""

    zone_id: str
    vault: Vault
    links: ChildLinks
    view: ZoneView
    probe_timeout: float
    allowed_hosts: tuple[HostPattern, ...]
    # Each feature's forgetting of its records of resources in a child removed by force.
    child_removed: Sequence[Callable[[AsyncSession, str], Awaitable[None]]] = ()


class ZoneService:
    def __init__(self, session: AsyncSession, ctx: ZoneContext) -> None:
        self.session = session
        self.ctx = ctx

    async def find(self, ref: str) -> ChildZone:
        child = await self.session.scalar(
            select(ChildZone).where(or_(ChildZone.id == ref, ChildZone.name == ref))
        )
        if child is None:
            raise NotFound(f"zone '{ref}' not found")
        return child

    async def list(self) -> list[ChildZone]:
        return list((await self.session.scalars(select(ChildZone).order_by(ChildZone.name))).all())

    async def add(self, body: ZoneCreate) -> ChildZone:
        check_bus(body.transport, body.bus_url, body.bus_queue)
        await self._check_name_free(body.name)
        await self._check_url(body.api_url)
        if body.bus_url:
            await self._check_url(body.bus_url)
        reach = Reach(
            name=body.name,
            transport=body.transport,
            api_url=body.api_url,
            username=body.username,
            password=body.password,
            bus_url=body.bus_url,
            bus_queue=body.bus_queue,
        )
        await self.session.rollback()  # hold no database connection across the probe
        report = await self._probe(reach)
        await self._check_identity(report, reach.where)
        now = utcnow()
        child = ChildZone(
            name=body.name,
            api_url=body.api_url,
            username=body.username,
            password_secret=self.ctx.vault.encrypt(body.password),
            transport=body.transport,
            **self._bus_columns(reach),
            weight_offset=body.weight_offset,
            weight_scale=body.weight_scale,
            labels=body.labels,
            remote_id=report.id,
            remote_name=report.name,
            state="active",
            failures=0,
            last_seen=now,
            last_error="",
            capabilities=report.capabilities,
            summary=report.summary.to_dict(),
            created_at=now,
            updated_at=now,
        )
        self.session.add(child)
        await self._commit(body.name)
        self.ctx.links.rows[child.id] = child
        self.ctx.view.put_child(snapshot_of(child))
        return child

    async def update(self, ref: str, body: ZoneUpdate) -> ChildZone:
        child = await self.find(ref)
        changes = body.model_dump(exclude_unset=True, exclude_none=True)
        # `"bus_queue": null` asks for the default queue, skyfed.zone.<the child's name>.
        default_queue = "bus_queue" in body.model_fields_set and body.bus_queue is None
        if "name" in changes and changes["name"] != child.name:
            await self._check_name_free(changes["name"])
        reach_keys = {"api_url", "username", "password", "transport", "bus_url", "bus_queue"}
        if reach_keys & changes.keys() or default_queue:
            self._check_password_given(child, changes, default_queue)
            transport = changes.get("transport", child.transport)
            keep_bus = transport == "amqp" and child.transport == "amqp"
            bus_url = changes.get("bus_url")
            if bus_url is None and keep_bus:
                bus_url = self._stored_secret(child, child.bus_url_secret, "broker URL")
            reach = Reach(
                name=changes.get("name", child.name),
                transport=transport,
                api_url=changes.get("api_url", child.api_url),
                username=changes.get("username", child.username),
                password=changes.get("password")
                or self._stored_secret(child, child.password_secret, "password"),
                bus_url=bus_url,
                bus_queue=None
                if default_queue
                else changes.get("bus_queue", child.bus_queue if keep_bus else None),
            )
            check_bus(reach.transport, reach.bus_url, reach.bus_queue)
            await self._check_url(reach.api_url)
            if reach.bus_url:
                await self._check_url(reach.bus_url)
            child_id, remote_id = child.id, child.remote_id
            await self.session.rollback()  # hold no database connection across the probe
            report = await self._probe(reach)
            child = await self.find(child_id)
            if report.id != remote_id:
                await self._check_identity(report, reach.where)
            child.api_url, child.username = reach.api_url, reach.username
            child.password_secret = self.ctx.vault.encrypt(reach.password)
            child.transport = reach.transport
            for key, value in self._bus_columns(reach).items():
                setattr(child, key, value)
            child.remote_id, child.remote_name = report.id, report.name
            child.capabilities, child.summary = report.capabilities, report.summary.to_dict()
            child.state, child.failures, child.last_error = "active", 0, ""
            child.last_seen = utcnow()
        for key in ("name", "weight_offset", "weight_scale", "labels"):
            if key in changes:
                setattr(child, key, changes[key])
        child.updated_at = utcnow()
        await self._commit(child.name)
        self.ctx.links.rows[child.id] = child
        self.ctx.view.put_child(snapshot_of(child))
        return child

    async def delete(self, ref: str, *, force: bool = False) -> None:
        """Remove a child. One that still holds resources of this zone's index is kept
        (409) unless `force`: then they are forgotten here with it (their entries and
        this zone's records of them), and live on only in the removed subtree."""
        child = await self.find(ref)
        held = await self.session.scalar(
            select(func.count())
            .select_from(Location)
            .where(Location.kind == "zone", Location.target == child.id)
        )
        if held and not force:
            raise Conflict(
                f"zone '{child.name}' holds {held} resource(s) placed from this zone; delete "
                "them first, or remove it with force=true to forget them here",
                code="zone_not_empty",
            )
        if held:
            for forget in self.ctx.child_removed:
                await forget(self.session, child.id)
            await self.session.execute(
                sa_delete(Location).where(Location.kind == "zone", Location.target == child.id)
            )
        await self.session.delete(child)
        await self.session.commit()
        self.ctx.view.drop_child(child.id)
        await self.ctx.links.drop(child.id)

    def _bus_columns(self, reach: Reach) -> dict[str, Any]:
        """The queue is stored as resolved, so renaming the child here does not move it."""
        bus_url = reach.bus_url if reach.transport == "amqp" else None
        return {
            "bus_url_secret": self.ctx.vault.encrypt(bus_url) if bus_url else None,
            "bus_endpoint": without_password(bus_url) if bus_url else None,
            "bus_queue": reach.queue if bus_url else None,
        }

    def _stored_secret(self, child: ChildZone, secret: bytes | None, what: str) -> str:
        try:
            if secret is None:
                raise VaultError("nothing stored")
            return self.ctx.vault.decrypt(secret)
        except VaultError as exc:
            raise Conflict(
                f"the stored {what} of '{child.name}' cannot be decrypted with this "
                f"zone's key (was secret_key changed?); give the {what} again",
                code="credentials_unreadable",
            ) from exc

    # -- checks ------------------------------------------------------------------

    async def _check_name_free(self, name: str) -> None:
        taken = await self.session.scalar(select(ChildZone.id).where(ChildZone.name == name))
        if taken is not None:
            raise Conflict(f"a child zone named '{name}' already exists")

    async def _probe(self, reach: Reach) -> ZoneReport:
        """Over a link made for the candidate reach, as the child's link would be, and
        closed after; not retried (an admin waits, and reads what failed)."""
        async with self.ctx.links.build(reach, self.ctx.probe_timeout, retries=0) as link:
            return await probe_child(link, reach)

    def _check_password_given(
        self, child: ChildZone, changes: dict[str, Any], default_queue: bool
    ) -> None:
        """The stored password goes only where it went before: a new address, transport
        or queue needs it given again (else an admin could send it to a host of theirs)."""
        if "password" in changes:
            return
        moved = [
            key
            for key, now in (
                ("api_url", child.api_url),
                ("transport", child.transport),
                ("bus_queue", child.bus_queue),
            )
            if key in changes and changes[key] != now
        ]
        if "bus_url" in changes:
            moved.append("bus_url")  # stored encrypted: any new value counts as a move
        if default_queue and queue_for(changes.get("name", child.name)) != child.bus_queue:
            moved.append("bus_queue")
        if moved:
            raise BadRequest(
                f"changing {', '.join(moved)} of '{child.name}' needs the child's password "
                "again (the stored one is only sent where it went before)",
                code="password_required",
            )

    async def _check_url(self, url: str) -> None:
        await check_reach(
            url,
            self.ctx.allowed_hosts,
            setting="allowed_child_hosts",
            code="child_url_not_allowed",
            what="child",
        )

    async def _check_identity(self, report: ZoneReport, api_url: str) -> None:
        if report.id == self.ctx.zone_id:
            raise BadRequest(f"{api_url} is this zone itself", code="child_is_self")
        other = await self.session.scalar(
            select(ChildZone.name).where(ChildZone.remote_id == report.id)
        )
        if other is not None:
            raise Conflict(f"the zone at {api_url} is already registered here as '{other}'")

    async def _commit(self, name: str) -> None:
        try:
            await self.session.commit()
        except IntegrityError as exc:
            await self.session.rollback()
            raise Conflict(f"a child zone named '{name}' or with that identity exists") from exc
