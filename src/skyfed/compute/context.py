"""What the compute feature needs from the running zone, in one object."""

from __future__ import annotations

from dataclasses import dataclass, field

from skyfed.compute.commands import CommandSignals
from skyfed.compute.hosts.registry import HostRegistry
from skyfed.compute.hosts.section import HostsSection
from skyfed.compute.intake import Intake
from skyfed.core import Core
from skyfed.db.engine import Database
from skyfed.settings import FlavorSpec, Settings
from skyfed.tasks.store import TaskStore
from skyfed.zones.links import ChildLinks
from skyfed.zones.view import ZoneView


@dataclass
class ComputeContext:
    core: Core
    view: ZoneView
    hosts: HostRegistry
    links: ChildLinks
    tasks: TaskStore
    signals: CommandSignals = field(default_factory=CommandSignals)
    # name -> flavor, from the database (seeded from settings); summaries count these.
    flavors: dict[str, FlavorSpec] = field(default_factory=dict)
    section: HostsSection = field(init=False)
    intake: Intake = field(init=False)

    def __post_init__(self) -> None:
        self.section = HostsSection(self.hosts)
        self.intake = Intake(self)

    @property
    def settings(self) -> Settings:
        return self.core.settings

    @property
    def db(self) -> Database:
        return self.core.db

    @property
    def zone_id(self) -> str:
        return self.core.zone_id

    @property
    def zone_name(self) -> str:
        return self.core.settings.name

    def set_flavors(self, flavors: dict[str, FlavorSpec]) -> None:
        self.flavors = dict(flavors)
        self.section.set_flavors(list(self.flavors.values()))
