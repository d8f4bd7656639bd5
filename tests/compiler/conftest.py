"""Fixtures for the compiler: studies that mirror the seeds' figures, and SkyPilot's own
validation of task files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Seed 002's cost estimate (Vast.ai): Round A 3x A100 40GB @ $0.40/h x 8 h, Round B 2x @ $0.40/h x
# 10 h, Aggressive 1x A100 80GB @ $0.95/h x 16 h = $32.80; VRAM ~18/28/24/55 GB.
SEED_002 = """\
study: sota-sweep-mirror
run:
  command: python train.py --lr {config.lr}
  config: {lr: 3.0e-4, warmup: 0.05, ema: 0.9995, batch_size: 12, accum_steps: 4}
  seeds: [0]
  resources: {accelerators: "A100:1", vram_gb: 18, hours: 8}
metrics:
  nrmse: {goal: min}
arms:
  round_a:
    name: "a_lr{lr}_w{warmup}"
    zip: {lr: [2.0e-4, 3.0e-4, 4.5e-4], warmup: [0.03, 0.05, 0.05]}
  capacity_up: {config: {+tokens: 32, batch_size: 10}, resources: {vram_gb: 28, hours: 10}}
  deeper: {config: {+tokens: 24, batch_size: 10}, resources: {vram_gb: 24, hours: 10}}
  aggressive: {config: {+tokens: 48, batch_size: 8}, resources: {accelerators: "A100-80GB:1", vram_gb: 55, hours: 16}}
on_failure:
  oom: {retries: 2, config: {batch_size: "batch_size // 2", accum_steps: "accum_steps * 2"}}
  diverged: {retries: 1, config: {lr: "lr * 0.7"}}
  preempted: {retries: 3, resume: true}
  crashed: {retries: 2}
prices: {A100: 0.40, A100-80GB: 0.95}
budget: {usd: 35, parallel: 6}
tracking: {wandb: {project: universal-simulator, group: sota-sweep}}
cloud: {infra: vast, use_spot: true, results: "s3://studyc-test/sota", disk_gb: 64}
"""

# Seed 004: four 36 GB Kuramoto runs crashed a 94.5 GB machine by running at once.
SEED_004 = """\
study: kuramoto-mirror
run:
  command: python train.py --k {config.coupling}
  config: {coupling: 1.0, oscillators: 32}
  seeds: [0]
  resources: {accelerators: "H100:1", vram_gb: 36, hours: 2.5}
metrics:
  ppl: {goal: min}
arms:
  wt2:
    name: "wt2_k{coupling}"
    grid: {coupling: [0.5, 0.75, 1.0, 2.0]}
machine: {accelerators: H100, gpus: 1, vram_gb: 94.5, cpus: 16, memory_gb: 128}
budget: {parallel: 4}
"""


@pytest.fixture(scope="session")
def sky():
    """skypilot itself (the cloud extra); its import takes seconds, so once per session."""
    return pytest.importorskip("sky", reason="the cloud extra (skypilot) is not installed")


@pytest.fixture(scope="session")
def sky_validate(sky):
    """Check a task file the way SkyPilot does before launching: schema, name, run,
    resources (offline: no catalog look-up) and the workdir, resolved from the directory
    a user launches in."""

    def validate(path: Path, launch_dir: Path):
        task = sky.Task.from_yaml(str(path))
        task.validate_name()
        task.validate_run()
        here = Path.cwd()
        os.chdir(launch_dir)
        try:
            task.expand_and_validate_workdir()
        finally:
            os.chdir(here)
        return task

    return validate


@pytest.fixture
def seed_002() -> str:
    return SEED_002


@pytest.fixture
def seed_004() -> str:
    return SEED_004
