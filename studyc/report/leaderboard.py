"""The leaderboard: one CSV shared across studies (``report: {leaderboard: PATH}``), with
seed 002's columns: run_id, timestamp, label, the primary and secondary metrics,
wall_clock, params, tags (then study, profile, arm, n and config).

One row per arm of the latest report (the arm's mean over its finished runs). A row is
keyed by its run ids: re-rendering a report updates the arm's row in place instead of
adding another; an arm whose runs change (a new config, more seeds) gets a new row, so
the file keeps the history. Columns are the union over every study that wrote to it.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import time
from pathlib import Path
from typing import Any

from studyc.artifacts import atomic_write
from studyc.quoting import csv_cell
from studyc.report.collect import Results
from studyc.spec.arms import ArmSpec

PARAM_METRICS = ("params", "n_params", "num_params", "parameters")
HEAD = ["run_id", "timestamp", "label"]
TAIL = ["wall_clock (s)", "params", "tags", "study", "profile", "arm", "n", "config"]
PROMOTED = "promoted"  # set by `studyc promote`: when, and into which file


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def metric_column(results: Results, metric: str) -> str:
    unit = results.study.metrics[metric].unit
    return f"{metric} ({unit})" if unit and unit != "count" else metric


def rows(results: Results, specs: dict[str, ArmSpec]) -> list[dict[str, str]]:
    """One row per arm that has finished runs, in the study's order."""
    study = results.study
    primary = study.primary_metric
    params = next((m for m in PARAM_METRICS if m in results.metrics), None)
    metrics = [m for m in [primary] + results.metrics if m != params and m in results.metrics]
    metrics = list(dict.fromkeys(metrics))
    out = []
    for name, arm in results.arms.items():
        done = [r for r in arm.runs if r.status == "done"] if arm.source == "runs" else []
        if not done:
            continue
        spec = specs.get(name)
        ended = max(r.ended_at or 0 for r in done)
        walls = [r.wall_clock for r in done if r.wall_clock is not None]
        row = {
            "run_id": " ".join(r.id for r in arm.runs),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ended)) if ended else "",
            "label": (spec.label if spec and spec.label else name),
            **{metric_column(results, m): _cell(results.summary(arm, m)["mean"]) for m in metrics},
            "wall_clock (s)": _cell(sum(walls) / len(walls)) if walls else "",
            "params": _cell(results.summary(arm, params)["mean"]) if params else "",
            "tags": " ".join(dict.fromkeys(list(study.tags) + list(spec.tags if spec else ()))),
            "study": study.study,
            "profile": results.profile or "",
            "arm": name,
            "n": str(len(done)),
            "config": json.dumps(spec.config, sort_keys=True) if spec else "",
        }
        out.append(row)
    return out


def update(path: Path, new_rows: list[dict[str, str]]) -> dict[str, int]:
    """Merge rows into the CSV at ``path`` (created if absent), atomically and under a
    lock (two studies may report at once). Returns how many rows were added and updated."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _merge(path, new_rows)


def _merge(path: Path, new_rows: list[dict[str, str]]) -> dict[str, int]:
    old_rows: list[dict[str, str]] = []
    columns: list[str] = []
    if path.exists():
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            columns = list(reader.fieldnames or [])
            old_rows = list(reader)
    for row in new_rows:
        columns += [c for c in row if c not in columns]
    columns = [c for c in HEAD if c in columns] + [c for c in columns if c not in HEAD and c not in TAIL] \
        + [c for c in TAIL if c in columns]
    index = {row.get("run_id"): i for i, row in enumerate(old_rows)}
    added = updated = 0
    for row in new_rows:
        if row["run_id"] in index:  # cells the row does not write (a promotion mark) are kept
            old_rows[index[row["run_id"]]] = {**old_rows[index[row["run_id"]]], **row}
            updated += 1
        else:
            index[row["run_id"]] = len(old_rows)
            old_rows.append(row)
            added += 1
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow([csv_cell(c) for c in columns])
    writer.writerows([csv_cell(row.get(c, "")) for c in columns] for row in old_rows)
    atomic_write(path, text.getvalue().encode("utf-8"))
    return {"added": added, "updated": updated, "rows": len(old_rows)}
