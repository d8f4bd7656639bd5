"""The study language as pydantic models: the raw, validated shape of a study file.

Cross-references (arms named in checks, stages that need other stages, ...) are checked
afterwards in ``studyc.spec.semantics``, which knows where every node sits in the file.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

FAILURE_CLASSES = ("oom", "diverged", "timeout", "preempted", "crashed")
FailureClass = Literal["oom", "diverged", "timeout", "preempted", "crashed"]

# Names that become paths, ids or expression references.
StudyName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$", min_length=1, max_length=100)]
Ident = Annotated[str, Field(pattern=r"^[A-Za-z0-9_]*[A-Za-z_][A-Za-z0-9_]*$", max_length=100)]

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*d)?\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*$")


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
    raise ValueError("expected a duration such as '3h', '90m', '1h30m' or a number of hours")


Hours = Annotated[float, BeforeValidator(parse_duration_hours), Field(ge=0)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Resources(Strict):
    """What one run needs. Unset fields inherit from the level above (run < arm < stage)."""

    accelerators: str | None = Field(None, description="e.g. 'A100:1', 'H100:8', 'A100-80GB:2'; null for CPU only")
    vram_gb: float = Field(0, ge=0, description="GPU memory one run needs, in GB")
    hours: Hours | None = Field(None, gt=0, description="estimated duration of one run")
    cpus: int = Field(1, ge=1, description="CPU cores one run uses")
    memory_gb: float = Field(0, ge=0, description="host memory one run needs, in GB")
    disk_gb: int | None = Field(None, ge=1)
    use_spot: bool | None = None
    timeout: Hours | None = Field(None, gt=0, description="a run still going after this is stopped as 'timeout' (default 3x hours, at least 1 minute)")

    @property
    def accelerator_name(self) -> str | None:
        return self.accelerators.split(":")[0] if self.accelerators else None

    @property
    def gpus(self) -> int:
        if not self.accelerators:
            return 0
        _, _, count = self.accelerators.partition(":")
        return int(count) if count else 1

    @model_validator(mode="after")
    def _accelerator_format(self) -> "Resources":
        if self.accelerators and not re.fullmatch(r"[A-Za-z0-9_.-]+(:\d+)?", self.accelerators):
            raise ValueError(f"accelerators must look like 'A100:1', got '{self.accelerators}'")
        return self


class RunSpec(Strict):
    """The training plan every arm starts from."""

    command: str = Field(description="shell command; {config.key} and {seed} are filled in, shell-quoted")
    config: dict[str, Any] = Field(default_factory=dict)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    resources: Resources = Field(default_factory=Resources)
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = Field(None, description="directory the command runs in, relative to the study file")
    setup: str | None = Field(None, description="commands run once per machine before the runs (cloud)")


class Metric(Strict):
    goal: Literal["min", "max"] | None = None
    unit: str | None = None
    reduce: Literal["last", "best", "min", "max", "mean"] = "last"
    from_: str | None = Field(None, alias="from", description="the logged series this metric reduces")
    expr: str | None = Field(None, description="derived: over this run's metrics, or over arms for a study-level figure")
    description: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "Metric":
        if self.expr is not None and self.from_ is not None:
            raise ValueError("a metric is either reduced from a series ('from') or derived ('expr'), not both")
        return self


class Baseline(BaseModel):
    """A result this study does not produce: metric values plus where they came from."""

    model_config = ConfigDict(extra="allow", frozen=True)
    source: str | None = None
    description: str | None = None

    @property
    def values(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Reuse(Strict):
    results: dict[str, float | list[float]] | None = None
    run: str | None = Field(None, description="a studyc run id whose stored results are used")
    wandb: str | None = Field(None, description="a W&B run path entity/project/run_id")
    source: str | None = None

    @model_validator(mode="after")
    def _one_origin(self) -> "Reuse":
        given = [k for k in ("results", "run", "wandb") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("reuse needs exactly one of 'results', 'run' or 'wandb'")
        return self


class Arm(Strict):
    config: dict[str, Any] = Field(default_factory=dict)
    resources: Resources | None = None
    seeds: list[int] | None = Field(None, min_length=1)
    command: str | None = None
    grid: dict[str, list[Any]] | None = None
    zip_: dict[str, list[Any]] | None = Field(None, alias="zip")
    name: str | None = Field(None, description="name template for sweep arms, e.g. 'lr{lr}_w{warmup}'")
    reuse: Reuse | None = None
    same_as: str | None = None
    label: str | None = None
    tags: list[str] = Field(default_factory=list)
    description: str | None = None


class Promote(Strict):
    top: int = Field(1, ge=1)
    by: str | None = Field(None, description="metric to rank by; the study's primary metric by default")


class Stage(Strict):
    arms: list[str] | Literal["promoted", "all"] = "all"
    needs: list[str] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)
    resources: Resources | None = None
    seeds: list[int] | None = Field(None, min_length=1)
    gate: str | None = None
    promote: Promote | Literal["all"] | None = None
    description: str | None = None


class Hypothesis(Strict):
    claim: str
    check: str
    description: str | None = None


class Tier(Strict):
    check: str
    description: str | None = None


class DecisionRule(Strict):
    if_: str | None = Field(None, alias="if")
    then: str | None = None
    else_: str | None = Field(None, alias="else")

    @model_validator(mode="after")
    def _shape(self) -> "DecisionRule":
        if self.else_ is not None and (self.if_ is not None or self.then is not None):
            raise ValueError("an 'else' rule stands alone: write it as its own list item")
        if self.else_ is None and (self.if_ is None or self.then is None):
            raise ValueError("a decision rule needs 'if' and 'then' (or a lone 'else')")
        return self


class Recovery(Strict):
    retries: int = Field(0, ge=0, le=20)
    config: dict[str, str | float | int | bool] = Field(default_factory=dict, description="edits, e.g. batch_size: 'batch_size // 2'")
    resume: bool = False


class Budget(Strict):
    usd: float | None = Field(None, ge=0)
    gpu_hours: float | None = Field(None, ge=0)
    wall: Hours | None = None
    parallel: int | None = Field(None, ge=1)
    together: bool = Field(False, description="runs must start `parallel` at a time, all at once (e.g. runs compared "
                           "on a shared machine): the plan is refused when they cannot fit together, instead of "
                           "queueing the ones that do not fit")


class Machine(Strict):
    """The one machine that runs share when they are packed together (local or one node)."""

    accelerators: str | None = None
    gpus: int = Field(1, ge=0)
    vram_gb: float = Field(0, ge=0, description="memory per GPU, in GB")
    cpus: int | None = Field(None, ge=1)
    memory_gb: float | None = Field(None, ge=0)


class Stats(Strict):
    confidence: float = Field(0.95, gt=0.5, lt=1)
    method: Literal["t", "bootstrap"] = "t"
    correction: Literal["holm", "none"] = "holm"
    bootstrap_samples: int = Field(2000, ge=100, le=100000)


class Wandb(Strict):
    project: str
    entity: str | None = None
    group: str | None = None
    tags: list[str] = Field(default_factory=list)
    mode: Literal["online", "offline", "disabled"] | None = None


class Tracking(Strict):
    wandb: Wandb | None = None


class Cloud(Strict):
    infra: str | None = Field(None, description="SkyPilot infra, e.g. 'aws', 'gcp/us-central1', 'k8s', 'vast'")
    use_spot: bool = False
    autostop: Hours | None = None
    results: str | None = Field(None, pattern=r"^(s3|gs)://[^\s]+$", description="bucket path for run results")
    disk_gb: int | None = Field(None, ge=1)
    image_id: str | None = None
    secrets: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = Field(
        default_factory=list, description="environment variables passed to cloud runs as SkyPilot secrets, by name "
        "only (their values come from your shell at launch and are never written into compiled files)")


class Report(Strict):
    dir: str | None = None
    leaderboard: str | None = Field(None, description="CSV appended with one row per arm across studies")


class Study(Strict):
    study: StudyName
    title: str | None = None
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    run: RunSpec
    metrics: dict[Ident, Metric] = Field(min_length=1)
    primary: str | None = Field(None, description="the metric that ranks arms; the first metric with a goal by default")
    baselines: dict[Ident, Baseline] = Field(default_factory=dict)
    arms: dict[Ident, Arm] = Field(min_length=1)
    stages: dict[Ident, Stage] = Field(default_factory=dict)
    hypotheses: dict[Ident, Hypothesis] = Field(default_factory=dict)
    tiers: dict[Ident, Tier | str] = Field(default_factory=dict)
    decision: list[DecisionRule] = Field(default_factory=list)
    expect: dict[Ident, dict[Ident, Annotated[list[float | None], Field(min_length=2, max_length=2)]]] = Field(default_factory=dict)
    claims: dict[str, list[str]] = Field(default_factory=dict)
    on_failure: dict[FailureClass, Recovery] = Field(default_factory=dict)
    stop: dict[FailureClass, str] = Field(default_factory=dict)
    prices: dict[str, float] = Field(default_factory=dict)
    budget: Budget = Field(default_factory=Budget)
    machine: Machine | None = None
    stats: Stats = Field(default_factory=Stats)
    profiles: dict[Ident, dict[str, Any]] = Field(default_factory=dict)
    tracking: Tracking = Field(default_factory=Tracking)
    cloud: Cloud = Field(default_factory=Cloud)
    report: Report = Field(default_factory=Report)

    @property
    def primary_metric(self) -> str:
        if self.primary:
            return self.primary
        return next((k for k, m in self.metrics.items() if m.goal), next(iter(self.metrics)))

    def tier_checks(self) -> dict[str, str]:
        return {name: (t if isinstance(t, str) else t.check) for name, t in self.tiers.items()}
