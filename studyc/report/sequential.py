"""The `confidence_sequence` design: verdicts that stay valid however often seeds are
added and the study re-judged (optional stopping), so that `studyc run --until-settled`
may stop an arm's seeds as soon as its hypotheses are PASS or FAIL.

Each comparison in a check reduces to a difference d that holds where d > 0 (the same
Estimate the fixed design judges: a - b, b - a, (a - b) / b + bound, ...). The fixed
design brackets d with a t interval; this design with Lai's (1976) t confidence
sequence (the anytime-valid t-test of Wang & Ramdas 2023; the framework of Howard et al.
2021). For n Gaussian values with unknown mean and spread, the scale-invariant
likelihood ratio mixed over a N(0, 1/RHO) effect size,

    M_n = sqrt(RHO / (n + RHO)) * ((n - 1 + t^2) / (n - 1 + t^2 RHO / (n + RHO)))^(n / 2),

t the t-statistic at the true mean, is a nonnegative martingale with M_1 = 1, so by
Ville's inequality P(M_n >= 1/alpha for some n) <= alpha. Its confidence sequence is
mean ± c_n * se with c_n below; a verdict is reached when it clears the threshold. With
alpha the study's one-sided level, (1 - confidence) / 2, a false PASS (or false FAIL)
needs the sequence to miss the truth at some look, which happens with probability at
most alpha, however many looks are taken and whatever rule stops them.

Between two arms, n is the smaller arm's seed count (the paired construction pairs the
i-th seeds of both arms) and se the Welch standard error, widened to what it would be
with n seeds in every arm when their counts differ (exact when they are equal, as
--until-settled keeps them); ratios and relative bounds use the delta method's
linearisation, as in the fixed design.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from studyc.report.collect import Results
from studyc.report.judge import FAIL, INCONCLUSIVE, PASS, Judge, Verdict
from studyc.report.stats import MAX_MORE_SEEDS, Estimate, t_sf
from studyc.spec import expr as E
from studyc.spec.model import Study

DESIGN = "confidence_sequence"
# The mixture's precision over the effect size (in spreads): the boundary is tightest
# for studies of about 8 to 30 seeds per arm. Part of the design: fixed before any data.
RHO = 0.1
REFERENCE = ("Lai (1976), On confidence sequences, Ann. Statist. 4(2); Wang & Ramdas (2023), Anytime-valid t-tests "
             "and confidence sequences for Gaussian means with unknown variance, Sequential Analysis")


def cs_multiplier(n: Any, alpha: float, rho: float = RHO) -> Any:
    """c_n: the confidence sequence at n values is mean ± c_n * se; inf where it is
    still the whole line (n < 2, or too few values for this alpha). Vectorised over n."""
    n_arr = np.asarray(n, dtype=float)
    with np.errstate(all="ignore"):
        k = (np.sqrt((n_arr + rho) / rho) / alpha) ** (2 / n_arr)
        room = 1 - k * rho / (n_arr + rho)
        out = np.sqrt((k - 1) * (n_arr - 1) / room)
    out = np.where((room > 0) & (n_arr >= 2), out, np.inf)
    return float(out) if np.ndim(out) == 0 else out


def anytime_p(t: Any, n: Any, rho: float = RHO) -> Any:
    """One-sided anytime-valid p-value that the mean is above the tested value, from the
    t-statistic at it: 1 / M_n where t > 0, else 1. Valid at any stopping time."""
    t_arr, n_arr = np.asarray(t, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(all="ignore"):
        t2 = t_arr * t_arr
        log_m = 0.5 * np.log(rho / (n_arr + rho)) + n_arr / 2 * (
            np.log(n_arr - 1 + t2) - np.log(n_arr - 1 + t2 * rho / (n_arr + rho)))
        p = np.minimum(1.0, np.exp(-log_m))
    p = np.where((t_arr > 0) & (n_arr >= 2), p, 1.0)
    return float(p) if np.ndim(p) == 0 else p


def seeds_to_clear(sigma: float, margin: float, alpha: float, n_from: int, n_max: int = MAX_MORE_SEEDS) -> int | None:
    """The fewest seeds per arm N >= n_from at which a difference ``margin`` from the
    threshold clears the confidence sequence (c_N * sigma / sqrt(N) < margin), ``sigma``
    the per-seed spread of the difference; None beyond ``n_max``."""
    if margin <= 0 or not math.isfinite(sigma):
        return None
    ns = np.arange(max(n_from, 2), n_max + 1)
    ok = cs_multiplier(ns, alpha) * sigma / np.sqrt(ns) < margin
    return int(ns[np.argmax(ok)]) if ok.any() else None


def confidence_for(multiplier: float, df: float) -> float:
    """The two-sided confidence whose t critical value at ``df`` is ``multiplier``: the
    level at which a t interval is exactly the confidence sequence at this look."""
    if not math.isfinite(multiplier):
        return 1.0
    tail = t_sf(multiplier, df)  # scipy is imported only when a look needs it
    return 1.0 - 2.0 * tail


@dataclass
class Atom:
    """One comparison of a check: it holds where ``est`` > 0; ``n`` seeds per arm."""

    est: Estimate
    n: int | None
    relative: bool = False  # a relative difference (within(..., rel=))

    @property
    def uncertain(self) -> bool:
        return not self.est.is_missing and self.est.uncertain

    def sigma(self) -> float:
        return self.est.se * math.sqrt(self.n or 1)

    def multiplier(self, alpha: float) -> float:
        """c_n times how much wider the standard error would be if every sample had only
        the n seeds the sequence counts (1 when the arms have equal seeds)."""
        c = cs_multiplier(self.n or 1, alpha)
        if not math.isfinite(c) or self.est.se <= 0:
            return c
        parts = [v for v in self.est.parts.values() if len(v) > 1]
        as_if_n = sum(len(v) / (len(v) - 1) * float(np.dot(v, v)) * len(v) / self.n for v in parts)
        return c * max(1.0, math.sqrt(as_if_n) / self.est.se)


def _with_stats(study: Study, **changes: Any) -> Study:
    """The study with other stats (model_copy: a judging copy, never validated or saved)."""
    return study.model_copy(update={"stats": study.stats.model_copy(update=changes)})


class SequentialJudge(Judge):
    """A Judge whose hypotheses are judged on the confidence sequence; everything else
    (gates, tiers over the champion, decisions) is judged as in the fixed design, from
    these hypothesis verdicts. ``looks``: how often the study was judged while seeds
    were added."""

    def __init__(self, study: Study, results: Results, looks: list[dict[str, Any]] | None = None):
        super().__init__(_with_stats(study, method="t"), results)  # the sequence is a t construction
        self.declared_method = study.stats.method
        self.declared_design = study.stats.design
        self.alpha = (1 - study.stats.confidence) / 2
        self.looks = looks or []
        self.details: dict[str, dict[str, Any]] = {}
        self.arm_names = set(results.specs)

    # ---------------------------------------------------------------- the check's comparisons

    def arm_n(self, node: E.Node) -> int | None:
        """The fewest seeds with a value among the arms a node reads (None: no arm)."""
        ns = []
        for ref in E.refs(node):
            group = ref.parts[0] if len(ref.parts) == 2 else None
            if group == "champion":
                group = self.champion
            arm = self.results.arms.get(group) if group else None
            if arm is not None:
                ns.append(sum(1 for v in arm.values(ref.parts[1]) if math.isfinite(v)))
        return min(ns) if ns else None

    def _atom(self, est: Estimate, node: E.Node) -> Atom:
        n = self.arm_n(node)
        if n is None and est.parts:
            n = min(len(v) for v in est.parts.values())
        return Atom(est, n)

    def walk(self, node: E.Node) -> tuple[list[Atom], float | None]:
        """The comparisons of a check and its anytime-valid one-sided p-value (the largest
        over an `and`, the smallest over an `or`, as the fixed design combines them)."""
        if isinstance(node, E.Compare):
            atoms, ps = [], []
            for op, left, right in zip(node.ops, node.operands, node.operands[1:]):
                a, b = self.evaluate(left), self.evaluate(right)
                d = b - a if op in ("<=", "<") else a - b
                atom = self._atom(d, node)
                atoms += [atom] if op not in ("==", "!=") else [atom, self._atom(-d, node)]
                ps.append(self.p_value(atom) if op not in ("==", "!=") else None)
            return atoms, (max(ps) if None not in ps else None)
        if isinstance(node, E.Binary) and node.op in ("and", "or"):
            (la, lp), (ra, rp) = self.walk(node.left), self.walk(node.right)
            p = None if lp is None or rp is None else (max(lp, rp) if node.op == "and" else min(lp, rp))
            return la + ra, p
        if isinstance(node, E.Unary) and node.op == "not":
            return self.walk(node.operand)[0], None
        if isinstance(node, E.Ref) and len(node.parts) == 1 and node.parts[0] in self.hypotheses:
            return [], self.hypotheses[node.parts[0]].p
        if isinstance(node, E.Call) and node.func in ("all", "any"):
            parts = [self.walk(a) for a in node.args]
            ps = [p for _, p in parts]
            p = None if None in ps or not ps else (max(ps) if node.func == "all" else min(ps))
            return [a for atoms, _ in parts for a in atoms], p
        if isinstance(node, E.Call) and node.func == "within":
            a, b = (self.evaluate(x) for x in node.args)
            kind, bound_node = node.kwargs[0]
            bound = Estimate.const(self.evaluate(bound_node).point)
            q = (a - b) / b if kind == "rel" else a - b
            atoms = [self._atom(q + bound, node), self._atom(bound - q, node)]  # two one-sided tests
            for atom in atoms:
                atom.relative = kind == "rel"
            ps = [self.p_value(x) for x in atoms]
            return atoms, (max(ps) if None not in ps else None)
        if isinstance(node, E.Call):  # another comparison of two numbers, e.g. noworse(a.x, b.x)
            numbers = [self.evaluate(x) for x in node.args[:2]]
            if len(numbers) == 2:
                d = numbers[0] - numbers[1]
                return [self._atom(d, node), self._atom(-d, node)], None
        return [], None

    def p_value(self, atom: Atom) -> float | None:
        est = atom.est
        if est.is_missing:
            return None
        if not est.uncertain:
            return 0.0 if est.point > 0 else 1.0
        return anytime_p(est.point / est.se, atom.n or 1)

    # ---------------------------------------------------------------- verdicts

    def judge_hypotheses(self) -> dict[str, Verdict]:
        for name, hyp in self.study.hypotheses.items():
            node = self.parse(hyp.check)
            atoms, p = self.walk(node)
            open_atoms = [a for a in atoms if a.uncertain]
            multipliers = [a.multiplier(self.alpha) for a in open_atoms]
            # One level for the whole check: the widest any of its comparisons needs.
            level = max((confidence_for(c, a.est.df) for c, a in zip(multipliers, open_atoms)),
                        default=self.confidence)
            judge = Judge(_with_stats(self.study, confidence=level), self.results)
            judge.hypotheses = dict(self.hypotheses)  # earlier verdicts, for checks that name them
            verdict = judge.condition(node)
            verdict.p = p
            if verdict.status in (PASS, FAIL) and any(a.n is not None and a.n < 2 for a in atoms):
                # One seed has no spread to bound: the fixed design judges its point, a sequence cannot.
                verdict.leaning, verdict.status, verdict.p = verdict.status, INCONCLUSIVE, None
                verdict.note = "an arm has 1 seed: the confidence sequence needs at least 2 (4 for a finite width)"
            elif verdict.status == INCONCLUSIVE:
                verdict.more_seeds, verdict.note = self.settle(atoms, verdict.leaning)
            self.hypotheses[name] = verdict
            ns = [a.n for a in atoms if a.n is not None]
            widest = max(multipliers, default=math.nan)
            self.details[name] = {  # JSON-clean: no infinity
                "n": min(ns) if ns else None, "multiplier": widest if math.isfinite(widest) else None,
                "level_now": level if multipliers else None, "anytime_p": p, "arms": self.arms_of(node)}
        return self.hypotheses

    def settle(self, atoms: list[Atom], leaning: str | None) -> tuple[int | None, str]:
        """About how many more seeds per arm would settle an open check, if the mean and
        spread hold: PASS needs every comparison clear, FAIL one failing comparison."""
        if leaning is None:  # a composite check: the side its comparisons' estimates are on
            leaning = PASS if all(a.est.point > 0 for a in atoms if a.uncertain) else FAIL
        needed = []
        for atom in atoms:
            if not atom.uncertain or atom.n is None:
                continue
            if (atom.est.point > 0) == (leaning == PASS):
                needed.append(seeds_to_clear(atom.sigma(), abs(atom.est.point), self.alpha, atom.n))
        known = [n for n in needed if n is not None]
        if not needed or (leaning == PASS and len(known) < len(needed)) or not known:
            return None, (f"the estimate sits too near the threshold: even {MAX_MORE_SEEDS} seeds per arm would "
                          "likely not settle it under the confidence sequence")
        total = max(known) if leaning == PASS else min(known)
        n_now = min(a.n for a in atoms if a.n is not None)
        more = max(total - n_now, 1)
        side = "PASS" if leaning == PASS else "FAIL"
        return more, (f"about {more} more seed{'s' if more != 1 else ''} per arm would likely settle it as {side} "
                      "under the confidence sequence, if the mean and spread hold")

    def arms_of(self, node: E.Node) -> list[str]:
        """The arms a check reads (through the hypotheses it names, too)."""
        out: list[str] = []
        for ref in E.refs(node):
            if len(ref.parts) == 1 and ref.parts[0] in self.study.hypotheses:
                out += self.arms_of(self.parse(self.study.hypotheses[ref.parts[0]].check))
            elif len(ref.parts) == 2:
                group = self.champion if ref.parts[0] == "champion" else ref.parts[0]
                if group in self.results.arms or group in self.arm_names:
                    out.append(group)
        return list(dict.fromkeys(out))

    def all(self) -> dict[str, Any]:
        out = super().all()
        out["stats"]["design"] = DESIGN
        out["sequential"] = {
            "design": DESIGN, "reference": REFERENCE, "rho": RHO, "alpha_one_sided": self.alpha,
            "declared": self.declared_design,
            "looks": len(self.looks), "method_note": None if self.declared_method == "t" else
            f"stats.method {self.declared_method} is not used for hypotheses: the confidence sequence is t-based",
            "hypotheses": {k: {**d, "status": self.hypotheses[k].status} for k, d in self.details.items()},
        }
        for name, detail in self.details.items():
            out["hypotheses"][name]["sequential"] = detail
        return out


def design_of(study: Study, looks: list[dict[str, Any]] | None) -> str:
    """The design a study is judged under: its declared one, except that results to which
    --until-settled added seeds are always judged on the confidence sequence (a fixed
    design's intervals do not hold under that optional stopping)."""
    return DESIGN if looks else study.stats.design


def judge(study: Study, results: Results, looks: list[dict[str, Any]] | None = None) -> Judge:
    """The study's judge under its design."""
    if design_of(study, looks) == DESIGN:
        return SequentialJudge(study, results, looks)
    return Judge(study, results)


def open_lines(verdicts: dict[str, Any]) -> list[dict[str, Any]]:
    """Per hypothesis: its status, current interval against the threshold, and the seeds
    spent on it (for the live display and `studyc status --json`)."""
    rows = []
    for name, h in verdicts["hypotheses"].items():
        detail = h.get("sequential") or {}
        rows.append({"hypothesis": name, "status": h["status"], "open": h["status"] not in (PASS, FAIL),
                     "interval": h["sentence"], "seeds_per_arm": detail.get("n"), "arms": detail.get("arms", []),
                     "level_now": detail.get("level_now")})
    return rows


# -------------------------------------------------------------------- the record of looks


def looks_path(store: Any, study: str, profile: str | None):
    return store.home / "sequential" / f"{study}{'@' + profile if profile else ''}.json"


def read_looks(store: Any, study: str, profile: str | None) -> list[dict[str, Any]]:
    path = looks_path(store, study, profile)
    return json.loads(path.read_text()) if path.exists() else []


def record_look(store: Any, study: str, profile: str | None, seeds: dict[str, int],
                hypotheses: list[dict[str, Any]]) -> int:
    """Append one look (seeds per arm, and open_lines: the verdicts then); returns how
    many looks there are."""
    path = looks_path(store, study, profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    looks = read_looks(store, study, profile)
    looks.append({"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seeds": seeds, "hypotheses": hypotheses})
    path.write_text(json.dumps(looks, indent=1))
    return len(looks)


def settled(status: str) -> bool:
    return status in (PASS, FAIL)
