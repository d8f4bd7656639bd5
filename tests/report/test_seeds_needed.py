"""`studyc plan --seeds-needed`: the seeds per arm for a stated chance of a verdict."""

from __future__ import annotations

import json
import math
import textwrap

import numpy as np
from click.testing import CliRunner
from scipy import stats as sps

from studyc.cli import main
from studyc.report.collect import ArmResult, Results, RunResult
from studyc.report.seeds_needed import seeds_needed
from studyc.spec.loader import load

STUDY = """\
    study: plan
    run: {{command: "true", seeds: [0, 1, 2], resources: {{hours: 0.5}}}}
    metrics:
      acc: {{goal: max, unit: "%"{spread}}}
    baselines:
      ref: {{acc: 70.0}}
    arms:
      a: {{}}
      b: {{}}
    hypotheses:
      H1: {{claim: a beats 70, check: a.acc >= ref.acc}}
      H2: {{claim: a and b alike, check: "within(a.acc, b.acc, rel=0.05)"}}
    expect:
      a: {{acc: [71.0, 73.0]}}
      b: {{acc: [71.0, 73.0]}}
    stats: {{design: {design}}}
    prices: {{CPU: 0.10}}
    budget: {{parallel: 2, usd: 1.0}}
    """


def _load(write_study, design="fixed", spread=", spread: 4.0"):
    return load(write_study(textwrap.dedent(STUDY.format(design=design, spread=spread))))


def _empty(loaded) -> Results:
    return Results(loaded.study, None, [], {}, {}, [])


def _pilot(loaded, values: dict[str, list[float]]) -> Results:
    arms = {}
    for arm, xs in values.items():
        runs = [RunResult(f"{arm}{i}", arm, "main", i, "done", None, 1, {"acc": x}) for i, x in enumerate(xs)]
        arms[arm] = ArmResult(arm, "main", "runs", runs)
    return Results(loaded.study, None, ["main"], {"main": arms}, arms, ["acc"])


def _analytic_fixed(effect: float, spread: float, target: float) -> int:
    """One arm against a constant, fixed design: the smallest n whose t-test (at the
    95% interval's one-sided 2.5%) reaches ``target`` power (noncentral t)."""
    for n in range(2, 1000):
        crit = sps.t.ppf(0.975, n - 1)
        ncp = effect / (spread / math.sqrt(n))
        if sps.nct.sf(crit, n - 1, ncp) + sps.nct.cdf(-crit, n - 1, ncp) >= target:
            return n
    raise AssertionError


def test_declared_spread_matches_the_power_of_a_t_test(write_study):
    loaded = _load(write_study)
    h1 = seeds_needed(loaded, _empty(loaded), 0.8)["hypotheses"][0]
    want = _analytic_fixed(effect=2.0, spread=4.0, target=0.8)  # the expect midpoint 72 against 70
    assert abs(h1["seeds"] - want) <= 1, (h1["seeds"], want)
    assert h1["assumptions"]["a.acc"].startswith("a.acc = 72 ± 4 per seed (expect a.acc midpoint; spread from")
    assert any("0.5 spreads" in d for d in h1["drivers"])
    # its cost: that many seeds of arm a at 0.5 h and $0.10/h
    assert h1["cost"]["runs"] == h1["seeds"] and math.isclose(h1["cost"]["usd"], 0.05 * h1["seeds"], rel_tol=1e-6)


def test_more_probability_or_the_sequence_needs_more_seeds(write_study):
    loaded = _load(write_study)
    base = seeds_needed(loaded, _empty(loaded), 0.8)["hypotheses"][0]["seeds"]
    assert seeds_needed(loaded, _empty(loaded), 0.95)["hypotheses"][0]["seeds"] > base
    sequential = _load(write_study, design="confidence_sequence")
    assert seeds_needed(sequential, _empty(sequential), 0.8)["hypotheses"][0]["seeds"] > base


def test_the_pilot_drives_the_figures_and_its_n_is_stated(write_study):
    loaded = _load(write_study, spread="")
    pilot = _pilot(loaded, {"a": [74.0, 76.0, 75.0], "b": [74.5, 75.5, 75.0]})
    out = seeds_needed(loaded, pilot, 0.8)
    h1, h2 = out["hypotheses"]
    assert h1["assumptions"]["a.acc"] == "a.acc = 75 ± 1 per seed (pilot, n=3)"
    assert h1["seeds"] <= 3 and any("pilot n=3" in d for d in h1["drivers"])
    assert h2["seeds"] is not None and out["seeds_per_arm"]["b"] == h2["seeds"]
    assert out["total"]["budget"]["ok"] in (True, False)


def test_no_spread_is_refused_with_a_hint(write_study, tmp_path):
    path = write_study(textwrap.dedent(STUDY.format(design="fixed", spread="")))
    result = CliRunner().invoke(main, ["plan", str(path), "--seeds-needed", "--store", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "H1: cannot plan: no spread for a.acc: no pilot runs and metrics.acc declares no spread" in result.output
    assert "declare metrics.acc.spread" in result.output
    data = json.loads(CliRunner().invoke(main, ["plan", str(path), "--seeds-needed", "--json", "--store",
                                                str(tmp_path / "none")]).output)
    assert all(h["refused"] for h in data["hypotheses"])


def test_the_cli_prints_seeds_cost_and_assumptions(write_study, tmp_path):
    path = write_study(textwrap.dedent(STUDY.format(design="confidence_sequence", spread=", spread: 4.0")))
    result = CliRunner().invoke(main, ["plan", str(path), "--seeds-needed", "--probability", "0.9",
                                       "--store", str(tmp_path / "none")])
    assert result.exit_code == 0, result.output
    assert "for a 90% chance of a PASS or FAIL verdict at 95% confidence, confidence sequence (seeds may be added until settled) design:" in result.output
    line = next(x for x in result.output.splitlines() if x.startswith("H1:"))
    assert "seeds per arm (a)" in line and "$" in line and "min wall-clock" in line
    assert "effect: the estimate is 2 % (0.5 spreads of the difference) inside the threshold" in result.output


def test_seeds_needed_in_the_simulated_verdict_is_monotone_in_the_spread(write_study):
    loaded = _load(write_study)
    seeds = [seeds_needed(_load(write_study, spread=f", spread: {s}"), _empty(loaded), 0.8)["hypotheses"][0]["seeds"]
             for s in (2.0, 4.0, 8.0)]
    assert seeds == sorted(seeds) and seeds[0] < seeds[-1]
    assert np.isfinite(seeds).all()
