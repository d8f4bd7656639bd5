"""Memory packing: which runs share the target machine, and when.

The schedule simulates what the local runtime does: a stage's runs start in order as soon
as fewer than ``parallel`` are running and the machine has room (on as many GPUs as the
run asks for, each with ``vram_gb`` free, plus CPU cores and host memory); a run that does
not fit waits and later runs that fit go first; a stage starts when the one before it has
ended. Without a ``machine:`` block every run gets a machine of its own (the cloud), so
only ``parallel`` limits how many run at once. With ``budget.together`` runs start in
groups of ``parallel`` that must fit on the machine all at once, or the plan is refused.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from studyc.compiler.prices import GPU_MEMORY_GB, gpu_memory_gb
from studyc.compiler.resources import Demand, Occupancy, Target
from studyc.errors import RunError
from studyc.spec.accelerators import parse as parse_accelerators

if TYPE_CHECKING:  # pragma: no cover
    from studyc.compiler.plan import RunPlan


def _who(run: "RunPlan") -> str:
    return f"arm {run.arm}" + (f" (stage {run.stage})" if run.stage != "main" else "")


def check_gpu_memory(runs: Iterable["RunPlan"]) -> None:
    """Refuse a run that asks for more memory than its own accelerator has."""
    seen = set()
    for run in runs:
        acc = run.resources.get("accelerators")
        key = (run.arm, run.stage, acc, run.resources.get("vram_gb"))
        if key in seen or not acc:
            continue
        seen.add(key)
        name, _ = parse_accelerators(acc)
        size = gpu_memory_gb(name)
        vram = run.resources.get("vram_gb") or 0
        if size is not None and vram > size:
            larger = [n for n, gb in sorted(GPU_MEMORY_GB.items(), key=lambda kv: kv[1]) if gb >= vram]
            ask = f"ask for {' or '.join(larger[:3])}" if larger else "no GPU in the catalog has that much: shard it"
            raise RunError(f"{_who(run)} needs {vram:g} GB of GPU memory, but one {name} GPU has {size:g} GB",
                           f"{ask}, or lower vram_gb (a smaller batch size)")


def check_fits(runs: Iterable["RunPlan"], target: Target) -> None:
    """Refuse, with the arithmetic, a run the machine can never hold, even alone."""
    seen = set()
    for run in runs:
        d = Demand.of(run.resources)
        if (run.arm, run.stage, d) in seen:
            continue
        seen.add((run.arm, run.stage, d))
        problem = None
        if d.gpus > len(target.gpu_gb):
            problem = f"{d.gpus} GPU{'s' if d.gpus > 1 else ''}, but the machine has {len(target.gpu_gb)}"
        elif d.vram_gb and target.gpu_gb and target.gpu_gb[0] is not None and d.vram_gb > target.gpu_gb[0] + 1e-9:
            problem = f"{d.vram_gb:g} GB of GPU memory, but each of the machine's GPUs has {target.gpu_gb[0]:g} GB"
        elif target.cpus is not None and d.cpus > target.cpus:
            problem = f"{d.cpus} CPUs, but the machine has {target.cpus}"
        elif target.memory_gb and d.memory_gb > target.memory_gb + 1e-9:
            problem = f"{d.memory_gb:g} GB of memory, but the machine has {target.memory_gb:g} GB"
        if problem:
            raise RunError(f"{_who(run)} needs {problem}", "lower the run's resources (batch size, vram_gb, cpus, "
                           "memory_gb) or describe a larger machine under `machine:`")


def _together_error(wave: list["RunPlan"], target: Target, fit: int, stage: str) -> RunError:
    demands = [Demand.of(r.resources) for r in wave]
    why = []
    vram = [d.vram_gb * d.gpus for d in demands]
    capacity = sum(g or 0 for g in target.gpu_gb)
    if any(vram) and sum(vram) > capacity + 1e-9:
        sizes = Counter(vram)
        terms = " + ".join(f"{n} × {v:g} GB" if n > 1 else f"{v:g} GB" for v, n in sizes.items() if v)
        why.append(f"{terms} = {sum(vram):g} GB of GPU memory > {capacity:g} GB")
    gpus = sum(d.gpus for d in demands)
    if gpus > len(target.gpu_gb) and not any(vram):
        why.append(f"{gpus} GPUs > {len(target.gpu_gb)}")
    cpus = sum(d.cpus for d in demands)
    if target.cpus is not None and cpus > target.cpus:
        why.append(f"{cpus} CPUs > {target.cpus}")
    memory = sum(d.memory_gb for d in demands)
    if target.memory_gb and memory > target.memory_gb + 1e-9:
        why.append(f"{memory:g} GB of memory > {target.memory_gb:g} GB")
    if not why:
        why.append("their GPU memory cannot be split across the GPUs without overfilling one")
    return RunError(
        f"budget.together asks for {len(wave)} runs at once (stage {stage}), but the machine ({target.text()}) "
        f"holds at most {fit} of them together: " + "; ".join(why),
        f"set budget.parallel: {max(fit, 1)} (the runs then go {max(fit, 1)} at a time), drop `together`, "
        "or describe a larger machine")


class _Lanes:
    """Numbers the concurrent positions (a machine each on the cloud), lowest free first."""

    def __init__(self) -> None:
        self.free: list[int] = []
        self.count = 0

    def take(self) -> int:
        if self.free:
            return heapq.heappop(self.free)
        self.count += 1
        return self.count - 1

    def give(self, lane: int) -> None:
        heapq.heappush(self.free, lane)


def _stage_together(runs: list["RunPlan"], clock: float, group: int, target: Target | None, stage: str) -> float:
    for first in range(0, len(runs), group):
        wave = runs[first:first + group]
        occupancy = Occupancy(target) if target else None
        for lane, run in enumerate(wave):
            gpus: tuple[int, ...] = ()
            if occupancy is not None:
                d = Demand.of(run.resources)
                placed = occupancy.place(d)
                if placed is None:
                    raise _together_error(wave, target, lane, stage)
                occupancy.take(d, placed)
                gpus = placed
            run.start_h, run.end_h, run.slot, run.gpus = clock, round(clock + run.est_hours, 6), lane, list(gpus)
        clock = max(r.end_h for r in wave)
    return clock


def _stage_packed(runs: list["RunPlan"], clock: float, parallel: int, target: Target | None) -> float:
    """Event simulation of one stage; returns when its last run ends."""
    demands = [Demand.of(r.resources) for r in runs]
    waiting = Counter(demands)  # not yet started, by demand: once one is blocked, all like it are
    started = [False] * len(runs)
    occupancy = Occupancy(target) if target else None
    running: list[tuple[float, int, tuple[int, ...], int]] = []  # (end, index, gpus, lane)
    lanes = _Lanes()
    head, now, end = 0, clock, clock
    while head < len(runs):
        blocked: set[Demand] = set()
        i = head
        while i < len(runs) and len(running) < parallel and len(blocked) < len(waiting):
            d = demands[i]
            if started[i] or d in blocked:
                i += 1
                continue
            gpus = occupancy.place(d) if occupancy is not None else ()
            if gpus is None:
                blocked.add(d)
                i += 1
                continue
            if occupancy is not None:
                occupancy.take(d, gpus)
            run = runs[i]
            lane = lanes.take()
            run.start_h, run.end_h, run.slot, run.gpus = now, round(now + run.est_hours, 6), lane, list(gpus)
            heapq.heappush(running, (run.end_h, i, gpus, lane))
            started[i] = True
            waiting[d] -= 1
            if not waiting[d]:
                del waiting[d]
            i += 1
        while head < len(runs) and started[head]:
            head += 1
        if not running:  # pragma: no cover - check_fits refuses such runs first
            raise RunError(f"{_who(runs[head])} can never start on this machine")
        finished, index, gpus, lane = heapq.heappop(running)
        batch = [(index, gpus, lane)]
        while running and running[0][0] <= finished:
            _, index, gpus, lane = heapq.heappop(running)
            batch.append((index, gpus, lane))
        for index, gpus, lane in batch:
            if occupancy is not None:
                occupancy.release(demands[index], gpus)
            lanes.give(lane)
        now = end = max(end, finished)
    return max([end] + [e for e, _, _, _ in running])


def schedule(runs: list["RunPlan"], stage_order: list[str], parallel: int, target: Target | None,
             together: bool = False) -> float:
    """Set each run's start, end, lane (``slot``) and GPUs; return the wall-clock hours."""
    if target is None:
        check_gpu_memory(runs)
    else:  # the machine's own figures win over the catalog (an H100 NVL has 94 GB)
        check_fits(runs, target)
    by_stage: dict[str, list[RunPlan]] = {}
    for run in runs:
        by_stage.setdefault(run.stage, []).append(run)
    clock = 0.0
    for stage in stage_order:
        stage_runs = by_stage.get(stage, [])
        if not stage_runs:
            continue
        if together:
            clock = _stage_together(stage_runs, clock, min(parallel, len(stage_runs)), target, stage)
        else:
            clock = _stage_packed(stage_runs, clock, parallel, target)
    return clock


@dataclass
class Phase:
    """An interval in which the same runs are running."""

    start_h: float
    end_h: float
    runs: list["RunPlan"]


def phases(runs: list["RunPlan"], limit: int | None = None) -> list[Phase]:
    """The schedule as intervals with what runs in each (the first ``limit`` of them)."""
    points = sorted({t for r in runs for t in (r.start_h, r.end_h)})
    by_start = sorted(runs, key=lambda r: r.start_h)
    out: list[Phase] = []
    active: list[RunPlan] = []
    nxt = 0
    for a, b in zip(points, points[1:]):
        active = [r for r in active if r.end_h > a + 1e-12]
        while nxt < len(by_start) and by_start[nxt].start_h <= a + 1e-12:
            if by_start[nxt].end_h > a + 1e-12:
                active.append(by_start[nxt])
            nxt += 1
        if active:
            out.append(Phase(a, b, list(active)))
            if limit is not None and len(out) >= limit:
                break
    return out


def peak_concurrent(runs: list["RunPlan"]) -> int:
    """The most runs running at one moment."""
    events = sorted([(r.start_h, 1) for r in runs] + [(r.end_h, -1) for r in runs])  # ends sort before starts
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak
