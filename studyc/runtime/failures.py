"""Failure classes, how a finished process is classified, and the recovery playbook."""

from __future__ import annotations

import math
import re
import signal
from typing import Any

from studyc.spec import expr as E
from studyc.spec.model import Study

_OOM = re.compile(r"CUDA out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED|MemoryError|Cannot allocate memory", re.I)
_DIVERGED = re.compile(r"\b(nan|inf) (loss|detected)|loss (is|became) (nan|inf)|diverg", re.I)


def classify(exit_code: int | None, log_tail: str, series: list[dict[str, Any]], killed_by_us: str | None) -> str | None:
    """None for success, else one of oom, diverged, timeout, preempted, crashed.

    ``killed_by_us`` names why studyc stopped the run itself (timeout or a stop rule's
    class); a SIGTERM studyc did not send means the machine is going away (preempted),
    a SIGKILL it did not send is the host's OOM killer. A run that exits cleanly but
    whose metrics end in NaN or inf diverged all the same.
    """
    if killed_by_us:
        return killed_by_us
    if exit_code == 0:
        return "diverged" if _ends_non_finite(series) else None
    if _OOM.search(log_tail or ""):
        return "oom"
    if exit_code in (-signal.SIGKILL, 128 + signal.SIGKILL):
        return "oom"
    if exit_code in (-signal.SIGTERM, 128 + signal.SIGTERM):
        return "preempted"
    if _DIVERGED.search(log_tail or "") or _non_finite(series):
        return "diverged"
    return "crashed"


def _non_finite(series: list[dict[str, Any]]) -> bool:
    return any(isinstance(v, float) and not math.isfinite(v) for rec in series for k, v in rec.items() if k not in ("t", "step"))


def _ends_non_finite(series: list[dict[str, Any]]) -> bool:
    """Whether some metric's last logged value is NaN or inf."""
    last: dict[str, Any] = {}
    for record in series:
        last.update(record)
    return _non_finite([last])


class StopRules:
    """The study's ``stop:`` rules, evaluated on each new metrics record of a live run."""

    def __init__(self, study: Study):
        self.rules = [(cls, E.parse(text)) for cls, text in study.stop.items()]

    def check(self, record: dict[str, Any]) -> str | None:
        for cls, node in self.rules:
            names = {r.parts[0] for r in E.refs(node)}
            if not names <= record.keys():
                continue
            if E.evaluate(node, lambda ref: float(record[ref.parts[0]])):
                return cls
        return None


class EditError(ValueError):
    """The playbook's edit cannot give a usable config: the run is not retried."""


def _number(config: dict[str, Any], name: str) -> float:
    value = config.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EditError(f"'{name}' is {value!r}, not a number")
    return float(value)


def apply_edits(config: dict[str, Any], edits: dict[str, Any]) -> dict[str, Any]:
    """The playbook's config edits (``batch_size: "batch_size // 2"``) over a config.
    A whole number stays a whole number (rounded down) and a positive one stays positive:
    an edit that cannot (``batch_size // 2`` of 1), or that gives NaN, inf or true/false,
    raises EditError rather than retrying with a value the trainer never meant to see."""
    out = dict(config)
    for key, edit in edits.items():
        if not isinstance(edit, str):
            out[key] = edit
            continue
        try:
            value = E.evaluate(E.parse(edit), lambda ref: _number(config, ref.parts[0]))
        except (ArithmeticError, E.ExprError) as exc:  # x / 0, an overflow
            raise EditError(f"{key}: {edit} fails: {exc}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise EditError(f"{key}: {edit} gives {value!r}, not a finite number")
        old = config.get(key)
        if isinstance(old, int) and not isinstance(old, bool):
            value = math.floor(value)
            if old > 0 and value < 1:
                raise EditError(f"{key}: {edit} gives {value} from {old}; it cannot go lower")
        out[key] = value
    return out
