"""How long `studyc plan` and `studyc compile` take on a 10,000-run grid study.

Writes a study whose sweep is 2,500 grid arms x 4 seeds, packed onto an 8-GPU machine
(runs share GPUs by memory), with a recovery playbook, W&B tracking and cloud settings,
so every part of a task file is rendered. Times, as a user meets them (a fresh `studyc`
process each, median of --repeat):

- plan: `studyc plan STUDY` (load, expand, estimate, pack, budget check, print);
- compile: `studyc compile STUDY -o DIR` (the same, plus plan.json and 10,000 SkyPilot
  task files).

Then breaks the compile down in this process (load, plan, plan.json and tasks).

    .venv/bin/python bench/compile_scale.py [--seeds 4] [--repeat 3] [--keep DIR]

Targets on the 2-core development machine: plan <= 2 s, compile <= 10 s.
Last line: `runs=... plan_s=... compile_s=... load_s=... plan_build_s=... write_s=...`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from studyc.compiler.plan import compile_plan  # noqa: E402
from studyc.compiler.sky import write_compiled  # noqa: E402
from studyc.spec.loader import load  # noqa: E402

STUDY = """\
study: compile-scale
title: Compile at scale (2,500 grid arms x {n_seeds} seeds)
run:
  command: python train.py --lr {{config.lr}} --width {{config.width}} --depth {{config.depth}} --seed {{seed}}
  config: {{lr: 3.0e-4, width: 64, depth: 4, warmup: 0.05, batch_size: 12, epochs: 20}}
  seeds: {seeds}
  resources: {{accelerators: "A100-80GB:1", vram_gb: 18, hours: 0.5}}
  setup: pip install -e .
metrics:
  nrmse: {{goal: min}}
arms:
  sweep:
    name: "lr{{lr}}_w{{width}}_d{{depth}}"
    grid:
      lr: [1.0e-4, 2.0e-4, 3.0e-4, 4.0e-4, 5.0e-4, 6.0e-4, 7.0e-4, 8.0e-4, 9.0e-4, 1.0e-3]
      width: [32, 48, 64, 80, 96, 112, 128, 160, 192, 256]
      depth: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25]
on_failure:
  oom: {{retries: 2, config: {{batch_size: "batch_size // 2"}}}}
  preempted: {{retries: 3, resume: true}}
  crashed: {{retries: 1}}
machine: {{accelerators: "A100-80GB:8", cpus: 96, memory_gb: 1024}}
budget: {{parallel: 64}}
tracking: {{wandb: {{project: scale, group: compile}}}}
cloud: {{infra: aws, use_spot: true, disk_gb: 100}}
"""


def timed_cli(args: list[str], cwd: Path, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "studyc.cli", *args], cwd=cwd, capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if result.returncode != 0:
            sys.exit(f"studyc {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4, help="seeds per arm (2,500 arms)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command; the median is reported")
    parser.add_argument("--keep", type=Path, default=None, help="work in this directory and keep it")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="studyc-compile-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        study = work / "study.yaml"
        study.write_text(STUDY.format(n_seeds=args.seeds, seeds=list(range(args.seeds))))
        print(f"study: {study} (2,500 arms x {args.seeds} seeds)")

        plan_s = timed_cli(["plan", str(study)], work, args.repeat)
        print(f"studyc plan:    {plan_s:.2f} s (median of {args.repeat})")
        compile_s = timed_cli(["compile", str(study), "-o", str(work / "build")], work, args.repeat)
        tasks = len(list((work / "build" / "tasks").glob("*.sky.yaml")))
        print(f"studyc compile: {compile_s:.2f} s (median of {args.repeat}), {tasks} task files")

        started = time.perf_counter()
        loaded = load(study)
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        plan = compile_plan(loaded)
        build_s = time.perf_counter() - started
        started = time.perf_counter()
        write_compiled(loaded, plan, work / "build2")
        write_s = time.perf_counter() - started
        print(f"in process: load {load_s:.2f} s, plan {build_s:.2f} s, plan.json + tasks {write_s:.2f} s; "
              f"estimate {plan.totals['usd']:,.2f} $, {plan.totals['wall_hours']:.1f} h wall-clock, "
              f"{plan.schedule['peak_concurrent']} runs at once")
        print(f"runs={len(plan.runs)} plan_s={plan_s:.3f} compile_s={compile_s:.3f} load_s={load_s:.3f} "
              f"plan_build_s={build_s:.3f} write_s={write_s:.3f}")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
