"""The five seed studies: each validates (with its cpu profile) and states its seed's
hypotheses, thresholds, baselines and budget figures."""

from pathlib import Path

import pytest

from studyc.compiler.plan import compile_plan
from studyc.runtime import wandb_log
from studyc.spec.arms import expand_arms
from studyc.spec.loader import load, validate_file

STUDIES = Path(__file__).resolve().parents[2] / "studies"
SEEDS = {
    "burgers_phase3_ablation.yaml": "000",
    "cross_model_ablations.yaml": "001",
    "burgers_sota_sweep.yaml": "002",
    "scaled_model_speedup.yaml": "003",
    "kuramoto_phasegpt.yaml": "004",
}


def test_every_seed_has_its_study():
    assert {p.name for p in STUDIES.glob("*.yaml")} == set(SEEDS)


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_study_validates_and_has_a_cpu_profile(name):
    assert validate_file(STUDIES / name) == []
    cpu = load(STUDIES / name, profile="cpu").study
    assert cpu.run.resources.accelerators is None
    assert all(not (a.resources and a.resources.accelerators) for a in cpu.arms.values())


def test_seed_001_reuses_results_and_states_the_claims_matrix():
    study = load(STUDIES / "cross_model_ablations.yaml").study
    assert study.arms["1b_baseline_64tok"].reuse.results == {"peak_acc": 0.815, "final_acc": 0.36, "degradation": 0.455}
    assert study.arms["1a_stable_64tok"].reuse.results["final_acc"] == 0.645
    assert study.arms["2c_stable_64tok"].same_as == "1a_stable_64tok"
    assert study.metrics["peak_acc"].from_ == "acc" and study.metrics["peak_acc"].reduce == "max"
    assert study.metrics["degradation"].expr == "peak_acc - final_acc"
    assert study.expect["2a_stable_32tok"]["peak_acc"] == [0.55, 0.60]
    assert len(study.claims) == 6 and study.claims["Stability fixes work"] == ["H_no_collapse", "H_near_peak"]
    runs = {r.arm for r in compile_plan(load(STUDIES / "cross_model_ablations.yaml")).runs}
    assert runs == {"2a_stable_32tok", "2b_stable_48tok", "3a_hotpotqa_64tok"}  # the TODO rows only
    cpu_runs = {r.arm for r in compile_plan(load(STUDIES / "cross_model_ablations.yaml", "cpu")).runs}
    assert {"1a_stable_64tok", "1b_baseline_64tok"} <= cpu_runs  # like with like at cpu scale


def test_seed_002_tournament_prices_and_playbook(monkeypatch):
    loaded = load(STUDIES / "burgers_sota_sweep.yaml")
    study = loaded.study
    assert study.baselines["rerun_txxoc8a8"].values == {"nrmse": 0.09}
    assert study.prices == {"A100": 0.40, "A100-80GB": 0.95}
    assert [s.promote if isinstance(s.promote, str) else s.promote and s.promote.top for s in study.stages.values()] \
        == [None, 1, 1, "all", None]
    assert study.stages["full_eval"].needs == ["round_a", "round_b", "aggressive"]
    gate = study.stages["round_a"].gate
    assert "- 0.01" in gate and "noworse(ece, baseline.ece, margin=0.25)" in gate and study.stages["aggressive"].gate == gate
    assert all(study.stages[s].gate_judge == "point" for s in ("round_a", "round_b", "aggressive"))
    assert [t.split(" and ")[0] for t in study.tier_checks().values()] == [
        "champion.nrmse <= 0.07", "champion.nrmse <= 0.05", "champion.nrmse < 0.035"]
    assert study.on_failure["oom"].config == {"batch_size": "batch_size // 2", "accum_steps": "accum_steps * 2"}
    assert study.on_failure["diverged"].config["lr"] == "lr * 0.7"
    assert study.on_failure["preempted"].resume
    plan = compile_plan(loaded)
    vram = {r.arm: r.resources["vram_gb"] for r in plan.runs if not r.pending}
    assert vram["sweep_round_a_lr2e4_w3"] == 18 and vram["sweep_round_b_capacity_up"] == 28
    assert vram["sweep_round_b_deeper"] == 24 and vram["sweep_aggressive_sota"] == 55
    sweep = sum(r.est_usd for r in plan.runs if r.stage in ("round_a", "round_b", "aggressive"))
    assert sweep == pytest.approx(32.80)  # the seed's "Total: ~$33 for full sweep"
    assert plan.budget["ok"] and plan.totals["usd"] == pytest.approx(39.575)
    monkeypatch.setattr(wandb_log, "unavailable", lambda mode: None)  # as if logged in to W&B
    env = wandb_log.run_env(study, "sweep_round_a_lr2e4_w3", "round_a", 0, 1)
    assert env["STUDYC_WANDB_GROUP"] == "sota-sweep-round-a"
    assert wandb_log.run_env(study, "baseline", "baseline", 0, 1)["STUDYC_WANDB_GROUP"] == study.study


def test_seed_003_criteria_and_go_decision():
    study = load(STUDIES / "scaled_model_speedup.yaml").study
    assert study.metrics["speedup"].expr == "1 - optimized.total_time / baseline.total_time"
    checks = {k: h.check for k, h in study.hypotheses.items()}
    assert checks["H_speedup"] == "speedup >= 0.25"
    assert checks["H_convergence"] == "loss_difference < 0.1"
    assert checks["H_throughput"] == "throughput_gain >= 0.20"
    assert study.decision[0].if_.startswith("count(") and study.decision[-1].else_
    assert study.budget.parallel == 1  # timings never share the machine


def test_seed_004_packs_the_36_gb_runs_two_at_a_time():
    loaded = load(STUDIES / "kuramoto_phasegpt.yaml")
    study = loaded.study
    assert study.baselines["phase_a_winner"].values == {"val_ppl": 4.85, "order_r": 0.88}
    assert study.baselines["phase_a_baseline"].values == {"val_ppl": 4.97}
    assert "0.30 <=" in study.hypotheses["H2_goldilocks_r"].check and "<= 0.55" in study.hypotheses["H2_goldilocks_r"].check
    assert set(expand_arms(study)) == {"wt2_baseline", "wt2_k050", "wt2_k075", "wt2_k100"}
    plan = compile_plan(loaded)
    assert study.machine.vram_gb == 94.5 and {r.resources["vram_gb"] for r in plan.runs} == {36}
    # Two runs sharing the GPU slow each other (machine.contention 1.0): 12 h, as the seed's
    # "8-12 hours total (sequential)", not 6 h.
    assert plan.schedule["peak_concurrent"] == 2 and plan.totals["wall_hours"] == pytest.approx(12)
