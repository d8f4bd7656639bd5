"""Results + Study -> Verdicts: every hypothesis, gate, promotion, tier, decision,
expectation and claim, each with the numbers behind it and a sentence.

A comparison is judged on a confidence interval (LANGUAGE.md, "Meaning of a check"):
PASS when the whole interval satisfies it, FAIL when the whole interval violates it,
INCONCLUSIVE when it straddles the threshold, INCOMPLETE when data it needs is missing.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from studyc.report.collect import ArmResult, Results
from studyc.report.stats import Estimate, holm, t_quantile
from studyc.spec import expr as E
from studyc.spec.model import Study
from studyc.spec.semantics import is_study_level

PASS, FAIL, INCONCLUSIVE, INCOMPLETE = "PASS", "FAIL", "INCONCLUSIVE", "INCOMPLETE"
_OP_TEXT = {"<=": "≤", ">=": "≥", "<": "<", ">": ">", "==": "=", "!=": "≠"}


@dataclass
class Verdict:
    status: str
    sentence: str
    p: float | None = None
    observed: dict[str, Any] | None = None
    more_seeds: int | None = None
    missing: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _and(verdicts: list[Verdict]) -> str:
    statuses = {v.status for v in verdicts}
    for status in (FAIL, INCOMPLETE, INCONCLUSIVE):
        if status in statuses:
            return status
    return PASS


def _or(verdicts: list[Verdict]) -> str:
    statuses = {v.status for v in verdicts}
    for status in (PASS, INCOMPLETE, INCONCLUSIVE):
        if status in statuses:
            return status
    return FAIL


def fmt(value: float) -> str:
    if value is None or not math.isfinite(value):
        return "NaN"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.3g}"
    return f"{value:.4g}"


def fmt_width(value: float) -> str:
    """An interval's half-width: two significant figures are all it carries."""
    if value is None or not math.isfinite(value):
        return "NaN"
    return f"{value:.2g}"


def _pct(value: float) -> str:
    return f"{value * 100:+.1f}%"


class Judge:
    def __init__(self, study: Study, results: Results):
        self.study = study
        self.results = results
        self.confidence = study.stats.confidence
        self.method = study.stats.method
        self._cache: dict[tuple, Estimate] = {}
        self._index: dict[tuple, np.ndarray] = {}
        self.hypotheses: dict[str, Verdict] = {}
        self._champion: str | None = None

    # ---------------------------------------------------------------- data

    def arm_estimate(self, arm: ArmResult | None, name: str, metric: str) -> Estimate:
        label = f"{name}.{metric}"
        if arm is None:
            return Estimate.absent(f"{label}: no results")
        key = (name, arm.stage, metric)
        if key in self._cache:
            return self._cache[key]
        values = arm.values(metric)
        est: Estimate
        if not values:
            est = Estimate.absent(f"{label}: no runs")
        elif any(not math.isfinite(v) for v in values):
            est = Estimate.absent(f"{label}: {self._why_missing(arm, metric)}")
        else:
            draws = None
            if self.method == "bootstrap" and len(values) > 1:
                draws = np.asarray(values)[self._bootstrap_index(name, arm.stage, len(values))].mean(axis=1)
            est = Estimate.sample(values, draws)
        self._cache[key] = est
        return est

    def _bootstrap_index(self, arm: str, stage: str | None, n: int) -> np.ndarray:
        key = (arm, stage, n)
        if key not in self._index:
            seed = int(hashlib.sha256(f"{arm}/{stage}".encode()).hexdigest()[:8], 16)
            rng = np.random.default_rng(seed)
            self._index[key] = rng.integers(0, n, size=(self.study.stats.bootstrap_samples, n))
        return self._index[key]

    @staticmethod
    def _why_missing(arm: ArmResult, metric: str) -> str:
        if arm.source != "runs":
            return "reused result has no value"
        counts: dict[str, int] = {}
        for run in arm.runs:
            if run.status == "done":
                key = "gave NaN or did not log it" if not math.isfinite(run.values.get(metric, math.nan)) else "done"
            elif run.status == "failed":
                key = f"failed ({run.failure})" if run.failure else "failed"
            else:
                key = run.status
            counts[key] = counts.get(key, 0) + 1
        parts = [f"{n} of {len(arm.runs)} {k}" for k, n in counts.items() if k != "done"]
        return ", ".join(parts) or "missing"

    def baseline(self, name: str, metric: str) -> Estimate:
        return Estimate.const(float(self.study.baselines[name].values[metric]))

    @property
    def champion(self) -> str | None:
        if self._champion is None:
            metric = self.study.primary_metric
            goal = self.study.metrics[metric].goal or "min"
            best = None
            for name, arm in self.results.arms.items():
                if arm.source != "runs":
                    continue
                est = self.arm_estimate(arm, name, metric)
                if est.is_missing:
                    continue
                if best is None or (est.point < best[1] if goal == "min" else est.point > best[1]):
                    best = (name, est.point)
            self._champion = best[0] if best else None
        return self._champion

    def study_metric(self, name: str) -> Estimate:
        key = ("__study__", name)
        if key not in self._cache:
            self._cache[key] = self.number(E.parse(self.study.metrics[name].expr), None)
        return self._cache[key]

    # ---------------------------------------------------------------- numbers

    def ref_number(self, ref: E.Ref, candidate: tuple[str, str] | None) -> Estimate:
        if len(ref.parts) == 1:
            name = ref.parts[0]
            if candidate is not None and name in self.study.metrics:
                arm, stage = candidate
                return self.arm_estimate(self.results.by_stage.get(stage, {}).get(arm), arm, name)
            return self.study_metric(name)
        group, metric = ref.parts
        if group in self.study.baselines:
            return self.baseline(group, metric)
        if group == "champion":
            champion = self.champion
            if champion is None:
                return Estimate.absent("champion: no arm has complete results")
            return self.arm_estimate(self.results.arms.get(champion), champion, metric)
        return self.arm_estimate(self.results.arms.get(group), group, metric)

    def number(self, node: E.Node, candidate: tuple[str, str] | None) -> Estimate:
        if isinstance(node, E.Num):
            return Estimate.const(node.value)
        if isinstance(node, E.Ref):
            return self.ref_number(node, candidate)
        if isinstance(node, E.Unary):
            return -self.number(node.operand, candidate)
        if isinstance(node, E.Binary):
            a, b = self.number(node.left, candidate), self.number(node.right, candidate)
            if node.op == "+":
                return a + b
            if node.op == "-":
                return a - b
            if node.op == "*":
                return a * b
            if node.op == "/":
                return a / b
            if node.op == "**" and not b.parts and b.draws is None:
                return a.apply(lambda x: x ** b.point, b.point * a.point ** (b.point - 1) if a.point else 0.0)
            value = E._arith(node.op, a.point, b.point)  # // % and non-constant powers: point only
            return Estimate(value, missing=a.missing + b.missing)
        if isinstance(node, E.Call):
            if node.func == "count":
                verdicts = [self.condition(arg, candidate) for arg in node.args]
                passed = sum(v.status == PASS for v in verdicts)
                open_ = sum(v.status in (INCONCLUSIVE, INCOMPLETE) for v in verdicts)
                return Estimate(float(passed), slack_hi=float(open_))
            args = [self.number(a, candidate) for a in node.args]
            if node.func == "abs":
                sign = 1.0 if args[0].point >= 0 else -1.0
                return args[0] if sign > 0 else -args[0]
            if node.func in ("min", "max"):
                pick = min if node.func == "min" else max
                return pick(args, key=lambda e: e.point)
        raise ValueError(f"not a number: {E.to_source(node)}")

    # ---------------------------------------------------------------- conditions

    def condition(self, node: E.Node, candidate: tuple[str, str] | None = None) -> Verdict:
        if isinstance(node, E.Bool):
            return Verdict(PASS if node.value else FAIL, f"{'true' if node.value else 'false'}")
        if isinstance(node, E.Ref) and len(node.parts) == 1 and node.parts[0] in self.hypotheses:
            v = self.hypotheses[node.parts[0]]
            return Verdict(v.status, f"{node.parts[0]} {v.status}", v.p, missing=v.missing)
        if isinstance(node, E.Unary):  # not
            v = self.condition(node.operand, candidate)
            flipped = {PASS: FAIL, FAIL: PASS}.get(v.status, v.status)
            return Verdict(flipped, f"not ({v.sentence})", None if v.p is None else 1 - v.p, missing=v.missing)
        if isinstance(node, E.Binary):
            parts = [self.condition(node.left, candidate), self.condition(node.right, candidate)]
            status = _and(parts) if node.op == "and" else _or(parts)
            ps = [p.p for p in parts if p.p is not None]
            p = (max(ps) if node.op == "and" else min(ps)) if len(ps) == 2 else None
            return Verdict(status, "; ".join(v.sentence for v in parts), p,
                           more_seeds=max((v.more_seeds or 0 for v in parts), default=0) or None,
                           missing=[m for v in parts for m in v.missing])
        if isinstance(node, E.Compare):
            parts = [self.compare(op, a, b, candidate)
                     for op, a, b in zip(node.ops, node.operands, node.operands[1:])]
            if len(parts) == 1:
                return parts[0]
            ps = [v.p for v in parts if v.p is not None]
            return Verdict(_and(parts), "; ".join(v.sentence for v in parts), max(ps) if ps else None,
                           missing=[m for v in parts for m in v.missing])
        if isinstance(node, E.Call):
            if node.func == "within":
                return self.within(node, candidate)
            if node.func == "isfinite":
                est = self.number(node.args[0], candidate)
                ok = math.isfinite(est.point)
                return Verdict(PASS if ok else FAIL, f"{E.to_source(node.args[0])} = {fmt(est.point)}")
            if node.func in ("all", "any"):
                parts = [self.condition(a, candidate) for a in node.args]
                status = _and(parts) if node.func == "all" else _or(parts)
                return Verdict(status, "; ".join(v.sentence for v in parts), missing=[m for v in parts for m in v.missing])
        raise ValueError(f"not a condition: {E.to_source(node)}")

    def _describe(self, node: E.Node, est: Estimate) -> str:
        text = E.to_source(node)
        if isinstance(node, E.Num):
            return text
        value = fmt(est.point)
        if est.parts or est.draws is not None:
            value += f" ± {fmt_width(est.half_width(self.confidence))}"
        if est.slack_hi or est.slack_lo:
            lo, hi = est.interval(self.confidence)
            value = f"{fmt(lo)}..{fmt(hi)}"
        if est.n is not None:
            value += f" (n={est.n})"
        return f"{text} = {value}"

    def compare(self, op: str, left: E.Node, right: E.Node, candidate: tuple[str, str] | None) -> Verdict:
        a, b = self.number(left, candidate), self.number(right, candidate)
        if a.is_missing or b.is_missing:
            missing = list(a.missing + b.missing) or [f"{E.to_source(left)} {op} {E.to_source(right)}: NaN"]
            return Verdict(INCOMPLETE, f"{E.to_source(left)} {_OP_TEXT[op]} {E.to_source(right)}: missing "
                           + "; ".join(missing), missing=missing)
        # d >= 0 (or > 0) means the comparison holds.
        if op in ("<=", "<"):
            d = b - a
        elif op in (">=", ">"):
            d = a - b
        else:
            d = a - b
        lo, hi = d.interval(self.confidence)
        if op in ("<=", ">="):
            status = PASS if lo >= 0 else FAIL if hi < 0 else INCONCLUSIVE
        elif op in ("<", ">"):
            status = PASS if lo > 0 else FAIL if hi <= 0 else INCONCLUSIVE
        elif op == "==":
            status = PASS if lo == hi == 0 else FAIL if (lo > 0 or hi < 0) else INCONCLUSIVE
        else:
            status = FAIL if lo == hi == 0 else PASS if (lo > 0 or hi < 0) else INCONCLUSIVE
        needs = fmt(b.point) if not (b.parts or b.draws is not None or b.slack_hi) else self._describe(right, b)
        sentence = f"{self._describe(left, a)}, needs {_OP_TEXT[op]} {needs}"
        p = d.p_above(0.0) if op in ("<=", ">=", "<", ">") else None
        more = self._more_seeds(d, abs(d.point), left, right) if status == INCONCLUSIVE else None
        observed = {"expr": E.to_source(left), "mean": a.point, "ci": list(a.interval(self.confidence)), "n": a.n,
                    "threshold": b.point, "difference_ci": [lo, hi]}
        return Verdict(status, sentence, p, observed, more)

    def within(self, node: E.Call, candidate: tuple[str, str] | None) -> Verdict:
        a, b = (self.number(x, candidate) for x in node.args)
        key, bound_node = node.kwargs[0]
        bound = self.number(bound_node, candidate).point
        label = f"within({E.to_source(node.args[0])}, {E.to_source(node.args[1])})"
        if a.is_missing or b.is_missing:
            missing = list(a.missing + b.missing)
            return Verdict(INCOMPLETE, f"{label}: missing " + "; ".join(missing), missing=missing)
        q = (a - b) / b if key == "rel" else a - b
        if q.is_missing:
            return Verdict(INCOMPLETE, f"{label}: {', '.join(q.missing)}", missing=list(q.missing))
        lo, hi = q.interval(self.confidence)
        status = PASS if (-bound <= lo and hi <= bound) else FAIL if (hi < -bound or lo > bound) else INCONCLUSIVE
        show = _pct if key == "rel" else fmt
        bound_text = f"±{bound * 100:g}%" if key == "rel" else f"±{fmt(bound)}"
        ns = ", ".join(f"n={e.n}" for e in (a, b) if e.n is not None)
        what = (f"({E.to_source(node.args[0])} - {E.to_source(node.args[1])}) / {E.to_source(node.args[1])}"
                if key == "rel" else f"{E.to_source(node.args[0])} - {E.to_source(node.args[1])}")
        sentence = f"{what} = {show(q.point)} [{show(lo)}, {show(hi)}]" + (f" ({ns})" if ns else "") + f", needs within {bound_text}"
        p = max(q.p_above(-bound), (-q).p_above(-bound))
        more = self._more_seeds(q, bound - abs(q.point), *node.args) if status == INCONCLUSIVE else None
        observed = {"expr": what, "mean": q.point, "ci": [lo, hi], "bound": bound, "kind": key}
        return Verdict(status, sentence, p, observed, more)

    def _more_seeds(self, d: Estimate, margin: float, *nodes: E.Node) -> int | None:
        """Seeds per arm that would shrink the interval inside the margin (same spread)."""
        ns = [self.number(r, None).n for n in nodes for r in E.refs(n) if len(r.parts) == 2]
        ns = [n for n in ns if n]
        if not ns or margin <= 0 or d.se == 0:
            return None
        n = min(ns)
        z = t_quantile(self.confidence, math.inf)
        needed = n * (z * d.se / margin) ** 2
        return max(1, math.ceil(needed - n))

    # ---------------------------------------------------------------- the study's verdicts

    def judge_hypotheses(self) -> dict[str, Verdict]:
        for name, hyp in self.study.hypotheses.items():
            self.hypotheses[name] = self.condition(E.parse(hyp.check))
        return self.hypotheses

    def gate(self, stage: str) -> dict[str, Verdict]:
        """The stage's gate for each candidate arm (PASS for all when there is no gate)."""
        spec = self.study.stages.get(stage)
        out = {}
        for arm in self.results.by_stage.get(stage, {}):
            if spec is None or spec.gate is None:
                out[arm] = Verdict(PASS, "no gate")
            else:
                out[arm] = self.condition(E.parse(spec.gate), (arm, stage))
        return out

    def promote(self, stage: str) -> tuple[list[str], dict[str, Verdict]]:
        """Arms the stage promotes: all of them (forced), or the top k of those whose gate
        passed, ranked by the promote metric."""
        spec = self.study.stages[stage]
        gates = self.gate(stage)
        if spec.promote is None:
            return [], gates
        if spec.promote == "all":
            return list(gates), gates
        metric = spec.promote.by or self.study.primary_metric
        goal = self.study.metrics[metric].goal or "min"
        ranked = []
        for arm, verdict in gates.items():
            if verdict.status != PASS:
                continue
            est = self.arm_estimate(self.results.by_stage[stage][arm], arm, metric)
            if not est.is_missing:
                ranked.append((est.point if goal == "min" else -est.point, arm))
        ranked.sort()
        return [arm for _, arm in ranked[: spec.promote.top]], gates

    def tiers(self) -> tuple[dict[str, Verdict], str | None]:
        verdicts = {name: self.condition(E.parse(check)) for name, check in self.study.tier_checks().items()}
        reached = None
        for name, verdict in verdicts.items():  # tiers are written lowest first
            if verdict.status != PASS:
                break
            reached = name
        return verdicts, reached

    def decision(self) -> dict[str, Any]:
        for i, rule in enumerate(self.study.decision):
            if rule.else_ is not None:
                return {"status": "reached", "rule": i, "then": rule.else_, "because": "no earlier rule held"}
            verdict = self.condition(E.parse(rule.if_))
            if verdict.status == PASS:
                return {"status": "reached", "rule": i, "then": rule.then, "because": f"{rule.if_}: PASS"}
            if verdict.status != FAIL:
                return {"status": "pending", "rule": i, "then": None,
                        "because": f"rule {i + 1} ({rule.if_}) is {verdict.status}: {verdict.sentence}"}
        return {"status": "none", "rule": None, "then": None, "because": "no rule applied"}

    def expectations(self) -> list[dict[str, Any]]:
        rows = []
        for arm, metrics in self.study.expect.items():
            for metric, (lo, hi) in metrics.items():
                est = self.arm_estimate(self.results.arms.get(arm), arm, metric)
                if est.is_missing:
                    status = "pending"
                elif lo is not None and est.point < lo:
                    status = "miss (below)"
                elif hi is not None and est.point > hi:
                    status = "miss (above)"
                else:
                    status = "hit"
                rows.append({"arm": arm, "metric": metric, "low": lo, "high": hi,
                             "observed": None if est.is_missing else est.point, "n": est.n, "status": status})
        return rows

    def claims(self) -> dict[str, dict[str, Any]]:
        out = {}
        for claim, hyps in self.study.claims.items():
            statuses = [self.hypotheses[h].status for h in hyps]
            if statuses and all(s == PASS for s in statuses):
                status = "supported"
            elif FAIL in statuses and PASS in statuses:
                status = "partial"
            elif FAIL in statuses:
                status = "refuted"
            elif PASS in statuses:
                status = "partial"
            else:
                status = "pending"
            out[claim] = {"status": status, "hypotheses": dict(zip(hyps, statuses))}
        return out

    def study_metrics(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name, metric in self.study.metrics.items():
            if metric.expr is None or not is_study_level(E.parse(metric.expr)):
                continue
            est = self.study_metric(name)
            lo, hi = est.interval(self.confidence) if not est.is_missing else (None, None)
            out[name] = {"expr": metric.expr, "value": None if est.is_missing else est.point, "ci": [lo, hi],
                         "unit": metric.unit, "missing": list(est.missing)}
        return out

    def all(self) -> dict[str, Any]:
        hypotheses = self.judge_hypotheses()
        adjusted = {}
        if self.study.stats.correction == "holm" and hypotheses:
            adjusted = holm({k: (v.p if v.p is not None else 1.0) for k, v in hypotheses.items()})
        alpha = 1 - self.confidence
        stages = {}
        for stage in self.results.stages:
            if stage not in self.study.stages:
                continue
            promoted, gates = self.promote(stage) if self.study.stages[stage].promote is not None else ([], self.gate(stage))
            stages[stage] = {"gates": {a: v.to_dict() for a, v in gates.items()}, "promoted": promoted}
        tiers, reached = self.tiers()
        return {
            "hypotheses": {k: {**v.to_dict(), "claim": self.study.hypotheses[k].claim, "check": self.study.hypotheses[k].check,
                               "holm_p": adjusted.get(k), "holds_after_holm": (adjusted[k] <= alpha) if k in adjusted and v.status == PASS else None}
                           for k, v in hypotheses.items()},
            "stages": stages,
            "champion": self.champion,
            "tiers": {k: v.to_dict() for k, v in tiers.items()},
            "tier_reached": reached,
            "decision": self.decision(),
            "expectations": self.expectations(),
            "claims": self.claims(),
            "derived": self.study_metrics(),
        }
