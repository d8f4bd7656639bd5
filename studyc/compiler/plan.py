"""Study -> Plan: every run with its id, resolved config, command, resources and
estimates; stages; the schedule; the budget check."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from studyc.compiler import packing
from studyc.compiler.ids import canonical, code_version, run_id, study_root
from studyc.compiler.prices import UnknownPrice, hourly_usd, infra_cloud, price_table, read_catalog
from studyc.errors import RunError
from studyc.spec.accelerators import gpu_count, parse as parse_accelerators
from studyc.quoting import shell
from studyc.spec import expr as E
from studyc.spec.arms import ArmSpec, deep_merge, expand_arms, run_config
from studyc.spec.commands import PLACEHOLDER
from studyc.spec.loader import LoadedStudy
from studyc.spec.model import Resources, Study

PLAN_SCHEMA_VERSION = 1
DEFAULT_STAGE = "main"
DEFAULT_HOURS = 1.0  # a run whose resources give no `hours`


@dataclass
class RunPlan:
    id: str
    arm: str
    stage: str
    seed: int
    command: str
    command_template: str
    config: dict[str, Any]
    resources: dict[str, Any]
    env: dict[str, str]
    est_hours: float
    est_usd: float
    gpu_hours: float
    start_h: float = 0.0
    end_h: float = 0.0
    slot: int = 0  # which of the concurrent positions (a machine each on the cloud) it runs in
    gpus: list[int] = field(default_factory=list)  # its GPUs on the study's `machine`
    pending: bool = False  # a slot for an arm that a gate will promote
    source: str | None = None  # an evaluation run: the id of the run it evaluates
    solo_hours: float | None = None  # set when sharing a GPU slows the run: its hours alone

    @property
    def usd_per_hour(self) -> float:
        """What an hour of this run costs, by its estimate."""
        return self.est_usd / self.est_hours if self.est_hours else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_RUN_FIELDS = [f.name for f in fields(RunPlan)]


@dataclass
class StagePlan:
    name: str
    arms: list[str]
    needs: list[str]
    gate: str | None
    promote: Any
    promoted_slots: int = 0
    smoke: bool = False
    evaluate: str | None = None
    after: list[str] = field(default_factory=list)  # every stage it waits for: its needs and the smoke stage
    ready_h: float = 0.0  # when the stages it waits for have ended
    start_h: float = 0.0
    end_h: float = 0.0


@dataclass
class Plan:
    study: str
    profile: str | None
    spec_hash: str
    checks_hash: str
    code_version: str | None
    workdir: str
    stages: list[StagePlan]
    runs: list[RunPlan]
    totals: dict[str, float]
    budget: dict[str, Any]
    parallel: int
    schedule: dict[str, Any] = field(default_factory=dict)
    reused_arms: list[str] = field(default_factory=list)

    def runs_in(self, stage: str) -> list[RunPlan]:
        return [r for r in self.runs if r.stage == stage]

    def to_dict(self, relative_to: Path | None = None) -> dict[str, Any]:
        """JSON-ready (a view: it shares the runs' configs, so copy before changing it);
        with ``relative_to``, the workdir is a path relative to it, so the same study
        compiles to the same bytes on any machine."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["stages"] = [asdict(s) for s in self.stages]
        data["runs"] = [{f: getattr(r, f) for f in _RUN_FIELDS} for r in self.runs]  # asdict deep-copies: slow
        data["schema_version"] = PLAN_SCHEMA_VERSION
        if relative_to is not None:
            data["workdir"] = os.path.relpath(self.workdir, relative_to)
        return data


def render_command(template: str, config: dict[str, Any], seed: int) -> str:
    """Fill ``{seed}`` and ``{config.key}``, every value shell-quoted; other braces are
    the shell's (the placeholders validation checked: spec.commands.PLACEHOLDER)."""

    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name == "seed":
            return shell(str(seed))
        if not name.startswith("config."):
            return m.group(0)
        value: Any = config
        for part in name.removeprefix("config.").split("."):
            value = value[part]
        if isinstance(value, (dict, list)):
            value = canonical(value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        return shell(str(value))

    return PLACEHOLDER.sub(sub, template)


def checks_hash(study: Study) -> str:
    """What the study pre-registers: hypotheses, tiers, gates, decision and the baselines
    they are judged against. Stored when the first run starts."""
    payload = {
        "hypotheses": {k: h.check for k, h in study.hypotheses.items()},
        "tiers": study.tier_checks(),
        "gates": {k: s.gate for k, s in study.stages.items() if s.gate},
        "decision": [r.model_dump(by_alias=True) for r in study.decision],
        "baselines": {k: b.values for k, b in study.baselines.items()},
        # new options enter only when used, so the hash of a study that does not use them stays as it was
        "stats": study.stats.model_dump(exclude={k for k, unused in (("design", study.stats.design == "fixed"),
                                                                     ("paired", not study.stats.paired)) if unused}),
    }
    claim_checks = {k: study.claim(k).check for k in study.claims if study.claim(k).check}
    if claim_checks:
        payload["claim_checks"] = claim_checks
    if study.scenarios:
        payload["scenarios"] = study.scenarios
    judging = {**{f"hypotheses.{k}": h.judge for k, h in study.hypotheses.items() if h.judge != "interval"},
               **{f"tiers.{k}": t.judge for k, t in study.tiers.items() if not isinstance(t, str) and t.judge != "interval"},
               **{f"stages.{k}": s.gate_judge for k, s in study.stages.items() if s.gate_judge != "interval"}}
    if judging:  # judging on the point instead of the interval changes what is registered
        payload["judging"] = judging
    return hashlib.sha256(canonical(payload).encode()).hexdigest()[:16]


def stage_needs(study: Study) -> dict[str, list[str]]:
    """The stages each stage waits for: those it `needs`; the smoke stage (which all others
    implicitly need); and, for a stage taking promoted arms, the stages that run the arms
    the gates it promotes through read (a gate `nrmse <= baseline.nrmse` is judged once
    baseline's runs have ended, even when the gated stage runs beside baseline's)."""
    smoke = [name for name, s in study.stages.items() if s.smoke]
    arms = expand_arms(study)
    order = list(study.stages)
    out = {}
    for i, (name, spec) in enumerate(study.stages.items()):
        waits = list(spec.needs) + [m for m in smoke if m != name and not spec.smoke]
        if spec.arms == "promoted":
            for need in spec.needs:
                gate = study.stages[need].gate if need in study.stages else None
                read = {r.parts[0] for r in E.refs(E.parse(gate)) if len(r.parts) > 1} if gate else set()
                waits += [s for s in order[:i] if read & set(stage_arms(study, arms, s))]
        out[name] = list(dict.fromkeys(waits))
    return out


def source_stage(study: Study, stage: str, ran: dict[str, list[str]]) -> dict[str, str]:
    """For an evaluation stage: each arm it may evaluate -> the needed stage whose runs of
    that arm it evaluates (the last one written, when several ran it). ``ran``: the arms
    each stage ran."""
    out: dict[str, str] = {}
    for need in study.stages[stage].needs:
        for arm in ran.get(need, []):
            out[arm] = need
    return out


def resolve_resources(*layers: dict[str, Any]) -> Resources:
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    return Resources.model_validate(merged)


def stage_arms(study: Study, arms: dict[str, ArmSpec], stage_name: str) -> list[str]:
    """The arms a stage runs (not counting promoted ones, known only at run time)."""
    if not study.stages:
        return [a.name for a in arms.values() if a.runs]
    spec = study.stages[stage_name]
    if spec.arms == "promoted":
        return []
    if spec.arms == "all":
        return [a.name for a in arms.values() if a.runs]
    chosen = []
    for listed in spec.arms:
        chosen += [a.name for a in arms.values() if a.runs and (a.name == listed or a.family == listed)]
    return list(dict.fromkeys(chosen))


class Compiler:
    """Builds runs for one loaded study; also used at run time for promoted arms."""

    def __init__(self, loaded: LoadedStudy, parallel: int | None = None):
        self.loaded = loaded
        self.parallel = parallel  # overrides budget.parallel (`--parallel N`)
        self.study = loaded.study
        self.arms = expand_arms(self.study)
        self.workdir = study_root(loaded.path, self.study.run.workdir)
        self.code_version = code_version(str(self.workdir))
        cloud = self.study.cloud  # SkyPilot's catalog of the study's cloud, when cached here
        self.prices = price_table(self.study.prices, read_catalog(infra_cloud(cloud.infra)), cloud.use_spot)
        self._run_resources = self.study.run.resources.model_dump(exclude_unset=True)
        self._cache: dict[tuple[str, str], tuple[dict[str, Any], str, dict[str, Any], float]] = {}

    def _arm_stage(self, arm_name: str, stage_name: str) -> tuple[dict[str, Any], str, dict[str, Any], float]:
        """Config, command template, resources and $/hour shared by an arm's runs in a stage
        (validated once, not once per seed)."""
        key = (arm_name, stage_name)
        if key not in self._cache:
            study, arm = self.study, self.arms[arm_name]
            stage = study.stages.get(stage_name)
            stage_resources = stage.resources.model_dump(exclude_unset=True) if stage and stage.resources else {}
            config = run_config(study, arm, stage_name)
            resources = resolve_resources(self._run_resources, arm.resources, stage_resources)
            try:
                hourly = hourly_usd(resources.accelerator_name, resources.gpus, resources.cpus, self.prices)
            except UnknownPrice as exc:
                raise RunError(f"no price known for accelerator '{exc.args[0]}' (arm {arm_name})",
                               f"add it under `prices:`, e.g. prices: {{{exc.args[0]}: 1.50}}  # $/GPU-hour") from None
            template = stage.evaluate if stage and stage.evaluate else arm.command or study.run.command
            self._cache[key] = (config, template, resources.model_dump(), hourly)
        return self._cache[key]

    def make_run(self, arm_name: str, stage_name: str, seed: int, pending: bool = False,
                 source: str | None = None) -> RunPlan:
        """One run; with ``source``, the evaluation of that run (an evaluation stage)."""
        base, template, resources, hourly = self._arm_stage(arm_name, stage_name)
        config = deep_merge(base, {"seed": seed})
        hours = resources["hours"] if resources["hours"] is not None else DEFAULT_HOURS
        env = dict(self.study.run.env)
        return RunPlan(
            id=run_id(template, config, seed, env, self.code_version, source),
            arm=arm_name,
            stage=stage_name,
            seed=seed,
            command=render_command(template, config, seed),
            command_template=template,
            config=config,
            resources=dict(resources),
            env=env,
            est_hours=hours,
            est_usd=round(hours * hourly, 6),
            gpu_hours=hours * _gpus(resources),
            pending=pending,
            source=source,
        )

    def seeds_for(self, arm_name: str, stage_name: str) -> list[int]:
        stage = self.study.stages.get(stage_name)
        if stage and stage.seeds:
            return list(stage.seeds)
        arm = self.arms[arm_name]
        return list(arm.seeds) if arm.seeds else list(self.study.run.seeds)

    def stage_runs(self, stage_name: str, arm_names: list[str], pending: bool = False) -> list[RunPlan]:
        return [self.make_run(a, stage_name, s, pending) for a in arm_names for s in self.seeds_for(a, stage_name)]

    def evaluation_runs(self, stage_name: str, sources: list[RunPlan], pending: bool = False) -> list[RunPlan]:
        """One evaluation run per source run, on its arm and seed."""
        return [self.make_run(r.arm, stage_name, r.seed, pending, source=r.id) for r in sources]

    def promoted_slots(self, stage_name: str, candidates: dict[str, list[str]]) -> tuple[int, list[str]]:
        """How many arms a promoted stage will receive, and the arms it may receive."""
        spec = self.study.stages[stage_name]
        count, pool = 0, []
        for need in spec.needs:
            promote = self.study.stages[need].promote
            arms = candidates.get(need, [])
            count += len(arms) if promote == "all" else min(promote.top, len(arms))
            pool += arms
        return count, pool

    def _machine(self, target: packing.Target | None, wall: float) -> dict[str, Any] | None:
        """The machine the runs share, with what holding it for the plan's wall-clock costs
        (the runs' own estimates price each as if it had its GPUs to itself)."""
        if target is None:
            return None
        info = target.to_dict()
        machine = self.study.machine
        name = parse_accelerators(machine.accelerators)[0] or ""
        hourly = self.prices.get(name.upper()) if name else None
        info["usd_per_hour"] = round(hourly * len(target.gpu_gb), 6) if hourly is not None else None
        info["usd"] = round(info["usd_per_hour"] * wall, 4) if hourly is not None else None
        return info

    def compile(self) -> Plan:
        study = self.study
        stage_names = list(study.stages) or [DEFAULT_STAGE]
        runs: list[RunPlan] = []
        stages: list[StagePlan] = []
        candidates: dict[str, list[str]] = {}
        for name in stage_names:
            spec = study.stages.get(name)
            arms = stage_arms(study, self.arms, name)
            slots = 0
            if spec is not None and spec.arms == "promoted":
                slots, pool = self.promoted_slots(name, candidates)
                sources = source_stage(study, name, candidates) if spec.evaluate else {}

                def option(arm: str) -> list[RunPlan]:
                    if not spec.evaluate:
                        return self.stage_runs(name, [arm], pending=True)
                    return self.evaluation_runs(name, self.stage_runs(sources[arm], [arm]), pending=True)

                # Budget for the most expensive arms that could be promoted.
                options = sorted((option(a) for a in pool), key=lambda rs: -sum(r.est_usd for r in rs))
                for option in options[:slots]:
                    runs += option
                candidates[name] = pool
            else:
                runs += self.stage_runs(name, arms)
                candidates[name] = arms
            stages.append(StagePlan(name=name, arms=arms if spec is None or spec.arms != "promoted" else ["promoted"],
                                    needs=list(spec.needs) if spec else [], gate=spec.gate if spec else None,
                                    promote=(spec.promote if spec is None or isinstance(spec.promote, (str, type(None)))
                                             else spec.promote.model_dump()) if spec else None,
                                    promoted_slots=slots, smoke=bool(spec and spec.smoke),
                                    evaluate=spec.evaluate if spec else None))
        target = packing.Target.from_machine(study.machine)
        parallel = self.parallel or study.budget.parallel or max(1, len(runs))
        needs = stage_needs(study)
        contention = study.machine.contention if study.machine else 0.0
        timeline = packing.simulate(runs, stage_names, parallel, target, study.budget.together, needs, contention)
        wall = timeline.wall_h
        _slowed(runs, timeline.held_h)
        for stage in stages:
            stage.after = needs.get(stage.name, [])
            stage.ready_h, stage.start_h, stage.end_h = (round(t, 6) for t in timeline.stages.get(stage.name, (0, 0, 0)))
        critical = [{"stage": s.name, "ready_h": s.ready_h, "start_h": s.start_h, "end_h": s.end_h}
                    for name in packing.critical_path(timeline, needs) for s in stages if s.name == name]
        totals = {
            "runs": len(runs),
            "usd": round(sum(r.est_usd for r in runs), 4),
            "gpu_hours": round(sum(r.gpu_hours for r in runs), 4),
            "wall_hours": round(wall, 4),
        }
        return Plan(
            study=study.study,
            profile=self.loaded.profile,
            spec_hash=self.loaded.spec_hash,
            checks_hash=checks_hash(study),
            code_version=self.code_version,
            workdir=str(self.workdir),
            stages=stages,
            runs=runs,
            totals=totals,
            budget=budget_check(study, totals),
            parallel=parallel,
            schedule={"machine": self._machine(target, wall), "parallel": parallel,
                      "together": study.budget.together, "peak_concurrent": packing.peak_concurrent(runs),
                      "contention": contention if target is not None else None, "critical_path": critical},
            reused_arms=[a.name for a in self.arms.values() if not a.runs],
        )


def budget_check(study: Study, totals: dict[str, float]) -> dict[str, Any]:
    budget = study.budget
    violations = []
    limits = {"usd": budget.usd, "gpu_hours": budget.gpu_hours, "wall_hours": budget.wall}
    labels = {"usd": ("$", "budget.usd"), "gpu_hours": ("", "budget.gpu_hours"), "wall_hours": ("", "budget.wall")}
    units = {"usd": "", "gpu_hours": " GPU-hours", "wall_hours": " h wall-clock"}
    margins = {}
    for key, limit in limits.items():
        if limit is None:
            continue
        margins[key] = round(limit - totals[key], 4)
        if totals[key] > limit + 1e-9:
            prefix, name = labels[key]
            violations.append(f"estimated {prefix}{totals[key]:.2f}{units[key]} exceeds {name} = {prefix}{limit:.2f}{units[key]}")
    return {"limits": limits, "margins": margins, "ok": not violations, "violations": violations}


def compile_plan(loaded: LoadedStudy, parallel: int | None = None) -> Plan:
    """``parallel`` overrides budget.parallel (`studyc plan --parallel N`)."""
    return Compiler(loaded, parallel).compile()


def _slowed(runs: list[RunPlan], held_h: list[float]) -> None:
    """Runs that shared a GPU took longer than alone: their hours are the scheduled ones,
    and they pay for the GPU time they held (shared time split between the sharers)."""
    for run, held in zip(runs, held_h):
        took = round(run.end_h - run.start_h, 6)
        if abs(took - run.est_hours) <= 1e-6 and abs(held - run.est_hours) <= 1e-6:
            continue
        hourly = run.usd_per_hour
        gpus = run.gpu_hours / run.est_hours if run.est_hours else 0.0
        run.solo_hours, run.est_hours = run.est_hours, took
        run.est_usd, run.gpu_hours = round(held * hourly, 6), held * gpus


def _gpus(resources: dict[str, Any]) -> int:
    return gpu_count(resources.get("accelerators"))

