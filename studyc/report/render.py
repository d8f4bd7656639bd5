"""Verdicts + Results -> the report files: ablation_report.md (Jinja2, StrictUndefined; a
./templates/ folder overrides the built-in templates), comparison.csv, plots/*.png,
verdicts.json and results.json."""

from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Any

from studyc.artifacts import envelope, write_json
from studyc.errors import RunError
from studyc.quoting import CsvWriter, Verbatim, fenced, markdown
from studyc.report import plots
from studyc.report.collect import Results, to_dict
from studyc.report.numbers import duration, fmt, fmt_width
from studyc.spec import expr as E
from studyc.spec.arms import ArmSpec, deep_merge

REPORT_FILE = "ablation_report.md"
TEMPLATE = "ablation_report.md.j2"
MAX_CANDIDATE_ROWS = 50  # a stage with more candidates lists the best ones (all are in verdicts.json)
MAX_RUN_ROWS = 100  # a study with more runs lists only those that need attention



def _method_text(stats: Any) -> str:
    """How intervals were made, as the report states it."""
    if stats.method == "bootstrap":
        return ("paired bootstrap (seeds resampled together across arms)" if stats.paired
                else "bootstrap percentile interval")
    return ("paired t interval over matched seeds (Welch-Satterthwaite for arms without matching seeds)"
            if stats.paired else "t interval, Welch-Satterthwaite degrees of freedom when arms are compared")

def environment(user_templates: Path):
    """Built-in templates, overridden file by file by the user's ``./templates/``."""
    import jinja2

    loaders = []
    if user_templates.is_dir():
        loaders.append(jinja2.FileSystemLoader(str(user_templates)))
    loaders.append(jinja2.PackageLoader("studyc", "templates"))
    # Every printed value stays on its line (a newline in a unit or a claim cannot start
    # markdown of its own); blocks go through `fenced`. The compiled template is cached
    # (keyed by its source, in a per-user temp folder): compiling it is a large share of a
    # small study's report time.
    env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False,
                             finalize=lambda v: v if isinstance(v, Verbatim) or not isinstance(v, str) else markdown(v),
                             bytecode_cache=jinja2.FileSystemBytecodeCache())
    env.filters["cell"] = markdown
    env.filters["fenced"] = fenced
    env.filters["first_upper"] = lambda v: str(v)[:1].upper() + str(v)[1:]
    return env


def render_template(user_templates: Path, context: dict[str, Any]) -> str:
    """The report text. A failing user template is the user's to fix: say where."""
    import jinja2

    try:
        return environment(user_templates).get_template(TEMPLATE).render(**context)
    except jinja2.TemplateError as exc:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(".j2")]
        file = getattr(exc, "filename", None) or (frames[-1].filename if frames else None)
        line = getattr(exc, "lineno", None) or (frames[-1].lineno if frames else None)
        if not file or not Path(file).resolve().is_relative_to(user_templates.resolve()):
            raise
        raise RunError(f"the report template {file}:{line} failed: {exc}",
                       "fix it (its context is built by studyc.report.render.build_context), "
                       f"or remove it from {user_templates} to use the built-in template") from None


def _mean_ci(stats: dict[str, Any]) -> str:
    if not stats["n"]:
        return "—"
    text = fmt(stats["mean"])
    if stats["n"] > 1 and stats["ci_lo"] is not None:  # None: a spread past float range
        text += f" ± {fmt_width((stats['ci_hi'] - stats['ci_lo']) / 2)}"
    return text


def _metric_header(results: Results, metric: str) -> str:
    unit = results.study.metrics[metric].unit
    return f"{metric} ({unit})" if unit else metric


def _sign(results: Results, metric: str) -> float:
    return -1.0 if results.study.metrics[metric].goal == "max" else 1.0


def featured_arms(results: Results, verdicts: dict[str, Any], limit: int) -> list[str]:
    """The arms a figure shows: all of them (study order) when they fit; otherwise the
    champion, the arms the checks name, then the best by the primary metric."""
    names = list(results.arms)
    if len(names) <= limit:
        return names
    primary = results.study.primary_metric
    named = {r.parts[0] for h in results.study.hypotheses.values() for r in E.refs(E.parse(h.check))}
    sign = _sign(results, primary)

    def rank(name: str) -> float:
        mean = results.summary(results.arms[name], primary)["mean"]
        return sign * mean if mean is not None else float("inf")

    first = [n for n in [verdicts.get("champion")] + sorted(named & set(names)) if n in names]
    rest = sorted((n for n in names if n not in first), key=rank)
    chosen = list(dict.fromkeys(first + rest))[:limit]
    return sorted(chosen, key=rank)


def figures(results: Results, verdicts: dict[str, Any], curves: dict[str, dict[str, list[float]]],
            series: str) -> list[plots.Figure]:
    """The report's figures: the primary metric and those the hypotheses check per arm,
    the learning curves, and the stage tournament."""
    study = results.study
    primary = study.primary_metric
    total = len(results.arms)
    shown = featured_arms(results, verdicts, plots.MAX_BARS)
    checked = {r.parts[-1] for h in study.hypotheses.values() for r in E.refs(E.parse(h.check))}
    metrics = [primary] + [m for m in results.metrics if m != primary and m in checked]
    out = [plots.metric_per_arm(results, metric, shown, total, verdicts["champion"]) for metric in metrics[:3]]
    out.append(plots.learning_curves(results, curves, series, total))
    if verdicts["stages"]:
        out.append(plots.tournament(results, verdicts["stages"], primary))
    return [fig for fig in out if fig is not None]


def _config_columns(specs: dict[str, ArmSpec]) -> list[str]:
    """Config keys the arms set (dotted for nested ones): what tells the arms apart."""
    keys: list[str] = []
    for spec in specs.values():
        keys += [k for k in _flatten(spec.config) if k not in keys]
    return keys


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def write_comparison_csv(path: Path, results: Results, specs: dict[str, ArmSpec]) -> None:
    """One row per arm (n, and each metric's mean, std and interval), the baselines after,
    then the label and the config that sets the arm apart."""
    study = results.study
    metrics = results.metrics
    keys = _config_columns(specs)
    header = ["arm", "stage", "source", "n"]
    for m in metrics:
        unit = f" ({study.metrics[m].unit})" if study.metrics[m].unit else ""
        header += [f"{m}_mean{unit}", f"{m}_std", f"{m}_ci_lo", f"{m}_ci_hi"]
    header += ["planned", "label"] + [f"config.{k}" for k in keys]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = CsvWriter(fh)
        writer.writerow(header)
        for name, arm in results.arms.items():
            stats = [results.summary(arm, m) for m in metrics]
            spec = specs.get(name)
            config = _flatten(deep_merge(study.run.config, spec.config)) if spec else {}
            row: list[Any] = [name, arm.stage or "", arm.source, max((s["n"] for s in stats), default=0)]
            for s in stats:
                row += [_csv(s["mean"]), _csv(s["std"]), _csv(s["ci_lo"]), _csv(s["ci_hi"])]
            planned = max((s["planned"] for s in stats), default=0)
            writer.writerow(row + [planned, spec.label if spec and spec.label else ""] + [config.get(k, "") for k in keys])
        for name, b in study.baselines.items():
            row = [name, "", "baseline", ""]
            for m in metrics:
                row += [_csv(b.values.get(m)), "", "", ""]
            writer.writerow(row + ["", b.source or ""] + ["" for _ in keys])


def _csv(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, (int, float)) and value == value and abs(value) != float("inf") else ""


def _hypothesis_rows(verdicts: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, h in verdicts["hypotheses"].items():
        obs = h.get("observed") or {}
        rows.append({**h, "name": name, "observed_text": obs.get("observed_text", "—"),
                     "needs_text": obs.get("threshold_text", "—"), "n_text": "" if obs.get("n") is None else str(obs["n"]),
                     "n_one": obs.get("n") == 1,
                     "holm_text": "—" if h.get("holm_p") is None else f"{h['holm_p']:.3g}"})
    return rows


def _stage_rows(results: Results, verdicts: dict[str, Any]) -> list[dict[str, Any]]:
    primary = results.study.primary_metric
    out = []
    for stage, s in verdicts["stages"].items():
        spec = results.study.stages[stage]
        ranked = [arm for arm, _ in s["ranking"]]
        order = ranked + [a for a in s["gates"] if a not in ranked]
        passed = len(ranked)
        rows = []
        for arm in order[:MAX_CANDIDATE_ROWS]:
            gate = s["gates"][arm]
            rows.append({"arm": arm, "status": gate["status"], "sentence": gate["sentence"],
                         "value": _mean_ci(results.summary(results.by_stage[stage][arm], primary)),
                         "rank": ranked.index(arm) + 1 if arm in ranked else "", "promoted": arm in s["promoted"]})
        promote = spec.promote if spec.promote in (None, "all") else f"top {spec.promote.top} by {spec.promote.by or primary}"
        out.append({"name": stage, "gate": spec.gate, "promote": promote or "none", "candidates": len(s["gates"]),
                    "passed": passed, "rows": rows, "hidden": max(0, len(order) - MAX_CANDIDATE_ROWS),
                    "promoted": s["promoted"], "needs": spec.needs, "description": spec.description})
    return out


def _run_rows(results: Results) -> tuple[list[dict[str, Any]], dict[str, int]]:
    rows, counts = [], {}
    for r in results.all_runs():
        counts[r.status] = counts.get(r.status, 0) + 1
        retries = [f"attempt {h['attempt']}: {h['failure'] or h['status']}"
                   + (" (" + ", ".join(f"{k} {a} → {b}" for k, (a, b) in h["changes"].items()) + ")" if h["changes"] else "")
                   for h in r.history]
        rows.append({"id": r.id, "arm": r.arm, "stage": r.stage, "seed": r.seed, "status": r.status, "attempts": r.attempts,
                     "failure": r.failure or "", "skipped": r.skipped, "log_tail": r.log_tail,
                     "time": duration(r.wall_clock) if r.wall_clock is not None else "",
                     "retries": "; ".join(retries), "attention": r.status != "done" or r.attempts > 1})
    return rows, counts


def _budget(results: Results, meta: dict[str, Any]) -> dict[str, Any]:
    runs = results.all_runs()
    budget = results.study.budget
    totals = meta["totals"]
    starts = [r.started_at for r in runs if r.started_at]
    ends = [r.ended_at for r in runs if r.ended_at]
    return {
        "est_usd": f"${totals['usd']:.2f}", "est_gpu_hours": f"{totals['gpu_hours']:.2f} GPU-h",
        "est_wall": duration(totals["wall_hours"] * 3600),
        "spent_usd": f"${sum(r.usd or 0 for r in runs):.4f}",
        "spent_gpu_hours": f"{sum(r.gpu_hours or 0 for r in runs):.2f} GPU-h",
        "spent_wall": duration(max(ends) - min(starts)) if starts and ends else "—",
        "limit_usd": f"${budget.usd:.2f}" if budget.usd is not None else "—",
        "limit_gpu_hours": f"{budget.gpu_hours:g} GPU-h" if budget.gpu_hours is not None else "—",
        "limit_wall": duration(budget.wall * 3600) if budget.wall is not None else "—",
        "parallel": budget.parallel,
    }


def build_context(results: Results, verdicts: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    study = results.study
    specs: dict[str, ArmSpec] = meta["arms"]
    metric_columns = [{"name": m, "header": _metric_header(results, m)} for m in results.metrics]
    arm_rows = []
    for name, arm in results.arms.items():
        stats = [results.summary(arm, m["name"]) for m in metric_columns]
        n, planned = max((s["n"] for s in stats), default=0), max((s["planned"] for s in stats), default=0)
        source = {"runs": "run", "reuse": f"reused ({arm.reuse_source or 'earlier result'})",
                  "same_as": arm.reuse_source or "same as another arm"}[arm.source]
        spec = specs.get(name)
        arm_rows.append({"arm": name, "label": spec.label if spec else None, "source": source,
                         "stage": arm.stage if len(results.stages) > 1 else None,
                         "n": str(n) if n == planned else f"{n} of {planned}",
                         "champion": name == verdicts["champion"], "cells": [_mean_ci(s) for s in stats]})
    baseline_rows = [{"name": name, "source": b.source,
                      "cells": [fmt(b.values[m["name"]]) if isinstance(b.values.get(m["name"]), (int, float)) else "—"
                                for m in metric_columns]}
                     for name, b in study.baselines.items()]
    counts: dict[str, int] = {}
    for h in verdicts["hypotheses"].values():
        counts[h["status"]] = counts.get(h["status"], 0) + 1
    derived = [{**d, "name": name, "value_text": "missing: " + "; ".join(d["missing"]) if d["value"] is None
                else fmt(d["value"]) + (f" {d['unit']}" if d.get("unit") else ""),
                "ci_text": "" if d["ci"][0] is None else f"[{fmt(d['ci'][0])}, {fmt(d['ci'][1])}]"}
               for name, d in verdicts["derived"].items()]
    expectations = [{**e, "range_text": f"[{fmt(e['low']) if e['low'] is not None else '−∞'}, "
                                        f"{fmt(e['high']) if e['high'] is not None else '∞'}]",
                     "observed_text": "—" if e["observed"] is None else fmt(e["observed"])
                     + (f" [{fmt(e['ci'][0])}, {fmt(e['ci'][1])}]" if e["ci"] and e["ci"][0] != e["ci"][1] else "")}
                    for e in verdicts["expectations"]]
    run_rows, run_counts = _run_rows(results)
    return {
        "title": study.title or study.study,
        "study": study,
        "profile": results.profile,
        "spec_hash": meta["spec_hash"],
        "generated_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "confidence_pct": f"{study.stats.confidence * 100:g}%",
        "method_text": _method_text(study.stats),
        "alpha_text": f"{verdicts['stats']['alpha_one_sided']:.3g}",
        "verdicts": verdicts,
        "hypotheses": _hypothesis_rows(verdicts),
        "counts": [f"{n} {s}" for s, n in sorted(counts.items())],
        "run_counts": [f"{n} {s}" for s, n in sorted(run_counts.items())] or ["none"],
        "prereg": meta["preregistration"],
        "metric_columns": metric_columns,
        "arm_rows": arm_rows,
        "baseline_rows": baseline_rows,
        "derived": derived,
        "expectations": expectations,
        "stage_rows": _stage_rows(results, verdicts),
        "tier_checks": study.tier_checks(),
        "all_runs": len(run_rows) <= MAX_RUN_ROWS,
        "run_rows": run_rows if len(run_rows) <= MAX_RUN_ROWS else [r for r in run_rows if r["attention"]],
        "run_total": len(run_rows),
        "retried_rows": [r for r in run_rows if r["retries"]],
        "failed_rows": [r for r in run_rows if r["status"] == "failed" and r["log_tail"]],
        "skipped_rows": [r for r in run_rows if r["skipped"]],
        "budget": _budget(results, meta),
        "plots": meta.get("plots", []),
        "leaderboard": meta.get("leaderboard"),
        "artifacts": meta.get("artifacts", []),
    }


def render(results: Results, verdicts: dict[str, Any], out: Path, meta: dict[str, Any]) -> dict[str, Path]:
    """Write the report's text files into ``out`` (the figures are painted beside them).
    ``meta``: spec_hash, preregistration, totals (the plan's estimates), arms (expanded
    specs), leaderboard (or None), plots (the figures' titles and paths)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"report": out / REPORT_FILE, "csv": out / "comparison.csv", "verdicts": out / "verdicts.json",
             "results": out / "results.json", "plots": out / "plots"}
    text = render_template(Path.cwd() / "templates", build_context(results, verdicts, meta))
    paths["report"].write_text(_tidy(text), encoding="utf-8")
    write_comparison_csv(paths["csv"], results, meta["arms"])
    body = {"study": results.study.study, "profile": results.profile, "preregistration": meta["preregistration"],
            **verdicts}
    write_json(paths["verdicts"], envelope("verdicts", meta["spec_hash"], body))
    write_json(paths["results"], {**envelope("results", meta["spec_hash"], {}), **to_dict(results)})
    return paths


def _tidy(text: str) -> str:
    """Collapse the blank lines template control blocks leave behind."""
    lines, blank = [], 0
    for line in text.splitlines():
        blank = blank + 1 if not line.strip() else 0
        if blank <= 1:
            lines.append(line.rstrip())
    return "\n".join(lines).strip() + "\n"
