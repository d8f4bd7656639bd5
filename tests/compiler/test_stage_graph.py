"""Stages as a graph: stages that do not need each other run side by side within
budget.parallel; the smoke stage runs first; evaluation stages follow the runs they
evaluate; the plan names the critical path. `--parallel N` overrides budget.parallel."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from studyc.compiler import packing
from studyc.compiler.plan import compile_plan
from studyc.spec.loader import load
from testkit.packing import FakeRun

# Seed 002: "Launch Parallel Runs (6 instances total)": three rounds at once, 16-20 h.
ROUNDS = """\
study: rounds
run: {command: python train.py, resources: {accelerators: "A100:1", vram_gb: 18, hours: 8}}
metrics: {nrmse: {goal: min}}
arms:
  a1: {}
  a2: {}
  a3: {}
  b1: {resources: {hours: 10}}
  b2: {resources: {hours: 10}}
  big: {resources: {accelerators: "A100-80GB:1", hours: 16}}
stages:
  round_a: {arms: [a1, a2, a3], promote: {top: 1}}
  round_b: {arms: [b1, b2], promote: {top: 1}}
  aggressive: {arms: [big], promote: all}
  full_eval:
    arms: promoted
    needs: [round_a, round_b, aggressive]
    evaluate: python eval.py --split full
    resources: {hours: 2}
prices: {A100: 0.40, A100-80GB: 0.95}
budget: {parallel: 6}
"""


def plan_of(write_study, text: str, parallel: int | None = None):
    return compile_plan(load(write_study(text)), parallel)


def test_seed_002_rounds_start_together(write_study):
    plan = plan_of(write_study, ROUNDS)
    rounds = [r for r in plan.runs if r.stage != "full_eval"]
    assert {r.start_h for r in rounds} == {0.0} and len(rounds) == 6
    evals = [r for r in plan.runs if r.stage == "full_eval"]
    assert evals and all(r.start_h == pytest.approx(16.0) for r in evals)
    assert plan.totals["wall_hours"] == pytest.approx(18.0)  # inside the seed's 16-20 h
    assert [c["stage"] for c in plan.schedule["critical_path"]] == ["aggressive", "full_eval"]
    stages = {s.name: s for s in plan.stages}
    assert stages["full_eval"].ready_h == pytest.approx(16.0) and stages["round_b"].end_h == pytest.approx(10.0)


def test_parallelism_is_shared_by_stages_running_side_by_side(write_study):
    plan = plan_of(write_study, ROUNDS.replace("parallel: 6", "parallel: 2"))
    assert packing.peak_concurrent(plan.runs) == 2
    # Sequential (`--parallel 1`): every run one after another, as option B of seed 000.
    seq = plan_of(write_study, ROUNDS, parallel=1)
    assert seq.parallel == 1 and packing.peak_concurrent(seq.runs) == 1
    assert seq.totals["wall_hours"] == pytest.approx(3 * 8 + 2 * 10 + 16 + 3 * 2)
    assert seq.totals["usd"] == pytest.approx(plan_of(write_study, ROUNDS).totals["usd"])


def test_parallel_override_changes_the_budget_check(write_study):
    text = ROUNDS.replace("budget: {parallel: 6}", "budget: {parallel: 6, wall: 20h}")
    assert plan_of(write_study, text).budget["ok"]
    slow = plan_of(write_study, text, parallel=1)
    assert not slow.budget["ok"] and "budget.wall" in slow.budget["violations"][0]


def test_needs_still_order_stages(write_study):
    text = ROUNDS.replace("round_b: {arms: [b1, b2], promote: {top: 1}}",
                          "round_b: {arms: [b1, b2], promote: {top: 1}, needs: [round_a]}")
    plan = plan_of(write_study, text)
    b = [r for r in plan.runs if r.stage == "round_b"]
    assert all(r.start_h == pytest.approx(8.0) for r in b)
    assert [c["stage"] for c in plan.schedule["critical_path"]] == ["round_a", "round_b", "full_eval"]
    assert plan.totals["wall_hours"] == pytest.approx(20.0)


def test_the_smoke_stage_runs_before_everything(write_study):
    text = ROUNDS.replace("stages:\n", "stages:\n  test_run: {arms: [a1], smoke: true, resources: {hours: 0.25}}\n")
    plan = plan_of(write_study, text)
    smoke = [r for r in plan.runs if r.stage == "test_run"]
    assert len(smoke) == 1 and smoke[0].start_h == 0.0
    rest = [r for r in plan.runs if r.stage != "test_run"]
    assert min(r.start_h for r in rest) == pytest.approx(0.25)
    assert plan.schedule["critical_path"][0]["stage"] == "test_run"
    assert {s.name: s.after for s in plan.stages}["round_b"] == ["test_run"]
    assert plan.totals["wall_hours"] == pytest.approx(18.25)


def test_evaluation_stage_plans_one_run_per_evaluated_run(write_study):
    text = ROUNDS.replace("run: {command", "run: {seeds: [0, 1], command")
    plan = plan_of(write_study, text)
    evals = [r for r in plan.runs if r.stage == "full_eval"]
    # round_a and round_b promote one arm each, aggressive promotes its one: 3 arms x 2 seeds.
    assert len(evals) == 6 and all(r.pending and r.source for r in evals)
    assert all(r.command == "python eval.py --split full" and r.est_hours == 2 for r in evals)
    trained = {r.id for r in plan.runs if r.stage != "full_eval"}
    assert {r.source for r in evals} <= trained and not {r.id for r in evals} & trained


def test_evaluation_run_ids_follow_the_run_they_evaluate(write_study):
    from studyc.compiler.plan import Compiler

    compiler = Compiler(load(write_study(ROUNDS)))
    source = compiler.make_run("a1", "round_a", 0)
    other = compiler.make_run("a1", "round_a", 1)
    one, again = (compiler.evaluation_runs("full_eval", [source]) for _ in range(2))
    two = compiler.evaluation_runs("full_eval", [other])
    assert one[0].id == again[0].id != two[0].id and one[0].source == source.id


# ---------------------------------------------------------------- properties


STAGES = ["s0", "s1", "s2", "s3"]
graphs = st.fixed_dictionaries({s: st.lists(st.sampled_from(STAGES[:i]), unique=True) if i else st.just([])
                                for i, s in enumerate(STAGES)})
run_lists = st.lists(st.builds(lambda stage, hours, vram: FakeRun(
    "a", stage, 0, {"accelerators": "A100-80GB:1", "vram_gb": vram, "cpus": 1, "memory_gb": 0}, hours),
    st.sampled_from(STAGES), st.sampled_from([0.5, 1.0, 2.0]), st.sampled_from([10, 30, 50])), max_size=20)


@settings(max_examples=200, deadline=None)
@given(run_lists, graphs, st.integers(1, 5), st.sampled_from([None, 0.0, 1.0]))
def test_no_stage_starts_before_its_needs_end(runs, needs, parallel, contention):
    target = packing.Target(gpu_gb=(80.0, 80.0), cpus=None, memory_gb=None) if contention is not None else None
    timeline = packing.simulate(runs, STAGES, parallel, target, needs=needs, contention=contention or 0.0)
    end = {s: max([r.end_h for r in runs if r.stage == s], default=None) for s in STAGES}
    for r in runs:
        for need in needs[r.stage]:
            if end[need] is not None:
                assert r.start_h >= end[need] - 1e-9
        assert r.end_h >= r.start_h + r.est_hours - 1e-6  # sharing never speeds a run up
    assert packing.peak_concurrent(runs) <= parallel
    assert timeline.wall_h == pytest.approx(max([r.end_h for r in runs], default=0.0))
    path = packing.critical_path(timeline, needs)
    if runs:
        assert timeline.stages[path[-1]][2] == pytest.approx(timeline.wall_h)
        assert all(a in needs[b] for a, b in zip(path, path[1:]))


# ---------------------------------------------------------------- the CLI


def test_plan_parallel_flag_and_critical_path(write_study):
    from click.testing import CliRunner

    from studyc.cli import main

    path = str(write_study(ROUNDS))
    side_by_side = CliRunner().invoke(main, ["plan", path])
    assert side_by_side.exit_code == 0, side_by_side.output
    out = " ".join(side_by_side.output.split())
    assert "at most 6 at a time" in out
    assert "critical path: aggressive 0.00–16.00 h → full_eval 16.00–18.00 h = 18.00 h wall-clock" in out
    one = CliRunner().invoke(main, ["plan", path, "--parallel", "1", "--json"])
    import json

    data = json.loads(one.output)
    assert data["parallel"] == 1 and data["totals"]["wall_hours"] == pytest.approx(66.0)
    bad = CliRunner().invoke(main, ["plan", path, "--parallel", "0"])
    assert bad.exit_code == 2 and "--parallel" in bad.output


def test_cloud_dryrun_honours_parallel(write_study, tmp_path):
    pytest.importorskip("sky", reason="the cloud extra (skypilot) is not installed")
    from click.testing import CliRunner

    from studyc.cli import main

    path = str(write_study(ROUNDS.replace("budget: {parallel: 6}", "budget: {parallel: 6, wall: 20h}")))
    store = ["--store", str(tmp_path / "none")]
    fast = CliRunner().invoke(main, ["run", path, "--cloud", "--dryrun", *store])
    assert fast.exit_code == 0, fast.output
    out = " ".join(fast.output.split())
    assert "at most 6 jobs at once" in out and "18.00 h wall-clock" in out and "critical path: aggressive" in out
    slow = CliRunner().invoke(main, ["run", path, "--cloud", "--dryrun", "--parallel", "1", *store])
    out = " ".join(slow.output.split())
    assert "at most 1 job at once" in out and "66.00 h wall-clock" in out
    assert slow.exit_code == 1 and "exceeds budget.wall" in out


def test_evaluation_task_reads_the_evaluated_run(write_study, tmp_path):
    from studyc.compiler.plan import Compiler
    from studyc.compiler.sky import TaskRenderer

    loaded = load(write_study(ROUNDS))
    compiler = Compiler(loaded)
    plan = compiler.compile()
    source = compiler.make_run("a1", "round_a", 0)
    evaluation = compiler.evaluation_runs("full_eval", [source])[0]
    text = TaskRenderer(loaded, plan, tmp_path).render(evaluation)
    assert f'STUDYC_SOURCE_RUN_DIR="${{STUDYC_RESULTS_DIR:-$HOME/studyc-results}}/$STUDYC_STUDY/{source.id}"' in text
    assert "STUDYC_SOURCE_RUN_DIR" not in TaskRenderer(loaded, plan, tmp_path).render(source)


def test_claim_checks_and_scenarios_are_preregistered(write_study):
    base = ROUNDS + "hypotheses: {H1: {claim: x, check: a1.nrmse < 0.1}}\n"
    plain = plan_of(write_study, base + "claims: {c: [H1]}\n").checks_hash
    checked = plan_of(write_study, base + "claims: {c: {hypotheses: [H1], check: a1.nrmse < 0.05}}\n").checks_hash
    stricter = plan_of(write_study, base + "claims: {c: {hypotheses: [H1], check: a1.nrmse < 0.04}}\n").checks_hash
    scenario = plan_of(write_study, base + "claims: {c: [H1]}\nscenarios: {good: {a1: {nrmse: [0, 0.1]}}}\n").checks_hash
    assert len({plain, checked, stricter, scenario}) == 4


def test_promotion_waits_for_the_arms_its_gates_read(write_study):
    # round_a's gate reads the baseline arm: round_a runs beside it, but what round_a
    # promotes is judged (and full_eval starts) only once baseline has ended too.
    text = ROUNDS.replace("  a1: {}", "  base: {resources: {hours: 30}}\n  a1: {}").replace(
        "stages:\n", "stages:\n  baseline: {arms: [base]}\n").replace(
        "round_a: {arms: [a1, a2, a3], promote: {top: 1}}",
        "round_a: {arms: [a1, a2, a3], promote: {top: 1}, gate: nrmse <= base.nrmse}")
    plan = plan_of(write_study, text.replace("parallel: 6", "parallel: 7"))
    stages = {s.name: s for s in plan.stages}
    assert stages["round_a"].start_h == 0.0 and stages["baseline"].start_h == 0.0
    assert "baseline" in stages["full_eval"].after and stages["full_eval"].start_h == pytest.approx(30.0)
    assert [c["stage"] for c in plan.schedule["critical_path"]] == ["baseline", "full_eval"]
