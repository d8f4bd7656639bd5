"""The resource model: what a run occupies (Demand), the machine runs share (Target) and
what is in use on it at one moment (Occupancy). One set of rules for the plan's packing
(compiler/packing.py), the scheduler's placement of real runs and the progress ETA:

- a run with GPU memory known on both sides shares a GPU while memory lasts; with either
  unknown it takes its GPUs whole;
- CPU cores and host memory are summed; a run that asks for more cores than the machine
  has may still run, alone (the plan refuses it up front for a declared ``machine:``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from studyc.compiler.prices import gpu_memory_gb
from studyc.spec.accelerators import parse as parse_accelerators
from studyc.spec.model import Machine

_EPS = 1e-9


@dataclass(frozen=True)
class Demand:
    """What one run occupies while it runs."""

    gpus: int
    vram_gb: float  # on each of its GPUs; 0 means unknown: the GPUs are taken whole
    cpus: int
    memory_gb: float

    @classmethod
    def of(cls, resources: dict[str, Any]) -> "Demand":
        _, gpus = parse_accelerators(resources.get("accelerators"))
        return cls(gpus, float(resources.get("vram_gb") or 0) if gpus else 0.0, int(resources.get("cpus") or 1),
                   float(resources.get("memory_gb") or 0))

    def text(self) -> str:
        parts = []
        if self.gpus:
            per = f" with {self.vram_gb:g} GB each" if self.vram_gb else " (whole)"
            parts.append(f"{self.gpus} GPU{'s' if self.gpus > 1 else ''}{per}")
        parts.append(f"{self.cpus} CPU{'s' if self.cpus > 1 else ''}")
        if self.memory_gb:
            parts.append(f"{self.memory_gb:g} GB memory")
        return ", ".join(parts)


@dataclass(frozen=True)
class Target:
    """The machine runs are packed onto: the study's ``machine:`` at plan time, this host
    at run time."""

    gpu_gb: tuple[float | None, ...]  # memory of each GPU; None: unknown, one run per GPU
    cpus: int | None
    memory_gb: float | None

    @classmethod
    def from_machine(cls, machine: Machine | None) -> "Target | None":
        if machine is None:
            return None
        name, count = parse_accelerators(machine.accelerators)
        gpus = machine.gpus
        if count and ":" in (machine.accelerators or "") and "gpus" not in machine.model_fields_set:
            gpus = count
        per_gpu = machine.vram_gb or gpu_memory_gb(name)
        return cls(tuple([per_gpu] * gpus), machine.cpus, machine.memory_gb)

    def capacity(self, demand: Demand, limit: int) -> int:
        """How many runs of ``demand`` run at once here (at most ``limit``; at least 1)."""
        occupancy = Occupancy(self)
        count = 0
        while count < limit:
            gpus = occupancy.place(demand)
            if gpus is None:
                break
            occupancy.take(demand, gpus)
            count += 1
        return max(1, count)

    def text(self) -> str:
        parts = []
        if self.gpu_gb:
            size = f" × {self.gpu_gb[0]:g} GB" if self.gpu_gb[0] else ""
            parts.append(f"{len(self.gpu_gb)} GPU{'s' if len(self.gpu_gb) > 1 else ''}{size}")
        else:
            parts.append("no GPU")
        if self.cpus:
            parts.append(f"{self.cpus} CPUs")
        if self.memory_gb:
            parts.append(f"{self.memory_gb:g} GB memory")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"gpus": len(self.gpu_gb), "vram_gb": self.gpu_gb[0] if self.gpu_gb else None, "cpus": self.cpus,
                "memory_gb": self.memory_gb}


class Occupancy:
    """What is in use on the target machine at one moment."""

    def __init__(self, target: Target):
        self.target = target
        self.gpu_used = [0.0] * len(target.gpu_gb)
        self.gpu_runs = [0] * len(target.gpu_gb)
        self.gpu_whole = [False] * len(target.gpu_gb)
        self.runs = 0
        self.cpus = 0
        self.memory_gb = 0.0

    def place(self, d: Demand) -> tuple[int, ...] | None:
        """The GPUs ``d`` would run on now (first fit), () for a CPU run, or None: not now."""
        t = self.target
        if t.cpus is not None and self.runs and self.cpus + d.cpus > t.cpus:
            return None
        if t.memory_gb and self.memory_gb + d.memory_gb > t.memory_gb + _EPS:
            return None
        if not d.gpus:
            return ()
        free = []
        for g, size in enumerate(t.gpu_gb):
            if self.gpu_whole[g]:
                continue
            if d.vram_gb and size is not None:
                ok = self.gpu_used[g] + d.vram_gb <= size + _EPS
            else:  # memory unknown on either side: the GPU is shared by nobody
                ok = self.gpu_runs[g] == 0
            if ok:
                free.append(g)
                if len(free) == d.gpus:
                    return tuple(free)
        return None

    def take(self, d: Demand, gpus: tuple[int, ...]) -> None:
        self._add(d, gpus, 1)

    def release(self, d: Demand, gpus: tuple[int, ...]) -> None:
        self._add(d, gpus, -1)

    def _add(self, d: Demand, gpus: tuple[int, ...], sign: int) -> None:
        self.runs += sign
        self.cpus += sign * d.cpus
        self.memory_gb += sign * d.memory_gb
        for g in gpus:
            self.gpu_runs[g] += sign
            self.gpu_used[g] += sign * d.vram_gb
            if not d.vram_gb or self.target.gpu_gb[g] is None:
                self.gpu_whole[g] = sign > 0
