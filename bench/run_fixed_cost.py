"""What `studyc run` costs beyond the runs themselves: a study of one no-op run, and one
of 200 no-op runs two at a time (the runs' own time, from the store, is taken out).

    .venv/bin/python bench/run_fixed_cost.py [--runs 200] [--repeat 3]

fixed_s: a one-run study's wall-clock beyond its run (start-up, compile, store, judge,
report, plots); target under 1 s. per_run_s: each further run's cost (spawn, follow,
record), from the 200-run study. Last line: `fixed_s=... per_run_s=... runs=...`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDY = """\
study: noop-{n}
run: {{command: "true", config: {{x: 1}}, seeds: {seeds}, resources: {{hours: 0.0001}}}}
metrics: {{m: {{goal: min}}}}
arms: {{a: {{}}}}
hypotheses: {{H1: {{claim: nothing, check: a.m <= 1}}}}
budget: {{parallel: 2}}
"""


def run_once(root: Path, runs: int) -> tuple[float, float]:
    """(wall-clock of `studyc run`, seconds the runs themselves took) in a fresh store."""
    work = Path(tempfile.mkdtemp(dir=root))
    study = work / "study.yaml"
    study.write_text(STUDY.format(n=runs, seeds=list(range(runs))))
    env = dict(os.environ, STUDYC_HOME=str(work / ".studyc"), PYTHONPATH=str(ROOT))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "studyc.cli", "run", str(study), "--out", str(work / "report")],
                          cwd=work, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"studyc run failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    db = sqlite3.connect(work / ".studyc" / "store.db")
    first, last = db.execute("SELECT MIN(started_at), MAX(ended_at) FROM runs").fetchone()
    db.close()
    shutil.rmtree(work)
    return wall, last - first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="studyc-fixed-cost-"))
    try:
        one = [run_once(root, 1) for _ in range(args.repeat)]
        fixed = statistics.median(wall - own for wall, own in one)
        many_wall, many_own = run_once(root, args.runs)
    finally:
        shutil.rmtree(root)
    per_run = (many_wall - fixed) / args.runs
    print(f"1 run: {statistics.median(w for w, _ in one):.2f} s wall; {args.runs} runs: {many_wall:.2f} s wall "
          f"({many_own:.2f} s from the first start to the last end)")
    print(f"fixed_s={fixed:.2f} per_run_s={per_run:.4f} runs={args.runs}")


if __name__ == "__main__":
    main()
