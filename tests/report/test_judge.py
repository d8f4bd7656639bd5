"""Verdicts on hand-made results: every number here can be checked by hand."""

import math

import pytest
from scipy import stats

from studyc.report.collect import ArmResult, Results, RunResult
from studyc.report.judge import FAIL, INCOMPLETE, INCONCLUSIVE, PASS, Judge
from studyc.spec.model import Study


def make_study(hypotheses, **extra):
    data = {
        "study": "t",
        "run": {"command": "true"},
        "metrics": {"m": {"goal": "min"}, "acc": {"goal": "max"}},
        "baselines": {"base": {"m": 0.06}},
        "arms": {"a": {}, "b": {}, "c": {}},
        "hypotheses": {k: {"claim": k, "check": v} for k, v in hypotheses.items()},
    }
    data.update(extra)
    return Study.model_validate(data)


def make_results(arms, statuses=None):
    statuses = statuses or {}
    by_arm = {}
    for name, values in arms.items():
        runs = []
        for i, v in enumerate(values):
            status = statuses.get((name, i), "done")
            runs.append(RunResult(f"{name}{i}", name, "main", i, status, None if status == "done" else "crashed", 1,
                                  {"m": v, "acc": 1 - v}))
        by_arm[name] = ArmResult(name, "main", "runs", runs)
    return Results("t", None, ["main"], {"main": by_arm}, dict(by_arm), ["m", "acc"])


def verdict(check, arms, **kw):
    judge = Judge(make_study({"H": check}, **kw.pop("study_extra", {})), make_results(arms, **kw))
    return judge.judge_hypotheses()["H"]


def t_half_width(values, confidence=0.95):
    n = len(values)
    sd = stats.tstd(values)
    return stats.t.ppf(1 - (1 - confidence) / 2, n - 1) * sd / math.sqrt(n)


def test_pass_when_the_whole_interval_satisfies_the_threshold():
    v = verdict("a.m <= base.m", {"a": [0.050, 0.052, 0.054]})
    assert v.status == PASS
    assert "a.m = 0.052" in v.sentence and "(n=3)" in v.sentence and "needs ≤ 0.06" in v.sentence


def test_fail_when_the_whole_interval_violates_it():
    assert verdict("a.m <= base.m", {"a": [0.070, 0.071, 0.072]}).status == FAIL


def test_inconclusive_when_the_interval_straddles_and_says_how_many_seeds():
    v = verdict("a.m <= base.m", {"a": [0.055, 0.060, 0.062]})
    assert v.status == INCONCLUSIVE
    assert v.more_seeds is not None and v.more_seeds >= 1


def test_interval_is_the_t_interval_of_the_mean():
    values = [0.050, 0.052, 0.057]
    half = t_half_width(values)
    mean = sum(values) / 3
    # threshold just above the upper end: PASS; just below: INCONCLUSIVE
    assert verdict(f"a.m <= {mean + half + 1e-6}", {"a": values}).status == PASS
    assert verdict(f"a.m <= {mean + half - 1e-6}", {"a": values}).status == INCONCLUSIVE
    assert verdict(f"a.m <= {mean - half - 1e-6}", {"a": values}).status == FAIL


def test_boundary_is_inclusive_for_le_and_exclusive_for_lt():
    assert verdict("a.m <= 0.06", {"a": [0.06]}).status == PASS
    assert verdict("a.m < 0.06", {"a": [0.06]}).status == FAIL
    assert verdict("a.m >= 0.06", {"a": [0.06]}).status == PASS


def test_n_equal_one_uses_the_point():
    v = verdict("a.m <= 1.05 * base.m", {"a": [0.0629]})  # 1.05 * 0.06 = 0.063
    assert v.status == PASS and "(n=1)" in v.sentence
    assert verdict("a.m <= 1.05 * base.m", {"a": [0.0631]}).status == FAIL


def test_relative_threshold_against_a_baseline():
    # 0.90 * 0.06 = 0.054
    assert verdict("a.m <= 0.90 * base.m", {"a": [0.0539]}).status == PASS
    assert verdict("a.m <= 0.90 * base.m", {"a": [0.0541]}).status == FAIL


def test_missing_failed_or_nan_runs_are_incomplete_never_pass():
    assert verdict("a.m <= 1", {"a": [0.01, math.nan]}).status == INCOMPLETE
    v = verdict("a.m <= 1", {"a": [0.01, 0.02]}, statuses={("a", 1): "failed"})
    assert v.status == INCOMPLETE and "failed" in v.sentence
    assert verdict("a.m <= 1", {"a": []}).status == INCOMPLETE
    assert verdict("zz.m <= 1", {"a": [0.01]}).status == INCOMPLETE


def test_within_is_an_equivalence_test():
    assert verdict("within(a.m, b.m, rel=0.05)", {"a": [0.100, 0.101], "b": [0.100, 0.1005]}).status == PASS
    assert verdict("within(a.m, b.m, rel=0.05)", {"a": [0.120, 0.121], "b": [0.100, 0.1005]}).status == FAIL
    assert verdict("within(a.m, b.m, rel=0.05)", {"a": [0.09, 0.12], "b": [0.100, 0.101]}).status == INCONCLUSIVE
    assert verdict("within(a.m, b.m, abs=0.01)", {"a": [0.105], "b": [0.100]}).status == PASS


def test_two_arm_comparison_uses_welch():
    a, b = [1.0, 1.2, 1.1, 1.3], [2.0, 2.5, 2.2]
    v = verdict("a.m < b.m", {"a": a, "b": b})
    assert v.status == PASS
    welch = stats.ttest_ind(b, a, equal_var=False, alternative="greater")
    assert v.p == pytest.approx(welch.pvalue, rel=1e-6)


def test_and_or_not_follow_three_valued_logic():
    arms = {"a": [0.05], "b": [0.07]}
    assert verdict("a.m <= 0.06 and b.m <= 0.06", arms).status == FAIL
    assert verdict("a.m <= 0.06 or b.m <= 0.06", arms).status == PASS
    assert verdict("not b.m <= 0.06", arms).status == PASS
    assert verdict("a.m <= 0.06 and zz.m <= 1", arms).status == INCOMPLETE
    assert verdict("b.m <= 0.06 and zz.m <= 1", arms).status == FAIL  # false whatever the missing side says


def test_chained_comparison_is_a_range():
    assert verdict("0.3 <= a.m <= 0.55", {"a": [0.4]}).status == PASS
    assert verdict("0.3 <= a.m <= 0.55", {"a": [0.6]}).status == FAIL


def test_holm_adjusts_across_hypotheses():
    study = make_study({"H1": "a.m <= 0.06", "H2": "b.m <= 0.06"})
    results = make_results({"a": [0.050, 0.051, 0.052], "b": [0.055, 0.058, 0.057]})
    out = Judge(study, results).all()
    p1, p2 = out["hypotheses"]["H1"]["p"], out["hypotheses"]["H2"]["p"]
    lo, hi = sorted([p1, p2])
    adjusted = sorted([out["hypotheses"]["H1"]["holm_p"], out["hypotheses"]["H2"]["holm_p"]])
    assert adjusted[0] == pytest.approx(min(1, 2 * lo))
    assert adjusted[1] == pytest.approx(max(min(1, 2 * lo), hi))


def test_decision_rules_in_order():
    study = make_study({"H1": "a.m <= 0.06", "H2": "b.m <= 0.06"},
                       decision=[{"if": "H1 and H2", "then": "ship"}, {"if": "H1", "then": "tune b"}, {"else": "rethink"}])
    out = Judge(study, make_results({"a": [0.05], "b": [0.07]})).all()
    assert out["decision"]["then"] == "tune b"
    out = Judge(study, make_results({"a": [0.07], "b": [0.07]})).all()
    assert out["decision"]["then"] == "rethink"
    pending = Judge(study, make_results({"a": [0.05, 0.07], "b": [0.05]})).all()
    assert pending["decision"]["status"] == "pending"


def test_count_of_criteria_for_go_investigate_debug():
    study = make_study({"H1": "a.m <= 0.06", "H2": "b.m <= 0.06", "H3": "c.m <= 0.06"},
                       decision=[{"if": "count(H1, H2, H3) == 3", "then": "go"},
                                 {"if": "count(H1, H2, H3) >= 1", "then": "investigate"}, {"else": "debug"}])
    go = Judge(study, make_results({"a": [0.05], "b": [0.05], "c": [0.05]})).all()["decision"]
    assert go["then"] == "go"
    some = Judge(study, make_results({"a": [0.05], "b": [0.07], "c": [0.07]})).all()["decision"]
    assert some["then"] == "investigate"
    none = Judge(study, make_results({"a": [0.07], "b": [0.07], "c": [0.07]})).all()["decision"]
    assert none["then"] == "debug"


def test_bootstrap_method_agrees_on_clear_cases():
    extra = {"stats": {"method": "bootstrap", "bootstrap_samples": 2000}}
    assert verdict("a.m <= 0.06", {"a": [0.050, 0.051, 0.052, 0.050]}, study_extra=extra).status == PASS
    assert verdict("a.m <= 0.06", {"a": [0.070, 0.071, 0.072, 0.070]}, study_extra=extra).status == FAIL
