"""Verdicts on hand-made results. Every expected verdict below is computed by hand (the
arithmetic is in the comments; t quantiles from a table) or independently with scipy."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from studyc.report.collect import ArmResult, Results, RunResult
from studyc.report.judge import FAIL, INCOMPLETE, INCONCLUSIVE, PASS, Judge
from studyc.spec.model import Study

# two-sided 95% t quantiles, from a table
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 15: 2.131, 16: 2.120, 17: 2.110}


def make_study(hypotheses=None, **extra):
    data = {
        "study": "t",
        "run": {"command": "true"},
        "metrics": {"m": {"goal": "min"}, "acc": {"goal": "max"}},
        "baselines": {"base": {"m": 0.06}},
        "arms": {"a": {}, "b": {}, "c": {}},
        "hypotheses": {k: {"claim": k, "check": v} for k, v in (hypotheses or {}).items()},
    }
    data.update(extra)
    return Study.model_validate(data)


def make_results(study, arms, statuses=None, stage="main", stages=None):
    """``arms``: name -> values of m (acc = 1 - m, so the two are paired); ``stages``:
    stage -> arms, for studies with stages."""
    statuses = statuses or {}
    stages = stages or {stage: arms}
    by_stage = {}
    for stage_name, stage_arms in stages.items():
        by_stage[stage_name] = {}
        for name, values in stage_arms.items():
            runs = []
            for i, v in enumerate(values):
                status = statuses.get((name, i), "done")
                runs.append(RunResult(f"{stage_name}-{name}{i}", name, stage_name, i, status,
                                      None if status in ("done", "queued") else "crashed", 1, {"m": v, "acc": 1 - v}))
            by_stage[stage_name][name] = ArmResult(name, stage_name, "runs", runs)
    latest = {}
    for stage_arms in by_stage.values():
        latest.update(stage_arms)
    return Results(study, None, list(by_stage), by_stage, latest, ["m", "acc"])


def _with_method(extra, method):
    return {**extra, "stats": {**extra.get("stats", {}), "method": method}}


def verdict(check, arms, statuses=None, t_only=False, **extra):
    """The verdict (by the study's method, t by default). Every case is judged by both
    methods and must get the same status, unless ``t_only``: a case that pins the exact
    numbers of the t interval (its edges, Welch df, the p-values scipy gives), where the
    bootstrap's narrower interval at n=3 legitimately differs."""
    out = {}
    for method in ("t",) if t_only else ("t", "bootstrap"):
        study = make_study({"H": check}, **_with_method(extra, method))
        out[method] = Judge(study, make_results(study, arms, statuses)).judge_hypotheses()["H"]
    assert len({v.status for v in out.values()}) == 1, {m: (v.status, v.sentence) for m, v in out.items()}
    return out[extra.get("stats", {}).get("method", "t")]


def _statuses(verdicts):
    return ({k: v["status"] for k, v in verdicts["hypotheses"].items()},
            {s: {a: g["status"] for a, g in st["gates"].items()} for s, st in verdicts["stages"].items()},
            {k: v["status"] for k, v in verdicts["tiers"].items()}, verdicts["decision"]["then"])


def judged(hypotheses, arms, t_only=False, **extra):
    out = {}
    for method in ("t",) if t_only else ("t", "bootstrap"):
        study = make_study(hypotheses, **_with_method(extra, method))
        out[method] = Judge(study, make_results(study, arms)).all()
    assert len({repr(_statuses(v)) for v in out.values()}) == 1, {m: _statuses(v) for m, v in out.items()}
    return out[extra.get("stats", {}).get("method", "t")]


# ------------------------------------------------------------------ thresholds


def test_pass_when_the_whole_interval_satisfies_the_threshold():
    # mean 0.052, sd 0.002, se 0.0011547, half-width 4.303 * se = 0.00497: [0.0470, 0.0570] <= 0.06
    v = verdict("a.m <= base.m", {"a": [0.050, 0.052, 0.054]})
    assert v.status == PASS
    assert v.sentence == "a.m = 0.052 ± 0.005 (n=3), needs ≤ base.m = 0.06"
    assert v.observed["ci"] == pytest.approx([0.052 - 0.00497, 0.052 + 0.00497], abs=2e-5)


def test_fail_when_the_whole_interval_violates_it():
    # mean 0.071, se 0.000577, half-width 0.00248: [0.0685, 0.0735], all above 0.06
    assert verdict("a.m <= base.m", {"a": [0.070, 0.071, 0.072]}).status == FAIL


def test_inconclusive_when_the_interval_straddles():
    # mean 0.059, sd sqrt(13e-6) = 0.003606, se 0.002082, half-width 0.00896: [0.0500, 0.0680]
    v = verdict("a.m <= base.m", {"a": [0.055, 0.060, 0.062]})
    assert v.status == INCONCLUSIVE and v.leaning == PASS


@pytest.mark.parametrize("threshold, status", [
    # [1, 2, 3]: mean 2, sd 1, half-width 4.303 / sqrt(3) = 2.4843: the interval is [-0.4843, 4.4843]
    (4.486, PASS), (4.482, INCONCLUSIVE), (-0.482, INCONCLUSIVE), (-0.486, FAIL)])
def test_interval_edges_are_the_t_interval_of_the_mean(threshold, status):
    assert verdict(f"a.m <= {threshold}", {"a": [1.0, 2.0, 3.0]}, t_only=True).status == status


@pytest.mark.parametrize("check, status", [
    ("a.m >= -0.486", PASS), ("a.m >= -0.482", INCONCLUSIVE), ("a.m >= 4.486", FAIL),
    ("a.m > -0.486", PASS), ("a.m < 4.486", PASS)])
def test_greater_than_mirrors_less_than(check, status):
    assert verdict(check, {"a": [1.0, 2.0, 3.0]}, t_only=True).status == status


@pytest.mark.parametrize("check, status", [
    ("a.m <= 0.5", PASS), ("a.m < 0.5", FAIL), ("a.m >= 0.5", PASS), ("a.m > 0.5", FAIL),
    ("a.m == 0.5", PASS), ("a.m != 0.5", FAIL)])
def test_boundary_is_inclusive_for_le_and_exclusive_for_lt(check, status):
    assert verdict(check, {"a": [0.5]}).status == status


def test_n_equal_one_is_judged_on_the_point_and_says_so():
    # 1.05 * 0.06 = 0.063
    v = verdict("a.m <= 1.05 * base.m", {"a": [0.0629]})
    assert v.status == PASS and "(n=1)" in v.sentence and "±" not in v.sentence
    assert verdict("a.m <= 1.05 * base.m", {"a": [0.0631]}).status == FAIL


@pytest.mark.parametrize("value, status", [(0.0539, PASS), (0.0541, FAIL)])
def test_relative_improvement_over_a_baseline(value, status):
    # at least 10% better than 0.06: <= 0.054
    assert verdict("a.m <= 0.90 * base.m", {"a": [value]}).status == status


def test_the_threshold_reads_as_the_seed_states_it():
    # seed 000: 1.05 * 0.0577 = 0.060585 -> 0.0606; 0.90 * 0.0596 = 0.05364 -> 0.0536
    extra = {"baselines": {"u128": {"m": 0.0577}, "u256": {"m": 0.0596}}}
    h1 = verdict("a.m <= 1.05 * u128.m", {"a": [0.0591, 0.0595, 0.0587]}, **extra)
    h2 = verdict("a.m <= 0.90 * u256.m", {"a": [0.051, 0.052, 0.0505]}, **extra)
    assert h1.observed["threshold_text"] == "≤ 0.0606" and h2.observed["threshold_text"] == "≤ 0.0536"
    assert h1.sentence.endswith("needs ≤ 1.05 * u128.m = 0.0606")


def test_threshold_gets_more_digits_when_three_would_misorder():
    # 0.05364 at 3 digits is 0.0536, below an observed 0.05362; 4 digits keep the order
    v = verdict("a.m <= 0.05364", {"a": [0.05362]})
    assert v.status == PASS and v.sentence.endswith("needs ≤ 0.05364")


# ------------------------------------------------------------------ two arms (Welch)


def test_two_arm_comparison_is_a_welch_test():
    # a = [1, 2, 3] (var 1), b = [5, 6, 7] (var 1): d = 4, se^2 = 2/3, Welch df = (4/9) / (2 * (1/9)^2 / 2) = 4,
    # half-width 2.776 * 0.8165 = 2.267: [1.733, 6.267] > 0
    a, b = [1.0, 2.0, 3.0], [5.0, 6.0, 7.0]
    v = verdict("a.m < b.m", {"a": a, "b": b})
    assert v.status == PASS
    assert v.observed["df"] == pytest.approx(4.0)
    assert v.observed["difference_ci"] == pytest.approx([4 - T95[4] * math.sqrt(2 / 3), 4 + T95[4] * math.sqrt(2 / 3)],
                                                        abs=1e-3)
    welch = stats.ttest_ind(b, a, equal_var=False, alternative="greater")
    assert v.p == pytest.approx(welch.pvalue, rel=1e-6)
    assert "Welch df 4.0" in v.sentence


def test_welch_with_unequal_spread_is_inconclusive():
    # b = [4, 6, 8] (var 4): se^2 = 1/3 + 4/3, df = (25/9) / ((1/9 + 16/9) / 2) = 50/17
    a, b = [1.0, 2.0, 3.0], [4.0, 6.0, 8.0]
    half = stats.t.ppf(0.975, 50 / 17) * math.sqrt(5 / 3)
    assert 4 - half < 0  # so the interval of b - a straddles 0
    v = verdict("a.m < b.m", {"a": a, "b": b}, t_only=True)
    assert v.status == INCONCLUSIVE
    assert v.observed["df"] == pytest.approx(50 / 17)
    assert v.observed["difference_ci"] == pytest.approx([4 - half, 4 + half], rel=1e-6)


# ------------------------------------------------------------------ equivalence


def delta_rel(a, b):
    """(mean a - mean b) / mean b and its variance by the delta method, by hand:
    var = var_a / b^2 + var_b * a^2 / b^4, with Welch-Satterthwaite df."""
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    va, vb = stats.tvar(a) / len(a), stats.tvar(b) / len(b)
    ca, cb = va / mb**2, vb * ma**2 / mb**4
    df = (ca + cb) ** 2 / (ca**2 / (len(a) - 1) + cb**2 / (len(b) - 1))
    return ma / mb - 1, math.sqrt(ca + cb), df


@pytest.mark.parametrize("a, b, status", [
    ([0.100, 0.101], [0.100, 0.1005], PASS),
    ([0.120, 0.121], [0.100, 0.1005], FAIL),
    ([0.09, 0.12], [0.100, 0.101], INCONCLUSIVE)])
def test_within_rel_is_an_equivalence_test_on_the_relative_difference(a, b, status):
    q, se, df = delta_rel(a, b)
    half = stats.t.ppf(0.975, df) * se
    v = verdict("within(a.m, b.m, rel=0.05)", {"a": a, "b": b})
    assert v.status == status
    assert v.observed["ci"] == pytest.approx([q - half, q + half], rel=1e-6)


@pytest.mark.parametrize("a, bound, status", [(1.25, 0.5, PASS), (1.5, 0.5, PASS), (1.5, 0.25, FAIL)])
def test_within_abs_with_one_seed_includes_its_bound(a, bound, status):
    assert verdict(f"within(a.m, b.m, abs={bound})", {"a": [a], "b": [1.0]}).status == status


def test_an_arm_is_equivalent_to_itself_because_its_runs_are_shared():
    # (a - a) / a is exactly 0 with no variance: the same runs on both sides
    v = verdict("within(a.m, a.m, rel=0.01)", {"a": [0.05, 0.07, 0.06]})
    assert v.status == PASS and v.observed["ci"] == [0.0, 0.0]


def test_two_metrics_of_the_same_runs_are_paired():
    # acc - m = 1 - 2m = [0.90, 0.88, 0.86]: mean 0.88, sd 0.02, half-width 4.303 * 0.011547 = 0.0497: [0.8303, 0.9297].
    # Taken as independent samples it would be [0.857, 0.903] and pass 0.835.
    assert verdict("a.acc - a.m >= 0.835", {"a": [0.05, 0.06, 0.07]}, t_only=True).status == INCONCLUSIVE
    assert verdict("a.acc - a.m >= 0.829", {"a": [0.05, 0.06, 0.07]}).status == PASS


# ------------------------------------------------------------------ missing data


@pytest.mark.parametrize("arms, statuses, why", [
    ({"a": [0.01, math.nan]}, None, "1 of 2 gave NaN or did not log it"),
    ({"a": [0.01, 0.02]}, {("a", 1): "failed"}, "1 of 2 failed (crashed)"),
    ({"a": [0.01, 0.02]}, {("a", 1): "queued"}, "1 of 2 queued"),
    ({"a": [0.01, 0.02]}, {("a", 0): "skipped"}, "1 of 2 skipped"),
    ({"a": []}, None, "a.m: no runs"),
    ({"b": [0.01]}, None, "a.m: no results")])
def test_missing_failed_or_nan_runs_are_incomplete_and_say_why(arms, statuses, why):
    v = verdict("a.m <= 1", arms, statuses)
    assert v.status == INCOMPLETE and why in v.sentence and v.p is None


def test_incomplete_never_passes():
    arms = {"a": [0.05]}
    assert verdict("not zz.m <= 1", arms).status == INCOMPLETE
    assert verdict("a.m <= 0.06 and zz.m <= 1", arms).status == INCOMPLETE
    assert verdict("within(a.m, zz.m, rel=0.5)", arms).status == INCOMPLETE
    assert verdict("a.m / (a.m - a.m) <= 1", arms).status == INCOMPLETE  # division by zero


def test_three_valued_logic():
    arms = {"a": [0.05], "b": [0.07]}
    assert verdict("a.m <= 0.06 and b.m <= 0.06", arms).status == FAIL
    assert verdict("a.m <= 0.06 or b.m <= 0.06", arms).status == PASS
    assert verdict("not b.m <= 0.06", arms).status == PASS
    assert verdict("b.m <= 0.06 and zz.m <= 1", arms).status == FAIL  # false whatever the missing side says
    assert verdict("0.03 <= a.m <= 0.055", arms).status == PASS
    assert verdict("0.03 <= b.m <= 0.055", arms).status == FAIL


# ------------------------------------------------------------------ how many more seeds


def test_more_seeds_when_the_point_is_on_the_passing_side():
    # [1, 2, 3] <= 3: margin 1, sd 1. n=6: 2.571 / sqrt(6) = 1.050; n=7: 2.447 / sqrt(7) = 0.925 < 1 -> 4 more
    v = verdict("a.m <= 3", {"a": [1.0, 2.0, 3.0]}, t_only=True)
    assert v.status == INCONCLUSIVE and v.leaning == PASS
    assert T95[5] / math.sqrt(6) > 1 > T95[6] / math.sqrt(7)
    assert v.more_seeds == 4 and "about 4 more seeds per arm would likely settle it as PASS" in v.note


def test_more_seeds_when_the_point_already_misses_the_threshold():
    # [1, 2, 3] <= 1.5: the mean 2 already misses it, margin 0.5.
    # n=17: 2.120 / sqrt(17) = 0.514; n=18: 2.110 / sqrt(18) = 0.497 < 0.5 -> 15 more
    v = verdict("a.m <= 1.5", {"a": [1.0, 2.0, 3.0]}, t_only=True)
    assert v.status == INCONCLUSIVE and v.leaning == FAIL
    assert T95[16] / math.sqrt(17) > 0.5 > T95[17] / math.sqrt(18)
    assert v.more_seeds == 15
    assert v.note.startswith("the point estimate already misses it (2 vs ≤ 1.5)") and "confirm FAIL" in v.note


def test_within_beyond_its_bound_says_so():
    # (0.11 - 0.1005) / 0.1005 = +9.5%, already outside ±5%, with a wide interval
    v = verdict("within(a.m, b.m, rel=0.05)", {"a": [0.09, 0.13], "b": [0.100, 0.101]})
    assert v.status == INCONCLUSIVE and v.leaning == FAIL
    assert "the point estimate already misses it (+9.5% is outside ±5%)" in v.note


def test_an_estimate_on_the_threshold_cannot_be_settled_by_seeds():
    # margin 0.0001 with sd 1 needs about (2 / 0.0001)^2 seeds: far beyond any advice
    v = verdict("a.m <= 2.0001", {"a": [1.0, 2.0, 3.0]})
    assert v.status == INCONCLUSIVE and v.more_seeds is None and "sits on the threshold" in v.note


# ------------------------------------------------------------------ Holm


def test_holm_adjusts_across_hypotheses():
    a, b, c = [0.050, 0.051, 0.052], [0.055, 0.058, 0.057], [0.059, 0.0585, 0.057]
    out = judged({"H1": "a.m <= 0.06", "H2": "b.m <= 0.06", "H3": "c.m <= 0.06"}, {"a": a, "b": b, "c": c}, t_only=True)
    raw = {h: stats.ttest_1samp(x, 0.06, alternative="less").pvalue for h, x in (("H1", a), ("H2", b), ("H3", c))}
    for h in raw:
        assert out["hypotheses"][h]["p"] == pytest.approx(raw[h], rel=1e-6)
    p1, p2, p3 = sorted(raw.values())
    expected = sorted([min(1, 3 * p1), max(min(1, 3 * p1), min(1, 2 * p2)), max(min(1, 3 * p1), min(1, 2 * p2), p3)])
    assert sorted(h["holm_p"] for h in out["hypotheses"].values()) == pytest.approx(expected)


def test_a_pass_that_does_not_survive_holm_is_flagged():
    # H1 passes on its own (p = 0.0186 < 0.025) but not after Holm over two (2 * 0.0186 > 0.025)
    a = [0.050, 0.053, 0.055]
    p = stats.ttest_1samp(a, 0.06, alternative="less").pvalue
    assert p < 0.025 < 2 * p
    out = judged({"H1": "a.m <= 0.06", "H2": "b.m <= 0.06"}, {"a": a, "b": [0.07]})
    assert out["hypotheses"]["H1"]["status"] == PASS and out["hypotheses"]["H1"]["holds_after_holm"] is False


# ------------------------------------------------------------------ gates, tiers, decisions, expectations, claims


def test_gates_and_promotion_rank_the_passing_candidates():
    study = make_study(stages={"round": {"gate": "m <= base.m", "promote": {"top": 1, "by": "m"}},
                               "full": {"arms": "promoted", "needs": ["round"]}})
    results = make_results(study, {}, statuses={("c", 1): "failed"},
                           stages={"round": {"a": [0.05], "b": [0.04], "c": [0.01, 0.01]}})
    judge = Judge(study, results)
    promoted, gates = judge.promote("round")
    assert {k: v.status for k, v in gates.items()} == {"a": PASS, "b": PASS, "c": INCOMPLETE}
    assert promoted == ["b"]  # c would win on its one good run, but its gate is INCOMPLETE
    assert judge.ranking("round") == [("b", 0.04), ("a", 0.05)]


def test_the_champion_is_the_best_arm_of_the_last_stage_with_results():
    study = make_study(stages={"round": {"promote": {"top": 1}}, "full": {"arms": "promoted", "needs": ["round"]}})
    results = make_results(study, {}, stages={"round": {"a": [0.05], "b": [0.04]}, "full": {"b": [0.045]}})
    assert Judge(study, results).champion == "b"
    results = make_results(study, {}, stages={"round": {"a": [0.05], "b": [0.04]}})
    assert Judge(study, results).champion == "b"


def test_tiers_stop_at_the_first_that_does_not_pass():
    study = make_study(tiers={"minimum": "champion.m <= 0.06", "target": "champion.m <= 0.045", "stretch": "champion.m <= 1"})
    out = Judge(study, make_results(study, {"a": [0.04, 0.05], "b": [0.07]})).all()
    assert out["champion"] == "a"
    # a: mean 0.045, half-width 12.706 * 0.005 = 0.0635: target is INCONCLUSIVE, so stretch does not count
    assert [t["status"] for t in out["tiers"].values()] == [INCONCLUSIVE, INCONCLUSIVE, PASS]
    assert out["tier_reached"] is None
    out = Judge(study, make_results(study, {"a": [0.04], "b": [0.07]})).all()
    assert [t["status"] for t in out["tiers"].values()] == [PASS, PASS, PASS] and out["tier_reached"] == "stretch"


def test_decision_rules_in_order():
    study = make_study({"H1": "a.m <= 0.06", "H2": "b.m <= 0.06"},
                       decision=[{"if": "H1 and H2", "then": "ship"}, {"if": "H1", "then": "tune b"}, {"else": "rethink"}])
    assert Judge(study, make_results(study, {"a": [0.05], "b": [0.07]})).all()["decision"]["then"] == "tune b"
    assert Judge(study, make_results(study, {"a": [0.07], "b": [0.07]})).all()["decision"]["then"] == "rethink"
    pending = Judge(study, make_results(study, {"a": [0.05, 0.07], "b": [0.05]})).all()["decision"]
    assert pending["status"] == "pending" and "INCONCLUSIVE" in pending["because"]


def test_count_of_criteria_for_go_investigate_debug():
    study = make_study({"H1": "a.m <= 0.06", "H2": "b.m <= 0.06", "H3": "c.m <= 0.06"},
                       decision=[{"if": "count(H1, H2, H3) == 3", "then": "go"},
                                 {"if": "count(H1, H2, H3) >= 1", "then": "investigate"}, {"else": "debug"}])

    def decide(a, b, c):
        return Judge(study, make_results(study, {"a": a, "b": b, "c": c})).all()["decision"]

    assert decide([0.05], [0.05], [0.05])["then"] == "go"
    assert decide([0.05], [0.07], [0.07])["then"] == "investigate"
    assert decide([0.07], [0.07], [0.07])["then"] == "debug"
    # two passed, one open: count is 2..3, so "== 3" is undecided
    assert decide([0.05], [0.05], [0.05, 0.07])["status"] == "pending"


def test_expectations_hit_or_miss():
    study = make_study(expect={"a": {"m": [0.04, 0.06]}, "b": {"m": [0.04, 0.06]}, "c": {"m": [None, 0.01]}},
                       arms={"a": {}, "b": {}, "c": {}, "d": {}})
    rows = Judge(study, make_results(study, {"a": [0.05], "b": [0.03, 0.035], "c": [0.02, math.nan]})).expectations()
    assert [r["status"] for r in rows] == ["hit", "miss (below)", "pending"]
    rows = Judge(study, make_results(study, {"a": [0.07], "b": [0.05], "c": [0.005]})).expectations()
    assert [r["status"] for r in rows] == ["miss (above)", "hit", "hit"]


def test_claims_are_derived_from_their_hypotheses():
    claims = {"all pass": ["H1", "H2"], "mixed": ["H1", "H3"], "all fail": ["H3"], "open": ["H4"], "pass and open": ["H1", "H4"]}
    out = judged({"H1": "a.m <= 0.06", "H2": "b.m <= 0.06", "H3": "c.m <= 0.06", "H4": "zz.m <= 1"},
                 {"a": [0.05], "b": [0.05], "c": [0.07]}, claims=claims)
    assert {k: v["status"] for k, v in out["claims"].items()} == {
        "all pass": "supported", "mixed": "partial", "all fail": "refuted", "open": "pending", "pass and open": "partial"}


def test_bootstrap_method_agrees_on_clear_cases():
    extra = {"stats": {"method": "bootstrap", "bootstrap_samples": 2000}}
    assert verdict("a.m <= 0.06", {"a": [0.050, 0.051, 0.052, 0.050]}, **extra).status == PASS
    assert verdict("a.m <= 0.06", {"a": [0.070, 0.071, 0.072, 0.070]}, **extra).status == FAIL
    v = verdict("a.m <= 0.0515", {"a": [0.050, 0.051, 0.052, 0.053]}, **extra)
    assert v.status == INCONCLUSIVE
    # the percentile interval of resampled means lies inside the sample's range
    assert 0.050 <= v.observed["ci"][0] < 0.0515 < v.observed["ci"][1] <= 0.053


def test_a_range_check_reads_from_the_measured_side():
    v = verdict("0.3 <= a.m <= 0.55", {"a": [0.45, 0.5, 0.47]})
    assert v.status == PASS
    assert v.sentence.startswith("a.m = 0.4733") and "needs ≥ 0.3" in v.sentence and "needs ≤ 0.55" in v.sentence
    assert "0.3 = 0.3" not in v.sentence


# ------------------------------------------------------------------ functions over arms (issue 13, item 3)


def test_max_passes_only_when_every_arm_interval_is_below():
    # a is tight below 0.06; b has the lower point but its interval reaches 0.062 (> 0.06):
    # max(a, b) may be above 0.06, so no PASS (it was PASS, judged on a alone)
    arms = {"a": [0.055, 0.056, 0.057], "b": [0.030, 0.045, 0.062]}
    v = verdict("max(a.m, b.m) <= 0.06", arms)
    assert v.status == INCONCLUSIVE
    assert "a.m = 0.056" in v.sentence and "b.m = 0.04567" in v.sentence
    assert verdict("max(a.m, b.m) <= 0.09", arms).status == PASS


def test_min_fails_only_when_every_arm_interval_is_above():
    # a is clearly above 0.06; b's point is higher but its interval reaches 0.05: min(a, b)
    # may be below 0.06, so no FAIL (it was FAIL, judged on a alone)
    arms = {"a": [0.070, 0.071, 0.072], "b": [0.050, 0.075, 0.100]}
    assert verdict("min(a.m, b.m) <= 0.06", arms).status == INCONCLUSIVE
    assert verdict("min(a.m, b.m) <= 0.01", arms).status == FAIL
    # and one arm clearly below is enough for a PASS, whatever the others do
    assert verdict("min(a.m, c.m) <= 0.06", {"a": [0.070, 0.071, 0.072], "c": [0.050, 0.051, 0.052]}).status == PASS


@pytest.mark.parametrize("check, status", [
    ("0.06 >= max(a.m, b.m)", INCONCLUSIVE), ("min(a.m, b.m) >= 0.05", INCONCLUSIVE), ("max(a.m, b.m) >= 0.05", PASS),
    ("min(a.m, b.m) <= 0.06", PASS), ("max(a.m, b.m) >= 0.09", FAIL), ("max(a.m, b.m) + 0 <= 0.06", INCONCLUSIVE),
    ("-max(a.m, b.m) >= -0.09", PASS), ("max(a.m, b.m) + 0 <= 0.09", PASS)])
def test_every_function_over_arms_follows_the_interval_rule(check, status):
    # the members' intervals: a [0.0535, 0.0585] and b [0.0057, 0.0856] (t); arithmetic on a
    # max() keeps its interval (exact bounds), so the rule holds through it too
    assert verdict(check, {"a": [0.055, 0.056, 0.057], "b": [0.030, 0.045, 0.062]}).status == status


def test_min_over_arms_in_a_study_metric_is_incomplete_when_an_arm_is_missing():
    v = verdict("min(a.m, b.m) <= 0.06", {"a": [0.05, 0.05], "b": [math.nan, 0.05]})
    assert v.status == PASS  # min <= a <= 0.06 whatever b is
    assert verdict("max(a.m, b.m) <= 0.06", {"a": [0.05, 0.05], "b": [math.nan, 0.05]}).status == INCOMPLETE


# ------------------------------------------------------------------ exact ties (item 4)


def test_three_seeds_exactly_on_the_threshold_are_judged_by_the_operator():
    arms = {"a": [0.7, 0.7, 0.7]}
    assert verdict("a.m >= 0.7", arms).status == PASS
    assert verdict("a.m <= 0.7", arms).status == PASS
    assert verdict("a.m > 0.7", arms).status == FAIL
    assert verdict("a.m < 0.7", arms).status == FAIL
    assert verdict("a.m == 0.7", arms).status == PASS


def test_no_value_drifts_off_its_own_threshold():
    # the 21 of 0.01..0.99 that numpy's mean moved off themselves with three seeds
    for i in range(1, 100):
        x = i / 100
        for n in (2, 3, 5):
            assert verdict(f"a.m >= {x}", {"a": [x] * n}).status == PASS, (x, n)
            assert verdict(f"a.m < {x}", {"a": [x] * n}).status == FAIL, (x, n)


def test_means_are_exact_sums():
    from studyc.report.stats import Estimate

    values = [1e16, 1.0, -1e16, 1.0]  # a naive float sum gives 0 (or 1); the exact mean is 0.5
    assert Estimate.sample(values).point == 0.5


# ------------------------------------------------------------------ p-values agree with verdicts (item 5)


def test_one_seed_has_no_p_value_and_no_holm_claim():
    out = judged({"H": "a.m <= 0.06"}, {"a": [0.05]})
    h = out["hypotheses"]["H"]
    assert h["status"] == PASS and h["p"] is None and h["holm_p"] is None and h["holds_after_holm"] is None


def test_a_strict_fail_on_a_tie_has_no_p_of_zero():
    for method in ("t", "bootstrap"):
        v = verdict("a.m < 0.05", {"a": [0.05, 0.05]}, stats={"method": method})
        assert v.status == FAIL and v.p is None


CHECKS = ["a.m {op} {t}", "max(a.m, b.m) {op} {t}", "min(a.m, b.m) {op} {t}", "a.m {op} {t} and b.m {op} {t}",
          "a.m {op} {t} or b.m {op} {t}", "not (a.m {op} {t})", "a.m {op} b.m", "noworse(a.m, b.m, margin={t})",
          "abs(a.m - b.m) {op} {t}"]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=6), st.lists(st.floats(0.0, 1.0), min_size=2, max_size=6),
       st.floats(0.0, 1.0), st.sampled_from(["<=", "<", ">=", ">"]), st.sampled_from(CHECKS),
       st.sampled_from(["t", "bootstrap"]))
def test_p_values_agree_with_the_verdict(values, others, threshold, op, check, method):
    study = make_study({"H": check.format(op=op, t=repr(threshold))}, stats={"method": method, "bootstrap_samples": 400})
    v = Judge(study, make_results(study, {"a": values, "b": others})).judge_hypotheses()["H"]
    alpha = (1 - study.stats.confidence) / 2
    if v.p is None:
        return
    assert 0 < v.p <= 1 or v.status == PASS
    if v.status == PASS:
        assert v.p <= alpha
    elif v.status == FAIL:
        assert v.p >= 1 - alpha and v.p > 0


def test_bootstrap_p_comes_from_the_draws_of_its_interval():
    v = verdict("a.m <= 0.06", {"a": [0.050, 0.051, 0.052, 0.050]}, stats={"method": "bootstrap"})
    assert v.status == PASS and v.p == 0.0  # no resample's mean reaches 0.06
    v = verdict("a.m <= 0.0515", {"a": [0.050, 0.051, 0.052, 0.053]}, stats={"method": "bootstrap"})
    assert v.status == INCONCLUSIVE and 0.025 < v.p < 0.975


# ------------------------------------------------------------------ non-inferiority and point judging (item 6)


def test_noworse_with_a_margin_passes_where_le_demands_improvement():
    # mean 0.0605, half-width 4.303 * 0.000289 = 0.00124: [0.0593, 0.0617]; base 0.06 -> limit 0.063
    arms = {"a": [0.0600, 0.0605, 0.0610]}
    assert verdict("a.m <= base.m", arms, t_only=True).status == INCONCLUSIVE
    v = verdict("noworse(a.m, base.m, margin=0.05)", arms)
    assert v.status == PASS
    assert "needs no worse than base.m = 0.06 (5% margin: ≤ 0.063)" in v.sentence
    assert verdict("noworse(a.m, base.m, margin=0.05)", {"a": [0.070, 0.071, 0.072]}).status == FAIL


def test_noworse_follows_the_metric_goal():
    # acc (goal max) = 1 - m: worse is lower
    assert verdict("noworse(a.acc, b.acc)", {"a": [0.10, 0.11, 0.12], "b": [0.30, 0.31, 0.32]}).status == PASS
    assert verdict("noworse(b.acc, a.acc)", {"a": [0.10, 0.11, 0.12], "b": [0.30, 0.31, 0.32]}).status == FAIL
    assert verdict("noworse(b.acc, a.acc, margin=0.3)", {"a": [0.10, 0.11, 0.12], "b": [0.30, 0.31, 0.32]}).status == PASS


def test_point_judging_screens_on_the_point_estimate():
    study = make_study({"H": "a.m <= 0.06"})
    data = study.model_dump(by_alias=True)
    data["hypotheses"]["H"]["judge"] = "point"
    point = Study.model_validate(data)
    arms = {"a": [0.050, 0.055, 0.066]}  # mean 0.057: the interval straddles 0.06, the point does not
    assert Judge(study, make_results(study, arms)).judge_hypotheses()["H"].status == INCONCLUSIVE
    v = Judge(point, make_results(point, arms)).judge_hypotheses()["H"]
    assert v.status == PASS and v.p is None and "±" not in v.sentence


def test_gate_judge_point_on_a_stage():
    stages = {"screen": {"arms": ["a", "b"], "gate": "m <= 0.06", "gate_judge": "point", "promote": {"top": 1}},
              "final": {"arms": "promoted", "needs": ["screen"]}}
    study = make_study({}, stages=stages)
    results = make_results(study, {}, stages={"screen": {"a": [0.050, 0.055, 0.066], "b": [0.05, 0.08, 0.07]}})
    gates = Judge(study, results).gate("screen")
    assert gates["a"].status == PASS and gates["b"].status == FAIL


# ------------------------------------------------------------------ paired comparisons (item 7)


def test_paired_t_over_matched_seeds_matches_scipy():
    a = [0.050, 0.060, 0.055, 0.070]
    b = [0.052, 0.063, 0.056, 0.073]  # b is a plus 0.001..0.003: seed effects dominate
    welch = verdict("a.m < b.m", {"a": a, "b": b}, t_only=True)
    v = verdict("a.m < b.m", {"a": a, "b": b}, t_only=True, stats={"paired": True})
    assert welch.status == INCONCLUSIVE and v.status == PASS
    ref = stats.ttest_rel(b, a, alternative="greater")
    assert v.p == pytest.approx(ref.pvalue, rel=1e-6)
    diff = [y - x for x, y in zip(a, b)]
    half = stats.t.ppf(0.975, 3) * stats.sem(diff)
    assert v.observed["difference_ci"] == pytest.approx([np.mean(diff) - half, np.mean(diff) + half], rel=1e-6)
    assert "paired df 3.0" in v.sentence


def test_paired_bootstrap_resamples_seeds_together():
    a = [0.050, 0.060, 0.055, 0.070, 0.065]
    b = [0.052, 0.063, 0.056, 0.073, 0.067]
    paired = {"method": "bootstrap", "paired": True}
    assert verdict("a.m < b.m", {"a": a, "b": b}, stats={"method": "bootstrap"}).status == INCONCLUSIVE
    assert verdict("a.m < b.m", {"a": a, "b": b}, stats=paired).status == PASS


# ------------------------------------------------------------------ overflow never crashes (issue 14, item 5)


@pytest.mark.parametrize("check", ["a.m ** 400 <= 1", "10 ** 10 ** 10 > 1", "a.m * 1e308 * 10 <= 1", "a.m / 0 <= 1"])
def test_overflow_is_incomplete_not_a_crash(check):
    v = verdict(check, {"a": [10.0, 11.0]})
    assert v.status == INCOMPLETE and ("overflows or is undefined" in v.sentence or "division by zero" in v.sentence)


# ------------------------------------------------------------------ profiles (item 8)


def _profiled(profile_overlay, check="a.m <= base.m"):
    study = make_study({"H": check}, run={"command": "true", "config": {"epochs": 10}},
                       profiles={"cpu": profile_overlay})
    results = make_results(study, {"a": [0.05]})
    results.profile = "cpu"
    return Judge(study, results).judge_hypotheses()["H"]


def test_a_profile_that_shrinks_the_run_marks_full_scale_baselines():
    v = _profiled({"run": {"config": {"epochs": 1}}})
    assert v.caveat == "full-scale baseline vs cpu-scale run" and v.caveat in v.sentence
    assert _profiled({"run": {"config": {"epochs": 1}}}, "a.m <= 0.06").caveat is None  # no baseline read
    assert _profiled({"run": {"seeds": [0]}}).caveat is None  # the config is unchanged
    assert _profiled({"run": {"config": {"epochs": 1}}, "baselines": {"base": {"m": 0.2}}}).caveat is None


def test_profiles_override_baselines_and_expectations(write_study):
    from studyc.spec.loader import load

    path = write_study("""
        study: s
        run: {command: x, config: {epochs: 20}}
        metrics: {m: {goal: min}}
        baselines: {base: {m: 0.06, source: full scale}}
        arms: {a: {}}
        expect: {a: {m: [0.05, 0.07]}}
        hypotheses: {H: {claim: c, check: a.m <= base.m}}
        profiles:
          cpu:
            run: {config: {epochs: 2}}
            baselines: {base: {m: 0.2, source: the baseline re-run at cpu scale}}
            expect: {a: {m: [0.15, 0.25]}}
        """)
    study = load(path, "cpu").study
    assert study.baselines["base"].values["m"] == 0.2 and study.expect == {"a": {"m": [0.15, 0.25]}}
    results = make_results(study, {"a": [0.180, 0.181, 0.182]})
    results.profile = "cpu"
    out = Judge(study, results).all()
    assert out["hypotheses"]["H"]["status"] == PASS and out["hypotheses"]["H"]["caveat"] is None
    assert out["expectations"][0]["status"] == "hit" and out["expectations"][0]["caveat"] is None


def test_a_scaled_profile_marks_full_scale_expectations(write_study):
    from studyc.spec.loader import load

    path = write_study("""
        study: s
        run: {command: x, config: {epochs: 20}}
        metrics: {m: {goal: min}}
        arms: {a: {}}
        expect: {a: {m: [0.05, 0.07]}}
        profiles: {cpu: {run: {config: {epochs: 2}}}}
        """)
    study = load(path, "cpu").study
    results = make_results(study, {"a": [0.180, 0.181, 0.182]})
    results.profile = "cpu"
    row = Judge(study, results).expectations()[0]
    assert row["status"] == "miss (above)" and row["caveat"] == "full-scale expectation vs cpu-scale run"


@pytest.mark.parametrize("check, status", [
    # d = a - b: mean 0.002; its t interval is wide around it, so |d| may be near 0 or up to ~0.05
    ("abs(a.m - b.m) <= 0.1", PASS), ("abs(a.m - b.m) <= 0.001", INCONCLUSIVE), ("abs(a.m - b.m) >= 0.2", FAIL),
    ("abs(a.m - 1) >= 0.9", PASS), ("abs(0 - a.m) <= 0.1", PASS)])
def test_abs_follows_the_interval_rule(check, status):
    arms = {"a": [0.050, 0.060, 0.055], "b": [0.045, 0.065, 0.049]}
    assert verdict(check, arms).status == status


def test_point_judging_reaches_into_derived_figures():
    metrics = {"m": {"goal": "min"}, "acc": {"goal": "max"}, "worst": {"expr": "max(a.m, b.m)", "goal": "min"}}
    arms = {"a": [0.050, 0.055, 0.058], "b": [0.040, 0.050, 0.059]}
    study = make_study({"H": "worst <= 0.06"}, metrics=metrics)
    assert Judge(study, make_results(study, arms)).judge_hypotheses()["H"].status == INCONCLUSIVE
    data = study.model_dump(by_alias=True)
    data["hypotheses"]["H"]["judge"] = "point"
    point = Study.model_validate(data)
    v = Judge(point, make_results(point, arms)).judge_hypotheses()["H"]
    assert v.status == PASS and v.p is None


def test_how_a_check_is_judged_is_part_of_what_is_preregistered():
    from studyc.compiler.plan import checks_hash

    study = make_study({"H": "a.m <= 0.06"})
    data = study.model_dump(by_alias=True)
    data["hypotheses"]["H"]["judge"] = "point"
    assert checks_hash(Study.model_validate(data)) != checks_hash(study)
    data = study.model_dump(by_alias=True)
    data["stats"]["paired"] = True
    assert checks_hash(Study.model_validate(data)) != checks_hash(study)
