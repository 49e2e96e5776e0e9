"""One Settings model for a zone: a TOML file, overridden by SKYFED_* environment variables."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from skyfed.identity.passwords import DEFAULT_MEMORY_KIB, DEFAULT_TIME_COST
from skyfed.schema_types import NAME_PATTERN, HostPattern, Name
from skyfed.zones.capabilities import CapabilityError, check_capabilities
from skyfed.zones.reach_policy import MAX_CHILD_ANSWER, PatternError, parse_patterns

__all__ = ["DEFAULT_FLAVORS", "NAME_PATTERN", "FlavorSpec", "Settings"]

CapabilityValue = Annotated[str, StringConstraints(max_length=255)] | int | float


class FlavorSpec(BaseModel):
    """A server shape; summaries count how many of each fit in a subtree."""

    name: Name
    vcpus: int = Field(ge=1, le=4096)
    ram_mb: int = Field(ge=1, le=64 * 1024 * 1024)
    disk_gb: int = Field(default=0, ge=0, le=1024 * 1024)


DEFAULT_FLAVORS: list[FlavorSpec] = [
    FlavorSpec(name="m1.tiny", vcpus=1, ram_mb=512, disk_gb=1),
    FlavorSpec(name="m1.small", vcpus=1, ram_mb=2048, disk_gb=20),
    FlavorSpec(name="m1.medium", vcpus=2, ram_mb=4096, disk_gb=40),
    FlavorSpec(name="m1.large", vcpus=4, ram_mb=8192, disk_gb=80),
    FlavorSpec(name="m1.xlarge", vcpus=8, ram_mb=16384, disk_gb=160),
]


class Settings(BaseSettings):
    """Everything a zone process needs; see `Settings.load` for where values come from."""

    model_config = SettingsConfigDict(env_prefix="SKYFED_", extra="forbid")

    name: Name = "zone"
    host: str = "127.0.0.1"
    port: int = Field(default=8700, ge=0, le=65535)
    state_dir: Path = Path("state")
    # Default: a SQLite file in state_dir; PostgreSQL by URL (postgresql+asyncpg://...).
    database_url: str | None = None
    # Default: in-process. With a RabbitMQ broker (amqp://user:pass@host:5672/vhost, the
    # zone's own broker user), parents linked over AMQP call this zone on its queue
    # `skyfed.zone.<name>` there, and agents on `skyfed.agents.<name>` (docs/zone-links.md).
    bus_url: Annotated[str, StringConstraints(pattern=r"^(memory://|amqps?://\S+)$")] = "memory://"

    admin_username: Name = "admin"
    # None: a random password is generated on first start and written to state_dir.
    admin_password: SecretStr | None = None
    # Optional accounts made at start: with the service role, for parent zones;
    # with the agent role, for host agents (heartbeats only).
    service_username: Name | None = None
    service_password: SecretStr | None = None
    agent_username: Name | None = None
    agent_password: SecretStr | None = None
    # The hosts that settings agent may carry (patterns: a host name or a prefix
    # ending in '*', as for POST /v1/agents; "*" is every host) and how many.
    # Empty: it carries nothing. Agents of their own are made with POST /v1/agents.
    agent_hosts: list[HostPattern] = Field(default_factory=list, max_length=1000)
    agent_max_hosts: int = Field(default=1000, ge=0, le=1_000_000)
    # Encrypts stored secrets (child credentials). None: a key file in state_dir.
    secret_key: SecretStr | None = None
    token_ttl: float = Field(default=12 * 3600, gt=0)
    # Argon2id's cost for new password hashes (existing hashes keep theirs). Lower only
    # where passwords guard nothing (tests); OWASP's floor is 2 passes over 19 MiB.
    password_hash_time_cost: int = Field(default=DEFAULT_TIME_COST, ge=1, le=64)
    password_hash_memory_kib: int = Field(default=DEFAULT_MEMORY_KIB, ge=8, le=4 * 1024 * 1024)
    # Failed logins: after this many within login_failure_window seconds, the user
    # name (or the source address) is refused with 429 for that long.
    login_max_failures_per_user: int = Field(default=10, ge=1)
    login_max_failures_per_source: int = Field(default=100, ge=1)
    login_failure_window: float = Field(default=300.0, gt=0)
    # Load balancers in front of the API whose X-Forwarded-For is believed (exact
    # addresses); others' is ignored, so a caller cannot pick its own source address.
    trusted_proxies: list[str] = []

    poll_interval: float = Field(default=10.0, gt=0)
    poll_timeout: float = Field(default=5.0, gt=0)
    poll_failures: int = Field(default=3, ge=1)
    poll_concurrency: int = Field(default=64, ge=1)
    # The hosts a child's api_url (or broker URL) may name, matched exactly: a name or
    # address, '*.example.net' (names under that domain), or a network ('10.0.0.0/16').
    # Empty (the default): no child may be added until the operator lists its hosts.
    allowed_child_hosts: list[str] = []
    # The same for storage clusters' auth URLs (a cluster is sent its credentials).
    allowed_storage_hosts: list[str] = []
    # The tier of a new container created without X-Storage-Policy.
    default_storage_tier: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")] = (
        "gold"
    )
    # Where new containers go: "spread" (at random, weighted by free bytes: an account's
    # containers spread over clusters and zones) or "account" (beside the account's
    # others while that place has room: what its objects name stays on one backend).
    storage_placement: Literal["spread", "account"] = "spread"
    # The largest answer a child may give (bytes); a larger one fails the call.
    max_child_answer_bytes: int = Field(default=MAX_CHILD_ANSWER, ge=64 * 1024)
    # What carries calls to children's HTTP APIs: "h1", skyfed's own HTTP/1.1 pool (the
    # fastest), or "httpx", httpx's pool, for an HTTP proxy (HTTPS_PROXY, NO_PROXY...),
    # HTTP/2 (with the h2 package) or httpx's TLS set-up (SSL_CERT_FILE, SSL_CERT_DIR).
    link_http_transport: Literal["h1", "httpx"] = "h1"

    host_ttl: float = Field(default=30.0, gt=0)
    # At most this many hosts known at once (online or offline, not yet forgotten):
    # a beat bringing one more is refused (409). Each agent has its own cap too.
    max_hosts: int = Field(default=100_000, ge=1, le=10_000_000)
    # The largest host a heartbeat may report (422 beyond): a few times today's
    # largest machines, so a lying agent cannot claim the capacity of a region.
    host_max_vcpus: int = Field(default=4096, ge=1, le=1_000_000)
    host_max_ram_mb: int = Field(default=32 * 1024 * 1024, ge=1, le=1 << 40)  # 32 TiB
    host_max_disk_gb: int = Field(default=1024 * 1024, ge=1, le=1 << 40)  # 1 PiB
    # A host silent for this long is forgotten entirely (it stays listed as offline before).
    host_forget_after: float = Field(default=3600.0, gt=0)
    # How often a process shares the beats it took with the zone's other processes and
    # reads theirs (disables and claims too). None: every second, or host_ttl / 5 if less.
    host_share_interval: float | None = Field(default=None, gt=0)
    summary_max_age: float = Field(default=1.0, ge=0)

    # Durable tasks: coroutines per process claiming tasks (0: this process runs none).
    # Most of a task's time is waiting on a child zone or a host, so many run at once:
    # by Little's law, creates per second times seconds each (about 200 at the root
    # at 200/s); with 128 the root's creates queued for a slot under that load.
    workers: int = Field(default=512, ge=0, le=4096)
    task_lease: float = Field(default=30.0, gt=0)
    task_poll_interval: float = Field(default=0.5, gt=0)
    # How often a worker looks for tasks whose worker died (their lease ran out).
    task_sweep_interval: float = Field(default=5.0, gt=0)
    task_max_attempts: int = Field(default=5, ge=1)

    # Placement: candidates tried per server at this zone, how a decision is made,
    # and how long a parent waits for a child to decide before asking again.
    placement_max_tries: int = Field(default=4, ge=1, le=64)
    scheduler_strategy: Literal["spread", "fill"] = "spread"
    scheduler_sample: int = Field(default=32, ge=1)
    child_wait: float = Field(default=10.0, gt=0, le=60)
    # A list across zones reports a child that has not answered by then as unavailable.
    list_timeout: float = Field(default=5.0, gt=0)
    # How long a server action waits for the host's agent before retrying.
    command_timeout: float = Field(default=60.0, gt=0)
    # The longest an agent's poll for commands is held open (proxies cut idle requests).
    agent_poll_max: float = Field(default=30.0, ge=0)
    # How often an idle poll (and a task waiting for an agent's answer) reads the
    # database again in case a wake-up was missed. None: never on SQLite without a
    # bus (one process: every command wakes it), every 5 s with a bus (wake-ups of
    # other processes come over it), every 1 s on PostgreSQL without one.
    agent_poll_reread: float | None = Field(default=None, gt=0, le=60)
    # The largest request body taken (413 beyond). The largest a zone itself sends is
    # a parent's batch of 500 servers with full metadata, about 9 MiB.
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=64 * 1024)
    # The URL clients and parents reach this zone at (default: http://host:port).
    public_url: str | None = None
    # Who may create servers with a `metadata.process` (a command run on a host by the
    # process driver, as a user of its own but on the host's kernel, network and /tmp):
    # "admins" (default: only people trusted with the hosts), "members", or "off" (nobody).
    # Every zone a request passes applies its own, to the caller's forwarded roles.
    process_servers: Literal["admins", "members", "off"] = "admins"

    capabilities: dict[Annotated[str, StringConstraints(max_length=64)], CapabilityValue] = {}
    flavors: list[FlavorSpec] = Field(default_factory=lambda: list(DEFAULT_FLAVORS))

    log_level: str = "INFO"
    log_file: Path | None = None

    # Observability (docs/observability.md). /metrics on the API needs the admin or
    # service role; `metrics_port` also serves it, without a token, on a port of its
    # own (bind `metrics_host` where only the scraper reaches it).
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    # Traces: exported over OTLP/HTTP to this collector (http://host:4318), and/or
    # printed to standard output; neither (the default), no spans are recorded but
    # a caller's trace is still carried on to children, tasks and agents.
    otlp_endpoint: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")] | None = None
    trace_console: bool = False

    @field_validator("capabilities", mode="before")
    @classmethod
    def _capabilities(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        try:
            return check_capabilities(value)
        except CapabilityError as exc:
            raise ValueError(str(exc)) from exc

    @field_validator("allowed_child_hosts", "allowed_storage_hosts")
    @classmethod
    def _allowed_hosts(cls, value: list[str]) -> list[str]:
        try:
            parse_patterns(value)
        except PatternError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if (self.service_username is None) != (self.service_password is None):
            raise ValueError("service_username and service_password go together")
        if (self.agent_username is None) != (self.agent_password is None):
            raise ValueError("agent_username and agent_password go together")
        if self.agent_hosts and self.agent_username is None:
            raise ValueError("agent_hosts is the grant of agent_username: set that too")
        if self.poll_timeout > self.poll_interval:
            # Otherwise a hung child is found out only every poll_timeout, and going offline
            # takes longer than poll_failures x poll_interval + poll_timeout.
            raise ValueError("poll_timeout must not exceed poll_interval")
        if len({f.name for f in self.flavors}) != len(self.flavors):
            raise ValueError("flavor names must be unique")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the file, which `load` passes in as init values.
        return (env_settings, init_settings)

    @classmethod
    def load(cls, path: Path | str | None = None, **overrides: Any) -> Settings:
        values: dict[str, Any] = {}
        if path is not None:
            path = Path(path)
            with path.open("rb") as fh:
                values = tomllib.load(fh)
            state_dir = values.get("state_dir")
            if state_dir is not None and not Path(state_dir).is_absolute():
                values["state_dir"] = str(path.parent / state_dir)
        values.update(overrides)
        return cls(**values)

    @property
    def url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def poll_reread(self) -> float | None:
        """`agent_poll_reread`, or what a zone of this kind needs (see the field)."""
        if self.agent_poll_reread is not None:
            return self.agent_poll_reread
        if self.bus_url.startswith("amqp"):
            return 5.0
        return None if self.effective_database_url.startswith("sqlite") else 1.0

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.state_dir / f'{self.name}.db').resolve()}"
