"""The study language as pydantic models: the raw, validated shape of a study file.

Cross-references (arms named in checks, stages that need other stages, ...) are checked
afterwards in ``studyc.spec.semantics``, which knows where every node sits in the file.
The field descriptions are the language reference: `studyc schema` publishes them for
editors (``studyc.schema.json``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

from studyc import protocol
from studyc.spec.accelerators import gpu_count, parse as parse_accelerators
from studyc.spec.configkeys import strip_new

FAILURE_CLASSES = ("oom", "diverged", "timeout", "preempted", "crashed", "bad_metrics")
FailureClass = Literal["oom", "diverged", "timeout", "preempted", "crashed", "bad_metrics"]

# Names that become paths, ids or expression references.
StudyName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$", min_length=1, max_length=100)]
Ident = Annotated[str, Field(pattern=r"^[A-Za-z0-9_]*[A-Za-z_][A-Za-z0-9_]*$", max_length=100)]

# An expression of the study language (see studyc/spec/expr.py); validated by the semantic checks.
Expr = Annotated[str, Field(json_schema_extra={"x-studyc": "expression"})]

_DURATION_TEXT = r"^\s*(?:(\d+(?:\.\d+)?)\s*d)?\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*$"
_DURATION = re.compile(_DURATION_TEXT)


def invalid(message: str, hint: str) -> PydanticCustomError:
    """A validation error that carries its hint to the loader (message without braces)."""
    return PydanticCustomError("studyc", message, {"hint": hint})


def parse_duration_hours(value: Any) -> Any:
    """'3h', '90m', '1h30m', '45s', '2d' or a number of hours -> hours (float)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m and any(m.groups()):
            d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
            return d * 24 + h + mi / 60 + s / 3600
    raise invalid(f"expected a duration, got {str(value)[:40]!r}",
                  "write it like '3h', '90m', '1h30m', '45s', '2d', or a number of hours")


Hours = Annotated[
    float,
    BeforeValidator(parse_duration_hours),
    Field(ge=0),
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0},
                              {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?\s*[dhms]\s*)+$"}],
                    "description": "hours, or a duration such as '3h', '90m', '1h30m', '45s', '2d'"}),
]


# A config overlay: a key the study adds is written '+key' (studyc/spec/configkeys.py); runs get 'key'.
ConfigMap = Annotated[dict[str, Any], BeforeValidator(strip_new)]

# How a check is judged (docs/verdicts.md): on the confidence interval, or on the point estimate.
Judging = Literal["interval", "point"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Resources(Strict):
    """What one run needs. Unset fields inherit from the level above (run < arm < stage)."""

    accelerators: str | None = Field(None, description="e.g. 'A100:1', 'H100:8', 'A100-80GB:2'; null for CPU only")
    vram_gb: float = Field(0, ge=0, description="GPU memory one run needs, in GB")
    hours: Hours | None = Field(None, gt=0, description="estimated duration of one run")
    cpus: int = Field(1, ge=1, description="CPU cores one run uses")
    memory_gb: float = Field(0, ge=0, description="host memory one run needs, in GB")
    disk_gb: int | None = Field(None, ge=1, description="disk one run needs on the cloud, in GB")
    use_spot: bool | None = Field(None, description="run on spot instances (cloud); overrides cloud.use_spot")
    timeout: Hours | None = Field(None, gt=0, description="a run still going after this is stopped as 'timeout'. Without it a local run "
                                 f"is never stopped for time; a cloud job is stopped after {protocol.CLOUD_TIMEOUT_FACTOR:g}x "
                                 f"hours (at least {protocol.CLOUD_MIN_TIMEOUT_S:g} s)")

    @property
    def accelerator_name(self) -> str | None:
        return parse_accelerators(self.accelerators)[0]

    @property
    def gpus(self) -> int:
        return gpu_count(self.accelerators)

    @model_validator(mode="after")
    def _accelerator_format(self) -> "Resources":
        if self.accelerators and not re.fullmatch(r"[A-Za-z0-9_.-]+(:\d+)?", self.accelerators):
            raise invalid(f"accelerators must look like 'A100:1', got '{self.accelerators}'",
                          "an accelerator name, then ':' and how many, e.g. 'H100:8'; null for CPU only")
        return self


def _relative_path(value: str) -> str:
    parts = value.replace("\\", "/").split("/")
    if value.startswith(("/", "~")) or ".." in parts:
        raise invalid(f"artifact path {value!r} leaves the run directory",
                      "write a path inside the run directory, e.g. checkpoints/last.pt or eval/*.json")
    return value


# A file a run writes, relative to its run directory (globs allowed).
ArtifactPath = Annotated[str, Field(min_length=1, description="a path inside the run directory, e.g. "
                                    "checkpoints/last.pt or eval/*.json"), AfterValidator(_relative_path)]


class RunSpec(Strict):
    """The training plan every arm starts from."""

    command: str = Field(description="shell command; {config.key} and {seed} are filled in, shell-quoted")
    config: ConfigMap = Field(default_factory=dict, description="the config every arm starts from; each run "
                                   f"receives its resolved copy as JSON in ${protocol.CONFIG}")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, description="one run per seed and arm")
    resources: Resources = Field(default_factory=Resources,
                                 description="what one run needs (arms and stages override it)")
    env: dict[str, str] = Field(default_factory=dict, description="environment variables of every run (never secrets)")
    workdir: str | None = Field(None, description="directory the command runs in, relative to the study file")
    setup: str | None = Field(None, description="commands run once per machine before the runs (cloud)")
    artifacts: list[ArtifactPath] = Field(default_factory=list, description="files each run writes in its run "
                                          "directory (glob patterns allowed), linked from the report")


class Metric(Strict):
    """A number each run reports (reduced from a logged series) or one derived from others."""

    goal: Literal["min", "max"] | None = Field(None, description="which way is better; ranks arms and promotions")
    unit: str | None = Field(None, description="shown beside every value, e.g. s, GB, tok/s, %")
    reduce: Literal["last", "best", "min", "max", "mean"] = Field(
        "last", description="how the logged series becomes one number per run ('best' follows the goal)")
    from_: str | None = Field(None, alias="from", description="the logged series this metric reduces (default: its own name)")
    expr: Expr | None = Field(None, description="derived: over this run's metrics (peak_acc - final_acc), or over "
                              "arms for a study-level figure (1 - optimized.total_time / baseline.total_time)")
    spread: float | None = Field(None, gt=0, description="expected standard deviation of this metric across seeds "
                                 "(in its unit); `studyc plan --seeds-needed` uses it where the store has no pilot "
                                 "runs with a spread")
    description: str | None = Field(None, description="what the metric measures (documentation)")

    @model_validator(mode="after")
    def _one_source(self) -> "Metric":
        if self.expr is not None and self.from_ is not None:
            raise invalid("a metric is either reduced from a series ('from') or derived ('expr'), not both",
                          "keep one: 'from' picks the logged series, 'expr' computes it from other metrics")
        return self


class Baseline(BaseModel):
    """A result this study does not produce: metric values plus where they came from."""

    model_config = ConfigDict(extra="allow", frozen=True,
                              json_schema_extra={"additionalProperties": {"type": "number"}})
    source: str | None = Field(None, description="where the numbers come from (report, run, paper)")
    description: str | None = Field(None, description="what the baseline is (documentation)")

    @property
    def values(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Reuse(Strict):
    """Results that already exist: the arm runs nothing."""

    results: dict[str, float | list[float]] | None = Field(
        None, description="metric values (one per seed, or one number) from an earlier study")
    run: str | None = Field(None, description="a studyc run id whose stored results are used")
    wandb: str | None = Field(None, description="a W&B run path entity/project/run_id")
    source: str | None = Field(None, description="where the results come from")

    @model_validator(mode="after")
    def _one_origin(self) -> "Reuse":
        given = [k for k in ("results", "run", "wandb") if getattr(self, k) is not None]
        if len(given) != 1:
            raise invalid("reuse needs exactly one of 'results', 'run' or 'wandb'",
                          "results: the numbers; run: a studyc run id; wandb: entity/project/run_id")
        return self


class Arm(Strict):
    """One configuration under test: an overlay on run.config, or a sweep that expands into arms."""

    config: ConfigMap = Field(default_factory=dict, description="overlay on run.config (dotted keys allowed in sweeps); "
                              "every key must be in run.config, unless declared new with a leading '+' ({+dropout: 0.1})")
    resources: Resources | None = Field(None, description="overrides run.resources for this arm")
    seeds: list[int] | None = Field(None, min_length=1, description="overrides run.seeds for this arm")
    command: str | None = Field(None, description="overrides run.command for this arm")
    grid: Annotated[dict[str, list[Any]], BeforeValidator(strip_new)] | None = Field(
        None, description="sweep: every combination of these config values ('+key' for a key not in run.config)")
    zip_: Annotated[dict[str, list[Any]], BeforeValidator(strip_new)] | None = Field(
        None, alias="zip", description="sweep: the i-th values of each list together ('+key' for a key not in run.config)")
    name: str | list[Ident] | None = Field(
        None, description="sweep arm names: a template such as 'lr{lr}_w{warmup}' ({arm} is this key), or one name "
        "per sweep point, in order")
    reuse: Reuse | None = Field(None, description="results that exist already; the arm is not run")
    same_as: str | None = Field(None, description="this arm's results are another arm's (e.g. the same config run once)")
    label: str | None = Field(None, description="a human name, e.g. the config file it stands for")
    artifacts: list[ArtifactPath] | None = Field(None, description="files this arm's runs write, linked from the "
                                                 "report; overrides run.artifacts")
    tags: list[str] = Field(default_factory=list,
                            description="labels of this arm, added to the study's tags in the leaderboard")
    description: str | None = Field(None, description="what this arm tests (documentation)")


class Promote(Strict):
    top: int = Field(1, ge=1, description="how many gated arms go on to the stages that need this one")
    by: str | None = Field(None, description="metric to rank by; the study's primary metric by default")


class Stage(Strict):
    """A round of the study. Stages that do not need each other run side by side within
    budget.parallel; a stage starts when the stages it needs have ended, and may take the
    arms they promote."""

    arms: list[str] | Literal["promoted", "all"] = Field(
        "all", description="arms (or sweep families) this stage runs; 'promoted' takes what the needed stages promote")
    needs: list[str] = Field(default_factory=list, description="stages that must end before this one starts (and "
                             "whose promoted arms it takes); stages that do not need each other run side by side")
    config: ConfigMap = Field(default_factory=dict, description="overlay on each arm's config in this stage ('+key' for "
                              "a key not in run.config)")
    resources: Resources | None = Field(None, description="overrides the arms' resources in this stage")
    seeds: list[int] | None = Field(None, min_length=1, description="overrides the arms' seeds in this stage")
    gate: Expr | None = Field(None, description="condition a candidate must pass to be promoted: bare metric names are "
                              "the candidate's, arm.metric and baseline.metric others'")
    gate_judge: Judging = Field("interval", description="'interval': the gate is judged on confidence intervals; "
                                "'point': on point estimates (a screening round with one seed per config)")
    promote: Promote | Literal["all"] | None = Field(
        None, description="{top: k, by: metric}: the best k that pass the gate; 'all': every arm, forced")
    smoke: bool = Field(False, description="a smoke test: runs before every other stage (they all need it), and any "
                        "of its runs that fails stops the study")
    evaluate: str | None = Field(None, description="evaluation command run once per promoted run of the needed "
                                 "stages instead of training ({config.key} and {seed} filled in); the evaluated "
                                 "run's directory is in $STUDYC_SOURCE_RUN_DIR, and the metrics it logs are this "
                                 "stage's results. Needs `arms: promoted`")
    description: str | None = Field(None, description="what this round is for, shown in the report")


class Hypothesis(Strict):
    claim: str = Field(description="the hypothesis in words")
    check: Expr = Field(description="the condition that decides it, e.g. pure_128.nrmse <= 1.05 * u_shaped_128.nrmse")
    judge: Judging = Field("interval", description="'interval': judged on confidence intervals over seeds; 'point': "
                           "on point estimates, with no p-value (screening)")
    description: str | None = Field(None, description="background for the hypothesis (documentation)")


class Tier(Strict):
    check: Expr = Field(description="condition for the tier, usually over champion.<metric>")
    judge: Judging = Field("interval", description="'interval': judged on confidence intervals over seeds; 'point': "
                           "on point estimates, with no p-value (screening)")
    description: str | None = Field(None, description="what reaching this tier means (documentation)")


class DecisionRule(Strict):
    """The first rule whose `if` holds decides; a lone `else` closes the list."""

    if_: Expr | None = Field(None, alias="if", description="condition over hypotheses, arms, baselines and derived metrics")
    then: str | None = Field(None, description="what to do when the condition holds")
    else_: str | None = Field(None, alias="else", description="what to do when no rule holds")

    @model_validator(mode="after")
    def _shape(self) -> "DecisionRule":
        if self.else_ is not None and (self.if_ is not None or self.then is not None):
            raise invalid("an 'else' rule stands alone", "write it as its own list item: `- else: ...`")
        if self.else_ is None and (self.if_ is None or self.then is None):
            raise invalid("a decision rule needs 'if' and 'then' (or a lone 'else')",
                          "e.g. `- if: H1 and H2` with `then: what to do`")
        return self


class Recovery(Strict):
    """What to do when a run fails this way."""

    retries: int = Field(0, ge=0, le=20, description="how many times to run it again")
    config: dict[str, Expr | float | int | bool] = Field(
        default_factory=dict, description="config edits for the retry, e.g. batch_size: 'batch_size // 2'")
    resume: bool = Field(False, description="keep the run's checkpoints so the retry continues from them")


class Budget(Strict):
    usd: float | None = Field(None, ge=0, description="the most the plan may cost, in US dollars")
    gpu_hours: float | None = Field(None, ge=0, description="the most GPU-hours the plan may use")
    wall: Hours | None = Field(None, description="the longest the plan may take, wall-clock")
    parallel: int | None = Field(None, ge=1, description="at most this many runs at once")
    together: bool = Field(False, description="runs must start `parallel` at a time, all at once (e.g. runs compared "
                           "on a shared machine): the plan is refused when they cannot fit together, instead of "
                           "queueing the ones that do not fit")


class Machine(Strict):
    """The one machine that runs share when they are packed together (local or one node)."""

    accelerators: str | None = Field(None, description="e.g. 'H100:1'")
    gpus: int = Field(1, ge=0, description="number of GPUs")
    vram_gb: float = Field(0, ge=0, description="memory per GPU, in GB")
    cpus: int | None = Field(None, ge=1, description="CPU cores")
    memory_gb: float | None = Field(None, ge=0, description="host memory, in GB")
    contention: float = Field(1.0, ge=0, description="slowdown of runs sharing a GPU: k runs on one GPU each take "
                              "hours * (1 + contention * (k - 1)); 0: sharing costs nothing, 1: the GPU is split")


class Claim(Strict):
    """A claim judged by its hypotheses and, optionally, a check of its own (e.g. a bar
    the hypotheses do not state)."""

    hypotheses: list[str] = Field(default_factory=list, description="the hypotheses that support the claim")
    check: Expr | None = Field(None, description="a condition the claim also needs, over arms, baselines, derived "
                               "metrics and hypotheses, e.g. fixed.final_acc > 0.70")
    description: str | None = Field(None, description="background for the claim (documentation)")

    @model_validator(mode="after")
    def _something(self) -> "Claim":
        if not self.hypotheses and self.check is None:
            raise invalid("a claim needs 'hypotheses', a 'check', or both", "e.g. {hypotheses: [H1], check: 'a.x > 0.7'}")
        return self


# A claim is a list of hypotheses or a Claim; chosen by shape, so an error speaks of one form only.
ClaimValue = Annotated[Annotated[list[str], Tag("list")] | Annotated[Claim, Tag("dict")],
                       Discriminator(lambda v: "list" if isinstance(v, list) else "dict")]

Expectations = dict[Ident, dict[Ident, Annotated[list[float | None], Field(min_length=2, max_length=2)]]]


class Stats(Strict):
    confidence: float = Field(0.95, gt=0.5, lt=1, description="level of the confidence intervals checks are judged on")
    method: Literal["t", "bootstrap"] = Field("t", description="t-interval (Welch between arms) or bootstrap")
    correction: Literal["holm", "none"] = Field("holm", description="multiple-comparison correction across hypotheses")
    bootstrap_samples: int = Field(2000, ge=100, le=100000,
                                   description="resamples per bootstrap interval (method: bootstrap)")
    design: Literal["fixed", "confidence_sequence"] = Field(
        "fixed", description="fixed: judged once on the planned seeds; confidence_sequence: anytime-valid t confidence "
        "sequences (Lai 1976), so verdicts stay valid when seeds are added until they settle "
        "(`studyc run --until-settled`; docs/sequential.md)")
    paired: bool = Field(False, description="compare arms run on the same seeds seed by seed: paired t interval, or a "
                         "bootstrap resampling the seeds together (arms with other seeds stay independent)")


class Wandb(Strict):
    project: str = Field(description="the W&B project runs log to")
    entity: str | None = Field(None, description="the W&B team or user (default: your W&B default entity)")
    group: str | None = Field(None, description="W&B group of the runs (default: the study name)")
    groups: dict[str, str] = Field(default_factory=dict, description="W&B group per stage, overriding `group`")
    tags: list[str] = Field(default_factory=list, description="W&B tags of every run")
    mode: Literal["online", "offline", "disabled"] | None = Field(
        None, description="W&B mode (default: W&B's own, e.g. $WANDB_MODE)")


class Tracking(Strict):
    wandb: Wandb | None = Field(None, description="mirror every studyc.log call to W&B")


class CloudPool(Strict):
    workers: int = Field(ge=1, description="machines in the pool: each runs the setup once, then one run at a time")
    name: str | None = Field(None, pattern=r"^[a-z][a-z0-9-]{0,38}$", description="the pool's SkyPilot name "
                             "(default: derived from the study's name)")


class Cloud(Strict):
    infra: str | None = Field(None, description="SkyPilot infra, e.g. 'aws', 'gcp/us-central1', 'k8s', 'vast'")
    use_spot: bool = Field(False, description="run on spot instances (SkyPilot recovers preempted jobs)")
    autostop: Hours | None = Field(None, description="stop an idle cluster after this long")
    results: str | None = Field(None, pattern=r"^(s3|gs|r2|nebius|cw|minio|vastdata)://[^\s]+$",
                                description="bucket path for run results: s3://, gs:// or an S3-compatible store "
                                "by SkyPilot's scheme (r2://, nebius://, cw://, minio://, vastdata://)")
    disk_gb: int | None = Field(None, ge=1,
                                description="disk of each cloud machine, in GB (SkyPilot's default when unset)")
    image_id: str | None = Field(None, description="SkyPilot image_id of the cloud machines, e.g. docker:<image>")
    pool: CloudPool | None = Field(None, description="run the jobs on a SkyPilot job pool of identical workers "
                                   "(setup once per worker, not once per run); all runs then share run.resources")
    secrets: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = Field(
        default_factory=list, description="environment variables passed to cloud runs as SkyPilot secrets, by name "
        "only (their values come from your shell at launch and are never written into compiled files)")


class Report(Strict):
    dir: str | None = Field(None, description="report directory (default reports/<study>/), plus /<profile>")
    leaderboard: str | None = Field(None, description="CSV appended with one row per arm across studies")


class Study(Strict):
    """A study: arms under test, what they are compared with, how each is judged, and what it may cost."""

    model_config = ConfigDict(title="studyc study")

    study: StudyName = Field(description="the study's name (letters, digits, _ . -)")
    title: str | None = Field(None, description="a one-line title, the report's heading")
    description: str | None = Field(None, description="what the study asks, shown at the top of the report")
    tags: list[str] = Field(default_factory=list, description="labels of the study (leaderboard rows, W&B)")
    run: RunSpec = Field(description="the training plan every arm starts from")
    metrics: dict[Ident, Metric] = Field(min_length=1, description="what runs report, and figures derived from it")
    primary: str | None = Field(None, description="the metric that ranks arms; the first metric with a goal by default")
    baselines: dict[Ident, Baseline] = Field(default_factory=dict, description="results this study does not produce: "
                                             "{metric: value, source: ...}")
    arms: dict[Ident, Arm] = Field(min_length=1, description="the configurations under test")
    stages: dict[Ident, Stage] = Field(default_factory=dict, description="rounds with gates and promotion; a stage "
                                       "starts when the stages it needs have ended, beside those it does not need")
    hypotheses: dict[Ident, Hypothesis] = Field(default_factory=dict, description="claims with the check that decides each")
    tiers: dict[Ident, Tier | Expr] = Field(default_factory=dict, description="success tiers, lowest first "
                                            "(e.g. minimum, target, stretch): the highest whose check holds is reached")
    decision: list[DecisionRule] = Field(default_factory=list, description="what to do next, by the first rule that holds")
    expect: Expectations = Field(
        default_factory=dict, description="expected ranges {arm: {metric: [low, high]}} (null: open); the report "
        "shows expected against observed")
    scenarios: dict[Ident, Expectations] = Field(
        default_factory=dict, description="named expectation sets {scenario: {arm: {metric: [low, high]}}} (e.g. "
        "optimistic, conservative, worst); the report says which the observations match")
    claims: dict[str, ClaimValue] = Field(
        default_factory=dict, description="claims and the hypotheses that support them (a list, or {hypotheses, "
        "check}); status is derived: supported, partial, refuted, pending")
    on_failure: dict[FailureClass, Recovery] = Field(default_factory=dict, description="the recovery playbook, per "
                                                     "failure class")
    stop: dict[FailureClass, Expr] = Field(default_factory=dict, description="end a run early when this condition over "
                                           "its latest logged values holds, e.g. diverged: loss != loss or loss > 1e3")
    prices: dict[str, float] = Field(default_factory=dict, description="$/GPU-hour per accelerator, overriding the "
                                     "built-in table (CPU: $/core-hour)")
    budget: Budget = Field(default_factory=Budget,
                           description="limits the plan must fit; `run` and `compile` refuse a plan over them")
    machine: Machine | None = Field(None, description="the machine runs share (packing by GPU memory, CPUs, memory)")
    stats: Stats = Field(default_factory=Stats,
                         description="how checks are judged: confidence, interval method, correction")
    profiles: dict[Ident, dict[str, Any]] = Field(default_factory=dict, description="named overlays of this study "
                                                  "(e.g. cpu: the same study at a scale a laptop runs)")
    tracking: Tracking = Field(default_factory=Tracking, description="experiment trackers every run also logs to")
    cloud: Cloud = Field(default_factory=Cloud, description="how `studyc run --cloud` launches runs (SkyPilot)")
    report: Report = Field(default_factory=Report, description="where the report goes, and the shared leaderboard")

    @property
    def primary_metric(self) -> str:
        if self.primary:
            return self.primary
        return next((k for k, m in self.metrics.items() if m.goal), next(iter(self.metrics)))

    @property
    def smoke_stage(self) -> str | None:
        """The stage marked ``smoke`` (at most one: validation refuses more)."""
        return next((name for name, stage in self.stages.items() if stage.smoke), None)

    def claim(self, text: str) -> Claim:
        """A claim in its full form, whichever way it was written."""
        value = self.claims[text]
        return Claim.model_construct(hypotheses=list(value), check=None) if isinstance(value, list) else value

    def tier(self, name: str) -> Tier:
        """A tier in its full form, whichever way it was written (a bare check is judged on intervals)."""
        value = self.tiers[name]
        return Tier.model_construct(check=value, judge="interval", description=None) if isinstance(value, str) else value

    def tier_checks(self) -> dict[str, str]:
        return {name: self.tier(name).check for name in self.tiers}
