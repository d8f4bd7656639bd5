"""Store -> Results: each run's metrics reduced from its logged series (plus per-run
derived metrics), grouped by stage and arm, with reused and aliased arms filled in."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from studyc.runtime.store import Store, reductions
from studyc.spec import expr as E
from studyc.spec.arms import expand_arms
from studyc.spec.model import Study
from studyc.spec.semantics import is_study_level


@dataclass
class RunResult:
    id: str
    arm: str
    stage: str
    seed: int
    status: str
    failure: str | None
    attempts: int
    values: dict[str, float]
    skipped: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    usd: float | None = None
    est_usd: float | None = None
    log_tail: str | None = None


@dataclass
class ArmResult:
    arm: str
    stage: str | None
    source: str  # runs, reuse, same_as
    runs: list[RunResult] = field(default_factory=list)
    reused: dict[str, list[float]] = field(default_factory=dict)
    reuse_source: str | None = None

    def values(self, metric: str) -> list[float]:
        """One value per planned run (NaN where a run is missing, failed or gave NaN)."""
        if self.source != "runs":
            return list(self.reused.get(metric, []))
        return [r.values.get(metric, math.nan) if r.status == "done" else math.nan for r in self.runs]

    @property
    def complete(self) -> bool:
        return self.source != "runs" or (bool(self.runs) and all(r.status == "done" for r in self.runs))


@dataclass
class Results:
    study: str
    profile: str | None
    stages: list[str]
    by_stage: dict[str, dict[str, ArmResult]]
    arms: dict[str, ArmResult]  # each arm's result in the last stage it ran in
    metrics: list[str]

    def all_runs(self) -> list[RunResult]:
        return [r for stage in self.by_stage.values() for arm in stage.values() for r in arm.runs]


def reduce_run(study: Study, series: dict[str, dict[str, float]]) -> dict[str, float]:
    """One run's value for each per-run metric: a reduction of a logged series, or a
    derived expression over the run's other metrics."""
    values: dict[str, float] = {}
    for name, metric in study.metrics.items():
        if metric.expr is not None:
            continue
        stats = series.get(metric.from_ or name)
        if not stats:
            values[name] = math.nan
            continue
        how = metric.reduce
        if how == "best":
            how = "max" if metric.goal == "max" else "min"
        values[name] = stats.get(how, math.nan)
    derived = {n: E.parse(m.expr) for n, m in study.metrics.items() if m.expr is not None}
    derived = {n: node for n, node in derived.items() if not is_study_level(node)}
    for _ in range(len(derived)):  # resolve chains of derived metrics in dependency order
        for name, node in derived.items():
            if name in values:
                continue
            needed = {r.parts[0] for r in E.refs(node)}
            available = {k: v for k, v in values.items()}
            for dep in needed - available.keys():
                stats = series.get(dep)
                if stats and dep not in derived:
                    available[dep] = stats.get("last", math.nan)
            if needed <= available.keys():
                values[name] = float(E.evaluate(node, lambda ref: available[ref.parts[0]]))
    for name in derived:
        values.setdefault(name, math.nan)
    return values


def collect(study: Study, store: Store, profile: str | None) -> Results:
    rows = store.study_runs(study.study, profile)
    reduced = reductions(store, [r["run_id"] for r in rows if r["status"] == "done" or r["status"] == "failed"])
    stage_order = list(study.stages) or ["main"]
    by_stage: dict[str, dict[str, ArmResult]] = {s: {} for s in stage_order}
    for row in rows:
        stage = by_stage.setdefault(row["stage"], {})
        arm = stage.setdefault(row["arm"], ArmResult(row["arm"], row["stage"], "runs"))
        arm.runs.append(RunResult(
            id=row["run_id"], arm=row["arm"], stage=row["stage"], seed=row["seed"], status=row["status"],
            failure=row["failure"], attempts=row["attempts"], values=reduce_run(study, reduced.get(row["run_id"], {})),
            skipped=row["skipped"], started_at=row["started_at"], ended_at=row["ended_at"], usd=row["usd"],
            est_usd=row["est_usd"], log_tail=row["log_tail"]))
        if row["skipped"]:
            arm.runs[-1].status = "skipped"
    arms: dict[str, ArmResult] = {}
    for stage in stage_order:
        for name, result in by_stage.get(stage, {}).items():
            arms[name] = result  # later stages (a promoted re-run) supersede earlier ones
    for spec in expand_arms(study).values():
        if spec.reuse is not None and spec.reuse.results is not None:
            reused = {k: (list(v) if isinstance(v, list) else [float(v)]) for k, v in spec.reuse.results.items()}
            arms[spec.name] = ArmResult(spec.name, None, "reuse", reused=reused, reuse_source=spec.reuse.source)
    for spec in expand_arms(study).values():
        if spec.same_as is not None and spec.same_as in arms:
            target = arms[spec.same_as]
            arms[spec.name] = ArmResult(spec.name, target.stage, "same_as", runs=target.runs,
                                        reused={m: target.values(m) for m in study.metrics},
                                        reuse_source=f"same as {spec.same_as}")
    return Results(study.study, profile, stage_order, by_stage, arms, list(study.metrics))


def to_dict(results: Results, confidence: float) -> dict[str, Any]:
    from studyc.report.stats import describe

    def arm_dict(arm: ArmResult) -> dict[str, Any]:
        return {
            "source": arm.source,
            "stage": arm.stage,
            "reuse_source": arm.reuse_source,
            "runs": [{"id": r.id, "seed": r.seed, "status": r.status, "failure": r.failure, "attempts": r.attempts,
                      "values": {k: _json_float(v) for k, v in r.values.items()}} for r in arm.runs] if arm.source == "runs" else [],
            "metrics": {m: describe(arm.values(m), confidence) for m in results.metrics},
        }

    return {
        "study": results.study,
        "profile": results.profile,
        "stages": {s: {a: arm_dict(r) for a, r in arms.items()} for s, arms in results.by_stage.items()},
        "arms": {a: arm_dict(r) for a, r in results.arms.items()},
    }


def _json_float(value: float) -> float | None:
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None
