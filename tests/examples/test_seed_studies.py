"""The five seed studies: their full-scale plans stay inside the seeds' own cost and time
figures, and they state the seeds' plans in their faithful forms (docs/seeds.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from studyc.cli import main
from studyc.spec.loader import load

STUDIES = Path(__file__).resolve().parents[2] / "studies"


def plan_totals(study: str, *args: str) -> dict:
    result = CliRunner().invoke(main, ["plan", str(STUDIES / study), "--json", *args])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["budget"]["ok"], data["budget"]
    return data["totals"]


@pytest.mark.parametrize(
    "study, args, usd, wall_hours",
    [
        # 000 Option A "~$4.50", parallel; Option B "~$4.00", "2-3 hours", sequential (both
        # pay the same GPU-hours: $4.20, inside "~$4.00-4.50")
        ("burgers_phase3_ablation.yaml", (), (4.0, 4.5), (0.9, 1.0)),
        ("burgers_phase3_ablation.yaml", ("--parallel", "1"), (4.0, 4.5), (2.0, 3.0)),
        ("burgers_phase3_ablation.yaml", ("--profile", "sequential"), (4.0, 4.5), (2.0, 3.0)),
        # 003 "Estimated duration: 12-15 minutes"
        ("scaled_model_speedup.yaml", (), (0.0, 1.0), (12 / 60, 15 / 60)),
        # 004 "8-12 hours total (sequential)"; launched 4 at once, two share the GPU at
        # half speed (machine.contention), so no faster; Option B "~2-4 hours" on a local GPU
        ("kuramoto_phasegpt.yaml", (), (0.0, 40.0), (8.0, 12.0)),
        ("kuramoto_phasegpt.yaml", ("--parallel", "4"), (0.0, 40.0), (8.0, 12.0)),
        ("kuramoto_phasegpt.yaml", ("--profile", "local_gpu"), (0.0, 0.0), (2.0, 4.0)),
        # 002 "~$33" for the sweep, plus the baseline re-run and full-eval; "16-20 hr" with
        # the rounds side by side
        ("burgers_sota_sweep.yaml", (), (33.0, 40.0), (16.0, 20.0)),
        # 001 three new 3 h runs one after another, then the 2-3 h benchmark: 11.5 h, and
        # 1a's 3 h already spent: "TOTAL ~14h"
        ("cross_model_ablations.yaml", (), (100.0, 170.0), (11.5, 11.5)),
    ],
)
def test_full_scale_plans_fall_in_the_seeds_ranges(study, args, usd, wall_hours):
    totals = plan_totals(study, *args)
    assert usd[0] <= totals["usd"] <= usd[1]
    assert wall_hours[0] - 1e-6 <= totals["wall_hours"] <= wall_hours[1] + 1e-6


def test_004_four_36gb_runs_never_share_the_94gb_gpu_beyond_two():
    result = CliRunner().invoke(main, ["plan", str(STUDIES / "kuramoto_phasegpt.yaml"), "--json"])
    runs = json.loads(result.output)["runs"]
    for run in runs:  # at no run's start are more than two 36 GB runs on the GPU
        overlapping = [r for r in runs if r["start_h"] <= run["start_h"] < r["end_h"]]
        assert sum(36 for _ in overlapping) <= 94.5


def test_no_study_keeps_a_contract_block():
    for path in STUDIES.glob("*.yaml"):
        assert "# CONTRACT:" not in path.read_text(), path.name


def test_000_checks_every_run_finished_before_reading_the_hypotheses():
    for profile in (None, "cpu"):
        decision = load(STUDIES / "burgers_phase3_ablation.yaml", profile).study.decision
        assert decision[0].if_ == "failed(pure_128) or failed(pure_256) or failed(chansep_128)"


def test_001_benchmarks_the_best_trained_run_and_the_claim_carries_its_bar():
    study = load(STUDIES / "cross_model_ablations.yaml").study
    bench = study.stages["4_inference_metrics"]
    assert bench.arms == "promoted" and bench.needs == ["train"]
    assert bench.evaluate == "python -m examples.latent_bridge.benchmark"
    assert study.stages["train"].promote.top == 1 and study.stages["train"].promote.by == "final_acc"
    claim = study.claims["Stability fixes work"]
    assert claim.hypotheses == ["H_no_collapse", "H_near_peak"]
    assert claim.check.startswith("1a_stable_64tok.final_acc > 0.70")


def test_002_gates_are_non_inferiority_on_the_point_and_full_eval_evaluates():
    study = load(STUDIES / "burgers_sota_sweep.yaml").study
    gates = {name: study.stages[name] for name in ("round_a", "round_b", "aggressive")}
    for stage in gates.values():  # one run per config: screened on the point estimate
        assert stage.gate_judge == "point"
        assert "noworse(conservation_gap, baseline.conservation_gap, margin=0.0)" in stage.gate
        assert "noworse(ece, baseline.ece, margin=0.25)" in stage.gate
    assert len({stage.gate for stage in gates.values()}) == 1  # the anchor is shared
    full_eval = study.stages["full_eval"]
    assert full_eval.evaluate == "python -m examples.burgers.evaluate" and full_eval.config == {"n_test": 256}
    tiers = study.tier_checks()
    assert "noworse(champion.train_time, baseline.train_time, margin=1.0)" in tiers["minimum"]  # "<= 2x"
    assert "noworse(champion.ece, baseline.ece, margin=0.0)" in tiers["target"]
    assert study.decision[0].if_.startswith("not (noworse(")  # the physics playbook comes first
    assert study.budget.wall == 20  # "16-20 hr"


def test_003_debug_rule_scenarios_artifacts_and_pairing():
    study = load(STUDIES / "scaled_model_speedup.yaml").study
    assert study.decision[0].if_ == "failed(baseline) or failed(optimized)"
    assert study.decision[0].then.startswith("DEBUG & ADJUST CONFIG")
    assert set(study.scenarios) == {"optimistic", "conservative", "worst"}
    assert study.scenarios["optimistic"]["optimized"]["total_time"] == [260, 300]
    assert study.run.artifacts == ["phase3_stage3a_comparison.json", "checkpoints/*.pt"]
    assert study.stats.paired is True


def test_004_smoke_test_run_and_gpu_contention():
    study = load(STUDIES / "kuramoto_phasegpt.yaml").study
    test_run = study.stages["test_run"]
    assert test_run.smoke is True and test_run.arms == ["wt2_baseline"]
    assert study.machine.contention == 1.0
    assert load(STUDIES / "kuramoto_phasegpt.yaml", "cpu").study.stages["test_run"].smoke is True
