"""Results + Study -> Verdicts: every hypothesis, gate, promotion, tier, decision,
expectation and claim, each with the numbers behind it and a sentence.

A comparison is judged on a confidence interval (docs/verdicts.md): PASS when the whole
interval satisfies it, FAIL when the whole interval violates it, INCONCLUSIVE when it
straddles the threshold (with about how many more seeds would settle it), INCOMPLETE when
data it needs is missing, failed or NaN: never PASS.

Checks are evaluated by the language's one evaluator (``expr.evaluate``) in the ``Checks``
domain: numbers are Estimates, conditions Verdicts; ``Judge.lookup`` says what a name
means (an arm's estimate, its point when judging on the point, a hypothesis' verdict).
"""

from __future__ import annotations

import builtins
import math
from dataclasses import dataclass, field, fields
from typing import Any

from studyc.report import outcomes
import numpy as np

from studyc.report.collect import ArmResult, Results
from studyc.report.numbers import fmt, fmt_threshold, fmt_width, pct
from studyc.report.stats import MAX_MORE_SEEDS, Estimate, Extremum, holm, mean_estimate, seeds_to_settle
from studyc.spec import expr as E
from studyc.spec.model import Study
from studyc.spec.semantics import is_study_level

PASS, FAIL, INCONCLUSIVE, INCOMPLETE = "PASS", "FAIL", "INCONCLUSIVE", "INCOMPLETE"
OP_TEXT = {"<=": "≤", ">=": "≥", "<": "<", ">": ">", "==": "=", "!=": "≠"}


@dataclass
class Verdict:
    status: str
    sentence: str
    p: float | None = None  # one-sided p-value that the check holds (small = confident)
    observed: dict[str, Any] | None = None
    more_seeds: int | None = None  # INCONCLUSIVE: about this many more seeds per arm would settle it
    leaning: str | None = None  # INCONCLUSIVE: the side the point estimate is on (PASS or FAIL)
    note: str | None = None  # INCONCLUSIVE: what would settle it, in words
    missing: list[str] = field(default_factory=list)
    caveat: str | None = None  # e.g. "full-scale baseline vs cpu-scale run"

    def to_dict(self) -> dict[str, Any]:
        # field by field (not dataclasses.asdict, which deep-copies): a large sweep's
        # gates make thousands of these
        out = {f: getattr(self, f) for f in _VERDICT_FIELDS}
        out["observed"] = dict(self.observed) if self.observed is not None else None
        out["missing"] = list(self.missing)
        return out


_VERDICT_FIELDS = [f.name for f in fields(Verdict)]


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


def _joined(status: str, parts: list[Verdict], p: float | None) -> Verdict:
    """A verdict made of parts (and, or, all, any, chains): their sentences and notes."""
    open_ = [v for v in parts if v.status == INCONCLUSIVE]
    notes = "; ".join(v.note for v in open_ if v.note) or None
    more = max((v.more_seeds for v in open_ if v.more_seeds), default=None) if status == INCONCLUSIVE else None
    return Verdict(status, "; ".join(v.sentence for v in parts), p, more_seeds=more,
                   note=notes if status == INCONCLUSIVE else None, missing=[m for v in parts for m in v.missing])


def settle_note(d: Estimate, margin: float, leaning: str, confidence: float, beyond: str) -> tuple[int | None, str]:
    """How many more seeds per arm would settle an INCONCLUSIVE comparison, in words.
    ``margin``: the point estimate's distance to the threshold; ``beyond``: how the
    point already misses the threshold, when it does."""
    more = seeds_to_settle(d, margin, confidence)
    if more is None:
        if d.slack_lo or d.slack_hi:
            return None, "undecided because verdicts it counts are still open"
        return None, (f"the estimate sits on the threshold: even {MAX_MORE_SEEDS} more seeds per arm "
                      "would likely not settle it")
    seeds = f"about {more} more seed{'s' if more != 1 else ''} per arm"
    if leaning == PASS:
        return more, f"{seeds} would likely settle it as PASS, if the mean and spread hold"
    return more, f"the point estimate already misses it ({beyond}); {seeds} would likely confirm FAIL, if the mean and spread hold"


_FLIPPED = {"<=": ">=", ">=": "<=", "<": ">", ">": "<", "==": "==", "!=": "!="}


class Judge:
    def __init__(self, study: Study, results: Results):
        self.study = study
        self.results = results
        self.confidence = study.stats.confidence
        self._cache: dict[tuple, Estimate] = {}
        self._parsed: dict[str, E.Node] = {}
        self.hypotheses: dict[str, Verdict] = {}
        self._gates: dict[str, dict[str, Verdict]] = {}
        self._champion: tuple[str | None] | None = None

    def parse(self, text: str) -> E.Node:
        if text not in self._parsed:
            self._parsed[text] = E.parse(text)
        return self._parsed[text]

    # ---------------------------------------------------------------- data

    def arm_estimate(self, arm: ArmResult | None, name: str, metric: str) -> Estimate:
        label = f"{name}.{metric}"
        if arm is None:
            return Estimate.absent(f"{label}: no results")
        key = (id(arm), metric)
        if key not in self._cache:
            values = arm.values(metric)
            if not values:
                est = Estimate.absent(f"{label}: no runs")
            elif any(not math.isfinite(v) for v in values):
                est = Estimate.absent(f"{label}: {self._why_missing(arm, metric)}")
            else:
                stats = self.study.stats
                sample = arm.sample_key(metric)
                if stats.paired and arm.source != "reuse":
                    # matched seeds: one sample key for every arm on these seeds, so a
                    # difference pairs them (paired t; the bootstrap resamples seeds together)
                    order = sorted(range(len(arm.runs)), key=lambda i: arm.runs[i].seed)
                    values = [values[i] for i in order]
                    sample = ("seeds", tuple(arm.runs[i].seed for i in order))
                est = mean_estimate(values, sample, stats.method, stats.bootstrap_samples)
            self._cache[key] = est
        return self._cache[key]

    @staticmethod
    def _why_missing(arm: ArmResult, metric: str) -> str:
        if arm.source == "reuse":
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
        value = self.study.baselines[name].values.get(metric)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return Estimate.absent(f"{name}.{metric}: the baseline has no value")
        return Estimate.const(float(value))

    @property
    def champion(self) -> str | None:
        """The best arm by the primary metric, among the arms of the last stage that has
        complete results (a final evaluation is not compared with screening rounds)."""
        if self._champion is None:
            metric = self.study.primary_metric
            sign = -1.0 if self.study.metrics[metric].goal == "max" else 1.0
            best = None
            for stage in reversed(self.results.stages):
                for name, arm in self.results.by_stage.get(stage, {}).items():
                    est = self.arm_estimate(self.results.arms.get(name), name, metric)
                    if self.results.arms.get(name) is arm and not est.is_missing:
                        if best is None or sign * est.point < sign * best[1]:
                            best = (name, est.point)
                if best is not None:
                    break
            self._champion = (best[0] if best else None,)
        return self._champion[0]

    def study_metric(self, name: str, point: bool = False) -> Estimate:
        key = ("__study__", name, point)
        if key not in self._cache:
            self._cache[key] = self.evaluate(self.parse(self.study.metrics[name].expr), point=point)
        return self._cache[key]

    def goal(self, node: E.Node) -> str | None:
        """The goal of the metric an expression names (``a.x``, ``x``), if it names one."""
        if isinstance(node, E.Ref) and node.parts[-1] in self.study.metrics:
            return self.study.metrics[node.parts[-1]].goal
        return None

    # ---------------------------------------------------------------- evaluation

    def lookup(self, candidate: tuple[str, str] | None, point: bool):
        """What a name means in a check: a hypothesis' verdict, or the estimate of a metric
        (its point alone when judging on the point)."""

        def meaning(ref: E.Ref) -> Estimate | Verdict:
            if len(ref.parts) == 1 and ref.parts[0] in self.hypotheses:
                name, v = ref.parts[0], self.hypotheses[ref.parts[0]]
                return Verdict(v.status, f"{name} {v.status}", v.p, more_seeds=v.more_seeds, leaning=v.leaning,
                               note=v.note and f"{name}: {v.note}", missing=v.missing)
            est = self.ref_number(ref, candidate, point)
            return est.point_only() if point else est

        return meaning

    def evaluate(self, node: E.Node, candidate: tuple[str, str] | None = None, point: bool = False):
        """A check's value: a Verdict for a condition, an Estimate for a number."""
        return E.evaluate(node, self.lookup(candidate, point), Checks(self))

    def condition(self, node: E.Node, candidate: tuple[str, str] | None = None, point: bool = False) -> Verdict:
        verdict = self.evaluate(node, candidate, point)
        if not isinstance(verdict, Verdict):
            raise ValueError(f"not a condition: {E.to_source(node)}")
        return verdict

    def ref_number(self, ref: E.Ref, candidate: tuple[str, str] | None, point: bool = False) -> Estimate:
        if len(ref.parts) == 1:
            name = ref.parts[0]
            if candidate is not None and name in self.results.metrics:  # a gate: the candidate's metric
                arm, stage = candidate
                return self.arm_estimate(self.results.by_stage.get(stage, {}).get(arm), arm, name)
            return self.study_metric(name, point)
        group, metric = ref.parts
        if group in self.study.baselines:
            return self.baseline(group, metric)
        if group == "champion":
            champion = self.champion
            if champion is None:
                return Estimate.absent("champion: no arm has complete results")
            return self.arm_estimate(self.results.arms.get(champion), champion, metric)
        return self.arm_estimate(self.results.arms.get(group), group, metric)

    # ---------------------------------------------------------------- the study's verdicts

    def judged(self, text: str, how: str, candidate: tuple[str, str] | None = None) -> Verdict:
        """One check's verdict, judged on intervals or (``how`` = 'point') on point
        estimates, with the scale caveat when it applies."""
        node = self.parse(text)
        verdict = self.condition(node, candidate, point=how == "point")
        verdict.caveat = self.scale_caveat(node)
        if verdict.caveat:
            verdict.sentence += f" [{verdict.caveat}]"
        return verdict

    def scale_caveat(self, node: E.Node, seen: frozenset[str] = frozenset()) -> str | None:
        """Under a profile that changes the config, a check that reads a baseline the
        profile did not restate compares a full-scale number with a smaller run."""
        overlay = self._scaled_profile()
        if overlay is None:
            return None
        profile = self.results.profile
        restated = overlay.get("baselines") if isinstance(overlay.get("baselines"), dict) else {}
        for ref in E.refs(node):
            if len(ref.parts) == 2 and ref.parts[0] in self.study.baselines:
                mine = restated.get(ref.parts[0])
                if not (isinstance(mine, dict) and ref.parts[1] in mine):
                    return f"full-scale baseline vs {profile}-scale run"
            elif len(ref.parts) == 1 and ref.parts[0] not in seen:
                metric = self.study.metrics.get(ref.parts[0])  # a derived figure reading a baseline
                caveat = metric and metric.expr and self.scale_caveat(self.parse(metric.expr), seen | {ref.parts[0]})
                if caveat:
                    return caveat
        return None

    def _scaled_profile(self) -> dict[str, Any] | None:
        """The overlay of the results' profile, when it changes the config (a smaller run)."""
        overlay = self.study.profiles.get(self.results.profile) if self.results.profile else None
        return overlay if overlay and _changes_config(overlay) else None

    def judge_hypotheses(self) -> dict[str, Verdict]:
        for name, hyp in self.study.hypotheses.items():
            self.hypotheses[name] = self.judged(hyp.check, hyp.judge)
        return self.hypotheses

    def gate(self, stage: str) -> dict[str, Verdict]:
        """The stage's gate for each candidate arm (PASS for all when there is no gate)."""
        if stage not in self._gates:
            spec = self.study.stages.get(stage)
            out = {}
            for arm in self.results.by_stage.get(stage, {}):
                if spec is None or spec.gate is None:
                    out[arm] = Verdict(PASS, "no gate")
                else:
                    out[arm] = self.judged(spec.gate, spec.gate_judge, (arm, stage))
            self._gates[stage] = out
        return self._gates[stage]

    def ranking(self, stage: str) -> list[tuple[str, float]]:
        """The stage's candidates that passed the gate, best first by the promote metric."""
        spec = self.study.stages[stage]
        metric = (spec.promote.by if spec.promote not in (None, "all") else None) or self.study.primary_metric
        sign = -1.0 if self.study.metrics[metric].goal == "max" else 1.0
        ranked = []
        for arm, verdict in self.gate(stage).items():
            if verdict.status != PASS:
                continue
            est = self.arm_estimate(self.results.by_stage[stage][arm], arm, metric)
            if not est.is_missing:
                ranked.append((arm, est.point))
        return sorted(ranked, key=lambda item: sign * item[1])

    def promote(self, stage: str) -> tuple[list[str], dict[str, Verdict]]:
        """Arms the stage promotes: all of them (forced), or the top k of those whose gate
        passed, ranked by the promote metric."""
        spec = self.study.stages[stage]
        gates = self.gate(stage)
        if spec.promote is None:
            return [], gates
        if spec.promote == "all":
            return list(gates), gates
        return [arm for arm, _ in self.ranking(stage)[: spec.promote.top]], gates

    def tiers(self) -> tuple[dict[str, Verdict], str | None]:
        verdicts = {name: self.judged(self.study.tier(name).check, self.study.tier(name).judge) for name in self.study.tiers}
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
            verdict = self.condition(self.parse(rule.if_))
            if verdict.status == PASS:
                return {"status": "reached", "rule": i, "then": rule.then, "because": f"{rule.if_}: PASS"}
            if verdict.status != FAIL:
                return {"status": "pending", "rule": i, "then": None,
                        "because": f"rule {i + 1} ({rule.if_}) is {verdict.status}: {verdict.sentence}"}
        if not self.study.decision:
            return {"status": "none", "rule": None, "then": None, "because": "the study states no decision rule"}
        return {"status": "none", "rule": None, "then": None, "because": "no rule applied"}

    def expectations(self, scenario: str | None = None) -> list[dict[str, Any]]:
        """Expected ranges (the study's `expect`, or those of the named scenario) against
        the observed mean: hit, miss (below or above), or pending."""
        expect = self.study.expect if scenario is None else self.study.scenarios[scenario]
        rows = []
        overlay = self._scaled_profile()
        restated = (overlay or {}).get("expect" if scenario is None else "scenarios")  # what the profile states anew
        if scenario is not None and isinstance(restated, dict):
            restated = restated.get(scenario)
        restated = restated if isinstance(restated, dict) else {}
        for arm, metrics in expect.items():
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
                             "observed": None if est.is_missing else est.point,
                             "ci": None if est.is_missing else list(est.interval(self.confidence)),
                             "n": est.n, "status": status, "missing": list(est.missing),
                             "caveat": f"full-scale expectation vs {self.results.profile}-scale run"
                             if overlay and metric not in (restated.get(arm) or {}) else None})
        return rows

    def claims(self) -> dict[str, dict[str, Any]]:
        """supported: every hypothesis (and the claim's own check) PASS; refuted: some FAIL
        and none PASS; partial: some PASS but not all; pending: nothing decided yet."""
        out = {}
        for claim in self.study.claims:
            spec = self.study.claim(claim)
            hyps = spec.hypotheses
            statuses = [self.hypotheses[h].status for h in hyps]
            check = self.condition(self.parse(spec.check)) if spec.check else None
            if check is not None:
                statuses.append(check.status)
            if statuses and all(s == PASS for s in statuses):
                status = "supported"
            elif PASS in statuses:
                status = "partial"
            elif FAIL in statuses:
                status = "refuted"
            else:
                status = "pending"
            out[claim] = {"status": status, "hypotheses": dict(zip(hyps, statuses)), "check": None if check is None else
                          {"expr": spec.check, "status": check.status, "sentence": check.sentence}}
        return out

    def study_metrics(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name, metric in self.study.metrics.items():
            if metric.expr is None or not is_study_level(self.parse(metric.expr)):
                continue
            est = self.study_metric(name)
            lo, hi = est.interval(self.confidence) if not est.is_missing else (None, None)
            out[name] = {"expr": metric.expr, "value": None if est.is_missing else est.point, "ci": [lo, hi],
                         "unit": metric.unit, "missing": list(est.missing)}
        return out

    def all(self) -> dict[str, Any]:
        hypotheses = self.judge_hypotheses()
        adjusted: dict[str, float] = {}
        if self.study.stats.correction == "holm" and hypotheses:
            # A hypothesis without a p-value (missing data) enters the family as p = 1.
            # So does one judged without a p-value (on the point, or with no spread).
            adjusted = holm({k: (v.p if v.p is not None else 1.0) for k, v in hypotheses.items()})
        # PASS means the two-sided interval clears the threshold: a one-sided test at
        # (1 - confidence) / 2, the level the adjusted p-values are held to.
        alpha = (1 - self.confidence) / 2
        stages = {}
        for stage in self.results.stages:
            if stage not in self.study.stages:
                continue
            promoted, gates = self.promote(stage)
            stages[stage] = {"gates": {a: v.to_dict() for a, v in gates.items()}, "promoted": promoted,
                             "ranking": self.ranking(stage)}
        tiers, reached = self.tiers()
        return {
            "stats": {"confidence": self.confidence, "method": self.study.stats.method,
                      "correction": self.study.stats.correction, "alpha_one_sided": alpha},
            "hypotheses": {k: {**v.to_dict(), "claim": self.study.hypotheses[k].claim, "check": self.study.hypotheses[k].check,
                               "holm_p": adjusted.get(k) if v.p is not None else None,
                               "holds_after_holm": (adjusted[k] <= alpha) if k in adjusted and v.status == PASS
                               and v.p is not None else None}
                           for k, v in hypotheses.items()},
            "stages": stages,
            "champion": self.champion,
            "tiers": {k: v.to_dict() for k, v in tiers.items()},
            "tier_reached": reached,
            "decision": self.decision(),
            "expectations": self.expectations(),
            "claims": self.claims(),
            "scenarios": outcomes.scenarios(self.study, self.expectations),
            "smoke": outcomes.smoke_failure(self.results),
            "derived": self.study_metrics(),
        }


class Checks(E.Domain):
    """The study language over estimates and verdicts: numbers are Estimates (a point with
    its interval), conditions are Verdicts."""

    def __init__(self, judge: Judge):
        self.judge = judge
        self.confidence = judge.confidence

    # ---------------------------------------------------------------- numbers

    def const(self, node: E.Num | E.Bool):
        if isinstance(node, E.Bool):
            return Verdict(PASS if node.value else FAIL, "true" if node.value else "false")
        return Estimate.const(node.value)

    def neg(self, value: Estimate, node: E.Unary) -> Estimate:
        return -value

    def arith(self, op: str, a: Estimate, b: Estimate, node: E.Binary) -> Estimate:
        try:
            with np.errstate(all="ignore"):
                if op in _LINEAR:
                    result = _LINEAR[op](a, b)
                elif op == "**" and not b.uncertain and not b.is_missing and a.point > 0:
                    power = b.point
                    result = a.apply(lambda x: x ** power, power * a.point ** (power - 1))
                else:  # // % and other powers: the point only
                    result = Estimate(E.arith(op, a.point, b.point), missing=a.missing + b.missing)
        except OverflowError:
            result = Estimate(math.inf)
        if not (a.is_missing or b.is_missing or result.missing) and not math.isfinite(result.point):
            return Estimate.absent(f"{E.to_source(node)} overflows or is undefined")
        return result

    # ---------------------------------------------------------------- conditions

    def not_(self, v: Verdict, node: E.Unary) -> Verdict:
        flipped = {PASS: FAIL, FAIL: PASS}.get(v.status, v.status)
        leaning = {PASS: FAIL, FAIL: PASS}.get(v.leaning or "", None)
        return Verdict(flipped, f"not ({v.sentence})", None if v.p is None else 1 - v.p, more_seeds=v.more_seeds,
                       leaning=leaning, note=v.note, missing=v.missing)

    def logic(self, op: str, left: Verdict, right: Verdict, node: E.Binary) -> Verdict:
        return _combined(op == "and", [left, right])

    def compare(self, node: E.Compare, values: list[Estimate]) -> Verdict:
        parts = [self.pair(op, left, right, a, b) for op, left, right, a, b
                 in zip(node.ops, node.operands, node.operands[1:], values, values[1:])]
        return parts[0] if len(parts) == 1 else _combined(True, parts)

    def call(self, node: E.Call, args: list, kwargs: dict):
        func = node.func
        if func == "count":
            passed = sum(v.status == PASS for v in args)
            open_ = sum(v.status in (INCONCLUSIVE, INCOMPLETE) for v in args)
            return Estimate(float(passed), slack_hi=float(open_))
        if func in ("all", "any"):
            return _combined(func == "all", args, with_p=False)
        if func == "abs":  # max(x, -x): judged by the same rule as max()
            negated = E.Unary("-", node.args[0], node.col)
            return Extremum.of("max", [(node.args[0], args[0]), (negated, -args[0])], self.confidence)
        if func in ("min", "max"):
            return Extremum.of(func, list(zip(node.args, args)), self.confidence)
        if func == "failed":
            happened, sentence = outcomes.failed(self.judge.results, node.args[0].parts[0])
            return Verdict({True: PASS, False: FAIL, None: INCOMPLETE}[happened], sentence)
        if func == "isfinite":
            ok = math.isfinite(args[0].point)
            return Verdict(PASS if ok else FAIL, f"{E.to_source(node.args[0])} = {fmt(args[0].point)}")
        if func == "within":
            return self.within(node, *args, **kwargs)
        if func == "noworse":
            return self.noworse(node, *args, **kwargs)
        raise ValueError(f"unknown function {func}()")

    # ---------------------------------------------------------------- judging a difference

    def _value_text(self, est: Estimate, with_n: bool = True) -> str:
        """'0.0591 ± 0.0012 (n=3)': the point, the half-width of its interval, the n."""
        if est.slack_hi or est.slack_lo:
            lo, hi = est.interval(self.confidence)
            return f"{fmt(lo)}..{fmt(hi)}"
        text = fmt(est.point)
        if est.uncertain:
            text += f" ± {fmt_width(est.half_width(self.confidence))}"
        return text + (f" (n={est.n})" if with_n and est.n is not None else "")

    def _comparison_sentence(self, op: str, left: E.Node, right: E.Node, a: Estimate, b: Estimate) -> str:
        """'observed = value ± width (n), needs op threshold', told from the measured side:
        ``0.3 <= a.r`` reads as 'a.r = ..., needs ≥ 0.3'."""
        if isinstance(left, E.Num) and not isinstance(right, E.Num):
            op, left, right, a, b = _FLIPPED[op], right, left, b, a
        needs_value = fmt_threshold(b.point, a.point) if not b.uncertain else None
        if isinstance(right, E.Num):
            needs = needs_value
        elif needs_value is not None:
            needs = f"{E.to_source(right)} = {needs_value}"
        else:
            needs = f"{E.to_source(right)} = {self._value_text(b)}"
        return f"{E.to_source(left)} = {self._value_text(a)}, needs {OP_TEXT[op]} {needs}"

    def _difference_text(self, a: Estimate, b: Estimate, d: Estimate, lo: float, hi: float) -> str:
        if not (a.uncertain and b.uncertain):
            return ""
        paired = self.judge.study.stats.paired and len(d.parts) == 1 and len(a.parts) == len(b.parts) == 1
        df = f", {'paired' if paired else 'Welch'} df {d.df:.1f}" if math.isfinite(d.df) and d.draws is None else ""
        return f" (difference {fmt(d.point)} [{fmt(lo)}, {fmt(hi)}]{df})"

    def decide(self, d: Estimate, strict: bool) -> tuple[str, float, float, float | None]:
        """``d`` >= 0 (> 0 when ``strict``) means the check holds: PASS when its whole
        interval does, FAIL when none of it does; the one-sided p-value of 'it holds'
        from the same interval (or draws), undefined without statistical width."""
        lo, hi = d.interval(self.confidence)
        if strict:
            status = PASS if lo > 0 else FAIL if hi <= 0 else INCONCLUSIVE
        else:
            status = PASS if lo >= 0 else FAIL if hi < 0 else INCONCLUSIVE
        return status, lo, hi, d.p_above(0.0, strict=strict)

    def pair(self, op: str, left: E.Node, right: E.Node, a: Estimate, b: Estimate) -> Verdict:
        source = f"{E.to_source(left)} {OP_TEXT[op]} {E.to_source(right)}"
        if op not in ("==", "!="):
            for side, est in enumerate((a, b)):
                if isinstance(est, Extremum):
                    return self.distribute(op, left, right, a, b, side)
        if a.is_missing or b.is_missing:
            missing = list(a.missing + b.missing) or [f"{source}: NaN"]
            return Verdict(INCOMPLETE, f"{source}: missing " + "; ".join(missing), missing=missing)
        d = b - a if op in ("<=", "<") else a - b  # d >= 0 (or > 0) means the comparison holds
        if op in ("==", "!="):
            lo, hi = d.interval(self.confidence)
            same = PASS if lo == hi == 0 else FAIL if (lo > 0 or hi < 0) else INCONCLUSIVE
            status, p = (same if op == "==" else {PASS: FAIL, FAIL: PASS}.get(same, same)), None
        else:
            status, lo, hi, p = self.decide(d, op in ("<", ">"))
        sentence = self._comparison_sentence(op, left, right, a, b) + self._difference_text(a, b, d, lo, hi)
        threshold_text = f"{OP_TEXT[op]} " + (fmt_threshold(b.point, a.point) if not b.uncertain
                                              else f"{E.to_source(right)} ({self._value_text(b, with_n=False)})")
        return self._on_difference(
            Verdict(status, sentence, p), a, b, d, lo, hi, E.to_source(left), op, E.to_source(right), b.point,
            threshold_text, None if op in ("==", "!=") else op in ("<", ">"),
            f"{fmt(a.point)} vs {OP_TEXT[op]} {fmt_threshold(b.point, a.point)}")

    def _on_difference(self, verdict: Verdict, a: Estimate, b: Estimate, d: Estimate, lo: float, hi: float, expr: str,
                       op: str, threshold_expr: str, threshold: float, threshold_text: str, strict: bool | None,
                       beyond: str) -> Verdict:
        """``verdict`` on ``a`` against a threshold through their difference ``d`` (>= 0, or
        > 0 when ``strict``, holds; its interval ``lo``..``hi``): what was observed and, when
        INCONCLUSIVE, the side it leans to and the seeds that would settle it (none for
        ``strict`` None: == and !=)."""
        verdict.observed = {
            "expr": expr, "op": op, "mean": a.point, "ci": list(a.interval(self.confidence)), "n": a.n,
            "threshold_expr": threshold_expr, "threshold": threshold, "threshold_text": threshold_text,
            "observed_text": self._value_text(a, with_n=False),
            "difference": d.point, "difference_ci": [lo, hi], "df": d.df if a.uncertain or b.uncertain else None}
        if verdict.status == INCONCLUSIVE and strict is not None:
            verdict.leaning = PASS if (d.point > 0 if strict else d.point >= 0) else FAIL
            verdict.more_seeds, verdict.note = settle_note(d, builtins.abs(d.point), verdict.leaning, self.confidence,
                                                           beyond)
        return verdict

    def distribute(self, op: str, left: E.Node, right: E.Node, a: Estimate, b: Estimate, side: int) -> Verdict:
        """A comparison with min()/max() on one side, judged member by member, so a PASS
        holds for every value the members' intervals allow: ``max(a, b) <= t`` is
        ``a <= t and b <= t``; ``min(a, b) <= t`` is ``a <= t or b <= t``."""
        ext = a if side == 0 else b
        below = (op in ("<=", "<")) == (side == 0)  # the extremum must stay below the other side
        every = (ext.kind == "max") == below
        parts = [self.pair(op, node, right, est, b) if side == 0 else self.pair(op, left, node, a, est)
                 for node, est in ext.members]
        return _combined(every, parts)

    def within(self, node: E.Call, a: Estimate, b: Estimate, rel: Estimate | None = None,
               abs: Estimate | None = None) -> Verdict:  # noqa: A002 (the language's keyword)
        """An equivalence test: the interval of (a - b) / b (rel) or a - b (abs) inside ±bound."""
        kind = "rel" if rel is not None else "abs"
        bound = (rel if rel is not None else abs).point
        first, second = (E.to_source(x) for x in node.args)
        what = f"({first} - {second}) / {second}" if kind == "rel" else f"{first} - {second}"
        if a.is_missing or b.is_missing:
            missing = list(a.missing + b.missing)
            return Verdict(INCOMPLETE, f"within({first}, {second}): missing " + "; ".join(missing), missing=missing)
        q = (a - b) / b if kind == "rel" else a - b
        if q.is_missing:
            return Verdict(INCOMPLETE, f"{what}: {', '.join(q.missing)}", missing=list(q.missing))
        lo, hi = q.interval(self.confidence)
        status = PASS if (-bound <= lo and hi <= bound) else FAIL if (hi < -bound or lo > bound) else INCONCLUSIVE
        show = pct if kind == "rel" else fmt
        bound_text = f"±{bound * 100:g}%" if kind == "rel" else f"±{fmt(bound)}"
        ns = ", ".join(f"n={e.n}" for e in (a, b) if e.n is not None)
        observed_text = f"{show(q.point)} [{show(lo)}, {show(hi)}]"
        sentence = f"{what} = {observed_text}" + (f" ({ns})" if ns else "") + f", needs within {bound_text}"
        p_low, p_high = q.p_above(-bound), (-q).p_above(-bound)  # two one-sided tests
        p = None if p_low is None or p_high is None else max(p_low, p_high)
        verdict = Verdict(status, sentence, p, {"expr": what, "kind": kind, "mean": q.point, "ci": [lo, hi], "bound": bound,
                                                "n": None, "observed_text": observed_text,
                                                "threshold_text": f"within {bound_text}"})
        if status == INCONCLUSIVE:
            verdict.leaning = PASS if builtins.abs(q.point) <= bound else FAIL
            beyond = f"{show(q.point)} is outside {bound_text}"
            verdict.more_seeds, verdict.note = settle_note(q, builtins.abs(bound - builtins.abs(q.point)), verdict.leaning,
                                                           self.confidence, beyond)
        return verdict

    def noworse(self, node: E.Call, a: Estimate, b: Estimate, margin: Estimate | None = None) -> Verdict:
        """Non-inferiority: ``a`` is not worse than ``b`` by more than ``margin`` (a fraction
        of ``b``), "worse" by the metric's goal. PASS when the whole interval of the
        difference is within the margin, FAIL when all of it is beyond it."""
        first, second = (E.to_source(x) for x in node.args)
        m = margin.point if margin is not None else 0.0
        goal = self.judge.goal(node.args[0]) or self.judge.goal(node.args[1]) or "min"
        source = f"noworse({first}, {second}" + (f", margin={m:g})" if m else ")")
        if a.is_missing or b.is_missing:
            missing = list(a.missing + b.missing)
            return Verdict(INCOMPLETE, f"{source}: missing " + "; ".join(missing), missing=missing)
        looser = (1 + m) if (goal == "min") == (b.point >= 0) else (1 - m)
        limit = b * Estimate.const(looser)  # the worst value still allowed
        d = limit - a if goal == "min" else a - limit
        status, lo, hi, p = self.decide(d, strict=False)
        op = "<=" if goal == "min" else ">="
        margin_text = f"{m * 100:g}% margin" if m else "no margin"
        limit_text = fmt_threshold(limit.point, a.point) if not limit.uncertain else self._value_text(limit, with_n=False)
        sentence = (f"{first} = {self._value_text(a)}, needs no worse than {second} = {self._value_text(b)} "
                    f"({margin_text}: {OP_TEXT[op]} {limit_text})") + self._difference_text(a, b, d, lo, hi)
        return self._on_difference(
            Verdict(status, sentence, p), a, b, d, lo, hi, first, op, f"{second} ({margin_text})", limit.point,
            f"no worse than {second} ({margin_text}: {OP_TEXT[op]} {limit_text})", False,
            f"{fmt(a.point)} vs {OP_TEXT[op]} {limit_text}")


def _changes_config(overlay: dict[str, Any]) -> bool:
    """Whether a profile's overlay sets config (of the run, an arm, a sweep or a stage)."""
    def sets(node: Any, *keys: str) -> bool:
        return isinstance(node, dict) and any(node.get(k) for k in keys)

    run, arms, stages = (overlay.get(k) if isinstance(overlay.get(k), dict) else {} for k in ("run", "arms", "stages"))
    return (sets(run, "config") or any(sets(a, "config", "grid", "zip") for a in arms.values())
            or any(sets(st, "config") for st in stages.values()))


_LINEAR = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b}


def _combined(every: bool, parts: list[Verdict], with_p: bool = True) -> Verdict:
    """and / all / chains (``every``) or or / any: an intersection-union test for and
    (the largest p), the smallest p for or; undefined when a part's p is."""
    ps = [v.p for v in parts]
    p = None
    if with_p and ps and all(x is not None for x in ps):
        p = max(ps) if every else min(ps)
    return _joined(_and(parts) if every else _or(parts), parts, p)
