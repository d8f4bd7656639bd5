"""How long `studyc validate studies/*.yaml` takes from a cold process, beside the
interpreter's own start-up (`python -c pass`). Target: a median under 0.5 s.

    .venv/bin/python bench/cli_startup.py [--runs 10]

Last line: ``validate_s=<median> python_s=<median> files=<n> runs=<n>``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def median_seconds(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    studies = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "studies").glob("*.yaml"))
    # `studyc` as installed: the console script beside this interpreter.
    studyc = [str(Path(sys.executable).with_name("studyc"))]
    if not Path(studyc[0]).exists():
        studyc = [sys.executable, "-m", "studyc.cli"]
    python = median_seconds([sys.executable, "-c", "pass"], args.runs)
    validate = median_seconds(studyc + ["validate", *studies], args.runs)
    print(f"studyc validate on {len(studies)} studies, median of {args.runs} cold runs: {validate:.3f} s "
          f"(python -c pass: {python:.3f} s)")
    print(f"validate_s={validate:.3f} python_s={python:.3f} files={len(studies)} runs={args.runs}")


if __name__ == "__main__":
    main()
