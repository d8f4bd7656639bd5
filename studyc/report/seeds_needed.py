"""`studyc plan --seeds-needed`: per hypothesis, the seeds per arm that give a stated
probability of a verdict (PASS or FAIL) at the study's level and under its design,
with what that many seeds cost against the budget.

Each arm's metric is assumed Gaussian over seeds with a mean and a spread taken from a
pilot (the runs in the store) or, without one, from the study (`expect` ranges give the
mean, `metrics.<m>.spread` the spread). The check's comparisons are linearised around
those means (the judge's own delta method), and the verdict's probability at N seeds per
arm is simulated from the arms' sample means and variances (seeded, vectorised):
PASS when every comparison clears the threshold, FAIL when one misses it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special, stats as sps

from studyc.compiler import packing
from studyc.compiler.plan import Compiler, budget_check
from studyc.compiler.view import money
from studyc.errors import RunError
from studyc.report.collect import ArmResult, Results
from studyc.report.judge import Judge
from studyc.report.numbers import fmt, pct
from studyc.report.sequential import DESIGN, SequentialJudge, cs_multiplier
from studyc.report.stats import MAX_MORE_SEEDS, Estimate
from studyc.spec.loader import LoadedStudy

DRAWS = 4000  # simulated studies per seed count: the probability to about ±1.5 points


@dataclass
class Assumption:
    """One arm's metric as the plan assumes it."""

    mean: float
    spread: float
    pilot_n: int  # finite pilot values (0: none)
    source: str

    def text(self, name: str) -> str:
        return f"{name} = {fmt(self.mean)} ± {fmt(self.spread, 2)} per seed ({self.source})"


@dataclass
class Need:
    hypothesis: str
    arms: list[str]
    seeds: int | None = None  # per arm, in total (the pilot's included)
    probability: float | None = None
    pass_probability: float | None = None
    effect: float | None = None  # the estimate's distance from the threshold, PASS side positive
    spread: float | None = None  # of that difference, per seed
    assumptions: dict[str, str] = field(default_factory=dict)
    spread_high_seeds: int | None = None  # the seeds if the spread is at the top of what the pilot allows
    drivers: list[str] = field(default_factory=list)
    refused: str | None = None
    hint: str | None = None
    cost: dict[str, Any] | None = None  # of these seeds for the hypothesis' arms: usd, gpu_hours, wall_hours, budget

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _AssumedJudge(SequentialJudge):
    """Judges numbers from assumed arms: each arm a two-value sample with exactly the
    assumed mean and spread, so the judge's arithmetic yields each comparison's gradient
    with respect to every arm's mean."""

    def __init__(self, loaded: LoadedStudy, results: Results, assumed: dict[tuple[str, str], Assumption]):
        super().__init__(loaded.study, results)
        self.assumed = assumed

    def arm_estimate(self, arm: ArmResult | None, name: str, metric: str) -> Estimate:
        a = self.assumed.get((name, metric))
        if a is None:
            return Estimate.absent(f"{name}.{metric}: no assumption")
        half = a.spread / math.sqrt(2)  # two values at mean ± spread/sqrt(2) have sd exactly `spread`
        return Estimate.sample([a.mean - half, a.mean + half], (name, metric))

    def arm_n(self, node: Any) -> int | None:
        return None


def assume(loaded: LoadedStudy, results: Results, arm: str, metric: str) -> Assumption | str:
    """The arm's metric from the pilot, else from the study; a refusal (text) when there
    is no spread or no mean to plan from."""
    study = loaded.study
    result = results.arms.get(arm)
    values = [v for v in result.values(metric) if math.isfinite(v)] if result else []
    declared = study.metrics[metric].spread if metric in study.metrics else None
    expected = [x for x in study.expect.get(arm, {}).get(metric, []) if x is not None]
    if len(values) >= 2:
        return Assumption(float(np.mean(values)), float(np.std(values, ddof=1)), len(values),
                          f"pilot, n={len(values)}")
    if values:
        mean, mean_from = values[0], "pilot mean, n=1"
    elif expected:
        mean, mean_from = float(np.mean(expected)), f"expect {arm}.{metric} midpoint"
    else:
        return f"no mean for {arm}.{metric}: no pilot runs and no `expect` range"
    if declared is None:
        return (f"no spread for {arm}.{metric}: " + ("the pilot has 1 run" if values else "no pilot runs")
                + f" and metrics.{metric} declares no spread")
    return Assumption(mean, declared, len(values), f"{mean_from}; spread from metrics.{metric}.spread")


def _gradients(est: Estimate, assumed: dict[tuple[str, str], Assumption]) -> dict[tuple[str, str], float]:
    """d(comparison) / d(arm mean), from the two-value samples' influence vectors."""
    out = {}
    for key, infl in est.parts.items():
        a = assumed.get(key)
        if a is not None and a.spread > 0:
            out[key] = float(infl[1]) * 2 * math.sqrt(2) / a.spread
    return out


def verdict_probability(atoms: list[tuple[float, dict[tuple[str, str], float]]], spreads: dict[tuple[str, str], float],
                        n: int, alpha: float, design: str, confidence: float, seed: int = 0) -> tuple[float, float]:
    """(P(PASS), P(PASS or FAIL)) at ``n`` seeds per arm: ``atoms`` are the comparisons
    (point, gradient per arm) that hold where > 0."""
    keys = list(spreads)
    rng = np.random.default_rng(seed)
    sd = np.array([spreads[k] for k in keys])
    means = rng.standard_normal((DRAWS, len(keys))) * sd / math.sqrt(n)
    variances = sd ** 2 * rng.chisquare(n - 1, (DRAWS, len(keys))) / (n - 1)
    passes, fails = np.ones(DRAWS, bool), np.zeros(DRAWS, bool)
    for point, grad in atoms:
        g = np.array([grad.get(k, 0.0) for k in keys])
        est = point + means @ g
        w = variances * g ** 2 / n
        se = np.sqrt(w.sum(axis=1))
        if design == DESIGN:
            c = cs_multiplier(n, alpha)
        else:
            with np.errstate(all="ignore"):
                df = np.where(w.sum(axis=1) > 0, w.sum(axis=1) ** 2 / (w ** 2 / (n - 1)).sum(axis=1), np.inf)
            c = special.stdtrit(np.minimum(df, 1e6), 1 - (1 - confidence) / 2)
        passes &= est - c * se > 0
        fails |= est + c * se < 0
    return float(passes.mean()), float((passes | fails).mean())


def seeds_for(atoms, spreads, target: float, alpha: float, design: str, confidence: float,
              n_from: int) -> tuple[int | None, float | None, float | None]:
    """The fewest seeds per arm (>= n_from) whose verdict probability reaches ``target``."""
    def prob(n: int) -> tuple[float, float]:
        return verdict_probability(atoms, spreads, n, alpha, design, confidence)

    lo, hi = max(n_from, 2), MAX_MORE_SEEDS
    if prob(hi)[1] < target:
        return None, None, None
    while lo < hi:  # the probability grows with n (up to simulation noise)
        mid = (lo + hi) // 2
        if prob(mid)[1] >= target:
            hi = mid
        else:
            lo = mid + 1
    p_pass, p_any = prob(lo)
    return lo, p_any, p_pass


def plan_seeds(loaded: LoadedStudy, results: Results, target: float, design: str) -> list[Need]:
    study = loaded.study
    if not study.hypotheses:
        raise RunError("the study states no hypotheses, so no verdict needs seeds",
                       "add `hypotheses:` with a check each")
    judge = _AssumedJudge(loaded, results, {})
    alpha, confidence = judge.alpha, study.stats.confidence
    needs = []
    for name, hyp in study.hypotheses.items():
        node = judge.parse(hyp.check)
        arms = judge.arms_of(node)
        need = Need(name, arms)
        refs = {(r.parts[0] if r.parts[0] != "champion" else judge.champion, r.parts[1])
                for r in _refs(judge, node) if len(r.parts) == 2 and r.parts[0] not in study.baselines}
        for arm, metric in sorted(refs):
            got = assume(loaded, results, arm, metric)
            if isinstance(got, str):
                need.refused = got
                need.hint = (f"run a pilot of at least 2 seeds per arm (`studyc run`), or declare "
                             f"metrics.{metric}.spread (the expected standard deviation across seeds)"
                             + (f" and expect: {{{arm}: {{{metric}: [low, high]}}}}" if "no mean" in got else ""))
                break
            judge.assumed[(arm, metric)] = got
            need.assumptions[f"{arm}.{metric}"] = got.text(f"{arm}.{metric}")
        if need.refused is None:
            _size(need, judge, node, target, alpha, confidence, design)
        needs.append(need)
    return needs


def _refs(judge: Judge, node: Any) -> list[Any]:
    """The refs of a check, through the hypotheses it names."""
    from studyc.spec import expr as E

    out = []
    for ref in E.refs(node):
        if len(ref.parts) == 1 and ref.parts[0] in judge.study.hypotheses:
            out += _refs(judge, judge.parse(judge.study.hypotheses[ref.parts[0]].check))
        else:
            out.append(ref)
    return out


def _unit(judge: Judge, node: Any) -> str | None:
    """The unit of the metrics a check compares, when they share one."""
    units = {judge.study.metrics[r.parts[-1]].unit for r in _refs(judge, node) if r.parts[-1] in judge.study.metrics}
    return units.pop() if len(units) == 1 else None


def _size(need: Need, judge: _AssumedJudge, node: Any, target: float, alpha: float, confidence: float,
          design: str) -> None:
    atoms_est, _ = judge.walk(node)
    atoms = [(a.est.point, _gradients(a.est, judge.assumed)) for a in atoms_est if not a.est.is_missing]
    if not atoms:
        need.refused = "its check has no comparison over arms to size"
        return
    spreads = {k: a.spread for k, a in judge.assumed.items()}
    pilot_n = min((a.pilot_n for a in judge.assumed.values()), default=0)
    need.seeds, need.probability, need.pass_probability = seeds_for(atoms, spreads, target, alpha, design, confidence,
                                                                    max(pilot_n, 2))
    nearest = min(atoms_est, key=lambda a: abs(a.est.point))
    need.effect = nearest.est.point
    need.spread = nearest.est.se * math.sqrt(2)
    in_spreads = abs(need.effect) / need.spread if need.spread > 0 else math.inf
    show = pct if nearest.relative else (lambda x: fmt(x, 3) + (f" {unit}" if (unit := _unit(judge, node)) else ""))
    need.drivers.append(f"effect: the estimate is {show(abs(need.effect)).lstrip('+')} ({in_spreads:.2g} spreads of "
                        f"the difference) {'inside' if need.effect > 0 else 'outside'} the threshold")
    need.drivers.append(f"spread of the difference: {show(need.spread).lstrip('+')} per seed")
    if pilot_n >= 2:  # the pilot's spread is itself uncertain: its upper 90% bound
        high = math.sqrt((pilot_n - 1) / sps.chi2.ppf(0.05, pilot_n - 1))
        wide = {k: s * high for k, s in spreads.items()}
        need.spread_high_seeds = seeds_for(atoms, wide, target, alpha, design, confidence, max(pilot_n, 2))[0]
        need.drivers.append(f"pilot n={pilot_n}: its spread may be up to {high:.2g}x larger (90% bound), which would "
                            f"take {need.spread_high_seeds or f'over {MAX_MORE_SEEDS}'} seeds per arm")
    if need.seeds is None:
        need.drivers.insert(0, f"even {MAX_MORE_SEEDS} seeds per arm give under {target:.0%} chance of a verdict: "
                            "the estimate sits too near the threshold for this spread")


def cost(loaded: LoadedStudy, results: Results, seeds: dict[str, int]) -> dict[str, Any]:
    """What running these arms at these seeds each costs (the pilot's runs included),
    scheduled at the study's parallelism, against the budget."""
    compiler = Compiler(loaded)
    runs = []
    for arm, n in seeds.items():
        if arm in compiler.arms and compiler.arms[arm].runs:
            stage = (results.arms[arm].stage if arm in results.arms else None) or next(iter(loaded.study.stages), "main")
            runs += [compiler.make_run(arm, stage, seed) for seed in range(n)]
    wall = packing.schedule(runs, list(dict.fromkeys(r.stage for r in runs)), loaded.study.budget.parallel or 1,
                            None) if runs else 0.0
    totals = {"runs": len(runs), "usd": round(sum(r.est_usd for r in runs), 4),
              "gpu_hours": round(sum(r.gpu_hours for r in runs), 4), "wall_hours": round(wall, 4)}
    return {**totals, "budget": budget_check(loaded.study, totals)}


def seeds_needed(loaded: LoadedStudy, results: Results, target: float = 0.8, design: str | None = None) -> dict[str, Any]:
    """Per hypothesis its seeds and their cost; and the study's arms each at the most
    seeds any of its hypotheses needs, with the total against the budget."""
    design = design or loaded.study.stats.design
    needs = plan_seeds(loaded, results, target, design)
    per_arm: dict[str, int] = {}
    for need in needs:
        if need.seeds is not None:
            need.cost = cost(loaded, results, {arm: need.seeds for arm in need.arms})
            for arm in need.arms:
                per_arm[arm] = max(per_arm.get(arm, 0), need.seeds)
    return {"design": design, "target": target, "confidence": loaded.study.stats.confidence,
            "hypotheses": [n.to_dict() for n in needs], "seeds_per_arm": per_arm,
            "total": cost(loaded, results, per_arm) if per_arm else None}


def summary_lines(out: dict[str, Any]) -> list[str]:
    """`plan --seeds-needed` in words: per hypothesis its seeds and their cost, then
    (indented) what drives the figure; then every arm together against the budget."""
    design = ("confidence sequence (seeds may be added until settled)" if out["design"] == DESIGN
              else "fixed (for --until-settled: --design confidence_sequence)")
    lines = [f"seeds per arm for a {out['target']:.0%} chance of a PASS or FAIL verdict at {out['confidence']:.0%} "
             f"confidence, {design} design:"]
    for h in out["hypotheses"]:
        name, arms = h["hypothesis"], ", ".join(h["arms"])
        if h["refused"]:
            lines += [f"{name}: cannot plan: {h['refused']}"] + ([f"  hint: {h['hint']}"] if h["hint"] else [])
            continue
        if h["seeds"] is None:
            lines.append(f"{name}: more than {MAX_MORE_SEEDS} seeds per arm ({arms})")
        else:
            c = h["cost"]
            over = "" if c["budget"]["ok"] else f" (over budget: {'; '.join(c['budget']['violations'])})"
            lines.append(f"{name}: {h['seeds']} seeds per arm ({arms}): {c['runs']} runs, {money(c['usd'])}, "
                         f"{c['wall_hours'] * 60:.1f} min wall-clock, {c['gpu_hours']:.2f} GPU-h; P(verdict) "
                         f"{h['probability']:.0%} (P(PASS) {h['pass_probability']:.0%}){over}")
        lines += [f"    {text}" for text in list(h["assumptions"].values()) + h["drivers"]]
    total = out["total"]
    if total:
        arms = ", ".join(f"{a} {n}" for a, n in out["seeds_per_arm"].items())
        lines.append(f"all together ({arms} seeds): {total['runs']} runs, {money(total['usd'])}, "
                     f"{total['wall_hours'] * 60:.1f} min wall-clock, {total['gpu_hours']:.2f} GPU-h")
        lines += [f"    {v}" for v in total["budget"]["violations"] or ["within the budget"]]
    beyond = [h["hypothesis"] for h in out["hypotheses"] if h["seeds"] is None and not h["refused"]]
    if beyond:
        lines.append(f"    not counted: {', '.join(beyond)} (more than {MAX_MORE_SEEDS} seeds per arm)")
    return lines
