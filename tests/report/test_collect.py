"""Collect from a real SQLite store, filled through the Store API as the runtime fills it."""

import json
import math

import pytest

from studyc.artifacts import write_json
from studyc.report.collect import collect, curves, to_dict
from studyc.report.judge import INCOMPLETE, PASS, Judge

def test_each_series_is_reduced_per_run(filled):
    loaded, store = filled
    results = collect(loaded.study, store, None)
    a0 = results.arms["a"].runs[0]
    assert a0.series["nrmse"] == pytest.approx({"last": 0.3, "min": 0.2, "max": 0.5, "mean": 1 / 3, "best": 0.2})
    assert a0.series["acc"] == pytest.approx({"last": 0.7, "min": 0.5, "max": 0.9, "mean": 0.7})  # no goal: no best
    assert a0.values == pytest.approx({"nrmse": 0.3, "best_nrmse": 0.2, "mean_nrmse": 1 / 3, "peak_acc": 0.9,
                                       "final_acc": 0.7, "degradation": 0.2})
    assert "gain" not in a0.values and "gain" not in results.metrics  # study-level: the judge's


def test_nan_failures_retries_and_skips_are_kept(filled):
    loaded, store = filled
    results = collect(loaded.study, store, None)
    b0, b1 = results.arms["b"].runs
    assert b0.status == "done" and b0.attempts == 2
    assert [(h["attempt"], h["status"], h["failure"]) for h in b0.history] == [(1, "failed", "oom"), (2, "done", None)]
    assert b0.history[1]["changes"] == {"batch_size": [64, 32]}
    assert math.isnan(b1.values["nrmse"]) and b1.series["nrmse"]["min"] == 0.5  # NaN is not a minimum
    c0, c1 = results.arms["c"].runs
    assert (c0.status, c0.failure, c0.log_tail) == ("failed", "crashed", "Traceback: boom")
    assert (c1.status, c1.skipped) == ("skipped", "over budget: $0.02 left")
    judge = Judge(loaded.study, results)
    b = judge.condition(judge.parse("b.nrmse <= 1"))
    assert b.status == INCOMPLETE and "1 of 2 gave NaN" in b.sentence
    c = judge.condition(judge.parse("c.nrmse <= 1"))
    assert "1 of 2 failed (crashed)" in c.sentence and "1 of 2 skipped" in c.sentence


def test_per_arm_summary_reused_and_aliased_arms(filled):
    loaded, store = filled
    results = collect(loaded.study, store, None)
    s = results.summary(results.arms["a"], "nrmse")  # [0.3, 0.25]
    assert (s["n"], s["planned"]) == (2, 2) and s["mean"] == pytest.approx(0.275)
    # deviations +-0.025: sd = 0.025 * sqrt(2), se = sd / sqrt(2) = 0.025, half-width 12.706 * se
    assert s["std"] == pytest.approx(0.025 * math.sqrt(2))
    assert s["ci_hi"] - s["mean"] == pytest.approx(12.706 * 0.025, rel=1e-4)
    assert results.summary(results.arms["b"], "nrmse")["n"] == 1  # one of two has a value
    assert results.arms["old"].source == "reuse" and results.arms["old"].values("peak_acc") == [0.8]
    judge = Judge(loaded.study, results)
    assert judge.condition(judge.parse("within(twin.nrmse, a.nrmse, rel=0.001)")).status == PASS  # the same runs
    gain = judge.study_metrics()["gain"]
    assert gain["value"] is None and "b.nrmse" in gain["missing"][0]


def test_results_json_holds_every_run_once(filled, tmp_path):
    loaded, store = filled
    results = collect(loaded.study, store, None)
    write_json(tmp_path / "results.json", to_dict(results))
    body = json.loads((tmp_path / "results.json").read_text(), parse_constant=pytest.fail)  # valid JSON: no NaN
    runs = [r for arm in body["arms"].values() for r in arm.get("runs", []) if isinstance(r, dict)]
    assert len(runs) == len({r["id"] for r in runs}) == 6
    b1 = next(r for r in runs if r["arm"] == "b" and r["seed"] == 1)
    assert b1["values"]["nrmse"] is None and b1["series"]["nrmse"]["max"] == 0.5
    assert body["arms"]["a"]["metrics"]["nrmse"]["n"] == 2 and body["stats"] == {"confidence": 0.95, "method": "t"}
    assert body["stages"]["main"]["a"]["runs"] == [r["id"] for r in body["arms"]["a"]["runs"]]


def test_learning_curves_per_arm(filled):
    loaded, store = filled
    results = collect(loaded.study, store, None)
    c = curves(store, results, ["a", "b"], "nrmse")
    assert c["a"]["step"] == [0, 1, 2]
    assert c["a"]["mean"] == pytest.approx([0.45, 0.15, 0.275])
    assert c["a"]["min"] == pytest.approx([0.4, 0.1, 0.25]) and c["a"]["max"] == pytest.approx([0.5, 0.2, 0.3])
    assert c["b"]["step"] == [0, 1] and c["b"]["mean"] == pytest.approx([0.55, 0.35])  # NaN left out
