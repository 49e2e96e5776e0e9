"""How the planner is tuned: its strategy and sample sizes, and the weighers' multipliers (pure)."""

from __future__ import annotations

from dataclasses import dataclass

SPREAD = "spread"
FILL = "fill"
STRATEGIES = (SPREAD, FILL)


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannerConfig:
    strategy: str = "spread"  # "spread": most free room first; "fill": least first
    sample_size: int = 32  # passing candidates to collect before the scan stops
    max_ranked: int = 8  # candidates a Decision ranks (retries go down this list)
    ram_weight_multiplier: float = 1.0
    anti_affinity_multiplier: float = 0.5  # zones: weight off at the most group members

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.sample_size < 1:
            raise ValueError("sample_size must be at least 1")
        if self.max_ranked < 1:
            raise ValueError("max_ranked must be at least 1")
