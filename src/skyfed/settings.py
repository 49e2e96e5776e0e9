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

from skyfed.schema_types import NAME_PATTERN, Name
from skyfed.zones.capabilities import CapabilityError, check_capabilities

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
    # Encrypts stored secrets (child credentials). None: a key file in state_dir.
    secret_key: SecretStr | None = None
    token_ttl: float = Field(default=12 * 3600, gt=0)
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
    # Hostname patterns (fnmatch) a child api_url may point at; guards against SSRF.
    allowed_child_hosts: list[str] = ["*"]

    host_ttl: float = Field(default=30.0, gt=0)
    # A host silent for this long is forgotten entirely (it stays listed as offline before).
    host_forget_after: float = Field(default=3600.0, gt=0)
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
    # The largest request body taken (413 beyond). The largest a zone itself sends is
    # a parent's batch of 500 servers with full metadata, about 9 MiB.
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=64 * 1024)
    # The URL clients and parents reach this zone at (default: http://host:port).
    public_url: str | None = None

    capabilities: dict[Annotated[str, StringConstraints(max_length=64)], CapabilityValue] = {}
    flavors: list[FlavorSpec] = Field(default_factory=lambda: list(DEFAULT_FLAVORS))

    log_level: str = "INFO"
    log_file: Path | None = None

    @field_validator("capabilities", mode="before")
    @classmethod
    def _capabilities(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        try:
            return check_capabilities(value)
        except CapabilityError as exc:
            raise ValueError(str(exc)) from exc

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if (self.service_username is None) != (self.service_password is None):
            raise ValueError("service_username and service_password go together")
        if (self.agent_username is None) != (self.agent_password is None):
            raise ValueError("agent_username and agent_password go together")
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
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.state_dir / f'{self.name}.db').resolve()}"
