"""The storage clusters registered with this zone."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from skyfed.db.base import Base, UTCDateTime, new_id, utcnow

UP = "up"
DOWN = "down"


class StorageCluster(Base):
    __tablename__ = "storage_clusters"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # The cluster's auth endpoint (Swift v1 auth: /auth/v1.0).
    auth_url: Mapped[str] = mapped_column(String(2048))
    # A reseller admin account on the cluster: skyfed acts on every account with it.
    username: Mapped[str] = mapped_column(String(128))
    password_secret: Mapped[bytes] = mapped_column(LargeBinary)  # vault-encrypted
    # skyfed tier name -> the cluster's storage policy name.
    tiers: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # The bytes it can hold, as configured (a cluster's disks are not visible through
    # its proxy); what skyfed measures is what its accounts use.
    capacity_bytes: Mapped[int] = mapped_column(BigInteger)
    # What container moves may read from or write to it, in bytes a second, in each
    # zone process (0: no limit); the users of a cluster being drained keep the rest.
    move_bandwidth: Mapped[int] = mapped_column(BigInteger, default=0)
    # Being emptied (storage-cluster drain): nothing new is placed on it.
    draining: Mapped[bool] = mapped_column(Boolean, default=False)

    # What the last polls found.
    state: Mapped[str] = mapped_column(String(16), default=UP)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(String(512), default="")
    last_seen: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    used_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    # Swift's own description of the cluster (`/info`'s "swift" part: version, policies).
    info: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Container(Base):
    """A container of an account (a skyfed project), and where it was placed."""

    __tablename__ = "containers"

    project_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(256), primary_key=True)  # Swift's limit
    # Where it is: a storage cluster of this zone, or the child zone it was placed in
    # (which knows the rest of the way).
    cluster_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    child_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    # While it moves (objects/moves): the cluster it goes to, where its writes land
    # and its reads look first; `cluster_id` is where it comes from.
    moving_to: Mapped[str | None] = mapped_column(String(36), nullable=True)
    tier: Mapped[str] = mapped_column(String(32))
    # Its ACLs (X-Container-Read, X-Container-Write), as last set through skyfed: every
    # write goes through skyfed, so they are known here without asking the cluster.
    read_acl: Mapped[str] = mapped_column(String(4096), default="")
    write_acl: Mapped[str] = mapped_column(String(4096), default="")
    # Holds objects naming a container elsewhere (DLO manifests, symlinks), or that
    # may: its reads ask what an object names first (swift_refs).
    foreign_refs: Mapped[bool] = mapped_column(Boolean, default=False)
    # The seed's container attributes (X-Container-Attr-*), kept by skyfed alone.
    attributes: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SwiftAccount(Base):
    """What skyfed keeps of a project's Swift account itself: the metadata set on it
    (X-Account-Meta-*), its ACL (X-Account-Access-Control) and its quotas. Its counts come from
    the clusters that hold its containers."""

    __tablename__ = "swift_accounts"

    project_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSON, default=dict)
    acl: Mapped[dict[str, list[str]]] = mapped_column(JSON, default=dict)
    # Limits an admin set (swift_quota): "bytes", "count", "bytes:<tier>", "count:<tier>".
    quotas: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# A move's states: its objects copy to `to_id` (reads fall back to `from_id`), then the
# container is there and `from_id` is emptied. A cancel copies back the other way.
COPYING = "copying"
CLEANING = "cleaning"
DONE = "done"
CANCELLING = "cancelling"
CANCEL_CLEANING = "cancel_cleaning"
CANCELLED = "cancelled"
FAILED = "failed"
ACTIVE_MOVES = (COPYING, CLEANING, CANCELLING, CANCEL_CLEANING)


class ContainerMove(Base):
    """A container's move from one storage cluster of the zone to another: its state
    and progress, which a resumed attempt goes on from."""

    __tablename__ = "container_moves"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(String(36), index=True)
    container: Mapped[str] = mapped_column(String(256))
    source_id: Mapped[str] = mapped_column(String(36))  # where it was when asked
    target_id: Mapped[str] = mapped_column(String(36))  # where it was asked to go
    # Its tier before, and where it goes (a tier change is a move: Swift keeps a
    # container's storage policy for its life).
    tier_from: Mapped[str] = mapped_column(String(32), default="")
    tier_to: Mapped[str] = mapped_column(String(32), default="")
    state: Mapped[str] = mapped_column(String(16), default=COPYING, index=True)
    # The container's how-manieth move (its copies' timestamp offsets: move_copy).
    generation: Mapped[int] = mapped_column(Integer, default=1)
    task_id: Mapped[str] = mapped_column(String(36), default="")
    # The present pass over the container's listing: the last name it finished.
    marker: Mapped[str] = mapped_column(String(1024), default="")
    # When the present direction began: processes' memory of where containers are
    # (objects.locations) has forgotten the old one `locations.TTL` later.
    since: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    objects_copied: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_copied: Mapped[int] = mapped_column(BigInteger, default=0)
    objects_skipped: Mapped[int] = mapped_column(BigInteger, default=0)  # newer there
    objects_cleaned: Mapped[int] = mapped_column(BigInteger, default=0)
    # Whether it copied an object naming others (a manifest, a link): the container's
    # reads ask what an object is first, once it is where it went (swift_refs).
    foreign_refs: Mapped[bool] = mapped_column(Boolean, default=False)
    objects_total: Mapped[int] = mapped_column(BigInteger, default=0)  # at the start
    bytes_total: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str] = mapped_column(String(1024), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
