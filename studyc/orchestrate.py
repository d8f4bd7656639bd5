"""`studyc run` as a library call: compile (once), execute the stages as a graph (each
when the stages it needs have ended, judging gates and promoting between them), then
judge and render, writing plan.json beside the report. `report` re-renders from the
store and the plan.json a run left there."""

from __future__ import annotations

import fcntl
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from studyc.compiler.plan import Compiler, Plan
from studyc.errors import RunError
from studyc.runtime.executor import Executor, LocalExecutor
from studyc.runtime.scheduler import Event, Scheduler, Spend
from studyc.runtime.store import Store
from studyc.spec.loader import LoadedStudy
from studyc.stageflow import StageFlow, check_cloud_evaluations


PLAN_FILE = "plan.json"


@dataclass
class Report:
    paths: dict[str, Path]
    verdicts: dict[str, Any]
    out: Path
    preregistration: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)  # what the person should know (the study changed since its runs)


@dataclass
class Compiled:
    """A study compiled once per command: the plan, and the compiler that builds promoted
    runs later (it holds what the plan was built from: code version, prices, arms)."""

    compiler: Compiler
    plan: Plan


def compile_study(loaded: LoadedStudy, parallel: int | None = None) -> Compiled:
    """``parallel`` overrides budget.parallel (`--parallel N`)."""
    compiler = Compiler(loaded, parallel)
    return Compiled(compiler, compiler.compile())


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
            parallel: int | None = None, cloud: Any = None, compiled: Compiled | None = None) -> Plan:
    """Run every stage of the study on this machine, or with ``cloud`` (CloudOptions) as
    SkyPilot managed jobs. Finished runs are reused. ``compiled``: the study as the caller
    compiled it (compiled here when not given)."""
    compiled = compiled or compile_study(loaded, parallel)
    compiler, plan = compiled.compiler, compiled.plan
    check_budget(plan, allow_over_budget)
    study, profile = loaded.study, loaded.profile
    with StudyLock(store, study.study, profile), store.guard("write"):
        store.backup()  # what `studyc store repair` restores if this run leaves the store damaged
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
    """Judge and render from the store; runs nothing. With ``plan`` (after a run) it is
    written as plan.json beside the report; without, the plan.json there is read back, and
    the study is compiled again only when it changed since (or there is none)."""
    from studyc.artifacts import envelope, write_json
    from studyc.report.pipeline import build_report

    out = out or default_out(loaded)
    notes: list[str] = []

    def facts() -> dict[str, Any]:  # asked for once the report's figures are on their way
        if plan is not None:
            write_json(out / PLAN_FILE, envelope("plan", plan.spec_hash,
                                                 {**plan.to_dict(), "source_hash": _source_hash(loaded)}))
            return {"spec_hash": plan.spec_hash, "checks_hash": plan.checks_hash, "totals": plan.totals}
        found, said = _plan_facts(loaded, out)
        notes.extend(said)
        return found

    with store.guard():
        built = build_report(loaded.study, store, loaded.profile, out, facts)
    return Report(built.paths, built.verdicts, out, built.preregistration, notes)


def _source_hash(loaded: LoadedStudy) -> str:
    """The study file's text and the profile laid over it."""
    text = "\n".join(loaded.source.lines) + f"\n#profile={loaded.profile or ''}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _plan_facts(loaded: LoadedStudy, out: Path) -> tuple[dict[str, Any], list[str]]:
    """What the report needs of the plan (hashes, estimated totals): from the plan.json of
    the last run when the study is unchanged since, else compiled afresh."""
    from studyc.artifacts import read_artifact

    saved = read_artifact(out / PLAN_FILE, "plan")
    # The same file (an upgraded studyc may fill in new defaults: same study all the same),
    # or the same validated study.
    if saved is not None and (saved.get("source_hash") == _source_hash(loaded)
                              or saved["metadata"]["spec_hash"] == loaded.spec_hash):
        return {"spec_hash": saved["spec_hash"], "checks_hash": saved["checks_hash"], "totals": saved["totals"]}, []
    plan = Compiler(loaded).compile()
    notes = []
    if saved is not None:
        when = saved["metadata"].get("generated_at", "an earlier run")
        notes.append(f"the study changed since its runs (plan.json of {when}, spec {saved['metadata']['spec_hash']}; "
                     f"now {loaded.spec_hash}): runs are judged by the study as it is now; estimates are recompiled")
    return {"spec_hash": plan.spec_hash, "checks_hash": plan.checks_hash, "totals": plan.totals}, notes
