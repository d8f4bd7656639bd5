"""Verdicts + Results -> the report files: ablation_report.md (Jinja2; a ./templates/
folder overrides the built-in template), comparison.csv, plots/*.png, verdicts.json,
results.json, and a row per arm appended to the leaderboard when the study keeps one."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Any

from studyc.artifacts import envelope, write_json
from studyc.report.collect import Results, to_dict
from studyc.report.judge import fmt, fmt_width
from studyc.report.stats import describe
from studyc.spec.model import Study

REPORT_FILE = "ablation_report.md"
TEMPLATE = "ablation_report.md.j2"


def _environment(user_templates: Path):
    import jinja2

    loaders = []
    if user_templates.is_dir():
        loaders.append(jinja2.FileSystemLoader(str(user_templates)))
    loaders.append(jinja2.PackageLoader("studyc", "templates"))
    env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=False, lstrip_blocks=False, autoescape=False)
    env.filters["cell"] = lambda v: "" if v is None else str(v).replace("|", "\\|").replace("\n", " ")
    return env


def _mean_ci(stats: dict[str, Any], unit: str | None) -> str:
    if not stats["n"]:
        return "—"
    text = fmt(stats["mean"])
    if stats["n"] > 1:
        text += f" ± {fmt_width((stats['ci_hi'] - stats['ci_lo']) / 2)}"
    return text + (f" {unit}" if unit and unit not in ("count",) else "")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def build_context(study: Study, results: Results, verdicts: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    confidence = study.stats.confidence
    results_dict = to_dict(results, confidence)
    metric_columns = [{"name": m, "header": f"{m} ({study.metrics[m].unit})" if study.metrics[m].unit else m}
                      for m in results.metrics if m in study.metrics and not _study_level(study, m)]
    arm_rows = []
    labels = {name: spec.label for name, spec in meta["arms"].items()}
    for name, arm in results_dict["arms"].items():
        stats = arm["metrics"]
        n = max((s["n"] for s in stats.values()), default=0)
        source = {"runs": "run", "reuse": f"reused ({arm['reuse_source'] or 'earlier result'})",
                  "same_as": arm["reuse_source"]}[arm["source"]]
        arm_rows.append({"arm": name, "label": labels.get(name), "source": source, "n": n,
                         "cells": [_mean_ci(stats[m["name"]], None) for m in metric_columns]})
    baseline_rows = [{"name": name, "source": b.source,
                      "cells": [fmt(b.values[m["name"]]) if m["name"] in b.values else "—" for m in metric_columns]}
                     for name, b in study.baselines.items()]
    hyps = {}
    for name, h in verdicts["hypotheses"].items():
        obs = h.get("observed") or {}
        observed_text = "—"
        if obs.get("kind") in ("rel", "abs"):
            observed_text = h["sentence"].split(", needs")[0]
        elif obs:
            half = (obs["ci"][1] - obs["ci"][0]) / 2 if obs.get("ci") else 0
            observed_text = fmt(obs["mean"]) + (f" ± {fmt_width(half)}" if half else "")
        n = obs.get("n")
        hyps[name] = {**h, "observed_text": observed_text, "n_text": "" if n is None else str(n),
                      "n_one": n == 1, "holm_text": "" if h.get("holm_p") is None else f"{h['holm_p']:.3g}"}
    counts = {}
    for h in verdicts["hypotheses"].values():
        counts[h["status"]] = counts.get(h["status"], 0) + 1
    derived = {}
    for name, d in verdicts["derived"].items():
        unit = f" {d['unit']}" if d.get("unit") else ""
        derived[name] = {**d, "value_text": "missing" if d["value"] is None else fmt(d["value"]) + unit,
                         "ci_text": "" if d["ci"][0] is None else f"[{fmt(d['ci'][0])}, {fmt(d['ci'][1])}]"}
    expectations = []
    for e in verdicts["expectations"]:
        lo, hi = e["low"], e["high"]
        range_text = f"[{fmt(lo) if lo is not None else '−∞'}, {fmt(hi) if hi is not None else '∞'}]"
        expectations.append({**e, "range_text": range_text,
                             "observed_text": "—" if e["observed"] is None else fmt(e["observed"])})
    runs = results.all_runs()
    run_counts: dict[str, int] = {}
    for r in runs:
        run_counts[r.status] = run_counts.get(r.status, 0) + 1
    run_rows = [{"id": r.id, "arm": r.arm, "stage": r.stage, "seed": r.seed, "status": r.status, "attempts": r.attempts,
                 "failure": r.failure, "log_tail": r.log_tail,
                 "time": _duration(r.ended_at - r.started_at) if r.started_at and r.ended_at and r.status != "skipped" else "",
                 "skipped": r.skipped} for r in runs]
    spent_wall = [r.ended_at for r in runs if r.ended_at], [r.started_at for r in runs if r.started_at]
    budget = study.budget
    return {
        "title": study.title or study.study,
        "study": study,
        "profile": results.profile,
        "spec_hash": meta["spec_hash"],
        "generated_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "confidence_pct": f"{confidence * 100:g}%",
        "verdicts": {**verdicts, "hypotheses": hyps, "derived": derived, "expectations": expectations},
        "counts": [f"{n} {s}" for s, n in sorted(counts.items())],
        "run_counts": [f"{n} {s}" for s, n in sorted(run_counts.items())] or ["none"],
        "prereg": meta["prereg"],
        "metric_columns": metric_columns,
        "arm_rows": arm_rows,
        "baseline_rows": baseline_rows,
        "tier_checks": study.tier_checks(),
        "run_rows": run_rows,
        "failed_rows": [r for r in run_rows if r["status"] == "failed" and r["log_tail"]],
        "skipped_rows": [r for r in run_rows if r["skipped"]],
        "budget": {
            "est_usd": meta["totals"]["usd"], "est_gpu_hours": meta["totals"]["gpu_hours"],
            "est_wall_hours": meta["totals"]["wall_hours"],
            "spent_usd": sum(r.usd or 0 for r in runs), "spent_gpu_hours": meta.get("spent_gpu_hours", 0.0),
            "spent_wall": _duration(max(spent_wall[0]) - min(spent_wall[1])) if spent_wall[0] and spent_wall[1] else "—",
            "limit_usd": f"${budget.usd:.2f}" if budget.usd is not None else "—",
            "limit_gpu_hours": f"{budget.gpu_hours:g} GPU-h" if budget.gpu_hours is not None else "—",
            "limit_wall": f"{budget.wall:g} h" if budget.wall is not None else "—",
        },
        "plots": meta.get("plots", []),
    }


def _study_level(study: Study, metric: str) -> bool:
    from studyc.spec import expr as E
    from studyc.spec.semantics import is_study_level

    expr = study.metrics[metric].expr
    return expr is not None and is_study_level(E.parse(expr))


def write_comparison_csv(path: Path, study: Study, results: Results) -> None:
    """One row per arm: n, and mean, std and interval of each metric."""
    metrics = [m for m in results.metrics if not _study_level(study, m)]
    header = ["arm", "stage", "source", "n"]
    for m in metrics:
        unit = f" ({study.metrics[m].unit})" if study.metrics[m].unit else ""
        header += [f"{m}_mean{unit}", f"{m}_std", f"{m}_ci_lo", f"{m}_ci_hi"]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for name, arm in results.arms.items():
            stats = {m: describe(arm.values(m), study.stats.confidence) for m in metrics}
            row = [name, arm.stage or "", arm.source, max((s["n"] for s in stats.values()), default=0)]
            for m in metrics:
                s = stats[m]
                row += [_csv(s["mean"]), _csv(s["std"]), _csv(s["ci_lo"]), _csv(s["ci_hi"])]
            writer.writerow(row)


def _csv(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.6g}"


def plot_metric_per_arm(path: Path, study: Study, results: Results, metric: str) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for name, arm in results.arms.items():
        stats = describe(arm.values(metric), study.stats.confidence)
        if stats["n"]:
            rows.append((name, stats))
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(rows) + 2), 3.6), dpi=110)
    xs = range(len(rows))
    means = [s["mean"] for _, s in rows]
    errs = [[s["mean"] - s["ci_lo"] for _, s in rows], [s["ci_hi"] - s["mean"] for _, s in rows]]
    ax.bar(xs, means, yerr=errs, capsize=4, color="#4C72B0", alpha=0.85)
    for name, b in study.baselines.items():
        if metric in b.values:
            ax.axhline(float(b.values[metric]), linestyle="--", linewidth=1, color="#C44E52")
            ax.text(len(rows) - 0.5, float(b.values[metric]), f" {name}", va="bottom", ha="right", fontsize=7, color="#C44E52")
    ax.set_xticks(list(xs), [n for n, _ in rows], rotation=20, ha="right", fontsize=8)
    unit = study.metrics[metric].unit
    ax.set_ylabel(f"{metric} ({unit})" if unit else metric)
    ax.set_title(f"{metric} per arm (mean, {study.stats.confidence * 100:g}% CI)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def plot_learning_curves(path: Path, series: dict[str, dict[str, list[tuple[int, float]]]], metric: str) -> bool:
    """``series``: arm -> run id -> [(step, value)]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not any(runs for runs in series.values()):
        return False
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (arm, runs) in enumerate(series.items()):
        for j, points in enumerate(runs.values()):
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, color=colors[i % len(colors)], alpha=0.8, linewidth=1.2, label=arm if j == 0 else None)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} during training", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def render(study: Study, results: Results, verdicts: dict[str, Any], out: Path, meta: dict[str, Any],
           curves: dict[str, dict[str, list[tuple[int, float]]]] | None = None) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    plots_dir = out / "plots"
    plots_dir.mkdir(exist_ok=True)
    plots = []
    primary = study.primary_metric
    if plot_metric_per_arm(plots_dir / f"{primary}_per_arm.png", study, results, primary):
        plots.append({"title": f"{primary} per arm", "path": f"plots/{primary}_per_arm.png"})
    series_name = study.metrics[primary].from_ or primary
    if curves and plot_learning_curves(plots_dir / f"{series_name}_curves.png", curves, series_name):
        plots.append({"title": f"{series_name} learning curves", "path": f"plots/{series_name}_curves.png"})
    meta = {**meta, "plots": plots}
    context = build_context(study, results, verdicts, meta)
    text = _environment(Path.cwd() / "templates").get_template(TEMPLATE).render(**context)
    paths = {"report": out / REPORT_FILE, "csv": out / "comparison.csv", "verdicts": out / "verdicts.json",
             "results": out / "results.json", "plots": plots_dir}
    paths["report"].write_text(_tidy(text), encoding="utf-8")
    write_comparison_csv(paths["csv"], study, results)
    write_json(paths["verdicts"], envelope("verdicts", meta["spec_hash"], {"study": study.study, "profile": results.profile,
                                                                         "prereg": meta["prereg"], **verdicts}))
    write_json(paths["results"], envelope("results", meta["spec_hash"], to_dict(results, study.stats.confidence)))
    return paths


def _tidy(text: str) -> str:
    """Collapse the blank lines template control blocks leave behind."""
    lines, blank = [], 0
    for line in text.splitlines():
        blank = blank + 1 if not line.strip() else 0
        if blank <= 1:
            lines.append(line.rstrip())
    return "\n".join(lines).strip() + "\n"
