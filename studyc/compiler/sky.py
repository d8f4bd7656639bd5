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
import shlex
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


POOL_TASK = "pool"  # tasks/pool.sky.yaml: the workers of `cloud.pool`


def pool_name(study: Study) -> str | None:
    """The SkyPilot job pool the study's jobs run on (``cloud.pool``), None without one."""
    pool = study.cloud.pool
    if pool is None:
        return None
    return pool.name or ("studyc-" + re.sub(r"[^a-z0-9]+", "-", study.study.lower())).strip("-")[:39]


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
    """The recovery playbook as SkyPilot's ``resources.job_recovery``, and notes on who
    retries what.

    SkyPilot moves a job to a new machine when the cloud takes its machine away
    (``strategy``); that is all it is asked to do. Its other restarts cannot respect the
    playbook: ``max_restarts_on_errors`` reruns any non-zero exit as it is (a deterministic
    OOM included, before studyc's edited retry) and ``recover_on_exit_codes`` restarts
    without limit. So every failure of the run itself ends the job, studyc classifies it
    (oom, diverged, crashed, timeout; exit 143 is a preemption the machine survived) and
    retries it as its class says, as a new job with the playbook's edits.
    """
    playbook = study.on_failure
    recovery: dict[str, Any] = {}
    notes: list[str] = []
    if "preempted" in playbook or study.cloud.use_spot:
        recovery["strategy"] = "EAGER_NEXT_REGION"
        notes.append("preempted: SkyPilot moves the job to a new machine when the cloud takes its machine away")
    preempted = playbook.get("preempted")
    if preempted is not None and preempted.resume and not study.cloud.results:
        notes.append("preempted: resuming needs cloud.results (a bucket), so checkpoints outlive the machine")
    for cls, p in sorted(playbook.items()):
        if p.retries:
            what = f"{cls} (exit {SIGTERM_EXIT}: SIGTERM the machine survived)" if cls == "preempted" else cls
            edits = ", ".join(f"{k} = {v}" for k, v in p.config.items())
            notes.append(f"{what}: studyc retries up to {_times(p.retries)} as a new job" + (f" with {edits}" if edits else ""))
    return recovery or None, notes


def _times(n: int) -> str:
    return f"{n} time{'s' if n != 1 else ''}"


def yaml_comment(text: str) -> str:
    """``text`` on one comment line: the body of its quoted scalar, so no line break,
    whatever a key or value holds, can end the comment and start YAML."""
    return yaml_scalar(str(text))[1:-1]


def run_script(run: RunPlan, timeout_s: int) -> str:
    """The task's ``run:``: the run protocol around the run's command."""
    return protocol.cloud_script(run.command, timeout_s, run.source)


# PyPI's torch wheels for Linux bundle CUDA; a machine without a GPU takes the CPU build
# (a fifth of the download).
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def default_setup(workdir: Path, gpu: bool, tracked: bool) -> str:
    """What a fresh machine from SkyPilot's default image needs to run the study: the
    project in the workdir (with its ``torch`` extra, and ``wandb`` when tracked), in the
    Python environment SkyPilot runs jobs in. ``run.setup`` replaces all of it."""
    extras = project_extras(workdir)
    lines = ["set -e", "# studyc's default setup (a study's run.setup replaces it)"]
    want = [e for e in ("torch", "wandb") if e in (extras or ()) and (e != "wandb" or tracked)]
    index = "" if gpu or "torch" not in want else f"--extra-index-url {TORCH_CPU_INDEX} "
    if extras is None:
        if (workdir / "requirements.txt").is_file():
            lines.append(f"python3 -m pip install {index}-r requirements.txt")
    else:
        target = f".[{','.join(want)}]" if want else "."
        lines.append(f"python3 -m pip install {index}-e {shlex.quote(target)}")
    if tracked and "wandb" not in (extras or ()):
        lines.append("python3 -m pip install wandb")
    return "\n".join(lines) + "\n"


def project_extras(workdir: Path) -> set[str] | None:
    """The optional extras a Python project in ``workdir`` declares; None when it is not one."""
    pyproject = workdir / "pyproject.toml"
    if not pyproject.is_file():
        return set() if (workdir / "setup.py").is_file() else None
    try:
        import tomllib
    except ImportError:  # Python 3.10: the extras' names are all studyc needs
        text = pyproject.read_text(encoding="utf-8")
        section = text.partition("[project.optional-dependencies]")[2].split("\n[", 1)[0]
        return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*=", section, re.M))
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return set()
    return set((data.get("project") or {}).get("optional-dependencies") or {})


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
    env.filters["comment"] = yaml_comment
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
        self.project = Path(plan.workdir)
        self.default_setups: dict[bool, str] = {}  # GPU machine or not -> studyc's default setup
        wandb = study.tracking.wandb
        self.tracked = wandb is not None and wandb.mode != "disabled"

    def render(self, run: RunPlan) -> str:
        """The run's task; on a job pool without setup (each worker ran it once)."""
        return self._render(run, pool_workers=None)

    def render_pool(self, run: RunPlan) -> str:
        """The pool's task (``cloud.pool``): its workers have ``run``'s resources and run the
        setup once; jobs then run on them one at a time."""
        return self._render(run, pool_workers=self.study.cloud.pool.workers)

    def check_pool(self, runs: list[RunPlan]) -> None:
        """A pool's workers are identical: every run must ask for the same resources."""
        shapes = {(r.resources["accelerators"], r.resources["cpus"], r.resources["memory_gb"]) for r in runs}
        if self.study.cloud.pool is not None and len(shapes) > 1:
            raise RunError(f"cloud.pool runs every job on identical workers, but the runs ask for {len(shapes)} "
                           "different resources", "give every arm and stage the same accelerators, cpus and memory, "
                           "or drop cloud.pool (one machine per job)")

    def _render(self, run: RunPlan, pool_workers: int | None) -> str:
        study, res, cloud = self.study, run.resources, self.study.cloud
        accelerators = res["accelerators"]
        if accelerators:
            name, sep, count = accelerators.partition(":")
            accelerators = SKY_ACCELERATORS.get(name.upper(), name) + sep + count
        timeout_s = protocol.timeout_s(res, run.est_hours, remote=True)
        envs = dict(run.env)  # the study's own, then the run protocol's (which they cannot override)
        envs.update(protocol.cloud_env(study.study, run, canonical(run.config), RESULTS_MOUNT if cloud.results else None))
        return self.template.render(
            study=study.study, run=run, workdir=self.workdir, pool=pool_name(study),
            name=pool_name(study) if pool_workers else task_name(study.study, run),
            infra=cloud.infra, accelerators=accelerators,
            cpus=f"{res['cpus']}+" if res["cpus"] > 1 else None,
            memory=f"{res['memory_gb']:g}+" if res["memory_gb"] else None,
            use_spot=res["use_spot"] if res["use_spot"] is not None else cloud.use_spot,
            disk_size=res["disk_gb"] or cloud.disk_gb, image_id=cloud.image_id,
            job_recovery=self.recovery, recovery_notes=self.notes,
            results=cloud.results, results_dir=RESULTS_MOUNT,
            envs=envs, secrets=self.secrets, pool_workers=pool_workers,
            setup=self.setup(accelerators) if cloud.pool is None or pool_workers else None,
            script=None if pool_workers else run_script(run, round(timeout_s)),
        )


    def setup(self, accelerators: str | None) -> str:
        """The study's own ``run.setup``, else studyc's default for this run's machine."""
        text = self.study.run.setup
        if text:
            return text if text.endswith("\n") else text + "\n"
        gpu = bool(accelerators)
        if gpu not in self.default_setups:  # it reads the project's pyproject.toml: once per machine kind
            self.default_setups[gpu] = default_setup(self.project, gpu, self.tracked)
        return self.default_setups[gpu]


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
    known = [run for run in plan.runs if not run.pending]
    if loaded.study.cloud.pool is not None and known:
        renderer.check_pool(plan.runs)
        path = tasks_dir / f"{POOL_TASK}{TASK_SUFFIX}"
        path.write_text(renderer.render_pool(known[0]), encoding="utf-8")
        written.append(path)
    for run in known:
        path = tasks_dir / f"{run.id}{TASK_SUFFIX}"
        path.write_text(renderer.render(run), encoding="utf-8")
        written.append(path)
    keep = {p.name for p in written}
    for stale in tasks_dir.glob(f"*{TASK_SUFFIX}"):
        if stale.name not in keep:
            stale.unlink()
    return Compiled(plan_file, written, sum(1 for r in plan.runs if r.pending))
