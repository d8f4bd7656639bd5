"""collect -> judge -> render, from the store: what `studyc report` does (and `studyc run`
after its runs). Runs nothing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studyc.errors import RunError
from studyc.report import leaderboard, plots
from studyc.report.artifact_links import artifact_rows
from studyc.report.collect import collect, curves
from studyc.report.prereg import preregistration
from studyc.report.render import featured_arms, render
from studyc.report.sequential import judge, read_looks
from studyc.runtime.store import Store
from studyc.spec.arms import expand_arms
from studyc.spec.model import Study


@dataclass
class Built:
    paths: dict[str, Path]
    verdicts: dict[str, Any]
    preregistration: dict[str, Any]
    leaderboard: dict[str, Any] | None


def build_report(study: Study, store: Store, profile: str | None, out: Path, plan: dict[str, Any]) -> Built:
    """``plan``: spec_hash, checks_hash and totals (the estimates) of the compiled plan."""
    results = collect(study, store, profile)
    if not results.all_runs() and not any(arm.source == "reuse" for arm in results.arms.values()):
        others = [p or "(no profile)" for p in store.profiles(study.study)]
        hint = (f"it has runs under --profile {', '.join(others)}" if others
                else "run it first with `studyc run`, or point --store (or $STUDYC_HOME) at the store that has its runs")
        raise RunError(f"the store at {store.home} holds no runs of study '{study.study}'"
                       + (f" with profile '{profile}'" if profile else ""), hint)
    verdicts = judge(study, results, read_looks(store, study.study, profile)).all()
    prereg = preregistration(store.study_record(study.study, profile), plan["checks_hash"],
                             any(r.status == "done" for r in results.all_runs()))
    specs = expand_arms(study)
    board = None
    if study.report.leaderboard:
        path = Path(study.report.leaderboard)
        board = {"path": str(path), **leaderboard.update(path, leaderboard.rows(results, specs))}
    series = study.metrics[study.primary_metric].from_ or study.primary_metric
    learning = curves(store, results, featured_arms(results, verdicts, plots.MAX_CURVES), series)
    meta = {"spec_hash": plan["spec_hash"], "preregistration": prereg, "totals": plan["totals"], "arms": specs,
            "leaderboard": board, "artifacts": artifact_rows(results, store, out)}
    paths = render(results, verdicts, out, meta, learning, series)
    if board is not None:
        paths["leaderboard"] = Path(board["path"])
    return Built(paths, verdicts, prereg, board)
