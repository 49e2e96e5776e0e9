"""What the compute feature needs from the running zone, in one object."""

from __future__ import annotations

from dataclasses import dataclass, field

from skyfed.compute.commands import CommandSignals
from skyfed.compute.hosts.registry import HostRegistry
from skyfed.compute.intake import Intake
from skyfed.db.engine import Database
from skyfed.settings import FlavorSpec, Settings
from skyfed.tasks.store import TaskStore
from skyfed.zones.links import ChildLinks
from skyfed.zones.view import ZoneView


@dataclass
class ComputeContext:
    settings: Settings
    db: Database
    view: ZoneView
    hosts: HostRegistry
    links: ChildLinks
    tasks: TaskStore
    signals: CommandSignals = field(default_factory=CommandSignals)
    zone_id: str = ""
    # name -> flavor, from the database (seeded from settings); summaries count these.
    flavors: dict[str, FlavorSpec] = field(default_factory=dict)
    intake: Intake = field(init=False)

    def __post_init__(self) -> None:
        self.intake = Intake(self)

    @property
    def zone_name(self) -> str:
        return self.settings.name

    def set_flavors(self, flavors: dict[str, FlavorSpec]) -> None:
        self.flavors = dict(flavors)
        self.view.flavors = list(self.flavors.values())
