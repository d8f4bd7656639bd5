"""Packing of runs by CPU slots, GPUs and VRAM, and the study's parallelism; measured
from the runs' own start and end times, on the in-process fake executor's clock."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from studyc import orchestrate
from studyc.compiler.plan import Compiler
from studyc.errors import RunError
from studyc.runtime.executor import LocalExecutor
from studyc.runtime.fake import FakeExecutor
from studyc.runtime.scheduler import Scheduler, _Active
from studyc.runtime.store import Store
from studyc.spec.loader import load

def probe(run):
    """Each run reports the GPUs it was given and when it ran."""
    t0 = run.now()
    yield run.config["sleep"] * (3 if run.config["seed"] % 2 else 1)  # odd seeds run three times longer
    gpus = run.job.gpus
    run.log(t0=t0, t1=run.now(), gpu=gpus[0] if gpus else -1, n_gpus=len(gpus))


def probe_study(tmp_path: Path, seeds: int, resources: str, parallel: int, sleep: float = 0.2, budget: str = "") -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent(f"""\
        study: packing
        run:
          command: {sys.executable} probe.py
          config: {{sleep: {sleep}}}
          seeds: {list(range(seeds))}
          resources: {resources}
        metrics:
          gpu: {{goal: min}}
        arms:
          a: {{}}
        budget: {{parallel: {parallel}{budget}}}
        """))
    return path


def run_packed(path: Path, store: Store, cpus: int, gpus: list[float] | None = None, memory_gb: float | None = None):
    loaded = load(str(path))
    plan = Compiler(loaded).compile()
    store.add_runs(loaded.study.study, None, plan.runs)
    scheduler = Scheduler(loaded.study, store, FakeExecutor(probe), plan.workdir, plan.parallel, cpus=cpus, gpus=gpus,
                          memory_gb=memory_gb)
    scheduler.execute(plan.runs)
    return observed(store, [r.id for r in plan.runs])


def observed(store: Store, run_ids: list[str]) -> list[dict[str, float]]:
    runs = []
    for rid in run_ids:
        assert store.get(rid).status == "done"
        runs.append({name: value for _, _, name, value in store.series([rid])[rid]})
    return runs


def max_concurrency(runs: list[dict[str, float]]) -> int:
    events = sorted([(r["t0"], 1) for r in runs] + [(r["t1"], -1) for r in runs])
    now = most = 0
    for _, delta in events:
        now += delta
        most = max(most, now)
    return most


def overlapping(a: dict[str, float], b: dict[str, float]) -> bool:
    return a["t0"] < b["t1"] and b["t0"] < a["t1"]


def test_cpu_slots_limit_concurrency(tmp_path):
    path = probe_study(tmp_path, seeds=6, resources="{hours: 0.001, cpus: 2}", parallel=8)
    runs = run_packed(path, Store(tmp_path / "store"), cpus=4)
    assert max_concurrency(runs) == 2  # 4 CPU slots / 2 per run, though parallel allows 8
    assert {r["gpu"] for r in runs} == {-1}  # CPU runs see no GPU


def test_host_memory_limits_concurrency(tmp_path):
    path = probe_study(tmp_path, seeds=4, resources="{hours: 0.001, memory_gb: 3}", parallel=4)
    runs = run_packed(path, Store(tmp_path / "store"), cpus=8, memory_gb=7)
    assert max_concurrency(runs) == 2


def test_together_runs_start_in_waves(tmp_path):
    """budget.together: each wave of `parallel` runs starts at once, after the last wave
    has ended, even though a slot frees up earlier (seed 0 ends before seed 1)."""
    path = probe_study(tmp_path, seeds=4, resources="{hours: 0.001}", parallel=2, budget=", together: true")
    runs = run_packed(path, Store(tmp_path / "store"), cpus=8)
    first, second = runs[:2], runs[2:]
    assert min(r["t0"] for r in second) >= max(r["t1"] for r in first)
    assert second[0]["t0"] == second[1]["t0"]


def test_budget_parallel_is_honoured(tmp_path, write_study):
    path = probe_study(tmp_path, seeds=4, resources="{hours: 0.001}", parallel=2)
    store = Store(tmp_path / "store")
    orchestrate.execute(load(str(path)), store, executor=FakeExecutor(probe))
    runs = observed(store, [r["run_id"] for r in store.study_runs("packing", None)])
    assert max_concurrency(runs) == 2


def test_runs_are_packed_one_per_gpu_when_memory_allows_one(tmp_path):
    path = probe_study(tmp_path, seeds=4, resources="{hours: 0.001, accelerators: 'A100:1', vram_gb: 30}", parallel=4)
    runs = run_packed(path, Store(tmp_path / "store"), cpus=8, gpus=[40.0, 40.0])
    assert max_concurrency(runs) == 2
    assert {r["gpu"] for r in runs} == {0, 1}
    for i, a in enumerate(runs):
        for b in runs[i + 1:]:
            if overlapping(a, b):
                assert a["gpu"] != b["gpu"], "two 30 GB runs never share a 40 GB GPU"


def test_runs_share_a_gpu_while_its_memory_lasts(tmp_path):
    path = probe_study(tmp_path, seeds=4, resources="{hours: 0.001, accelerators: 'A100:1', vram_gb: 18}", parallel=4)
    runs = run_packed(path, Store(tmp_path / "store"), cpus=8, gpus=[40.0])
    assert max_concurrency(runs) == 2  # 2 x 18 GB fit in 40 GB, 3 do not
    assert {r["gpu"] for r in runs} == {0}


def test_multi_gpu_runs_get_distinct_devices(tmp_path):
    path = probe_study(tmp_path, seeds=2, resources="{hours: 0.001, accelerators: 'A100:2'}", parallel=2)
    runs = run_packed(path, Store(tmp_path / "store"), cpus=8, gpus=[40.0] * 3)
    assert all(r["n_gpus"] == 2 for r in runs)
    assert max_concurrency(runs) == 1  # 3 GPUs hold one 2-GPU run at a time


def test_a_run_that_can_never_fit_is_refused_before_anything_starts(tmp_path):
    path = probe_study(tmp_path, seeds=1, resources="{hours: 0.001, accelerators: 'A100-80GB:1', vram_gb: 60}", parallel=1)
    store = Store(tmp_path / "store")
    with pytest.raises(RunError, match="needs 60 GB of GPU memory; the largest GPU here has 40.0 GB"):
        run_packed(path, store, cpus=8, gpus=[40.0])
    with pytest.raises(RunError, match="needs A100-80GB:1 but this machine has 0 GPU"):
        run_packed(path, store, cpus=8, gpus=[])
    assert store.study_runs("packing", None)[0]["attempts"] == 0


@pytest.fixture(scope="module")
def scratch_store(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("store"))


@settings(max_examples=200, deadline=None)
@given(gpus=st.lists(st.sampled_from([16.0, 24.0, 40.0, 80.0]), min_size=1, max_size=4),
       runs=st.lists(st.tuples(st.integers(1, 3), st.sampled_from([0.0, 8.0, 12.0, 20.0, 36.0])), min_size=1, max_size=12),
       cpus=st.integers(1, 8))
def test_placement_never_oversubscribes(scratch_store, gpus, runs, cpus):
    """Greedy placement of any runs on any GPUs: every placement has the GPUs it needs,
    no GPU's memory is exceeded, an unknown-VRAM run has its GPUs alone, CPU slots hold."""
    from studyc.compiler.plan import RunPlan
    from studyc.spec.model import Study

    study = Study.model_validate({"study": "p", "run": {"command": "true"}, "metrics": {"m": {}}, "arms": {"a": {}}})
    scheduler = Scheduler(study, scratch_store, LocalExecutor(), ".", parallel=100, cpus=cpus, gpus=gpus)
    active: dict[str, _Active] = {}
    for i, (count, vram) in enumerate(runs):
        resources = {"accelerators": f"A100:{count}", "vram_gb": vram, "cpus": 1}
        run = RunPlan(str(i), "a", "main", i, "true", "true", {}, resources, {}, 1.0, 1.0, float(count))
        placed = scheduler._place(run, active)
        if placed is None:
            continue
        assert len(set(placed)) == count
        active[run.id] = _Active(run, None, {}, 1, 0.0, 1.0, placed)
    assert len(active) <= cpus
    for g, size in enumerate(gpus):
        on = [a for a in active.values() if g in a.gpus]
        assert sum(a.run.resources["vram_gb"] for a in on) <= size
        if any(a.run.resources["vram_gb"] == 0 for a in on):
            assert len(on) == 1
