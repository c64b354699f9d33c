"""Repeated wall-clock measurements, summarised the way every benchmark here reports them."""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass
class Timing:
    """Seconds of each round; the best round is the steady figure on a noisy machine."""

    seconds: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def worst(self) -> float:
        return max(self.seconds)
