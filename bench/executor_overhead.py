"""Per-run overhead of the local runtime: 200 no-op runs through the real scheduler,
executor and SQLite store (one at a time, as `studyc run` does them), against spawning
the same process directly.

    .venv/bin/python bench/executor_overhead.py [--runs 200]

Last line: runs=200 direct_s=... studyc_s=... overhead_s=... (per run; target <= 0.05)
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from studyc import orchestrate
from studyc.runtime.store import Store
from studyc.spec.loader import load

COMMAND = "true"  # a no-op run: what is measured is everything around it

STUDY = """\
study: overhead
run:
  command: "{command}"
  seeds: [{seeds}]
  resources: {{hours: 0.001}}
metrics:
  loss: {{goal: min}}
arms:
  noop: {{}}
budget: {{parallel: 1}}
"""


def direct(runs: int, workdir: Path) -> float:
    """Spawn the same command the way the executor does, one after the other."""
    began = time.perf_counter()
    for _ in range(runs):
        subprocess.run(["/bin/sh", "-c", COMMAND], cwd=workdir, stdin=subprocess.DEVNULL, check=True)
    return time.perf_counter() - began


def through_studyc(runs: int, workdir: Path) -> float:
    path = workdir / "overhead.yaml"
    path.write_text(STUDY.format(command=COMMAND, seeds=", ".join(map(str, range(runs)))))
    loaded = load(str(path))
    store = Store(workdir / ".studyc")
    ended = []
    began = time.perf_counter()
    orchestrate.execute(loaded, store, lambda e: ended.append(e) if e.kind == "end" else None)
    took = time.perf_counter() - began
    assert len(ended) == runs and all(e.status == "done" for e in ended), "every no-op run must finish"
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        direct_s = direct(args.runs, workdir)
        studyc_s = through_studyc(args.runs, workdir)
    overhead = (studyc_s - direct_s) / args.runs
    print(f"{args.runs} no-op runs: spawned directly {direct_s:.3f} s, through studyc {studyc_s:.3f} s "
          f"(compile, store, scheduler, executor); {overhead * 1000:.1f} ms of overhead per run")
    print(f"runs={args.runs} direct_s={direct_s:.3f} studyc_s={studyc_s:.3f} overhead_s={overhead:.4f}")


if __name__ == "__main__":
    main()
