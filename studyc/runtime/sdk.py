"""The Python side of the run protocol.

A run is a process that follows the run protocol (``studyc.protocol``): it reads its
resolved config from the JSON file the protocol names and appends metrics as JSON lines to
its run directory. These helpers do that for Python trainers; any language can follow
the same protocol by hand.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from studyc.protocol import CHECKPOINTS_DIR, CONFIG, METRICS_FILE, RUN_DIR, SOURCE_RUN_DIR
from studyc.runtime import wandb_log

_wandb_run: Any = None  # opened on the first log() when studyc passed tracking settings


class UnknownConfigKey(KeyError):
    """The study set a config key the trainer does not know (a typo would otherwise train
    the default silently)."""

    def __str__(self) -> str:
        return str(self.args[0])


def config(defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run's resolved config laid over ``defaults`` (defaults alone outside studyc).

    With ``defaults``, every key the study sets must be one of them (``seed`` aside):
    an unknown key raises UnknownConfigKey, so the run fails saying which key and why."""
    merged = dict(defaults or {})
    path = os.environ.get(CONFIG)
    if path:
        given = json.loads(Path(path).read_text())
        if defaults is not None:
            unknown = sorted(set(given) - set(defaults) - {"seed"})
            if unknown:
                import difflib

                hints = [f"'{k}'" + (f" (did you mean '{close[0]}'?)" if (close := difflib.get_close_matches(k, defaults, 1))
                                     else "") for k in unknown]
                raise UnknownConfigKey(
                    f"studyc.config: the study sets {', '.join(hints)}, which this trainer does not know "
                    f"(it knows: {', '.join(sorted(defaults))}); fix the key in the study, or add it to the "
                    "trainer's defaults")
        merged.update(given)
    return merged


def run_dir() -> Path | None:
    """The run's own directory, or None when the process was not started by studyc."""
    value = os.environ.get(RUN_DIR)
    return Path(value) if value else None


def source_run_dir() -> Path | None:
    """In an evaluation stage: the directory of the run being evaluated (its checkpoints
    in ``checkpoints/``); None in a training run or outside studyc."""
    value = os.environ.get(SOURCE_RUN_DIR)
    return Path(value) if value else None


def checkpoint_dir() -> Path | None:
    """Where a run keeps checkpoints it can resume from after a retry (created on demand)."""
    base = run_dir()
    if base is None:
        return None
    path = base / CHECKPOINTS_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path


def _to_number(name: str, value: Any) -> float:
    if hasattr(value, "item"):  # numpy or torch scalars
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"studyc.log: metric {name!r} must be a number, got {type(value).__name__}")
    return float(value)


def log(step: int | None = None, **metrics: Any) -> None:
    """Record metric values (at ``step``) for the current run.

    Each call appends one JSON line and closes the file, so studyc can follow a run live
    (progress, stop rules), also through a cloud bucket mount, which uploads a file once it
    is closed. NaN and inf are kept: a diverged run must be visible.
    """
    global _wandb_run
    values = {name: _to_number(name, value) for name, value in metrics.items()}
    record: dict[str, Any] = {"t": round(time.time(), 3)}
    if step is not None:
        record["step"] = int(step)
    record.update(values)
    base = run_dir()
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
        with open(base / METRICS_FILE, "a", encoding="utf-8") as sink:
            sink.write(json.dumps(record) + "\n")
    if _wandb_run is None and wandb_log.enabled():
        try:
            _wandb_run = wandb_log.init_from_env(config())
        except Exception as exc:  # tracking must never cost a run its training
            print(f"studyc: W&B logging disabled for this run: {exc}", file=sys.stderr)
            _wandb_run = False
    if _wandb_run:
        finite = {k: v for k, v in values.items() if math.isfinite(v)}
        _wandb_run.log(finite, step=step)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """A metrics.jsonl file's valid records (up to a malformed line, if any; a torn last
    line left by a killed process is skipped)."""
    from studyc.runtime.metrics_file import read

    return read(path).records
