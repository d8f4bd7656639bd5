"""Cross-reference checks over a validated study: every name an expression, stage or
claim uses must exist, every expression must type-check. All problems are collected.
"""

from __future__ import annotations

from studyc.errors import StudyError, did_you_mean
from studyc.spec import expr as E
from studyc.spec.arms import ArmSpec, expand_arms, render_name, sweep_points, template_fields
from studyc.spec.commands import check_run_inputs
from studyc.spec.configkeys import check_config_keys
from studyc.spec.loader import Source
from studyc.spec.model import Study


def is_study_level(node: E.Node) -> bool:
    """A derived metric over arms (``a.x / b.x``) rather than over one run's metrics."""
    return any(len(r.parts) > 1 for r in E.refs(node))


class Names:
    """What a study's expressions may refer to, in each kind of context."""

    def __init__(self, study: Study, arms: dict[str, ArmSpec]):
        self.study = study
        self.arms = arms
        self.metrics = set(study.metrics)
        self.hypotheses = set(study.hypotheses)
        self.baselines = {name: set(b.values) for name, b in study.baselines.items()}
        self.study_metrics = set()
        for name, metric in study.metrics.items():
            if metric.expr is not None:
                try:
                    if is_study_level(E.parse(metric.expr)):
                        self.study_metrics.add(name)
                except E.ExprError:
                    pass
        self.run_metrics = self.metrics - self.study_metrics

    def _group_metric(self, ref: E.Ref) -> E.Type:
        group, metric = ref.parts[0], ref.parts[1]
        metric_col = ref.col + len(group) + 1
        if len(ref.parts) > 2:
            raise E.ExprError(f"'{ref.dotted}' has too many parts", ref.col, "write arm.metric")
        if group in self.baselines:
            if metric not in self.baselines[group]:
                close = did_you_mean(metric, self.baselines[group]) if self.baselines[group] else None
                raise E.ExprError(f"baseline '{group}' has no value for '{metric}'", metric_col,
                                  close if close and close.startswith("did") else
                                  f"add `{metric}: <value>` to baseline '{group}'" + (
                                      f" (it has {', '.join(sorted(self.baselines[group]))})" if self.baselines[group] else ""))
            return E.Type.NUM
        if group in self.arms or group == "champion":
            if metric not in self.run_metrics:
                raise E.ExprError(f"unknown metric '{metric}'", metric_col, did_you_mean(metric, self.run_metrics))
            return E.Type.NUM
        raise E.ExprError(f"unknown arm or baseline '{group}'", ref.col,
                          did_you_mean(group, list(self.arms) + list(self.baselines) + ["champion"]))

    def check_context(self, hypotheses: bool) -> E.Resolver:
        """Hypotheses, tiers, decisions and study-level metrics: ``arm.metric``,
        ``baseline.metric``, ``champion.metric``, study-level metric names and (where
        allowed) hypothesis names."""

        def resolve(ref: E.Ref) -> E.Type:
            if len(ref.parts) == 1:
                name = ref.parts[0]
                if hypotheses and name in self.hypotheses:
                    return E.Type.BOOL
                if name in self.study_metrics:
                    return E.Type.NUM
                if name in self.arms or name == "champion":
                    what = "an arm" if name in self.arms else "the best arm by the primary metric"
                    raise E.ExprError(f"'{name}' is {what}: name one of its metrics", ref.col,
                                      f"e.g. {name}.{self.study.primary_metric}")
                known = list(self.study_metrics) + (list(self.hypotheses) if hypotheses else [])
                raise E.ExprError(f"unknown name '{name}'", ref.col,
                                  did_you_mean(name, known) or "refer to a metric as arm.metric")
            return self._group_metric(ref)

        return resolve

    def gate_context(self) -> E.Resolver:
        """A gate: bare metric names mean the candidate arm's metrics."""

        def resolve(ref: E.Ref) -> E.Type:
            if len(ref.parts) == 1:
                if ref.parts[0] in self.run_metrics:
                    return E.Type.NUM
                raise E.ExprError(f"unknown metric '{ref.parts[0]}'", ref.col, did_you_mean(ref.parts[0], self.run_metrics))
            return self._group_metric(ref)

        return resolve


# Names an arm cannot take, because checks give them another meaning.
RESERVED = {"champion": "in checks it means the best arm by the primary metric",
            **{f: f"'{f}' is a function of the expression language" for f in E.FUNCTIONS},
            **{k: f"'{k}' is a word of the expression language" for k in E.KEYWORDS}}


def check_functions(node: E.Node, study: Study, per_run: bool) -> None:
    """Functions whose meaning needs the study: noworse() judges by a metric's goal, with
    a constant margin >= 0, and only in checks (it has no meaning for one run's numbers)."""
    for call in (n for n in E.walk(node) if isinstance(n, E.Call) and n.func in E.CHECK_ONLY):
        if per_run:
            raise E.ExprError(f"{call.func}() judges arms against each other; it is for checks, not here", call.col)
        goals = [study.metrics[a.parts[-1]].goal for a in call.args
                 if isinstance(a, E.Ref) and a.parts[-1] in study.metrics and study.metrics[a.parts[-1]].goal]
        if not goals:
            raise E.ExprError(f"{call.func}() needs a metric with a goal, to know which way is worse", call.col,
                              "compare arm.metric values whose metric sets `goal: min` or `goal: max`")
        for key, value in call.kwargs:
            if not (isinstance(value, E.Num) and value.value >= 0):
                raise E.ExprError(f"{call.func}({key}=...) must be a number >= 0 (a fraction of the second value)",
                                  call.col, f"e.g. {key}=0.05 for 5%")


def _bare(allowed: set[str] | None, what: str) -> E.Resolver:
    """Per-run expressions: bare names only (``allowed`` None: any series name)."""

    def resolve(ref: E.Ref) -> E.Type:
        if len(ref.parts) > 1:
            raise E.ExprError(f"'{ref.dotted}': only plain {what} names are allowed here", ref.col)
        if allowed is not None and ref.parts[0] not in allowed:
            raise E.ExprError(f"unknown {what} '{ref.parts[0]}'", ref.col, did_you_mean(ref.parts[0], allowed))
        return E.Type.NUM

    return resolve


def check_study(study: Study, source: Source) -> list[StudyError]:
    """Every semantic problem of the study; then, where the sweeps expand cleanly, what
    becomes a process, per expanded arm (spec.commands)."""
    errors, arms = _check_semantics(study, source)
    return errors + check_run_inputs(study, {} if errors else arms, source)


def _check_semantics(study: Study, source: Source) -> tuple[list[StudyError], dict[str, ArmSpec]]:
    errors: list[StudyError] = []

    def problem(path: tuple, message: str, hint: str | None = None, key: bool = False) -> None:
        errors.append(source.error(path, message, hint, key=key))

    def expression(path: tuple, text: str, resolve: E.Resolver, want: E.Type | None, what: str,
                   judged: bool = False, per_run: bool = False) -> E.Node | None:
        """``judged``: judged over the study's results, where failed(arm or stage) may appear."""
        try:
            node = E.parse(text)
            E.check(node, resolve, want)
            check_functions(node, study, per_run)
            for func, ref in E.named(node):
                if not judged:
                    raise E.ExprError(f"{func}() reads the study's runs, not one run's values", ref.col,
                                      "use it in hypotheses, tiers, decisions, claims or gates")
                if ref.parts[0] not in runnable:
                    raise E.ExprError(f"unknown arm or stage '{ref.parts[0]}'", ref.col,
                                      did_you_mean(ref.parts[0], sorted(runnable)))
            return node
        except E.ExprError as err:
            errors.append(source.expr_error(path, err, what))
            return None

    # Config keys, on the file as written (before a profile's overlay, with the '+' of new keys).
    check_config_keys(source.base.tree, lambda path, message, hint: errors.append(
        source.base.error(path, message, hint, key=True)))

    # Sweeps first: everything else refers to the expanded arm names.
    for family, arm in study.arms.items():
        keys = list((arm.grid or {}).keys()) + list((arm.zip_ or {}).keys())
        for kind, values in (("grid", arm.grid or {}), ("zip", arm.zip_ or {})):
            for key, items in values.items():
                if not items:
                    problem(("arms", family, "zip" if kind == "zip" else kind, key), f"{kind} values for '{key}' are empty",
                            "list at least one value")
        lengths = {k: len(v) for k, v in (arm.zip_ or {}).items()}
        expandable = len(set(lengths.values())) <= 1 and all(items for kind in (arm.grid, arm.zip_) for items in (kind or {}).values())
        if arm.zip_:
            if len(set(lengths.values())) > 1:
                problem(("arms", family, "zip"), "zip lists must have the same length: "
                        + ", ".join(f"{k}={n}" for k, n in lengths.items()), "zip pairs the i-th values of each list",
                        key=True)
        if arm.name is not None:
            if not keys:
                problem(("arms", family, "name"), "'name' names sweep arms, but this arm has no grid or zip",
                        "remove 'name', or add a grid")
            elif isinstance(arm.name, list):
                points = len(sweep_points(arm)) if expandable else None
                if points is not None and len(arm.name) != points:
                    problem(("arms", family, "name"), f"'name' lists {len(arm.name)} names, but the sweep has {points} points",
                            "give one name per point, in the order the sweep expands (grid first, then zip)")
            else:
                fields = template_fields(arm.name)
                for fld in fields:
                    if fld != "arm" and fld not in keys:
                        problem(("arms", family, "name"), f"name template uses '{{{fld}}}', which is not swept",
                                did_you_mean(fld, keys + ["arm"]))
                if all(f == "arm" or f in keys for f in fields) and expandable:
                    try:
                        for point in sweep_points(arm):
                            render_name(arm.name, point, family)
                    except (ValueError, TypeError) as exc:
                        problem(("arms", family, "name"), f"cannot format the name template: {exc}",
                                "a format such as {lr:g} or {tokens:03d} must suit the swept values")
        if arm.reuse is not None and (arm.config or arm.grid or arm.zip_):
            problem(("arms", family, "reuse"), "a reused arm runs nothing, so it cannot also set config or sweeps",
                    "remove 'config' or 'reuse'")
        if arm.same_as is not None:
            if arm.same_as == family:
                problem(("arms", family, "same_as"), "an arm cannot be the same as itself")
            elif arm.same_as not in study.arms:
                problem(("arms", family, "same_as"), f"unknown arm '{arm.same_as}'", did_you_mean(arm.same_as, study.arms))
    if errors:
        return errors, {}
    arms = expand_arms(study, problem)
    names = Names(study, arms)
    runnable = set(arms) | set(study.arms) | set(study.stages)  # what failed() may name
    for arm in arms.values():
        if arm.name in RESERVED:
            problem(("arms", arm.family) if arm.name == arm.family else ("arms", arm.family, "name"),
                    f"'{arm.name}' cannot name an arm: {RESERVED[arm.name]}", "rename the arm", key=arm.name == arm.family)

    # Metrics.
    if study.primary is not None and study.primary not in study.metrics:
        problem(("primary",), f"unknown metric '{study.primary}'", did_you_mean(study.primary, study.metrics))
    for name, metric in study.metrics.items():
        if metric.expr is None:
            continue
        if name in names.study_metrics:
            expression(("metrics", name, "expr"), metric.expr, names.check_context(False), E.Type.NUM, f"metric '{name}'")
        else:
            node = expression(("metrics", name, "expr"), metric.expr, _bare(None, "metric"), E.Type.NUM, f"metric '{name}'",
                              per_run=True)
            if node is not None and name in {r.parts[0] for r in E.refs(node)}:
                problem(("metrics", name, "expr"), f"metric '{name}' is defined in terms of itself")
    for name, baseline in study.baselines.items():
        for key, value in baseline.values.items():
            if key not in study.metrics:
                problem(("baselines", name, key), f"baseline value for unknown metric '{key}'",
                        did_you_mean(key, study.metrics) or "declare it under metrics:", key=True)
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                problem(("baselines", name, key), f"baseline value must be a number, got {value!r}")
        if name in arms:
            problem(("baselines", name), f"'{name}' is both a baseline and an arm", "rename one of them", key=True)
        elif name in RESERVED:
            problem(("baselines", name), f"'{name}' cannot name a baseline: {RESERVED[name]}", "rename the baseline",
                    key=True)

    # Reused results name known metrics.
    for family, arm in study.arms.items():
        if arm.reuse and arm.reuse.results:
            for key in arm.reuse.results:
                if key not in study.metrics:
                    problem(("arms", family, "reuse", "results", key), f"unknown metric '{key}'",
                            did_you_mean(key, study.metrics), key=True)

    # Config keys (edits refer to them). Command placeholders, env and seeds: studyc.spec.commands.
    config_keys = set(study.run.config) | {"seed"}
    for arm in arms.values():
        config_keys |= set(arm.config)
    for stage in study.stages.values():
        config_keys |= set(stage.config)

    # Stages.
    smokes = [name for name, stage in study.stages.items() if stage.smoke]
    if len(smokes) > 1:
        problem(("stages", smokes[1], "smoke"), f"only one stage can be the smoke test ('{smokes[0]}' is already)",
                "merge the smoke stages into one")

    def check_stage_kind(name: str, stage) -> None:
        """Smoke and evaluation stages: what each may be combined with."""
        if stage.smoke:
            if stage.needs:
                problem(("stages", name, "needs"), "the smoke stage runs before every other stage, so it needs none",
                        "remove `needs` from the smoke stage")
            if stage.arms == "promoted" or stage.evaluate is not None:
                problem(("stages", name, "smoke"), "the smoke stage runs first, so it cannot take promoted arms or "
                        "evaluate earlier runs", "give it a list of arms (e.g. the baseline) at a tiny size")
        if stage.evaluate is not None:
            if stage.arms != "promoted":
                problem(("stages", name, "evaluate"), "an evaluation stage evaluates the runs that the stages it "
                        "needs promote", "add `arms: promoted` and `needs: [<stage>]`")
            if stage.seeds is not None:
                problem(("stages", name, "seeds"), "an evaluation stage evaluates each promoted run, so its seeds "
                        "are those runs' seeds", "remove `seeds` from the evaluation stage")

    families = set(study.arms)
    order: list[str] = []
    for name, stage in study.stages.items():
        for i, need in enumerate([] if stage.smoke else stage.needs):  # a smoke stage's needs are refused below
            if need not in study.stages:
                problem(("stages", name, "needs", i), f"unknown stage '{need}'", did_you_mean(need, study.stages))
            elif need == name:
                problem(("stages", name, "needs", i), f"stage '{name}' cannot need itself")
            elif need not in order:
                problem(("stages", name, "needs", i), f"stage '{need}' must be declared before '{name}'",
                        f"move stage '{need}' above '{name}' (stages are written in an order that respects `needs`)")
        order.append(name)
        check_stage_kind(name, stage)
        if stage.arms == "promoted":
            if not stage.needs:
                problem(("stages", name, "arms"), "'arms: promoted' takes the arms promoted by earlier stages",
                        "add `needs: [<stage>]`")
            for need in stage.needs:
                if need in study.stages and study.stages[need].promote is None:
                    problem(("stages", name, "needs"), f"stage '{need}' promotes nothing",
                            f"add `promote: {{top: 1}}` or `promote: all` to stage '{need}'")
        elif isinstance(stage.arms, list):
            for i, arm_name in enumerate(stage.arms):
                if arm_name not in arms and arm_name not in families:
                    problem(("stages", name, "arms", i), f"unknown arm '{arm_name}'", did_you_mean(arm_name, list(arms) + list(families)))
        if stage.gate is not None:
            expression(("stages", name, "gate"), stage.gate, names.gate_context(), E.Type.BOOL, f"gate of stage '{name}'",
                       judged=True)
        if stage.promote is not None and stage.promote != "all" and stage.promote.by is not None:
            if stage.promote.by not in names.run_metrics:
                problem(("stages", name, "promote", "by"), f"unknown metric '{stage.promote.by}'",
                        did_you_mean(stage.promote.by, names.run_metrics))
            elif study.metrics[stage.promote.by].goal is None:
                problem(("stages", name, "promote", "by"), f"metric '{stage.promote.by}' has no goal to rank by",
                        f"set `goal: min` or `goal: max` on metric '{stage.promote.by}'")
    if study.stages:
        staged = set()
        for stage in study.stages.values():
            if stage.arms == "all":
                staged |= set(arms)
            elif isinstance(stage.arms, list):
                for arm_name in stage.arms:
                    staged |= {a.name for a in arms.values() if a.name == arm_name or a.family == arm_name}
        for arm in arms.values():
            if arm.runs and arm.name not in staged:
                problem(("arms", arm.family), f"arm '{arm.name}' is in no stage, so it would never run",
                        "list it in a stage's arms", key=True)

    wandb = study.tracking.wandb
    for stage_name in (wandb.groups if wandb else {}):
        if stage_name not in study.stages:
            problem(("tracking", "wandb", "groups", stage_name), f"unknown stage '{stage_name}'",
                    did_you_mean(stage_name, study.stages) or "groups are set per stage; this study has no stages",
                    key=True)

    # Hypotheses, tiers, decision.
    for name, hyp in study.hypotheses.items():
        expression(("hypotheses", name, "check"), hyp.check, names.check_context(False), E.Type.BOOL, f"check of {name}",
                   judged=True)
    tier_paths = {name: ("tiers", name) if isinstance(t, str) else ("tiers", name, "check") for name, t in study.tiers.items()}
    for name, check in study.tier_checks().items():
        expression(tier_paths[name], check, names.check_context(True), E.Type.BOOL, f"tier '{name}'", judged=True)
    if study.tiers and names.study.metrics[study.primary_metric].goal is None:
        problem(("tiers",), f"tiers judge the champion, ranked by '{study.primary_metric}', which has no goal",
                "set `goal: min` or `goal: max` on the primary metric", key=True)
    for i, rule in enumerate(study.decision):
        if rule.if_ is not None:
            expression(("decision", i, "if"), rule.if_, names.check_context(True), E.Type.BOOL, "decision rule",
                       judged=True)
        elif i != len(study.decision) - 1:
            problem(("decision", i), "'else' must be the last decision rule", "move it to the end")

    # Expectations and claims.
    def expectations(path: tuple, expect: dict) -> None:
        for arm_name, expected in expect.items():
            if arm_name not in arms:
                problem(path + (arm_name,), f"unknown arm '{arm_name}'", did_you_mean(arm_name, arms), key=True)
                continue
            for metric, bounds in expected.items():
                if metric not in names.run_metrics:
                    problem(path + (arm_name, metric), f"unknown metric '{metric}'",
                            did_you_mean(metric, names.run_metrics), key=True)
                lo, hi = bounds
                if lo is not None and hi is not None and lo > hi:
                    problem(path + (arm_name, metric), f"expected range [{lo}, {hi}] is empty", "write [low, high]")

    expectations(("expect",), study.expect)
    for scenario, expect in study.scenarios.items():
        if not expect:
            problem(("scenarios", scenario), f"scenario '{scenario}' expects nothing",
                    "give it ranges: {<arm>: {<metric>: [low, high]}}")
        expectations(("scenarios", scenario), expect)
    for claim, value in study.claims.items():
        path = ("claims", claim) if isinstance(value, list) else ("claims", claim, "hypotheses")
        for i, hyp in enumerate(study.claim(claim).hypotheses):
            if hyp not in study.hypotheses:
                problem(path + (i,), f"unknown hypothesis '{hyp}'", did_you_mean(hyp, study.hypotheses))
        check = study.claim(claim).check
        if check is not None:
            expression(("claims", claim, "check"), check, names.check_context(True), E.Type.BOOL, f"check of claim "
                       f"'{claim[:40]}'", judged=True)

    # Recovery and stop rules.
    for cls, recovery in study.on_failure.items():
        for key, edit in recovery.config.items():
            if key.split(".")[0] not in config_keys:
                problem(("on_failure", cls, "config", key), f"'{key}' is not a config key", did_you_mean(key, config_keys), key=True)
            elif isinstance(edit, str):
                expression(("on_failure", cls, "config", key), edit, _bare(config_keys, "config key"), None, f"edit of '{key}'",
                           per_run=True)
    for cls, rule in study.stop.items():
        expression(("stop", cls), rule, _bare(None, "metric"), E.Type.BOOL, f"stop rule '{cls}'", per_run=True)

    for name, price in study.prices.items():
        if price < 0:
            problem(("prices", name), "a price cannot be negative")
    return errors, arms

