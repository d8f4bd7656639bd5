"""How long studyc takes to judge and render a large study from its store.

Builds a store (through the Store API, no training) holding a two-stage sweep of 10,000
runs: 1,000 grid arms x 10 seeds, each run logging 5 series for 100 steps, plus the
promoted arm's full evaluation, and the plan.json `studyc run` leaves beside the report.
Then times `studyc report`'s work (collect, judge, render: report, CSV, plots, JSON
artifacts, leaderboard) in this process, on the store opened read-only as `studyc report`
opens it. Target on a quiet 2-core machine: report_s <= 2.

    .venv/bin/python bench/report_scale.py [--arms-per-axis 10] [--seeds 10] [--steps 100] [--repeat 5] [--keep DIR]

Last line: `runs=... metrics=... steps=... setup_s=... report_s=...` (report_s: the median of
--repeat reports, each timed in a fresh process, imports included).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studyc.compiler.plan import Compiler  # noqa: E402
from studyc.artifacts import envelope, write_json  # noqa: E402
from studyc.orchestrate import PLAN_FILE, report  # noqa: E402
from studyc.report.collect import collect  # noqa: E402
from studyc.report.judge import Judge  # noqa: E402
from studyc.runtime.procs import owner_token  # noqa: E402
from studyc.runtime.store import Store  # noqa: E402
from studyc.spec.loader import load  # noqa: E402

SERIES = ("loss", "nrmse", "conservation_gap", "bc_violation", "ece")

STUDY = """\
study: report-scale
title: Report at scale (a 1,000-arm sweep, 10 seeds each)
tags: [bench]
run:
  command: python train.py
  config: {{lr: 3.0e-4, width: 64, depth: 4}}
  seeds: {seeds}
  resources: {{accelerators: "A100:1", vram_gb: 20, hours: 0.5}}
metrics:
  nrmse: {{goal: min}}
  best_loss: {{from: loss, reduce: min, goal: min}}
  conservation_gap: {{goal: min}}
  bc_violation: {{goal: min}}
  ece: {{goal: min, reduce: mean}}
  gap_ratio: {{expr: conservation_gap / nrmse}}
  gain: {{expr: 1 - champion.nrmse / baseline.nrmse}}
primary: nrmse
baselines:
  baseline: {{nrmse: 0.09, conservation_gap: 0.05, ece: 0.1, source: "previous best"}}
arms:
  sweep:
    name: "lr{{lr}}_w{{width}}_d{{depth}}"
    grid: {{lr: {lrs}, width: {widths}, depth: {depths}}}
stages:
  round_a:
    arms: [sweep]
    gate: nrmse <= baseline.nrmse and conservation_gap <= 1.2 * baseline.conservation_gap
    promote: {{top: 1, by: nrmse}}
  full:
    arms: promoted
    needs: [round_a]
    config: {{+full_eval: true}}
hypotheses:
  H1: {{claim: the champion beats the baseline, check: champion.nrmse <= baseline.nrmse}}
  H2: {{claim: width does not matter at lr 1e-4, check: "within({a}.nrmse, {b}.nrmse, rel=0.05)"}}
  H3: {{claim: a lower lr helps, check: {a}.nrmse < {c}.nrmse}}
tiers:
  minimum: champion.nrmse <= baseline.nrmse
  target: champion.nrmse <= 0.8 * baseline.nrmse
  stretch: champion.nrmse < 0.5 * baseline.nrmse
decision:
  - {{if: H1 and H3, then: ship the champion}}
  - {{else: sweep again}}
expect:
  {a}: {{nrmse: [0.05, 0.08]}}
claims:
  "Sweeping pays off": [H1, H3]
report: {{leaderboard: leaderboard.csv}}
"""


def write_study(root: Path, per_axis: int, seeds: int) -> Path:
    lrs = [round(1e-4 * (i + 1), 6) for i in range(per_axis)]
    widths = [32 * (i + 1) for i in range(per_axis)]
    depths = list(range(1, per_axis + 1))
    a = f"lr{lrs[0]:g}_w{widths[0]}_d{depths[0]}".replace(".", "p").replace("-", "m")
    b = f"lr{lrs[0]:g}_w{widths[-1]}_d{depths[0]}".replace(".", "p").replace("-", "m")
    c = f"lr{lrs[-1]:g}_w{widths[0]}_d{depths[0]}".replace(".", "p").replace("-", "m")
    path = root / "study.yaml"
    path.write_text(STUDY.format(seeds=list(range(seeds)), lrs=lrs, widths=widths, depths=depths, a=a, b=b, c=c))
    return path


def fake_series(rng: random.Random, level: float, steps: int) -> list[dict[str, float]]:
    out = []
    for step in range(steps):
        decay = math.exp(-step / (steps / 4))
        out.append({"step": step, "loss": level * 10 * decay + rng.gauss(0, 0.01),
                    "nrmse": level * (1 + decay) + rng.gauss(0, level * 0.03),
                    "conservation_gap": 0.04 + 0.02 * decay + rng.gauss(0, 0.003),
                    "bc_violation": 0.01 * (1 + decay) + abs(rng.gauss(0, 0.001)),
                    "ece": 0.08 + 0.05 * decay + rng.gauss(0, 0.005)})
    return out


def promoted_runs(loaded, compiler: Compiler, store: Store, stage: str):
    """The runs of a promoted stage, for the arms its gates promote (as a run builds them)."""
    study = loaded.study
    judge = Judge(study, collect(study, store, None))
    arms: list[str] = []
    for need in study.stages[stage].needs:
        promoted, _ = judge.promote(need)
        arms += [a for a in promoted if a not in arms]
    return compiler.stage_runs(stage, arms)


def fill(store: Store, study: str, runs, steps: int, rng: random.Random) -> None:
    store.add_runs(study, None, runs)
    owner = owner_token()
    for run in runs:
        level = 0.05 + 0.002 * (zlib.crc32(run.arm.encode()) % 20) + 0.0004 * run.config["depth"]
        store.claim(run.id, run.config, owner)
        store.finish(run.id, "done", 0, None, None, fake_series(rng, level, steps), usd=0.0, gpu_hours=0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms-per-axis", type=int, default=10, help="grid values per axis (arms = this cubed)")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5, help="reports to time (the median is report_s)")
    parser.add_argument("--time-report", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--keep", type=Path, default=None, help="build (or reuse) the store here instead of a temp dir")
    args = parser.parse_args()
    if args.time_report is not None:
        return time_report(args.time_report)

    root = (args.keep or Path(tempfile.mkdtemp(prefix="studyc-report-scale-"))).resolve()
    root.mkdir(parents=True, exist_ok=True)
    os.chdir(root)  # the study's leaderboard path is relative to where studyc runs
    path = write_study(root, args.arms_per_axis, args.seeds)
    loaded = load(path)
    store = Store(root / ".studyc")
    started = time.perf_counter()
    if not store.study_runs(loaded.study.study, None):
        compiler = Compiler(loaded)
        plan = compiler.compile()
        store.register_study(loaded.study.study, None, str(path), plan.spec_hash, plan.checks_hash)
        store.lock_checks(loaded.study.study, None)
        rng = random.Random(0)
        fill(store, loaded.study.study, [r for r in plan.runs if not r.pending], args.steps, rng)
        fill(store, loaded.study.study, promoted_runs(loaded, compiler, store, "full"), args.steps, rng)
    if not (root / "report" / PLAN_FILE).exists():  # what `studyc run` leaves beside the report
        plan = Compiler(loaded).compile()
        write_json(root / "report" / PLAN_FILE, envelope("plan", plan.spec_hash, plan.to_dict()))
    setup_s = time.perf_counter() - started
    runs = len(store.study_runs(loaded.study.study, None))

    store.close()
    times = []
    for _ in range(args.repeat):  # this machine's speed wanders: the median of a few, with the spread
        line = subprocess.run([sys.executable, __file__, "--time-report", str(root)], check=True,
                              capture_output=True, text=True).stdout.strip().splitlines()[-1]
        print(line)
        times.append(float(line.rsplit("report_s=", 1)[1]))
    if args.keep is None:
        shutil.rmtree(root)
    print(f"runs={runs} metrics={len(SERIES)} steps={args.steps} setup_s={setup_s:.1f} "
          f"report_s={statistics.median(times):.2f} (median of {len(times)}: min {min(times):.2f}, max {max(times):.2f})")


def time_report(root: Path) -> None:
    """One `studyc report` of the study in ``root``, in this fresh process (imports included)."""
    os.chdir(root)
    loaded = load(root / "study.yaml")
    started = time.perf_counter()
    result = report(loaded, Store(root / ".studyc", readonly=True), root / "report")
    report_s = time.perf_counter() - started
    statuses = ", ".join(f"{k} {h['status']}" for k, h in result.verdicts["hypotheses"].items())
    print(f"report: {result.paths['report']} ({statuses}; tier reached: {result.verdicts['tier_reached']}) "
          f"report_s={report_s:.3f}")

if __name__ == "__main__":
    main()
