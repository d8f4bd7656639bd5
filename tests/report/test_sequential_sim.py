"""The error control of the confidence_sequence design, by simulation (vectorised numpy,
seeded, no runs): studies whose true value sits exactly on the threshold are judged
after every added seed and stopped at the first verdict. Under the confidence sequence
the false PASS rate stays at or below the one-sided level; re-judging the fixed t
interval and stopping at the first PASS (the naive rule) exceeds it. A real effect
shows the seeds the sequential rule saves against a fixed design of the same maximum.

`python tests/report/test_sequential_sim.py` prints the table in docs/sequential.md.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

from studyc.report.collect import ArmResult, Results, RunResult
from studyc.report.sequential import SequentialJudge, cs_multiplier
from studyc.spec.model import Study

CONFIDENCE = 0.95
ALPHA = (1 - CONFIDENCE) / 2  # the one-sided level a PASS is held to
STUDIES, FIRST, MAX_SEEDS = 2000, 3, 20
MEAN, SPREAD = 0.06, 0.006  # an NRMSE-like metric: 10% seed-to-seed spread
TIGHT = 0.0012  # 2%: equivalence within ±5% is only within reach of 20 seeds at a tight spread


def _running(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance (ddof 1) of the first n columns, for every n: [studies, n]."""
    n = np.arange(1, x.shape[1] + 1)
    mean = np.cumsum(x, axis=1) / n
    var = (np.cumsum(x * x, axis=1) - n * mean * mean) / np.maximum(n - 1, 1)
    return mean, np.maximum(var, 0.0)


def _welch_df(v1: np.ndarray, v2: np.ndarray, n: np.ndarray) -> np.ndarray:
    total = v1 + v2
    with np.errstate(all="ignore"):
        return np.where(total > 0, total ** 2 / ((v1 * v1 + v2 * v2) / (n - 1)), np.inf)


def scenario(kind: str, shift: float, rng: np.random.Generator) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """Per look (n seeds per arm, n = 1..MAX_SEEDS): the comparisons of the check as
    (estimate, se) arrays [studies, n] that hold where estimate > 0, and their Welch df.
    ``shift``: the true value's distance past the threshold on the PASS side, in spreads
    of the difference (0: exactly on it)."""
    n = np.arange(1, MAX_SEEDS + 1)
    if kind == "threshold":  # a.x <= 0.0606: one arm against a constant
        threshold = 0.0606
        a = rng.normal(threshold - shift * SPREAD, SPREAD, (STUDIES, MAX_SEEDS))
        ma, va = _running(a)
        return [(threshold - ma, np.sqrt(va / n))], np.broadcast_to(n - 1.0, ma.shape)
    b = rng.normal(MEAN, SPREAD, (STUDIES, MAX_SEEDS))
    mb, vb = _running(b)
    if kind == "relative":  # a.x <= 0.9 * b.x: 10% better than another arm
        sd = SPREAD * math.sqrt(1 + 0.81)
        a = rng.normal(0.9 * MEAN - shift * sd, SPREAD, (STUDIES, MAX_SEEDS))
        ma, va = _running(a)
        v1, v2 = va / n, 0.81 * vb / n
        return [(0.9 * mb - ma, np.sqrt(v1 + v2))], _welch_df(v1, v2, n)
    # within(a.x, b.x, rel=0.05): (a - b) / b inside ±5%; the truth on +5% (shift 0) or inside
    b = rng.normal(MEAN, TIGHT, (STUDIES, MAX_SEEDS))
    mb, vb = _running(b)
    sd_rel = TIGHT * math.sqrt(1 + 1.05 ** 2) / MEAN
    a = rng.normal(MEAN * (1.05 - shift * sd_rel), TIGHT, (STUDIES, MAX_SEEDS))
    ma, va = _running(a)
    q = (ma - mb) / mb
    v1, v2 = va / n / mb ** 2, (ma / mb ** 2) ** 2 * vb / n  # the delta method, as the judge does
    se = np.sqrt(v1 + v2)
    return [(q + 0.05, se), (0.05 - q, se)], _welch_df(v1, v2, n)


def stop_rule(atoms: list[tuple[np.ndarray, np.ndarray]], multiplier: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Judge at n = FIRST..MAX_SEEDS and stop at the first PASS or FAIL (PASS: every
    comparison's lower bound > 0; FAIL: one upper bound < 0). Returns (status at the
    stop: 1 PASS, -1 FAIL, 0 open at the maximum; seeds used)."""
    with np.errstate(invalid="ignore"):  # one seed: an infinite multiplier times a zero spread
        lows = np.stack([est - multiplier * se for est, se in atoms])
        highs = np.stack([est + multiplier * se for est, se in atoms])
    status = np.where((lows > 0).all(axis=0), 1, np.where((highs < 0).any(axis=0), -1, 0))[:, FIRST - 1:]
    decided = status != 0
    first = np.where(decided.any(axis=1), decided.argmax(axis=1), status.shape[1] - 1)
    return status[np.arange(len(status)), first], first + FIRST


def sequential(kind: str, shift: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    atoms, _ = scenario(kind, shift, np.random.default_rng(seed))
    return stop_rule(atoms, cs_multiplier(np.arange(1, MAX_SEEDS + 1), ALPHA))


def naive(kind: str, shift: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed design's t interval re-judged after every seed (optional stopping)."""
    atoms, df = scenario(kind, shift, np.random.default_rng(seed))
    return stop_rule(atoms, special.stdtrit(np.maximum(df, 1), 1 - ALPHA))


def fixed(kind: str, shift: float, seed: int) -> np.ndarray:
    """The fixed design: judged once, at MAX_SEEDS."""
    atoms, df = scenario(kind, shift, np.random.default_rng(seed))
    c = special.stdtrit(df[:, -1], 1 - ALPHA)
    lows = np.stack([est[:, -1] - c * se[:, -1] for est, se in atoms])
    highs = np.stack([est[:, -1] + c * se[:, -1] for est, se in atoms])
    return np.where((lows > 0).all(axis=0), 1, np.where((highs < 0).any(axis=0), -1, 0))


KINDS = ("threshold", "relative", "within")


@pytest.mark.parametrize("kind", KINDS)
def test_false_pass_rate_at_the_threshold(kind):
    status, _ = sequential(kind, 0.0, seed=1)
    naive_status, _ = naive(kind, 0.0, seed=1)
    false_pass, naive_pass = np.mean(status == 1), np.mean(naive_status == 1)
    # The bound is exact (Ville); 2000 studies leave ~0.0035 standard error on a 2.5% rate.
    assert false_pass <= ALPHA, f"{kind}: {false_pass:.4f} false PASS under the confidence sequence"
    assert naive_pass > ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / STUDIES), f"{kind}: naive {naive_pass:.4f}"


@pytest.mark.parametrize("kind", KINDS)
def test_a_real_effect_stops_early(kind):
    status, used = sequential(kind, 2.0, seed=2)
    assert np.mean(status == 1) >= 0.8  # it finds the effect ...
    assert used.mean() <= 0.75 * MAX_SEEDS  # ... with fewer seeds than a fixed design of the same maximum
    assert np.mean(status == -1) <= ALPHA  # and a false FAIL is as rare as a false PASS


def test_the_simulation_judges_as_the_judge_does():
    """The vectorised rule above is what SequentialJudge decides on the same seeds."""
    rng = np.random.default_rng(3)
    study = Study.model_validate({
        "study": "sim", "run": {"command": "true"}, "metrics": {"x": {"goal": "min"}},
        "arms": {"a": {}, "b": {}}, "baselines": {"ref": {"x": 0.0606}},
        "stats": {"design": "confidence_sequence", "correction": "none"},
        "hypotheses": {"T": {"claim": "t", "check": "a.x <= ref.x"}, "R": {"claim": "r", "check": "a.x <= 0.9 * b.x"},
                       "W": {"claim": "w", "check": "within(a.x, b.x, rel=0.05)"}}})
    agree = 0
    for trial in range(30):
        n = int(rng.integers(3, 16))
        a = rng.normal(0.054 + 0.001 * (trial % 5), SPREAD / 2, n)
        b = rng.normal(MEAN, SPREAD / 2, n)
        verdicts = SequentialJudge(study, _results(study, {"a": a, "b": b})).judge_hypotheses()
        c = cs_multiplier(n, ALPHA)
        expected = {"T": [(0.0606 - a.mean(), a.std(ddof=1) / math.sqrt(n))],
                    "R": [(0.9 * b.mean() - a.mean(), math.sqrt(a.var(ddof=1) / n + 0.81 * b.var(ddof=1) / n))]}
        q = (a.mean() - b.mean()) / b.mean()
        se = math.sqrt(a.var(ddof=1) / n / b.mean() ** 2 + (a.mean() / b.mean() ** 2) ** 2 * b.var(ddof=1) / n)
        expected["W"] = [(q + 0.05, se), (0.05 - q, se)]
        for name, atoms in expected.items():
            want = ("PASS" if all(e - c * s > 0 for e, s in atoms) else
                    "FAIL" if any(e + c * s < 0 for e, s in atoms) else "INCONCLUSIVE")
            assert verdicts[name].status == want, (trial, name, n)
            agree += want != "INCONCLUSIVE"
    assert agree >= 10  # the trials reach verdicts, not only open ones


def _results(study: Study, values: dict[str, np.ndarray]) -> Results:
    arms = {}
    for arm, xs in values.items():
        runs = [RunResult(f"{arm}{i}", arm, "main", i, "done", None, 1, {"x": float(x)}) for i, x in enumerate(xs)]
        arms[arm] = ArmResult(arm, "main", "runs", runs)
    return Results(study, None, ["main"], {"main": dict(arms)}, arms, ["x"])


def figures() -> str:
    """The tables of docs/sequential.md."""
    lines = ["| check | false PASS, confidence sequence | false PASS, naive stop at first PASS |", "|---|---|---|"]
    for kind in KINDS:
        lines.append(f"| {kind} | {np.mean(sequential(kind, 0.0, seed=1)[0] == 1):.4f} "
                     f"| {np.mean(naive(kind, 0.0, seed=1)[0] == 1):.4f} |")
    lines += ["", f"| check | true effect | PASS, sequential (max {MAX_SEEDS}) | PASS, fixed {MAX_SEEDS} seeds "
              "| mean seeds, sequential | seeds saved |", "|---|---|---|---|---|---|"]
    for kind in KINDS:
        for shift in ((1.0, 2.0, 3.0) if kind != "within" else (1.0, 1.72)):  # 1.72: the centre of ±5%
            status, used = sequential(kind, shift, seed=2)
            lines.append(f"| {kind} | {shift:g} spread{'s' if shift != 1 else ''} | {np.mean(status == 1):.1%} "
                         f"| {np.mean(fixed(kind, shift, seed=2) == 1):.1%} | {used.mean():.1f} "
                         f"| {1 - used.mean() / MAX_SEEDS:.0%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(figures())
