"""Small helpers shared by the example trainers (config overrides, device, seeding).

Kept deliberately tiny so each ``train.py`` still reads top to bottom: everything a
trainer does that matters for its results lives in the trainer itself.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import resource
import sys
from typing import Any

import torch

import studyc


def parse_overrides(argv: list[str] | None) -> dict[str, Any]:
    """``--set key=value`` pairs; values are parsed as JSON when possible, else kept as text."""
    parser = argparse.ArgumentParser(add_help=True)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (value parsed as JSON when possible)",
    )
    args = parser.parse_args(argv)
    out: dict[str, Any] = {}
    for item in args.overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            parser.error(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def load_config(defaults: dict[str, Any], argv: list[str] | None) -> dict[str, Any]:
    """defaults < STUDYC_SEED < the studyc config file < ``--set`` overrides.

    An unknown key is an error, in ``--set`` or in the study's config (studyc.config
    refuses it): a typo must not silently run the default.
    """
    cfg = dict(defaults)
    if os.environ.get("STUDYC_SEED"):
        cfg["seed"] = int(os.environ["STUDYC_SEED"])
    cfg = studyc.config(cfg)
    overrides = parse_overrides(argv)
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise SystemExit(f"error: unknown --set key(s) {unknown}; known: {sorted(defaults)}")
    cfg.update(overrides)
    return cfg


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass


def setup_device(requested: str = "auto") -> tuple[torch.device, Any]:
    """Pick the device and return it with a zero-argument autocast context factory.

    CUDA when present (bf16 autocast where supported), CPU fp32 otherwise. Honours
    ``STUDYC_CPUS`` for the number of intra-op threads.
    """
    cpus = os.environ.get("STUDYC_CPUS")
    if cpus:
        torch.set_num_threads(max(1, int(float(cpus))))
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

        def autocast() -> Any:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)

    else:

        def autocast() -> Any:
            return contextlib.nullcontext()

    return device, autocast


def check_finite(value: float, step: int, name: str = "loss") -> None:
    """Log a non-finite loss (so the diverged run is visible) and exit non-zero."""
    if math.isfinite(value):
        return
    studyc.log(step=step, **{name: value})
    print(f"error: {name} became {value} at step {step}; stopping this run", file=sys.stderr)
    raise SystemExit(3)


def peak_mem_mb(device: torch.device) -> float:
    """CUDA max memory allocated, or the process's peak resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def count_params(module: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
