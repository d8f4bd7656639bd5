"""A plan in words, for `studyc plan`: run rows, the schedule as phases (who shares the
machine when), totals and the budget with its margins. Text only; the CLI prints it."""

from __future__ import annotations

from typing import Any

from studyc.compiler.packing import Demand, phases
from studyc.compiler.plan import DEFAULT_STAGE, Plan, RunPlan

NAMES_PER_PHASE = 8


def money(value: float) -> str:
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"


def resources_text(res: dict[str, Any]) -> str:
    what = res["accelerators"] or f"{res['cpus']} CPU"
    if res["accelerators"] and res["vram_gb"]:
        what += f", {res['vram_gb']:g} GB"
    return what


def run_label(run: RunPlan) -> str:
    stage = "" if run.stage == DEFAULT_STAGE else f"{run.stage}:"
    return f"{stage}{'(promoted)' if run.pending else run.arm} s{run.seed}"


def run_rows(plan: Plan, limit: int) -> tuple[list[tuple[str, ...]], int]:
    """Table rows (run, arm, stage, seed, resources, start, hours, cost) for the first
    ``limit`` runs, and how many were left out."""
    clock, unit = _clock(plan.totals["wall_hours"])
    rows = [(run.id if not run.pending else "(promoted)", run.arm, run.stage, str(run.seed),
             resources_text(run.resources), f"{clock(run.start_h)} {unit}", f"{run.est_hours:.3g} h",
             money(run.est_usd)) for run in plan.runs[:limit]]
    return rows, max(0, len(plan.runs) - limit)


def schedule_lines(plan: Plan, limit: int) -> list[str]:
    """One line per interval in which the same runs are running."""
    machine = plan.schedule.get("machine")
    head = (f"schedule on one machine ({_machine_text(machine, plan.totals['wall_hours'])}), "
            f"at most {plan.parallel} at a time"
            if machine else f"schedule: each run on a machine of its own, at most {plan.parallel} at a time")
    if plan.schedule.get("together"):
        head += ", started together"
    lines = [head + ":"]
    clock, unit = _clock(plan.totals["wall_hours"])
    shown = phases(plan.runs, limit + 1)
    for phase in shown[:limit]:
        names = [run_label(r) + (f" [GPU {','.join(map(str, r.gpus))}]" if machine and r.gpus else "")
                 for r in phase.runs]
        more = f" +{len(names) - NAMES_PER_PHASE} more" if len(names) > NAMES_PER_PHASE else ""
        use = f" ({_use_text(phase.runs, machine)})" if machine else ""
        lines.append(f"  {clock(phase.start_h)}–{clock(phase.end_h)} {unit}  {len(phase.runs)} running{use}: "
                     + ", ".join(names[:NAMES_PER_PHASE]) + more)
    if len(shown) > limit:
        lines.append("  … (studyc plan --json has every run's start_h, end_h, slot and gpus)")
    if machine and plan.schedule.get("contention") is not None and any(r.solo_hours for r in plan.runs):
        lines.append(f"  runs sharing a GPU are slowed by machine.contention = {plan.schedule['contention']:g}: "
                     "k runs on one GPU each take hours × (1 + contention × (k − 1))")
    path = critical_path_text(plan)
    if path:
        lines.append(path)
    return lines


def critical_path_text(plan: Plan) -> str | None:
    """'critical path: smoke 0–0.25 h → round_a 0.25–8.25 h → ... = 18.25 h wall-clock',
    with the time a stage waited for a free slot after its needs had ended."""
    path = plan.schedule.get("critical_path") or []
    if len(plan.stages) < 2 or not path:
        return None
    clock, unit = _clock(plan.totals["wall_hours"])
    parts = []
    for step in path:
        waited = step["start_h"] - step["ready_h"]
        parts.append(f"{step['stage']} {clock(step['start_h'])}–{clock(step['end_h'])} {unit}"
                     + (f" (waited {clock(waited)} {unit} for a free slot)" if waited > 1e-6 else ""))
    wall = plan.totals["wall_hours"]
    return f"critical path: {' → '.join(parts)} = {clock(wall)} {unit} wall-clock"


def _clock(wall_hours: float):
    """Times on the plan's scale: minutes for plans shorter than an hour."""
    if wall_hours < 1:
        return (lambda h: f"{h * 60:.1f}"), "min"
    return (lambda h: f"{h:.2f}"), "h"


def _machine_text(machine: dict[str, Any], wall_hours: float) -> str:
    parts = [f"{machine['gpus']} GPU{'s' if machine['gpus'] != 1 else ''}"
             + (f" × {machine['vram_gb']:g} GB" if machine["vram_gb"] else "")]
    if machine["cpus"]:
        parts.append(f"{machine['cpus']} CPUs")
    if machine["memory_gb"]:
        parts.append(f"{machine['memory_gb']:g} GB memory")
    if machine.get("usd") is not None:
        parts.append(f"{money(machine['usd_per_hour'])}/h: {money(machine['usd'])} held for {wall_hours:.2f} h")
    return ", ".join(parts)


def _use_text(runs: list[RunPlan], machine: dict[str, Any]) -> str:
    demands = [Demand.of(r.resources) for r in runs]
    parts = []
    if machine["vram_gb"] and machine["gpus"]:
        used = sum(d.vram_gb * d.gpus for d in demands)
        parts.append(f"GPU memory {used:g}/{machine['vram_gb'] * machine['gpus']:g} GB")
    if machine["cpus"]:
        parts.append(f"{sum(d.cpus for d in demands)}/{machine['cpus']} CPUs")
    memory = sum(d.memory_gb for d in demands)
    if machine["memory_gb"] and memory:
        parts.append(f"memory {memory:g}/{machine['memory_gb']:g} GB")
    return "; ".join(parts) or "on the machine"


def totals_line(plan: Plan) -> str:
    t = plan.totals
    return (f"totals: {t['runs']} runs, {money(t['usd'])}, {t['gpu_hours']:.2f} GPU-hours, "
            f"{t['wall_hours']:.2f} h wall-clock")


_BUDGET_UNITS = {"usd": (money, "budget.usd"), "gpu_hours": (lambda v: f"{v:.2f} GPU-hours", "budget.gpu_hours"),
                 "wall_hours": (lambda v: f"{v:.2f} h", "budget.wall")}


def budget_lines(plan: Plan) -> list[str]:
    """The check against each limit with what is left (negative: how far over)."""
    budget = plan.budget
    lines = []
    for key, limit in budget["limits"].items():
        if limit is None:
            continue
        fmt, name = _BUDGET_UNITS[key]
        margin = budget["margins"][key]
        state = f"{fmt(margin)} left" if margin >= 0 else f"OVER by {fmt(-margin)}"
        lines.append(f"{name}: {fmt(plan.totals[key])} of {fmt(limit)} ({state})")
    return lines or ["no budget set (budget: usd, gpu_hours, wall)"]
