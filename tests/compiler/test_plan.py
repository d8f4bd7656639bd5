"""Plans: the seeds' own cost figures, prices, run ids that hold across machines, the
budget check with its numbers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from studyc.compiler.ids import run_id
from studyc.compiler.plan import compile_plan
from studyc.errors import RunError
from studyc.spec.loader import load

REPO = Path(__file__).resolve().parents[2]
PHASE3 = REPO / "studies" / "burgers_phase3_ablation.yaml"


def plan_of(path: Path, profile: str | None = None):
    return compile_plan(load(path, profile))


def test_seed_000_costs_what_its_authors_estimated():
    plan = plan_of(PHASE3)
    # 2 x 0.625 h + 0.96 h (the middle of "35-40 min" and "55-60 min") on A100 at the
    # built-in $1.90/h, all three at once: inside "~$4.00-4.50"
    assert plan.totals["usd"] == pytest.approx(4.199)
    assert plan.totals["gpu_hours"] == pytest.approx(2.21)
    assert plan.totals["wall_hours"] == pytest.approx(0.96)
    assert plan.budget["ok"] and plan.budget["margins"]["usd"] == pytest.approx(0.301)


def test_seed_002_costs_what_its_authors_estimated(write_study, seed_002):
    plan = plan_of(write_study(seed_002))
    # 3 x $0.40 x 8 h + 2 x $0.40 x 10 h + 1 x $0.95 x 16 h (the study's Vast.ai prices)
    assert plan.totals["usd"] == pytest.approx(32.80)
    by_arm = {r.arm: r.est_usd for r in plan.runs}
    assert by_arm["aggressive"] == pytest.approx(15.20) and by_arm["deeper"] == pytest.approx(4.00)
    assert plan.totals["wall_hours"] == pytest.approx(16.0)  # all six at once, the longest is 16 h


def test_built_in_prices_apply_without_overrides(write_study, seed_002):
    plan = plan_of(write_study(seed_002.replace("prices: {A100: 0.40, A100-80GB: 0.95}\n", "")))
    assert plan.totals["usd"] == pytest.approx(3 * 1.90 * 8 + 2 * 1.90 * 10 + 2.40 * 16)


@pytest.mark.parametrize("accelerator, per_hour", [("H100:2", 2 * 3.00), ("H200:1", 3.80), ("L4:1", 0.80),
                                                   ("A10G:1", 1.20), ("T4:4", 4 * 0.55), ("A100-80GB:1", 2.40)])
def test_price_table(write_study, accelerator, per_hour):
    path = write_study(f"""\
        study: p
        run: {{command: x, resources: {{accelerators: "{accelerator}", hours: 2}}}}
        metrics: {{m: {{}}}}
        arms: {{a: {{}}}}
        """)
    assert plan_of(path).totals["usd"] == pytest.approx(2 * per_hour)


def test_cpu_runs_are_priced_per_core(write_study):
    path = write_study("""\
        study: p
        run: {command: x, resources: {cpus: 4, hours: 10}}
        metrics: {m: {}}
        arms: {a: {}}
        prices: {cpu: 0.05}
        """)
    plan = plan_of(path)
    assert plan.totals["usd"] == pytest.approx(4 * 0.05 * 10) and plan.totals["gpu_hours"] == 0


def test_unknown_accelerator_asks_for_a_price(write_study):
    path = write_study("""\
        study: p
        run: {command: x, resources: {accelerators: "MI300X:1"}}
        metrics: {m: {}}
        arms: {a: {}}
        """)
    with pytest.raises(RunError) as err:
        plan_of(path)
    assert "MI300X" in err.value.message and "prices:" in err.value.hint


def test_run_without_hours_is_estimated_at_one_hour(write_study):
    path = write_study("study: p\nrun: {command: x, resources: {accelerators: 'T4:1'}}\n"
                       "metrics: {m: {}}\narms: {a: {}}\n")
    run = plan_of(path).runs[0]
    assert run.est_hours == 1.0 and run.resources["hours"] is None


def test_a_run_larger_than_its_gpu_is_refused(write_study, seed_002):
    path = write_study(seed_002.replace('"A100-80GB:1", vram_gb: 55', '"A100:1", vram_gb: 55'))
    with pytest.raises(RunError) as err:
        plan_of(path)
    assert "aggressive needs 55 GB" in err.value.message and "A100 GPU has 40 GB" in err.value.message
    assert "A100-80GB" in err.value.hint


@pytest.mark.parametrize("field, limit, words", [
    ("usd", "usd: 30", "estimated $32.80 exceeds budget.usd = $30.00"),
    ("gpu_hours", "gpu_hours: 50", "estimated 60.00 GPU-hours exceeds budget.gpu_hours = 50.00 GPU-hours"),
    ("wall_hours", "wall: 12h", "estimated 16.00 h wall-clock exceeds budget.wall = 12.00 h wall-clock"),
])
def test_over_budget_says_by_how_much(write_study, seed_002, field, limit, words):
    plan = plan_of(write_study(seed_002.replace("budget: {usd: 35,", "budget: {" + limit + ",")))
    assert not plan.budget["ok"]
    assert plan.budget["violations"] == [words]
    assert plan.budget["margins"][field] < 0


def _copy_study(root: Path) -> Path:
    """The seed-000 study with its trainer, as another machine would have it."""
    (root / "studies").mkdir(parents=True)
    shutil.copy(PHASE3, root / "studies" / PHASE3.name)
    shutil.copytree(REPO / "examples" / "burgers", root / "examples" / "burgers")
    return root / "studies" / PHASE3.name


def test_run_ids_are_the_same_on_another_machine(tmp_path):
    here = plan_of(_copy_study(tmp_path / "alice" / "checkout"))
    there = plan_of(_copy_study(tmp_path / "bob" / "somewhere" / "else"))
    assert here.workdir != there.workdir
    assert [r.id for r in here.runs] == [r.id for r in there.runs]
    assert all(str(tmp_path) not in r.command and str(tmp_path) not in str(r.env) for r in here.runs)


def test_run_ids_follow_what_determines_the_result(write_study, seed_002):
    base = plan_of(write_study(seed_002))
    ids = {r.arm: r.id for r in base.runs}
    # A threshold, the budget or a price does not change a result: same ids.
    cheaper = plan_of(write_study(seed_002.replace("A100: 0.40", "A100: 0.30").replace("usd: 35", "usd: 40")))
    assert {r.arm: r.id for r in cheaper.runs} == ids
    # One arm's config changes: only that arm's runs are new.
    edited = plan_of(write_study(seed_002.replace("tokens: 24, batch_size: 10", "tokens: 24, batch_size: 9")))
    changed = {r.arm for r in edited.runs if ids[r.arm] != r.id}
    assert changed == {"deeper"}


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                           max_leaves=10)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(), json_values, max_size=6), st.integers(0, 2**31), st.randoms())
def test_run_id_does_not_depend_on_key_order(config, seed, rnd):
    shuffled_keys = list(config)
    rnd.shuffle(shuffled_keys)
    reordered = {k: config[k] for k in shuffled_keys}
    assert run_id("cmd", config, seed, {}, "abc") == run_id("cmd", reordered, seed, {}, "abc")
