"""Properties of the statistics under the verdicts, checked against scipy."""

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from studyc.report.stats import Estimate, holm, mean_estimate, seeds_to_settle, summarize

values = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False)
samples = st.lists(values, min_size=2, max_size=12)
confidence = st.sampled_from([0.8, 0.9, 0.95, 0.99])


def spread(xs):
    return float(np.std(xs, ddof=1))


@settings(max_examples=200, deadline=None)
@given(samples, confidence)
def test_summary_is_the_t_interval_of_the_mean(xs, conf):
    assume(spread(xs) > 1e-6 * (1 + max(abs(x) for x in xs)))
    s = summarize(xs, conf)
    lo, hi = stats.t.interval(conf, len(xs) - 1, loc=np.mean(xs), scale=stats.sem(xs))
    assert s["n"] == len(xs) and s["mean"] == pytest.approx(np.mean(xs), abs=1e-9)
    assert s["std"] == pytest.approx(spread(xs), rel=1e-9)
    assert (s["ci_lo"], s["ci_hi"]) == pytest.approx((lo, hi), rel=1e-7, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(samples, samples, confidence)
def test_a_difference_of_arms_is_welchs_interval(a, b, conf):
    assume(spread(a) > 1e-3 and spread(b) > 1e-3)
    d = Estimate.sample(b, "b") - Estimate.sample(a, "a")
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(1 - (1 - conf) / 2, df) * math.sqrt(va + vb)
    assert d.df == pytest.approx(df, rel=1e-9)
    assert d.interval(conf) == pytest.approx((np.mean(b) - np.mean(a) - half, np.mean(b) - np.mean(a) + half), rel=1e-7,
                                             abs=1e-7)
    welch = stats.ttest_ind(b, a, equal_var=False, alternative="greater")
    assert d.p_above(0.0) == pytest.approx(welch.pvalue, rel=1e-6, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(samples, samples)
def test_a_ratio_follows_the_delta_method(a, b):
    mb = float(np.mean(b))
    assume(abs(mb) > 1 and spread(a) > 1e-3 and spread(b) > 1e-3)
    ma = float(np.mean(a))
    q = Estimate.sample(a, "a") / Estimate.sample(b, "b")
    var = np.var(a, ddof=1) / len(a) / mb**2 + np.var(b, ddof=1) / len(b) * ma**2 / mb**4
    assert q.point == pytest.approx(ma / mb)
    assert q.se == pytest.approx(math.sqrt(var), rel=1e-7)


@settings(max_examples=100, deadline=None)
@given(samples)
def test_a_sample_minus_itself_has_no_width(xs):
    est = Estimate.sample(xs, "runs")
    zero = est - est
    assert zero.point == 0 and zero.se == pytest.approx(0, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=3), st.floats(min_value=0, max_value=1), min_size=1, max_size=8))
def test_holm_is_monotone_and_bounded(pvalues):
    adjusted = holm(pvalues)
    assert set(adjusted) == set(pvalues)
    order = sorted(pvalues, key=pvalues.get)
    for i, key in enumerate(order):
        assert pvalues[key] <= adjusted[key] + 1e-12 and adjusted[key] <= 1.0
        assert adjusted[key] >= min(1.0, (len(order) - i) * pvalues[key]) - 1e-12
        if i:
            assert adjusted[key] >= adjusted[order[i - 1]]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=10), min_size=2, max_size=8), st.floats(min_value=0.05, max_value=5))
def test_more_seeds_is_the_fewest_that_shrink_the_interval_enough(xs, margin):
    sd = spread(xs)
    assume(sd > 1e-3)
    n = len(xs)
    k = seeds_to_settle(Estimate.sample(xs, "a"), margin, 0.95)

    def half(total):
        return stats.t.ppf(0.975, total - 1) * sd / math.sqrt(total)

    if k is None:
        assert half(n + 1000) >= margin
    else:
        assert half(n + k) < margin and (k == 1 or half(n + k - 1) >= margin)


def test_bootstrap_draws_are_reproducible_and_paired_by_runs():
    x = [0.1, 0.4, 0.2, 0.5, 0.3]
    first = mean_estimate(x, ("r1", "r2"), "bootstrap", 500)
    again = mean_estimate(x, ("r1", "r2"), "bootstrap", 500)
    assert np.array_equal(first.draws, again.draws)
    # another metric of the same runs resamples the same runs: x and 2x stay exactly proportional
    double = mean_estimate([2 * v for v in x], ("r1", "r2"), "bootstrap", 500)
    assert np.allclose(double.draws, 2 * first.draws)
    lo, hi = first.interval(0.95)
    assert min(x) <= lo <= np.mean(x) <= hi <= max(x)


def test_a_single_value_has_a_point_interval_and_no_p():
    est = Estimate.sample([0.5], "a")
    assert est.interval(0.95) == (0.5, 0.5) and est.n == 1 and not est.uncertain
    assert est.p_above(0.4) is None and est.p_above(0.6) is None  # one seed: judged on the point, p undefined
    assert summarize([0.5, math.nan], 0.95)["n"] == 1 and summarize([0.5, math.nan], 0.95)["planned"] == 2


def test_identical_values_are_their_own_mean_with_no_spread():
    for x in (0.07, 0.7, 0.29, 1e-9):
        est = mean_estimate([x, x, x], ("r1", "r2", "r3"), "bootstrap", 200)
        assert est.point == x and est.interval(0.95) == (x, x) and est.p_above(x) is None


def test_the_bootstrap_interval_and_p_come_from_the_same_draws():
    est = mean_estimate([0.1, 0.4, 0.2, 0.5, 0.3, 0.35], ("r",), "bootstrap", 1000)
    alpha = 0.025
    for t in np.linspace(0.1, 0.5, 41):
        lo, _ = est.interval(0.95)
        p = est.p_above(float(t))
        assert (lo >= t) == (p < alpha and est.point >= t), (t, lo, p)
