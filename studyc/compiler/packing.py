"""Memory packing: which runs share the target machine, and when.

The schedule simulates what the local runtime does: queued runs start in order as soon
as fewer than ``parallel`` are running and the machine has room (on as many GPUs as the
run asks for, each with ``vram_gb`` free, plus CPU cores and host memory); a run that does
not fit waits and later runs that fit go first; a stage's runs join the queue when the
stages it needs have ended, so stages that do not need each other run side by side. Runs
sharing a GPU slow each other down by the machine's ``contention``. Without a ``machine:`` block every run gets a machine of its own (the cloud), so
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


@dataclass
class Timeline:
    """What the schedule works out besides each run's start, end, lane and GPUs."""

    wall_h: float
    stages: dict[str, tuple[float, float, float]]  # stage -> (ready, first start, last end), hours
    held_h: list[float]  # per run: hours of its GPUs' time it holds (shared time split between sharers)


def chain(stage_order: list[str]) -> dict[str, list[str]]:
    """Each stage needing the one before it (what stages without ``needs`` mean)."""
    return {s: ([stage_order[i - 1]] if i else []) for i, s in enumerate(stage_order)}


def simulate(runs: list["RunPlan"], stage_order: list[str], parallel: int, target: Target | None,
             together: bool = False, needs: dict[str, list[str]] | None = None,
             contention: float = 0.0) -> Timeline:
    """Event simulation of the whole study, as the runtime runs it: a stage's runs join the
    queue once the stages it ``needs`` (default: the one before) have ended; queued runs
    start in order while fewer than ``parallel`` run and the machine has room (a run that
    does not fit waits, later ones that fit go first); with ``together``, they start in
    waves of ``parallel`` on an idle machine. Runs sharing a GPU progress at
    1 / (1 + contention * (k - 1)) of their own speed, k the most runs on any of their GPUs."""
    if target is None:
        check_gpu_memory(runs)
    else:  # the machine's own figures win over the catalog (an H100 NVL has 94 GB)
        check_fits(runs, target)
    needs = needs if needs is not None else chain(stage_order)
    by_stage: dict[str, list[int]] = {s: [] for s in stage_order}
    for i, run in enumerate(runs):
        by_stage.setdefault(run.stage, []).append(i)
    demands = [Demand.of(r.resources) for r in runs]
    remaining = [r.est_hours for r in runs]
    held = [0.0] * len(runs)
    occupancy = Occupancy(target) if target else None
    lanes = _Lanes()
    queue: list[int] = []
    running: dict[int, tuple[tuple[int, ...], int]] = {}  # index -> (gpus, lane)
    left = {s: len(ix) for s, ix in by_stage.items()}
    spans: dict[str, list[float]] = {}  # stage -> [ready, first start, last end]
    now = 0.0
    while True:
        released = True
        while released:  # every stage whose needs have all ended (a stage without runs ends at once)
            released = False
            for stage in by_stage:
                if stage not in spans and all(n in spans and not left.get(n) for n in needs.get(stage, [])):
                    spans[stage] = [now, now if not by_stage[stage] else float("inf"), now]
                    queue += by_stage[stage]
                    released = True
        if not queue and not running:
            break
        if together:
            if not running and queue:
                group = min(parallel, len(queue))
                wave, queue = queue[:group], queue[group:]
                local = Occupancy(target) if target else None
                for n, i in enumerate(wave):
                    gpus = local.place(demands[i]) if local is not None else ()
                    if gpus is None:
                        raise _together_error([runs[j] for j in wave], target, n, runs[i].stage)
                    if local is not None:
                        local.take(demands[i], gpus)
                    _start(runs[i], i, gpus, now, lanes, running, spans)
        else:
            blocked: set[Demand] = set()
            for i in list(queue):
                if len(running) >= parallel:
                    break
                d = demands[i]
                if d in blocked:
                    continue
                gpus = occupancy.place(d) if occupancy is not None else ()
                if gpus is None:
                    blocked.add(d)
                    continue
                if occupancy is not None:
                    occupancy.take(d, gpus)
                queue.remove(i)
                _start(runs[i], i, gpus, now, lanes, running, spans)
        if not running:  # pragma: no cover - check_fits refuses such runs first
            raise RunError(f"{_who(runs[queue[0]])} can never start on this machine")
        sharers = Counter(g for gpus, _ in running.values() for g in gpus)
        rate, share = {}, {}
        for i, (gpus, _) in running.items():
            k = max((sharers[g] for g in gpus), default=1)
            rate[i] = 1.0 / (1.0 + contention * (k - 1))
            share[i] = sum(1.0 / sharers[g] for g in gpus) / len(gpus) if gpus else 1.0
        step = min(remaining[i] / rate[i] for i in running)
        now += step
        for i in list(running):
            remaining[i] -= step * rate[i]
            held[i] += step * share[i]
            if remaining[i] <= 1e-9:
                gpus, lane = running.pop(i)
                run = runs[i]
                run.end_h = round(now, 6)
                if occupancy is not None:
                    occupancy.release(demands[i], gpus)
                lanes.give(lane)
                left[run.stage] -= 1
                spans[run.stage][2] = max(spans[run.stage][2], run.end_h)
    wall = max([0.0] + [span[2] for span in spans.values()])
    return Timeline(wall, {s: tuple(spans[s]) for s in stage_order if s in spans}, held)


def _start(run: "RunPlan", i: int, gpus: tuple[int, ...], now: float, lanes: "_Lanes",
           running: dict[int, tuple[tuple[int, ...], int]], spans: dict[str, list[float]]) -> None:
    lane = lanes.take()
    run.start_h, run.slot, run.gpus = round(now, 6), lane, list(gpus)
    running[i] = (gpus, lane)
    spans[run.stage][1] = min(spans[run.stage][1], run.start_h)


def schedule(runs: list["RunPlan"], stage_order: list[str], parallel: int, target: Target | None,
             together: bool = False, needs: dict[str, list[str]] | None = None, contention: float = 0.0) -> float:
    """Set each run's start, end, lane (``slot``) and GPUs; return the wall-clock hours."""
    return simulate(runs, stage_order, parallel, target, together, needs, contention).wall_h


def critical_path(timeline: Timeline, needs: dict[str, list[str]]) -> list[str]:
    """The chain of stages the wall-clock waits on: from the stage that ends last, back
    through the need that ended last each time."""
    if not timeline.stages:
        return []
    stage = max(timeline.stages, key=lambda s: timeline.stages[s][2])
    path = [stage]
    while needs.get(stage):
        stage = max(needs[stage], key=lambda s: timeline.stages[s][2])
        path.insert(0, stage)
    return path


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
