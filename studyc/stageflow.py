"""The stages of a running study as a graph: a stage starts when the stages it waits for
(its `needs`, and the smoke stage) have ended, beside whatever else is running. Runs of
promoted and evaluation stages are built when their stage starts, from the gates judged
on what has ended; a smoke stage with a run that did not finish stops the study."""

from __future__ import annotations

from typing import Callable

from studyc.compiler.plan import Compiler, Plan, RunPlan, source_stage, stage_needs
from studyc.errors import RunError
from studyc.runtime.store import Store
from studyc.spec.loader import LoadedStudy


class SmokeFailed(RunError):
    """The smoke stage had a run that did not finish: nothing else was started."""


class StageFlow:
    """Hands the scheduler each stage's runs once the stages it waits for have ended."""

    def __init__(self, loaded: LoadedStudy, compiler: Compiler, plan: Plan, store: Store,
                 register: Callable[[list[RunPlan]], None]):
        self.loaded, self.study = loaded, loaded.study
        self.compiler, self.plan, self.store = compiler, plan, store
        self.register = register  # enters runs built at run time into the store
        self.needs = stage_needs(self.study) if self.study.stages else {}
        self.order = [s.name for s in plan.stages]
        self.started: set[str] = set()
        self.ended: set[str] = set()
        self.smoke = self.study.smoke_stage

    def start(self) -> list[RunPlan]:
        """The runs of the stages that wait for nothing."""
        return self._release()

    def stage_ended(self, stage: str) -> list[RunPlan]:
        """``stage``'s runs have all ended: the runs of the stages that may start now."""
        if stage == self.smoke:
            self._check_smoke(stage)
        self.ended.add(stage)
        return self._release()

    def _release(self) -> list[RunPlan]:
        out: list[RunPlan] = []
        progressed = True
        while progressed:  # a stage with nothing to run ends at once, and may release others
            progressed = False
            for stage in self.order:
                if stage in self.started or not all(n in self.ended for n in self.needs.get(stage, [])):
                    continue
                self.started.add(stage)
                runs = self._runs(stage)
                if runs:
                    out += runs
                else:
                    self.ended.add(stage)
                    progressed = True
        return out

    def _runs(self, stage: str) -> list[RunPlan]:
        spec = self.study.stages.get(stage)
        if spec is None or spec.arms != "promoted":
            return [r for r in self.plan.runs_in(stage) if not r.pending]
        runs = self._promoted(stage)
        self.register(runs)
        return runs

    def _promoted(self, stage: str) -> list[RunPlan]:
        """Judge the gates of the stages ``stage`` needs; build runs for what they promote
        (for an evaluation stage, one per finished run of each promoted arm)."""
        from studyc.report.collect import collect
        from studyc.report.judge import Judge

        spec = self.study.stages[stage]
        results = collect(self.study, self.store, self.loaded.profile)
        judge = Judge(self.study, results)
        arms: list[str] = []
        for need in spec.needs:
            promoted, _ = judge.promote(need)
            arms += [a for a in promoted if a not in arms]
        if not spec.evaluate:
            return self.compiler.stage_runs(stage, arms)
        ran = {need: list(results.by_stage.get(need, {})) for need in spec.needs}
        sources = source_stage(self.study, stage, ran)
        finished = [r for a in arms if a in sources
                    for r in results.by_stage[sources[a]][a].runs if r.status == "done"]
        return [self.compiler.make_run(r.arm, stage, r.seed, source=r.id) for r in finished]

    def _check_smoke(self, stage: str) -> None:
        records = self.store.records([r.id for r in self.plan.runs_in(stage)])
        bad = [(r, records.get(r.id)) for r in self.plan.runs_in(stage)]
        bad = [(r, rec) for r, rec in bad if rec is None or rec.status != "done"]
        if not bad:
            return
        what = "; ".join(f"{r.arm} seed {r.seed}: {_ending(rec)}" for r, rec in bad[:5])
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise SmokeFailed(f"smoke stage '{stage}' failed, so the study stopped before its other stages: {what}{more}",
                          "fix what broke (`studyc status` and the run logs say more), then `studyc run` again: "
                          "runs that finished are reused")


def check_cloud_evaluations(study) -> None:
    """On the cloud each run has a machine of its own: an evaluation reads the run it
    evaluates from the results bucket, so there must be one."""
    evaluating = [name for name, s in study.stages.items() if s.evaluate]
    if evaluating and not study.cloud.results:
        raise RunError(f"stage '{evaluating[0]}' evaluates earlier runs, which on the cloud it reads from the results "
                       "bucket, and this study has none",
                       "add `cloud: {results: s3://BUCKET/PATH}` (or gs://), or run the study locally")


def _ending(record) -> str:
    if record is None:
        return "did not run"
    if record.status == "failed":
        return f"failed ({record.failure})" if record.failure else "failed"
    return f"did not finish ({record.status})"
