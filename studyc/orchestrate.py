"""`studyc run` as a library call: compile, execute the stages as a graph (each when the
stages it needs have ended, judging gates and promoting between them), then judge and
render. `report` re-renders from the store."""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from studyc.compiler.plan import Compiler, Plan
from studyc.errors import RunError
from studyc.runtime.executor import Executor, LocalExecutor
from studyc.runtime.scheduler import Event, Scheduler, Spend
from studyc.runtime.store import Store
from studyc.spec.loader import LoadedStudy
from studyc.stageflow import StageFlow, check_cloud_evaluations


@dataclass
class Report:
    paths: dict[str, Path]
    verdicts: dict[str, Any]
    out: Path
    preregistration: dict[str, Any] | None = None


def default_out(loaded: LoadedStudy) -> Path:
    base = Path(loaded.study.report.dir or f"reports/{loaded.study.study}")
    return base / loaded.profile if loaded.profile else base


class StudyLock:
    """One `studyc run` per study and profile at a time (an advisory file lock that the
    kernel releases if studyc dies)."""

    def __init__(self, store: Store, study: str, profile: str | None):
        locks = store.home / "locks"
        locks.mkdir(exist_ok=True)
        self.path = locks / f"{study}{'@' + profile if profile else ''}.lock"
        self.fh = None

    def __enter__(self) -> "StudyLock":
        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.seek(0)
            holder = self.fh.read().strip() or "another process"
            self.fh.close()
            raise RunError(f"this study is already being run by {holder}",
                           "wait for it to finish, or follow it with `studyc status`") from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(f"studyc pid {os.getpid()}")
        self.fh.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fh is not None:
            fcntl.flock(self.fh, fcntl.LOCK_UN)
            self.fh.close()


def check_budget(plan: Plan, allow_over_budget: bool) -> None:
    if not plan.budget["ok"] and not allow_over_budget:
        raise RunError("the plan is over budget, so nothing was started:\n  " + "\n  ".join(plan.budget["violations"]),
                       "lower seeds, arms or hours, raise the budget, or pass --allow-over-budget on purpose")


def execute(loaded: LoadedStudy, store: Store, on_event: Callable[[Event], None] = lambda e: None,
            rerun: set[str] | None = None, allow_over_budget: bool = False, executor: Executor | None = None,
            parallel: int | None = None, cloud: Any = None) -> Plan:
    """Run every stage of the study on this machine, or with ``cloud`` (CloudOptions) as
    SkyPilot managed jobs. Finished runs are reused."""
    compiler = Compiler(loaded, parallel)
    plan = compiler.compile()
    check_budget(plan, allow_over_budget)
    study, profile = loaded.study, loaded.profile
    with StudyLock(store, study.study, profile):
        planned = [r for r in plan.runs if not r.pending]
        store.register_study(study.study, profile, str(loaded.path), plan.spec_hash, plan.checks_hash)
        store.forget_membership(study.study, profile, {(r.stage, r.arm, r.seed) for r in planned})
        store.add_runs(study.study, profile, planned)
        store.lock_checks(study.study, profile)
        spend = Spend()
        executor = executor or LocalExecutor()
        if cloud is not None:
            from studyc.runtime.sky_executor import SkyExecutor

            check_cloud_evaluations(study)
            executor = SkyExecutor(loaded, plan, store, cloud)
            executor.check()
        scheduler = Scheduler(study, store, executor, plan.workdir, parallel or plan.parallel, on_event,
                              rerun, spend=spend, study_key=(study.study, profile))
        # Stages that do not wait for each other run side by side (studyc.stageflow).
        flow = StageFlow(loaded, compiler, plan, store, lambda runs: store.add_runs(study.study, profile, runs))
        scheduler.execute(flow.start(), flow.stage_ended)
    return plan


def report(loaded: LoadedStudy, store: Store, out: Path | None = None, plan: Plan | None = None) -> Report:
    """Judge and render from the store; runs nothing."""
    from studyc.report.pipeline import build_report

    plan = plan or Compiler(loaded).compile()
    out = out or default_out(loaded)
    built = build_report(loaded.study, store, loaded.profile, out,
                         {"spec_hash": plan.spec_hash, "checks_hash": plan.checks_hash, "totals": plan.totals})
    return Report(built.paths, built.verdicts, out, built.preregistration)
