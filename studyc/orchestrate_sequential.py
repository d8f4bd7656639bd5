"""`studyc run --until-settled`: run the planned seeds, then add seeds in batches, judging
the study after each batch on its confidence sequence, to the arms of the hypotheses
still open, until every hypothesis is PASS or FAIL, or --max-seeds or the budget stops
it. The confidence_sequence design keeps every verdict valid however many looks this
takes (studyc/report/sequential.py); a study that declares the fixed design is judged
on it too once seeds were added this way (the recorded looks say so)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from studyc import orchestrate
from studyc.compiler.plan import Compiler, Plan
from studyc.errors import RunError
from studyc.report.collect import Results, collect
from studyc.report.judge import INCOMPLETE
from studyc.report.sequential import SequentialJudge, open_lines, read_looks, record_look, settled
from studyc.runtime.executor import Executor
from studyc.runtime.scheduler import Event
from studyc.runtime.store import Store
from studyc.spec.arms import expand_arms
from studyc.spec.loader import LoadedStudy


@dataclass
class Look:
    """The study as judged after one batch."""

    number: int  # looks so far, this one included
    seeds: dict[str, int]  # finished seeds per arm
    hypotheses: list[dict[str, Any]]  # open_lines: status, interval against the threshold, seeds
    adding: dict[str, int] = field(default_factory=dict)  # seeds the next batch adds, per arm
    stop: str | None = None  # why no batch follows


@dataclass
class Settled:
    plan: Plan
    looks: list[Look]

    @property
    def reason(self) -> str:
        return self.looks[-1].stop or ""


def check_sequential(loaded: LoadedStudy) -> None:
    """Refuse what --until-settled cannot do soundly, before anything runs."""
    study = loaded.study
    if not study.hypotheses:
        raise RunError("--until-settled adds seeds until the hypotheses settle, and the study states none",
                       "add `hypotheses:`, or run without --until-settled")
    for name, stage in study.stages.items():
        if stage.seeds:
            raise RunError(f"--until-settled adds seeds per arm, and stage '{name}' fixes its own `seeds:`",
                           "move the seeds to run.seeds (or the arms' seeds)")
        if stage.arms == "promoted":
            raise RunError(f"--until-settled does not add seeds to studies with promotion (stage '{name}'): new seeds "
                           "could change what a gate promoted", "run it without --until-settled")


def with_seeds(loaded: LoadedStudy, seeds: dict[str, list[int]]) -> LoadedStudy:
    """The study with these seeds for these arms (a sweep family takes its members' widest list)."""
    study = loaded.study
    by_family: dict[str, list[int]] = {}
    for name, spec in expand_arms(study).items():
        if name in seeds and len(seeds[name]) > len(by_family.get(spec.family, [])):
            by_family[spec.family] = seeds[name]
    arms = {key: arm.model_copy(update={"seeds": by_family[key]}) if key in by_family else arm
            for key, arm in study.arms.items()}
    return LoadedStudy(study.model_copy(update={"arms": arms}), loaded.source, loaded.path, loaded.profile)


def _seeds(results: Results, runnable: set[str]) -> dict[str, list[int]]:
    return {name: sorted(r.seed for r in arm.runs) for name, arm in results.arms.items() if name in runnable}


def next_batch(judge: SequentialJudge, verdicts: dict[str, Any], seeds: dict[str, list[int]], max_seeds: int,
               batch: int | None, slots: int) -> tuple[dict[str, int], str | None]:
    """Seeds to add per arm (the arms of open hypotheses below --max-seeds; ``batch`` each,
    or enough to fill ``slots`` runs at once), or why none."""
    statuses = {k: h["status"] for k, h in verdicts["hypotheses"].items()}
    open_ = [k for k, s in statuses.items() if not settled(s)]
    if not open_:
        return {}, "every hypothesis is PASS or FAIL"
    growable = [k for k in open_ if statuses[k] != INCOMPLETE]
    wanted: list[str] = []
    for name in growable:
        wanted += [a for a in judge.arms_of(judge.parse(judge.study.hypotheses[name].check)) if a in seeds]
    arms = [arm for arm in dict.fromkeys(wanted) if len(seeds[arm]) < max_seeds]
    batch = batch or max(1, slots // max(1, len(arms)))
    adding = {arm: min(batch, max_seeds - len(seeds[arm])) for arm in arms}
    if adding:
        return adding, None
    stuck = [k for k in open_ if statuses[k] == INCOMPLETE]
    if not growable:
        return {}, (f"{', '.join(stuck)} {'is' if len(stuck) == 1 else 'are'} INCOMPLETE (a run failed or gave no "
                    "value): more seeds cannot settle that; see the report")
    return {}, f"--max-seeds {max_seeds} reached for the arms of {', '.join(growable)}"


def _once(on_event: Callable[[Event], None]) -> Callable[[Event], None]:
    """Each batch re-plans the runs before it, which come back as 'cached': say so once."""
    told: set[str] = set()

    def relay(event: Event) -> None:
        if event.kind == "cached" and event.run.id in told:
            return
        told.add(event.run.id)
        on_event(event)

    return relay


def run_until_settled(loaded: LoadedStudy, store: Store, max_seeds: int, batch: int | None = None,
                      on_event: Callable[[Event], None] = lambda e: None, on_look: Callable[[Look], None] = lambda l: None,
                      allow_over_budget: bool = False, executor: Executor | None = None,
                      parallel: int | None = None, cloud: Any = None) -> Settled:
    check_sequential(loaded)
    study, profile = loaded.study, loaded.profile
    on_event = _once(on_event)
    runnable = {name for name, spec in expand_arms(study).items() if spec.runs}
    # Seeds an earlier --until-settled added stay in the study (a plain run would drop them).
    runs = Compiler(loaded).compile().runs
    planned = {a: [r.seed for r in runs if r.arm == a] for a in runnable}
    stored = _seeds(collect(study, store, profile), runnable)
    current = with_seeds(loaded, {a: sorted(set(planned[a]) | set(stored.get(a, []))) for a in runnable})
    plan = orchestrate.execute(current, store, on_event, allow_over_budget=allow_over_budget, executor=executor,
                               parallel=parallel, cloud=cloud)
    looks: list[Look] = []
    while True:
        results = collect(study, store, profile)
        judge = SequentialJudge(study, results, read_looks(store, study.study, profile))
        verdicts = judge.all()
        seeds = _seeds(results, runnable)
        adding, stop = next_batch(judge, verdicts, seeds, max_seeds, batch, parallel or plan.parallel)
        counts, lines = {a: len(s) for a, s in seeds.items()}, open_lines(verdicts)
        look = Look(record_look(store, study.study, profile, counts, lines), counts, lines, adding, stop)
        if not stop:
            grown = dict(seeds)
            for arm, k in adding.items():
                grown[arm] = seeds[arm] + [s for s in range(len(seeds[arm]) + k) if s not in seeds[arm]][:k]
            candidate = with_seeds(loaded, grown)
            preview = orchestrate.compile_study(candidate, parallel)  # what the next execute runs
            if not preview.plan.budget["ok"] and not allow_over_budget:
                look.adding, look.stop = {}, "the next batch would go over budget: " + "; ".join(
                    preview.plan.budget["violations"])
            else:
                current = candidate
        looks.append(look)
        on_look(look)
        if look.stop:
            return Settled(plan, looks)
        plan = orchestrate.execute(current, store, on_event, allow_over_budget=allow_over_budget, executor=executor,
                                   parallel=parallel, cloud=cloud, compiled=preview)
