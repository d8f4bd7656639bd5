"""collect -> judge -> render, from the store: what `studyc report` does (and `studyc run`
after its runs). Runs nothing."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from studyc.errors import RunError
from studyc.report import leaderboard, plots
from studyc.report.artifact_links import artifact_rows
from studyc.report.collect import collect, curves
from studyc.report.prereg import preregistration
from studyc.report.render import featured_arms, figures, render
from studyc.report.sequential import judge, read_looks
from studyc.runtime.store import Store
from studyc.spec.model import Study


LARGE_REPORT_RUNS = 1000


@dataclass
class Built:
    paths: dict[str, Path]
    verdicts: dict[str, Any]
    preregistration: dict[str, Any]
    leaderboard: dict[str, Any] | None


def build_report(study: Study, store: Store, profile: str | None, out: Path,
                 plan: Callable[[], dict[str, Any]]) -> Built:
    """``plan``: gives spec_hash, checks_hash and totals (the estimates) of the compiled
    plan; asked for once the figures are handed over (reading a large plan.json takes a
    while). A large study's report starts the figures' helper process and the imports
    judging and rendering need first, to run beside its collect and judge (a small one's
    would only wait for them)."""
    if store.count_runs(study.study, profile) < LARGE_REPORT_RUNS:
        with plots.Painter(helper=False) as painter:
            return _build(study, store, profile, out, plan, painter)
    imports = threading.Thread(target=_import_ahead, name="studyc-import-ahead", daemon=True)
    imports.start()
    try:
        with plots.Painter() as painter:
            return _build(study, store, profile, out, plan, painter)
    finally:
        imports.join()


def _import_ahead() -> None:
    """Import what judging and rendering need (scipy's quantiles, jinja2) while collect
    waits on SQLite, which runs without holding the GIL."""
    import jinja2  # noqa: F401
    import scipy.special  # noqa: F401


def _build(study: Study, store: Store, profile: str | None, out: Path, plan_facts: Callable[[], dict[str, Any]],
           painter: plots.Painter) -> Built:
    results = collect(study, store, profile)
    if not results.all_runs() and not any(arm.source == "reuse" for arm in results.arms.values()):
        others = [p or "(no profile)" for p in store.profiles(study.study)]
        hint = (f"it has runs under --profile {', '.join(others)}" if others
                else "run it first with `studyc run`, or point --store (or $STUDYC_HOME) at the store that has its runs")
        raise RunError(f"the store at {store.home} holds no runs of study '{study.study}'"
                       + (f" with profile '{profile}'" if profile else ""), hint)
    verdicts = judge(study, results, read_looks(store, study.study, profile)).all()
    series = study.metrics[study.primary_metric].from_ or study.primary_metric
    learning = curves(store, results, featured_arms(results, verdicts, plots.MAX_CURVES), series)
    drawn = figures(results, verdicts, learning, series)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    painter.paint(drawn, out / "plots")  # first: the figures are drawn while the rest is written
    plan = plan_facts()
    prereg = preregistration(store.study_record(study.study, profile), plan["checks_hash"],
                             any(r.status == "done" for r in results.all_runs()))
    specs = results.specs
    board = None
    if study.report.leaderboard:
        path = Path(study.report.leaderboard)
        board = {"path": str(path), **leaderboard.update(path, leaderboard.rows(results, specs))}
    meta = {"spec_hash": plan["spec_hash"], "preregistration": prereg, "totals": plan["totals"], "arms": specs,
            "leaderboard": board, "artifacts": artifact_rows(results, store, out),
            "plots": [{"title": fig["title"], "path": f"plots/{fig['file']}"} for fig in drawn]}
    paths = render(results, verdicts, out, meta)
    if board is not None:
        paths["leaderboard"] = Path(board["path"])
    return Built(paths, verdicts, prereg, board)
