"""The confidence_sequence design's pieces: the boundary, its p-values, and verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from studyc.report.collect import ArmResult, Results, RunResult
from studyc.report.sequential import SequentialJudge, anytime_p, cs_multiplier, judge, seeds_to_clear
from studyc.spec.model import Study


def _study(checks: dict[str, str], design: str = "confidence_sequence") -> Study:
    return Study.model_validate({
        "study": "s", "run": {"command": "true"}, "metrics": {"x": {"goal": "min"}},
        "arms": {"a": {}, "b": {}}, "baselines": {"ref": {"x": 1.0}},
        "stats": {"design": design},
        "hypotheses": {k: {"claim": k, "check": c} for k, c in checks.items()}})


def _results(study: Study, values: dict[str, list[float]]) -> Results:
    arms = {}
    for arm, xs in values.items():
        runs = [RunResult(f"{arm}{i}", arm, "main", i, "done", None, 1, {"x": x}) for i, x in enumerate(xs)]
        arms[arm] = ArmResult(arm, "main", "runs", runs)
    return Results(study, None, ["main"], {"main": dict(arms)}, arms, ["x"])


@pytest.mark.parametrize("alpha", [0.025, 0.005])
def test_the_p_value_is_alpha_exactly_on_the_boundary(alpha):
    n = np.arange(4, 60)
    c = cs_multiplier(n, alpha)
    assert np.all(np.isfinite(c)) and np.all(np.diff(c) < 0)  # narrows as seeds come
    np.testing.assert_allclose(anytime_p(c, n), alpha, rtol=1e-9)
    assert anytime_p(-c, n).tolist() == [1.0] * len(n)  # evidence on the other side is no evidence
    assert math.isinf(cs_multiplier(1, alpha))


def test_seeds_to_clear_is_the_first_n_whose_sequence_excludes_the_margin():
    n = seeds_to_clear(sigma=1.0, margin=1.5, alpha=0.025, n_from=3)
    assert cs_multiplier(n, 0.025) / math.sqrt(n) < 1.5 <= cs_multiplier(n - 1, 0.025) / math.sqrt(n - 1)
    assert seeds_to_clear(sigma=1.0, margin=1e-6, alpha=0.025, n_from=3) is None


def test_few_seeds_give_no_verdict_where_the_fixed_design_passes():
    values = {"a": [0.50, 0.51, 0.49], "b": [0.8, 0.81, 0.79]}
    checks = {"H": "a.x <= 0.9 * ref.x"}
    fixed = _study(checks, "fixed")
    assert judge(fixed, _results(fixed, values)).all()["hypotheses"]["H"]["status"] == "PASS"
    seq = _study(checks)
    verdicts = judge(seq, _results(seq, values)).all()
    assert verdicts["hypotheses"]["H"]["status"] == "INCONCLUSIVE"  # 3 seeds: the sequence is still the whole line
    assert "± ∞" in verdicts["hypotheses"]["H"]["sentence"]
    seq = _study({"W": "within(a.x, b.x, rel=0.5)"})
    assert "[−∞, ∞]" in judge(seq, _results(seq, values)).all()["hypotheses"]["W"]["sentence"]
    assert verdicts["sequential"]["hypotheses"]["H"]["multiplier"] is None  # no infinity in verdicts.json


def test_a_one_seed_arm_leaves_a_comparison_open():
    """The other arm's spread alone must not decide a comparison with an arm of one seed."""
    study = _study({"H": "a.x <= b.x"})
    verdicts = SequentialJudge(study, _results(study, {"a": [0.1], "b": [0.9 + 0.001 * i for i in range(20)]}))
    assert verdicts.judge_hypotheses()["H"].status == "INCONCLUSIVE"


def test_a_composite_check_says_what_would_settle_it():
    study = _study({"H": "a.x <= 0.6 and b.x >= 0.7"})
    rng = np.random.default_rng(0)
    values = {"a": list(0.5 + 0.08 * rng.standard_normal(6)), "b": list(0.8 + 0.08 * rng.standard_normal(6))}
    verdict = SequentialJudge(study, _results(study, values)).judge_hypotheses()["H"]
    assert verdict.status == "INCONCLUSIVE"
    assert verdict.more_seeds and "settle it as PASS under the confidence sequence" in verdict.note


def test_a_clear_result_passes_and_reports_its_level():
    study = _study({"H": "a.x <= 0.9 * b.x", "W": "within(a.x, b.x, rel=0.5)"})
    values = {"a": [0.50 + 0.002 * i for i in range(10)], "b": [0.80 + 0.002 * i for i in range(10)]}
    verdicts = judge(study, _results(study, values)).all()
    assert verdicts["hypotheses"]["H"]["status"] == "PASS" and verdicts["hypotheses"]["W"]["status"] == "PASS"
    detail = verdicts["sequential"]["hypotheses"]["H"]
    assert detail["n"] == 10 and detail["multiplier"] == pytest.approx(cs_multiplier(10, 0.025))
    assert 0.999 < detail["level_now"] < 1  # as wide as a fixed t interval at ~99.9x%
    assert verdicts["hypotheses"]["H"]["holds_after_holm"] is True


def test_unequal_seeds_are_judged_as_wide_as_the_smaller_arm_allows():
    """An arm with many seeds must not narrow the sequence below what the paired
    construction on the smaller arm's seeds covers."""
    study = _study({"H": "a.x <= b.x"})
    rng = np.random.default_rng(1)
    b = list(1.0 + 0.1 * rng.standard_normal(6))
    equal = SequentialJudge(study, _results(study, {"a": list(0.8 + 0.1 * rng.standard_normal(6)), "b": b}))
    more = SequentialJudge(study, _results(study, {"a": list(0.8 + 0.1 * rng.standard_normal(40)), "b": b}))
    equal.judge_hypotheses(), more.judge_hypotheses()
    assert equal.details["H"]["multiplier"] == pytest.approx(cs_multiplier(6, 0.025))
    assert more.details["H"]["n"] == 6 and more.details["H"]["multiplier"] > cs_multiplier(6, 0.025)


def test_one_seed_never_settles_a_check():
    """A fixed design judges a single seed on its point; under the sequence that is no
    verdict, or --until-settled would stop at once on a one-seed study."""
    study = _study({"H": "a.x <= 0.9 * ref.x", "R": "a.x <= b.x"})
    values = {"a": [0.5], "b": [0.9]}
    fixed = _study({"H": "a.x <= 0.9 * ref.x", "R": "a.x <= b.x"}, "fixed")
    assert judge(fixed, _results(fixed, values)).all()["hypotheses"]["H"]["status"] == "PASS"
    verdicts = judge(study, _results(study, values)).all()["hypotheses"]
    assert verdicts["H"]["status"] == verdicts["R"]["status"] == "INCONCLUSIVE"
    assert verdicts["H"]["leaning"] == "PASS" and "1 seed" in verdicts["H"]["note"]
