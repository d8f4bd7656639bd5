"""The report's figures (matplotlib's Agg canvas, no pyplot state): a metric per arm with
its confidence interval, learning curves per arm, and the stage tournament.

Large sweeps are shown by their best arms (MAX_BARS, MAX_CURVES), and the title says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from studyc.report.collect import Results

MAX_BARS = 30
MAX_CURVES = 8
BASELINE_COLOR = "#C44E52"
BAR_COLOR = "#4C72B0"
BEST_COLOR = "#DD8452"


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def _label(results: Results, metric: str) -> str:
    unit = results.study.metrics[metric].unit
    return f"{metric} ({unit})" if unit and unit != "count" else metric


def _baselines(ax, results: Results, metric: str, left: float, right: float) -> None:
    """Dashed lines, labelled at alternating ends so that close baselines stay legible."""
    shown = [(name, float(b.values[metric])) for name, b in results.study.baselines.items()
             if isinstance(b.values.get(metric), (int, float))]
    for i, (name, value) in enumerate(shown):
        ax.axhline(value, linestyle="--", linewidth=1, color=BASELINE_COLOR)
        ax.text(right if i % 2 == 0 else left, value, f" {name} ", va="bottom", ha="right" if i % 2 == 0 else "left",
                fontsize=7, color=BASELINE_COLOR)


def metric_per_arm(path: Path, results: Results, metric: str, arms: list[str], total: int,
                   champion: str | None) -> bool:
    """Bars of the arm means with their confidence intervals, baselines as dashed lines.
    ``arms``: the arms to show, in order; ``total``: how many arms the study has."""
    rows = [(name, results.summary(results.arms[name], metric)) for name in arms]
    rows = [(name, s) for name, s in rows if s["n"]]
    if not rows:
        return False
    fig = _figure(max(4.5, 0.45 * len(rows) + 2.5), 3.8)
    ax = fig.subplots()
    xs = list(range(len(rows)))
    means = [s["mean"] for _, s in rows]
    errs = [[s["mean"] - s["ci_lo"] for _, s in rows], [s["ci_hi"] - s["mean"] for _, s in rows]]
    colors = [BEST_COLOR if name == champion else BAR_COLOR for name, _ in rows]
    ax.bar(xs, means, yerr=errs, capsize=3, color=colors, alpha=0.85)
    _baselines(ax, results, metric, -0.5, len(rows) - 0.5)
    ax.set_xticks(xs, [f"{n} (n={s['n']})" for n, s in rows], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(_label(results, metric))
    shown = f", best {len(rows)} of {total} arms" if total > len(rows) else ""
    ax.set_title(f"{metric} per arm (mean, {results.study.stats.confidence * 100:g}% CI{shown})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    return True


def learning_curves(path: Path, results: Results, curves: dict[str, dict[str, list[float]]], series: str,
                    total: int) -> bool:
    """Per arm, the mean over its runs at each step, with the band from min to max."""
    if not curves:
        return False
    fig = _figure(6.5, 3.8)
    ax = fig.subplots()
    for arm, c in curves.items():
        line, = ax.plot(c["step"], c["mean"], linewidth=1.3, label=arm)
        ax.fill_between(c["step"], c["min"], c["max"], color=line.get_color(), alpha=0.15, linewidth=0)
    unit = results.study.metrics[series].unit if series in results.study.metrics else None
    ax.set_xlabel("step")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(f"{series} ({unit})" if unit else series)
    shown = f", {len(curves)} of {total} arms" if total > len(curves) else ""
    ax.set_title(f"{series} during training (mean over seeds, band: min to max{shown})", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    return True


def tournament(path: Path, results: Results, stages: dict[str, Any], metric: str) -> bool:
    """Each stage's candidates by ``metric`` (mean and interval): gate passed (filled) or
    not (hollow), the promoted ones starred, named and followed into later stages."""
    order = [s for s in results.stages if s in stages and results.by_stage.get(s)]
    if not order:
        return False
    fig = _figure(max(5.0, 2.2 * len(order) + 1.5), 4.2)
    ax = fig.subplots()
    positions: dict[str, list[tuple[float, float]]] = {}
    for x, stage in enumerate(order):
        gates, promoted = stages[stage]["gates"], set(stages[stage]["promoted"])
        points = {"promoted": [], "passed": [], "other": []}  # (x, mean, lower error, upper error, name)
        for i, (name, arm) in enumerate(results.by_stage[stage].items()):
            s = results.summary(arm, metric)
            if not s["n"]:
                continue
            jx = x + ((i % 21) - 10) * 0.012
            kind = "promoted" if name in promoted else "passed" if gates.get(name, {}).get("status") == "PASS" else "other"
            points[kind].append((jx, s["mean"], s["mean"] - s["ci_lo"], s["ci_hi"] - s["mean"], name))
            positions.setdefault(name, []).append((jx, s["mean"]))
        every = [p for kind in points.values() for p in kind]
        if every and len(every) <= 50:  # intervals only where they stay readable
            ax.errorbar([p[0] for p in every], [p[1] for p in every], yerr=[[p[2] for p in every], [p[3] for p in every]],
                        fmt="none", ecolor="#999999", elinewidth=0.8, capsize=2)
        small = 24 if len(every) <= 50 else 8
        for kind, style in (("other", {"facecolors": "none", "edgecolors": BAR_COLOR, "s": small}),
                            ("passed", {"facecolors": BAR_COLOR, "edgecolors": BAR_COLOR, "s": small}),
                            ("promoted", {"facecolors": BEST_COLOR, "edgecolors": BEST_COLOR, "s": 90, "marker": "*"})):
            if points[kind]:
                ax.scatter([p[0] for p in points[kind]], [p[1] for p in points[kind]], linewidths=0.8, zorder=3, **style)
        for jx, mean, _, _, name in points["promoted"]:
            ax.annotate(name, (jx, mean), xytext=(4, 4), textcoords="offset points", fontsize=7)
    for track in positions.values():
        if len(track) > 1:
            xs, ys = zip(*track)
            ax.plot(xs, ys, color=BEST_COLOR, linewidth=0.8, alpha=0.7)
    _baselines(ax, results, metric, -0.6, len(order) - 0.4)
    ax.set_xticks(list(range(len(order))), [f"{s}\n({len(results.by_stage[s])} arms)" for s in order], fontsize=8)
    ax.set_xlim(-0.6, len(order) - 0.4)
    ax.set_ylabel(_label(results, metric))
    ax.set_title(f"stages: {metric} per candidate (filled: gate passed, star: promoted)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    return True
