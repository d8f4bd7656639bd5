"""A run as the packer sees it, for property tests of plan-time packing and the stage graph."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FakeRun:
    """The fields the packer reads and writes."""

    arm: str
    stage: str
    seed: int
    resources: dict[str, Any]
    est_hours: float
    start_h: float = 0.0
    end_h: float = 0.0
    slot: int = 0
    gpus: list[int] = field(default_factory=list)
