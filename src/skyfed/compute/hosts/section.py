"""Compute's section of the zone summary: this zone's online hosts and the flavors that fit."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from skyfed.compute.hosts.registry import HostRegistry
from skyfed.zones.summary import FlavorLike, Summary, summarize_hosts


class HostsSection:
    def __init__(self, hosts: HostRegistry, flavors: Sequence[FlavorLike] = ()) -> None:
        self.hosts = hosts
        self.flavors = list(flavors)
        self._flavors_version = 0

    def set_flavors(self, flavors: Sequence[FlavorLike]) -> None:
        self.flavors = list(flavors)
        self._flavors_version += 1

    @property
    def version(self) -> Hashable:
        return (self.hosts.version, self._flavors_version)

    def summary(self) -> Summary:
        return summarize_hosts(self.hosts.online(), self.flavors)
