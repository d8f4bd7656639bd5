"""Store -> Results: each run's logged series reduced (last, best, min, max, mean), its
metrics (reductions and per-run derived metrics), grouped by stage and arm, with reused
and aliased arms filled in; per arm, n, mean, std and a confidence interval."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Hashable

from studyc.report.stats import summarize
from studyc.runtime.store import Store
from studyc.spec import expr as E
from studyc.spec.arms import ArmSpec, expand_arms
from studyc.spec.model import Study
from studyc.spec.semantics import is_study_level

FINISHED = ("done", "failed")


@dataclass
class RunResult:
    id: str
    arm: str
    stage: str
    seed: int
    status: str  # queued, running, done, failed, skipped
    failure: str | None
    attempts: int
    values: dict[str, float]  # the study's per-run metrics
    series: dict[str, dict[str, float]] = field(default_factory=dict)  # logged series -> reduction -> value
    skipped: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    usd: float | None = None
    gpu_hours: float | None = None
    log_tail: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # earlier attempts, for retried runs
    source: str | None = None  # an evaluation run: the id of the run it evaluated

    @property
    def wall_clock(self) -> float | None:
        """Seconds the last attempt took."""
        if self.status in FINISHED and self.started_at and self.ended_at:
            return self.ended_at - self.started_at
        return None


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
        if self.source == "reuse":
            return list(self.reused.get(metric, []))
        return [r.values.get(metric, math.nan) if r.status == "done" else math.nan for r in self.runs]

    def sample_key(self, metric: str) -> Hashable:
        """Names the sample a metric's values come from: the runs themselves, so that two
        metrics of the same runs (or an arm and its alias) are paired, not independent."""
        if self.source == "reuse":
            return ("reuse", self.arm, metric)
        return tuple(r.id for r in self.runs)


@dataclass
class Results:
    study: Study
    profile: str | None
    stages: list[str]
    by_stage: dict[str, dict[str, ArmResult]]
    arms: dict[str, ArmResult]  # each arm's result in the last stage it ran in
    metrics: list[str]  # per-run metrics (study-level derived figures are the judge's)
    _summaries: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict, repr=False)

    @cached_property
    def specs(self) -> dict[str, ArmSpec]:
        """Every arm of the study by name, sweeps expanded (once per report)."""
        return expand_arms(self.study)

    def all_runs(self) -> list[RunResult]:
        return [r for stage in self.by_stage.values() for arm in stage.values() for r in arm.runs]

    def summary(self, arm: ArmResult, metric: str) -> dict[str, Any]:
        """n, planned, mean, std, ci_lo, ci_hi of ``metric`` over the arm's runs (cached:
        the report, the CSV, the plots and results.json all read it)."""
        key = (id(arm), metric)
        if key not in self._summaries:
            stats = self.study.stats
            self._summaries[key] = summarize(arm.values(metric), stats.confidence, stats.method,
                                             stats.bootstrap_samples, arm.sample_key(metric))
        return self._summaries[key]


class Reducer:
    """One run's metric values from its reduced series: a metric takes a reduction of a
    series (``from``, ``reduce``), or is derived from the run's other metrics. What each
    metric reads is worked out once here: a report reduces every run of the study."""

    def __init__(self, study: Study):
        self.reduced = {n: m for n, m in study.metrics.items() if m.expr is None}
        # (metric, the series it reduces, which reduction)
        self.picks = [(name, m.from_ or name, ("max" if m.goal == "max" else "min") if m.reduce == "best" else m.reduce)
                      for name, m in self.reduced.items()]
        derived = {n: E.parse(m.expr) for n, m in study.metrics.items() if m.expr is not None}
        # name -> (expression, the names it reads)
        self.derived = {n: (node, {r.parts[0] for r in E.refs(node)}) for n, node in derived.items()
                        if not is_study_level(node)}
        self.order = _dependency_order(self.derived)
        self.best = {}  # series -> 'min' or 'max', from the goal of a metric reducing it
        for name, metric in self.reduced.items():
            if metric.goal:
                self.best.setdefault(metric.from_ or name, metric.goal)

    def series(self, stats: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        """Each logged series' reductions (``stats``, added to), with 'best' where a metric
        gives it a goal."""
        for name, how in self.best.items():
            if name in stats:
                stats[name]["best"] = stats[name][how]
        return stats

    def values(self, series: dict[str, dict[str, float]]) -> dict[str, float]:
        nan = math.nan
        values = {name: series[source].get(how, nan) if source in series else nan for name, source, how in self.picks}
        return self.derive(values, series)

    def derive(self, values: dict[str, float], series: dict[str, dict[str, float]]) -> dict[str, float]:
        """``values`` with the per-run derived metrics added (from metrics, or logged series)."""
        values = dict(values)
        for name in self.order:  # a derived metric after those it reads
            if name in values:
                continue
            node, needed = self.derived[name]
            available = {k: values[k] if k in values else series.get(k, {}).get("last", math.nan) for k in needed}
            values[name] = float(E.evaluate(node, lambda ref: available[ref.parts[0]]))
        for name in self.derived.keys() - values.keys():  # a cycle (refused by validation) reads as no value
            values[name] = math.nan
        return values

    def derive_reused(self, given: dict[str, list[float]]) -> dict[str, list[float]]:
        """Reused results with their per-run derived metrics, seed by seed (a metric given
        as one number counts for every seed)."""
        n = max((len(v) for v in given.values()), default=0)
        rows = [self.derive({k: v[i] if len(v) == n else v[0] if len(v) == 1 else math.nan for k, v in given.items()}, {})
                for i in range(n)]
        derived = {k: [row[k] for row in rows] for k in self.derived if k not in given}
        return {**given, **derived}


def _dependency_order(derived: dict[str, tuple[E.Node, set[str]]]) -> list[str]:
    """Derived metrics, each after the derived metrics it reads (those in a cycle left out)."""
    order: list[str] = []
    pending = dict(derived)
    while pending:
        ready = [n for n, (_, needed) in pending.items() if not (needed & pending.keys())]
        if not ready:
            break
        order += ready
        for name in ready:
            del pending[name]
    return order


def attempt_history(store: Store, run: RunResult) -> list[dict[str, Any]]:
    """Each attempt of a retried run: how it ended and what the retry changed."""
    attempts = store.attempts(run.id)
    first = json.loads(attempts[0]["config"]) if attempts and attempts[0]["config"] else {}
    out = []
    for a in attempts:
        config = json.loads(a["config"]) if a["config"] else {}
        changes = {k: [first.get(k), v] for k, v in config.items() if first.get(k) != v}
        out.append({"attempt": a["attempt"], "status": a["status"], "failure": a["failure"], "changes": changes,
                    "seconds": (a["ended_at"] - a["started_at"]) if a["ended_at"] and a["started_at"] else None})
    return out


def collect(study: Study, store: Store, profile: str | None) -> Results:
    rows = store.study_runs(study.study, profile)
    reduced = store.reduced_series(list({r["run_id"] for r in rows if r["status"] in FINISHED}))
    reducer = Reducer(study)
    stage_order = list(study.stages) or ["main"]
    by_stage: dict[str, dict[str, ArmResult]] = {s: {} for s in stage_order}
    for row in rows:
        series = reducer.series(reduced.get(row["run_id"], {}))
        run = RunResult(
            id=row["run_id"], arm=row["arm"], stage=row["stage"], seed=row["seed"],
            status="skipped" if row["skipped"] else row["status"], failure=row["failure"], attempts=row["attempts"],
            values=reducer.values(series), series=series, skipped=row["skipped"], started_at=row["started_at"],
            ended_at=row["ended_at"], usd=row["usd"], gpu_hours=row["gpu_hours"], log_tail=row["log_tail"])
        if run.attempts > 1:
            run.history = attempt_history(store, run)
        stage = by_stage.setdefault(row["stage"], {})
        stage.setdefault(row["arm"], ArmResult(row["arm"], row["stage"], "runs")).runs.append(run)
    _evaluated(study, by_stage)
    arms: dict[str, ArmResult] = {}
    for stage in by_stage:
        if stage in study.stages and study.stages[stage].smoke:
            continue  # a smoke test at tiny size is no result of the arm's
        for name, result in by_stage[stage].items():
            arms[name] = result  # later stages (a promoted re-run, an evaluation) supersede earlier ones
    metrics = [m for m, spec in study.metrics.items() if spec.expr is None or not is_study_level(E.parse(spec.expr))]
    results = Results(study, profile, stage_order, by_stage, arms, metrics)
    specs = results.specs
    for spec in specs.values():
        if spec.reuse is not None and spec.reuse.results is not None:
            reused = reducer.derive_reused(
                {k: (list(v) if isinstance(v, list) else [float(v)]) for k, v in spec.reuse.results.items()})
            arms[spec.name] = ArmResult(spec.name, None, "reuse", reused=reused, reuse_source=spec.reuse.source)
    for spec in specs.values():
        if spec.same_as is not None and spec.same_as in arms:
            target = arms[spec.same_as]
            arms[spec.name] = ArmResult(spec.name, target.stage, target.source if target.source == "reuse" else "same_as",
                                        runs=target.runs, reused=target.reused, reuse_source=f"same as {spec.same_as}")
    return results


def _evaluated(study: Study, by_stage: dict[str, dict[str, ArmResult]]) -> None:
    """An evaluation run's metrics are what it logged, over those of the run it evaluated
    (so an evaluated arm keeps its training metrics beside the evaluation's)."""
    from studyc.compiler.plan import source_stage

    for stage, spec in study.stages.items():
        if not spec.evaluate:
            continue
        sources = source_stage(study, stage, {n: list(by_stage.get(n, {})) for n in spec.needs})
        for arm, result in by_stage.get(stage, {}).items():
            trained = {r.seed: r for r in by_stage.get(sources.get(arm, ""), {}).get(arm, ArmResult(arm, None, "runs")).runs}
            for run in result.runs:
                source = trained.get(run.seed)
                if source is None:
                    continue
                run.source = source.id
                run.values = {**{k: v for k, v in source.values.items() if source.status == "done"},
                              **{k: v for k, v in run.values.items() if math.isfinite(v)}}


def curves(store: Store, results: Results, arms: list[str], series: str) -> dict[str, dict[str, list[float]]]:
    """Learning curves of ``series`` for ``arms`` (their latest results): per step, the
    mean, min and max over the arm's finished runs."""
    owner = {r.id: name for name in arms if name in results.arms
             for r in results.arms[name].runs if r.status == "done"}
    points: dict[str, dict[float, list[float]]] = {name: {} for name in arms}
    for rid, step, value in store.points(series, list(owner)):
        if value is not None:
            points[owner[rid]].setdefault(step, []).append(value)
    out = {}
    for name, by_step in points.items():
        if len(by_step) > 1:
            steps = sorted(by_step)
            out[name] = {"step": steps, "mean": [sum(by_step[s]) / len(by_step[s]) for s in steps],
                         "min": [min(by_step[s]) for s in steps], "max": [max(by_step[s]) for s in steps]}
    return out


def run_dict(run: RunResult) -> dict[str, Any]:
    """A run in results.json (its NaN values written as null)."""
    return {"id": run.id, "arm": run.arm, "stage": run.stage, "seed": run.seed, "status": run.status,
            "failure": run.failure, "skipped": run.skipped, "attempts": run.attempts, "history": run.history,
            "started_at": run.started_at, "ended_at": run.ended_at, "wall_clock_s": run.wall_clock,
            "usd": run.usd, "gpu_hours": run.gpu_hours, "values": run.values, "source": run.source,
            "series": run.series}


def to_dict(results: Results) -> dict[str, Any]:
    """results.json's body: every run once, with its metrics and
    reduced series, under the arm result it belongs to (an arm's latest stage under
    `arms`, superseded results under `stages`), and each arm's n, mean, std and interval
    per metric."""
    study = results.study
    latest = {id(a) for a in results.arms.values()}

    def arm_dict(arm: ArmResult, with_runs: bool) -> dict[str, Any]:
        out = {"source": arm.source, "stage": arm.stage, "reuse_source": arm.reuse_source,
               "metrics": {m: results.summary(arm, m) for m in results.metrics}}
        if arm.source == "runs":
            out["runs"] = [run_dict(r) for r in arm.runs] if with_runs else [r.id for r in arm.runs]
        return out

    return {
        "study": study.study,
        "profile": results.profile,
        "stats": {"confidence": study.stats.confidence, "method": study.stats.method},
        "metrics": {m: study.metrics[m].model_dump(by_alias=True, exclude_none=True) for m in results.metrics},
        "arms": {a: arm_dict(r, True) for a, r in results.arms.items()},
        "stages": {s: {a: arm_dict(r, id(r) not in latest) for a, r in arms.items()}
                   for s, arms in results.by_stage.items()},
    }
