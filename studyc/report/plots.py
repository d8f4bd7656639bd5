"""The report's figures: a metric per arm with its confidence interval, learning curves
per arm, and the stage tournament.

A figure is described here (plain data: what to draw, from the results), then drawn by
studyc.report.painter with matplotlib. A `Painter` can hand the descriptions to a helper
process started when the report begins: importing matplotlib and rasterising take about
as long as the rest of a large report, and then run beside it instead of after it.

Large sweeps are shown by their best arms (MAX_BARS, MAX_CURVES), and the title says so.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

from studyc.report.collect import Results

from studyc.report.painter import BAR_COLOR, BEST_COLOR, Figure, draw

MAX_BARS = 30
MAX_CURVES = 8
HELPER_TIMEOUT_S = 300  # far beyond any report's figures


# ------------------------------------------------------------------ describing (no matplotlib)


def _label(results: Results, metric: str) -> str:
    unit = results.study.metrics[metric].unit
    return f"{metric} ({unit})" if unit and unit != "count" else metric


def _baseline_lines(results: Results, metric: str) -> list[tuple[str, float]]:
    return [(name, float(b.values[metric])) for name, b in results.study.baselines.items()
            if isinstance(b.values.get(metric), (int, float))]


def _errors(summary: dict[str, Any]) -> tuple[float, float]:
    """The error bar below and above the mean (none where the spread is past float range)."""
    if summary["ci_lo"] is None:
        return 0.0, 0.0
    return summary["mean"] - summary["ci_lo"], summary["ci_hi"] - summary["mean"]


def metric_per_arm(results: Results, metric: str, arms: list[str], total: int, champion: str | None) -> Figure | None:
    """Bars of the arm means with their confidence intervals, baselines as dashed lines.
    ``arms``: the arms to show, in order; ``total``: how many arms the study has."""
    rows = [(name, results.summary(results.arms[name], metric)) for name in arms]
    rows = [(name, s) for name, s in rows if s["n"]]
    if not rows:
        return None
    shown = f", best {len(rows)} of {total} arms" if total > len(rows) else ""
    return {"kind": "bars", "file": f"{metric}_per_arm.png", "title": f"{metric} per arm",
            "heading": f"{metric} per arm (mean, {results.study.stats.confidence * 100:g}% CI{shown})",
            "labels": [f"{n} (n={s['n']})" for n, s in rows], "means": [s["mean"] for _, s in rows],
            "errors": [list(e) for e in zip(*(_errors(s) for _, s in rows))],
            "colors": [BEST_COLOR if name == champion else BAR_COLOR for name, _ in rows],
            "ylabel": _label(results, metric), "baselines": _baseline_lines(results, metric)}


def learning_curves(results: Results, curves: dict[str, dict[str, list[float]]], series: str,
                    total: int) -> Figure | None:
    """Per arm, the mean over its runs at each step, with the band from min to max."""
    if not curves:
        return None
    unit = results.study.metrics[series].unit if series in results.study.metrics else None
    shown = f", {len(curves)} of {total} arms" if total > len(curves) else ""
    return {"kind": "curves", "file": f"{series}_curves.png", "title": f"{series} learning curves",
            "heading": f"{series} during training (mean over seeds, band: min to max{shown})",
            "curves": curves, "ylabel": f"{series} ({unit})" if unit else series}


def tournament(results: Results, stages: dict[str, Any], metric: str) -> Figure | None:
    """Each stage's candidates by ``metric`` (mean and interval): gate passed (filled) or
    not (hollow), the promoted ones starred, named and followed into later stages."""
    order = [s for s in results.stages if s in stages and results.by_stage.get(s)]
    if not order:
        return None
    columns = []
    for x, stage in enumerate(order):
        gates, promoted = stages[stage]["gates"], set(stages[stage]["promoted"])
        points: dict[str, list] = {"promoted": [], "passed": [], "other": []}  # (x, mean, lower, upper error, name)
        for i, (name, arm) in enumerate(results.by_stage[stage].items()):
            s = results.summary(arm, metric)
            if not s["n"]:
                continue
            kind = "promoted" if name in promoted else "passed" if gates.get(name, {}).get("status") == "PASS" else "other"
            points[kind].append((x + ((i % 21) - 10) * 0.012, s["mean"], *_errors(s), name))
        columns.append({"label": f"{stage}\n({len(results.by_stage[stage])} arms)", "points": points})
    return {"kind": "stages", "file": "stages.png", "title": "stage tournament",
            "heading": f"stages: {metric} per candidate (filled: gate passed, star: promoted)",
            "columns": columns, "ylabel": _label(results, metric), "baselines": _baseline_lines(results, metric)}


# ------------------------------------------------------------------ the painter


class Painter:
    """Draws figures into a folder, as a context manager: `paint` hands the figures over,
    leaving the context waits until they are written.

    ``helper``: draw in a helper process, started now so that it imports matplotlib while
    the report is collected and judged; by default only where matplotlib is not imported
    here already (then drawing here is as quick). A helper that cannot start, fails or
    goes away leaves its figures to be drawn here, so that an error is raised as it would
    be without one."""

    def __init__(self, helper: bool | None = None):
        self.proc: subprocess.Popen | None = None
        self.sent: tuple[list[Figure], Path] | None = None
        if sys.executable and (helper or (helper is None and "matplotlib" not in sys.modules)):
            package = str(Path(__file__).resolve().parents[2])
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package, os.environ.get("PYTHONPATH")]))}
            try:
                self.proc = subprocess.Popen([sys.executable, "-m", "studyc.report.painter"], stdin=subprocess.PIPE,
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            except OSError:
                self.proc = None

    def __enter__(self) -> "Painter":
        return self

    def paint(self, figures: list[Figure], plots_dir: Path) -> None:
        if not figures:  # nothing to draw: no waiting for the helper's import either
            self._stop()
            return
        if self.proc is not None:
            try:
                with self.proc.stdin:
                    pickle.dump((figures, str(plots_dir)), self.proc.stdin)
                self.sent = (figures, plots_dir)
                return
            except OSError:  # the helper is gone: draw here
                self._stop()
        self._draw_here(figures, plots_dir)

    def __exit__(self, kind, value, tb) -> None:
        if kind is not None or self.sent is None:
            self._stop()
            return
        try:
            failed = self.proc.wait(timeout=HELPER_TIMEOUT_S) != 0
        except subprocess.TimeoutExpired:  # stuck: it never takes a report down with it
            self._stop()
            failed = True
        if failed:
            self._draw_here(*self.sent)

    @staticmethod
    def _draw_here(figures: list[Figure], plots_dir: Path) -> None:
        for fig in figures:
            draw(fig, plots_dir)

    def _stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.stdin.close()
        except OSError:
            pass  # a pipe the helper left: nothing to flush
        self.proc.wait()
        self.proc = None
