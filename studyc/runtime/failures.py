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


def apply_edits(config: dict[str, Any], edits: dict[str, Any]) -> dict[str, Any]:
    """The playbook's config edits (``batch_size: "batch_size // 2"``) over a config.
    Whole-number results stay whole numbers when the old value was one."""
    out = dict(config)
    for key, edit in edits.items():
        if isinstance(edit, str):
            value = E.evaluate(E.parse(edit), lambda ref: float(config[ref.parts[0]]))
            old = config.get(key)
            if isinstance(old, int) and not isinstance(old, bool) and float(value).is_integer():
                value = max(int(value), 1) if old > 0 else int(value)
        else:
            value = edit
        out[key] = value
    return out
