"""Plan -> files: `plan.json` and one SkyPilot task YAML per run (`studyc compile`).

Tasks are rendered from ``templates/sky_task.yaml.j2`` (a ``./templates`` folder
overrides it). Every value reaches the YAML through a quoting filter and the command line
only shell-quoted, so no config value can change the task's structure or its shell script.
Secrets appear by name only, as SkyPilot ``secrets:`` whose values come from the launching
shell. SkyPilot itself is not imported here: tests check the files with its own validation.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studyc.artifacts import envelope, write_json
from studyc.compiler.ids import canonical
from studyc.compiler.plan import DEFAULT_STAGE, Plan, RunPlan
from studyc import protocol
from studyc.errors import RunError
from studyc.spec.loader import LoadedStudy
from studyc.spec.model import Study

TEMPLATE = "sky_task.yaml.j2"
TASKS_DIR = "tasks"
TASK_SUFFIX = ".sky.yaml"
PLAN_FILE = "plan.json"
RESULTS_MOUNT = "/studyc-results"  # where cloud.results is mounted on the cloud machine
# SkyPilot's names where studyc's differ.
SKY_ACCELERATORS = {"A100-40GB": "A100"}
# Names of environment variables that hold credentials; never written as values.
_SECRET_NAME = re.compile(r"(^|_)(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)(_|$)", re.I)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Characters YAML must see escaped (and lone surrogates, which UTF-8 cannot even write).
_NON_PRINTABLE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]")
_BLOCK_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]")
_NAME_RUNS = re.compile(r"[._-]{3,}")
# Preemption kills the run with SIGTERM (exit 143) where the machine survives it (Kubernetes).
SIGTERM_EXIT = 143


def yaml_scalar(value: Any) -> str:
    """``value`` as a YAML flow scalar that every YAML 1.1/1.2 parser reads back unchanged."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_scalar(v) for v in value) + "]"
    text = json.dumps(str(value), ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar
    return _NON_PRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def yaml_block(text: str, indent: int = 2) -> str:
    """A multi-line string as a literal block (``|``) when that keeps it byte for byte,
    else as a quoted scalar."""
    lines = text.split("\n")
    if (not text.endswith("\n") or text.endswith("\n\n") or _BLOCK_UNSAFE.search(text)
            or lines[0][:1] in (" ", "\t") or not lines[0]):
        return yaml_scalar(text)
    pad = " " * indent
    return "|\n" + "\n".join(pad + line if line else "" for line in lines[:-1])


def task_name(study: str, run: RunPlan) -> str:
    """A SkyPilot task name (letters, digits and single or double . _ -), unique per run."""
    stage = "" if run.stage == DEFAULT_STAGE else f"-{run.stage}"
    name = _NAME_RUNS.sub("-", f"{study}{stage}-{run.arm}-s{run.seed}-{run.id}")
    return name.strip("._-")


def secret_names(study: Study) -> list[str]:
    names = list(study.cloud.secrets)
    wandb = study.tracking.wandb
    if wandb is not None and wandb.mode not in ("offline", "disabled"):
        names.append("WANDB_API_KEY")
    return sorted(set(names))


def check_env(study: Study) -> None:
    """Refuse environment names a shell cannot hold, and any credential's value."""
    for key in study.run.env:
        if not _ENV_NAME.fullmatch(key):
            raise RunError(f"run.env has '{key}', which is not a valid environment variable name",
                           "use letters, digits and underscores, not starting with a digit")
        if _SECRET_NAME.search(key):
            raise RunError(f"run.env sets {key}, which looks like a credential; compiled files never hold secrets",
                           f"remove it from run.env, list it under `cloud: {{secrets: [{key}]}}` and export {key} in "
                           "the shell that launches: SkyPilot passes it to the runs by name")


def job_recovery(study: Study) -> tuple[dict[str, Any] | None, list[str]]:
    """The recovery playbook as SkyPilot's ``resources.job_recovery``, and notes on what
    SkyPilot cannot do (studyc retries those itself, as new jobs with edited configs).

    SkyPilot recovers preemptions on its own (``strategy``) and restarts a failed run as
    it is (``max_restarts_on_errors``, any non-zero exit; ``recover_on_exit_codes``,
    without limit). So: preempted -> strategy and exit 143 (SIGTERM where the machine
    survives, e.g. Kubernetes); playbook entries that retry without editing the config
    (crashed, usually) -> max_restarts_on_errors; entries that edit the config (oom:
    batch_size // 2, diverged: lr * 0.7) -> studyc.
    """
    playbook = study.on_failure
    recovery: dict[str, Any] = {}
    notes: list[str] = []
    if "preempted" in playbook or study.cloud.use_spot:
        recovery["strategy"] = "EAGER_NEXT_REGION"
    as_is = restarted_by_skypilot(study)
    if as_is:
        recovery["max_restarts_on_errors"] = max(as_is.values())
    preempted = playbook.get("preempted")
    if preempted is not None and preempted.retries:
        recovery["recover_on_exit_codes"] = [SIGTERM_EXIT]
        notes.append(f"preempted: SkyPilot recovers preemptions itself (and exit {SIGTERM_EXIT}), beyond the "
                     f"playbook's {_times(preempted.retries)}")
        if preempted.resume and not study.cloud.results:
            notes.append("preempted: resuming needs cloud.results (a bucket), so checkpoints outlive the machine")
    if as_is:
        notes.append("SkyPilot restarts a failed run as it is up to max_restarts_on_errors times "
                     f"(playbook: {', '.join(f'{c} {n}' for c, n in sorted(as_is.items()))})")
    for cls, p in sorted(playbook.items()):
        if p.config and p.retries:
            edits = ", ".join(f"{k} = {v}" for k, v in p.config.items())
            notes.append(f"{cls}: studyc retries up to {_times(p.retries)} as a new job with {edits}")
    return recovery or None, notes


def restarted_by_skypilot(study: Study) -> dict[str, int]:
    """Playbook entries that retry without editing the config (preempted aside), by
    class: SkyPilot restarts those itself (``max_restarts_on_errors``), so studyc does not."""
    return {cls: p.retries for cls, p in study.on_failure.items() if cls != "preempted" and p.retries and not p.config}


def _times(n: int) -> str:
    return f"{n} time{'s' if n != 1 else ''}"


def run_script(run: RunPlan, timeout_s: int) -> str:
    """The task's ``run:``: the run protocol around the run's command."""
    return protocol.cloud_script(run.command, timeout_s, run.source)


def _environment(user_templates: Path):
    import jinja2

    loaders: list[Any] = []
    if user_templates.is_dir():
        loaders.append(jinja2.FileSystemLoader(str(user_templates)))
    loaders.append(jinja2.PackageLoader("studyc", "templates"))
    env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False)
    env.filters["yq"] = yaml_scalar
    env.filters["yaml_block"] = yaml_block
    return env


class TaskRenderer:
    """Renders one run's SkyPilot task. Study-wide parts are worked out once, so the cloud
    executor can also render runs that a gate promotes at run time."""

    def __init__(self, loaded: LoadedStudy, plan: Plan, out_dir: Path):
        study = loaded.study
        check_env(study)
        self.study = study
        self.template = _environment(Path.cwd() / "templates").get_template(TEMPLATE)
        self.recovery, self.notes = job_recovery(study)
        self.secrets = secret_names(study)
        self.workdir = os.path.relpath(plan.workdir, out_dir.resolve())

    def render(self, run: RunPlan) -> str:
        study, res, cloud = self.study, run.resources, self.study.cloud
        accelerators = res["accelerators"]
        if accelerators:
            name, sep, count = accelerators.partition(":")
            accelerators = SKY_ACCELERATORS.get(name.upper(), name) + sep + count
        timeout_s = protocol.timeout_s(res, run.est_hours, remote=True)
        envs = dict(run.env)  # the study's own, then the run protocol's (which they cannot override)
        envs.update(protocol.cloud_env(study.study, run, canonical(run.config), RESULTS_MOUNT if cloud.results else None))
        return self.template.render(
            study=study.study, run=run, name=task_name(study.study, run), workdir=self.workdir,
            infra=cloud.infra, accelerators=accelerators,
            cpus=f"{res['cpus']}+" if res["cpus"] > 1 else None,
            memory=f"{res['memory_gb']:g}+" if res["memory_gb"] else None,
            use_spot=res["use_spot"] if res["use_spot"] is not None else cloud.use_spot,
            disk_size=res["disk_gb"] or cloud.disk_gb, image_id=cloud.image_id,
            job_recovery=self.recovery, recovery_notes=self.notes,
            results=cloud.results, results_dir=RESULTS_MOUNT,
            envs=envs, secrets=self.secrets, setup=_script(study.run.setup),
            script=run_script(run, round(timeout_s)),
        )


def _script(text: str | None) -> str | None:
    if not text:
        return None
    return text if text.endswith("\n") else text + "\n"


@dataclass
class Compiled:
    plan_file: Path
    tasks: list[Path]
    pending: int  # runs of promoted stages: rendered at run time, once the gates have chosen


def write_compiled(loaded: LoadedStudy, plan: Plan, out_dir: Path) -> Compiled:
    """Write ``plan.json`` and ``tasks/<run id>.sky.yaml`` for every run known now. Task
    files of runs no longer in the plan are removed, so ``tasks/`` is exactly the plan."""
    out_dir = Path(out_dir)
    renderer = TaskRenderer(loaded, plan, out_dir)
    body = plan.to_dict(relative_to=out_dir.resolve())
    body["study_file"] = os.path.relpath(loaded.path.resolve(), out_dir.resolve())
    plan_file = out_dir / PLAN_FILE
    write_json(plan_file, envelope("plan", plan.spec_hash, body, timestamp=False))
    tasks_dir = out_dir / TASKS_DIR
    tasks_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for run in plan.runs:
        if run.pending:
            continue
        path = tasks_dir / f"{run.id}{TASK_SUFFIX}"
        path.write_text(renderer.render(run), encoding="utf-8")
        written.append(path)
    keep = {p.name for p in written}
    for stale in tasks_dir.glob(f"*{TASK_SUFFIX}"):
        if stale.name not in keep:
            stale.unlink()
    return Compiled(plan_file, written, sum(1 for r in plan.runs if r.pending))
