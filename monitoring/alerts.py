"""An alert: one readable line naming what moved, by how much, and the threshold it crossed."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Alert:
    section: str
    """``drift``, ``quality``, ``performance``, ``fairness`` or ``kpis``."""
    subject: str
    """What moved: a feature, a score, a metric, ``attribute=group: metric``, a KPI."""
    value: float | None
    threshold: float | None
    message: str
    """The whole line, e.g. ``drift: claimed_amount moved 0.34 (Wasserstein/std; threshold 0.1)``."""

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return self.message
