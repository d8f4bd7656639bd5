"""A study's store filled through the Store API as the runtime fills it (no training):
finished, retried, diverged, failed and skipped runs, a reused arm and an alias."""

import pytest

from studyc.compiler.plan import Compiler
from studyc.runtime.procs import owner_token
from studyc.runtime.store import Store
from studyc.spec.loader import load

STUDY = """\
study: collect-test
run: {command: "python train.py", config: {batch_size: 32}, seeds: [0, 1]}
metrics:
  nrmse: {goal: min}
  best_nrmse: {from: nrmse, reduce: best, goal: min}
  mean_nrmse: {from: nrmse, reduce: mean}
  peak_acc: {from: acc, reduce: max}
  final_acc: {from: acc, reduce: last}
  degradation: {expr: peak_acc - final_acc, goal: min}
  gain: {expr: 1 - a.nrmse / b.nrmse}
arms:
  a: {}
  b: {config: {batch_size: 64}}
  c: {config: {batch_size: 128}}
  old: {reuse: {results: {nrmse: [0.2, 0.3], peak_acc: 0.8}, source: "an earlier study"}}
  twin: {same_as: a}
"""


def series(nrmse, acc):
    return [{"step": i, "nrmse": n, "acc": x} for i, (n, x) in enumerate(zip(nrmse, acc))]


@pytest.fixture
def filled(write_study, tmp_path):
    loaded = load(write_study(STUDY))
    plan = Compiler(loaded).compile()
    store = Store(tmp_path / "store")
    store.add_runs(loaded.study.study, None, plan.runs)
    owner = owner_token()
    runs = {(r.arm, r.seed): r for r in plan.runs}

    def finish(arm, seed, data, status="done", failure=None, final=True, config=None):
        run = runs[(arm, seed)]
        store.claim(run.id, config or run.config, owner)
        store.finish(run.id, status, 0 if status == "done" else 1, failure, "Traceback: boom" if failure else None,
                     data, usd=0.01, gpu_hours=0.5, final=final)

    finish("a", 0, series([0.5, 0.2, 0.3], [0.5, 0.9, 0.7]))
    finish("a", 1, series([0.4, 0.1, 0.25], [0.6, 0.8, 0.8]))
    # b seed 0: out of memory once, retried with a halved batch
    finish("b", 0, series([0.9], [0.1]), status="failed", failure="oom", final=False)
    finish("b", 0, series([0.6, 0.35], [0.4, 0.6]), config={**runs[("b", 0)].config, "batch_size": 32})
    finish("b", 1, series([0.5, float("nan")], [0.5, 0.5]))  # diverged to NaN at the end
    finish("c", 0, series([0.5], [0.5]), status="failed", failure="crashed")
    store.mark_skipped(loaded.study.study, None, runs[("c", 1)], "over budget: $0.02 left")
    return loaded, store
