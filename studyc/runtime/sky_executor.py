"""SkyPilot managed jobs as an executor: `studyc run --cloud`.

Each attempt of a run is one managed job, launched from the run's compiled task
(``compiler/sky.py``) under the task's name; the Scheduler drives it exactly as it drives
local processes (packing aside: every job has a machine of its own). SkyPilot recovers
preemptions and restarts failed runs as they are (``resources.job_recovery``); studyc
retries what needs a config edit (oom, diverged) as new jobs. Each run writes its files,
exit code included, to the study's results bucket, which studyc copies into the store.

Jobs outlive studyc: their names and ids are kept per attempt in the store, and the next
`studyc run --cloud` follows them again instead of launching duplicates.

skypilot is imported here only, and only when a cloud run or dry run needs it.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from studyc.compiler.plan import Plan, RunPlan
from studyc.compiler.prices import CONTROLLER_IDLE_H, CONTROLLER_PRICE, infra_cloud, read_catalog
from studyc.compiler.sky import TaskRenderer, pool_name, task_name
from studyc.errors import RunError
from studyc.protocol import ATTEMPT, EXIT_CODE_FILE, LOG_FILE, METRICS_FILE, RESUME, WANDB_PREFIX
from studyc.runtime.executor import Executor, Job, JobState, tail
from studyc.runtime.results import Results, ResultsError, import_wandb, wandb_series, write_metrics
from studyc.runtime.store import Store
from studyc.runtime.wandb_log import group as wandb_group
from studyc.spec.loader import LoadedStudy
from studyc.spec.model import Study

INSTALL_HINT = "install the cloud extra: pip install 'studyc[cloud]'"
# Your own machines: SkyPilot lists their GPUs live, with no price catalog.
CLUSTERS = {"kubernetes", "ssh", "slurm"}
# studyc's extra per cloud (SkyPilot's, plus what its jobs' bucket uploads need); pyproject.toml.
CLOUD_EXTRAS = {"aws": "aws", "gcp": "gcp", "azure": "azure", "kubernetes": "k8s", "vast": "vast",
                "lambda": "lambda", "runpod": "runpod", "nebius": "nebius"}
# What studyc asks of sky.jobs.queue_v2 (field names of SkyPilot's ManagedJobRecord).
FIELDS = ("job_id", "job_name", "status", "failure_reason", "submitted_at", "start_at", "end_at", "recovery_count",
          "job_duration")
# Accepted, but without a machine (yet, or again): time and money stand still.
WAITING = {"PENDING", "SUBMITTED", "STARTING", "RECOVERING"}
# Ended before or outside the run itself: the run's exit code cannot explain these.
NOT_THE_RUN = {"FAILED_SETUP", "FAILED_PRECHECKS", "FAILED_NO_RESOURCE", "FAILED_CONTROLLER"}
TIMEOUT_EXIT = 124  # `timeout` in the task's run script
# The jobs controller's failure_reason of a run that failed (skypilot 0.14, sky/jobs/controller.py):
# "Job exited with exit code 1 (user program failure). To see the details, run: sky jobs logs
# --controller 7"; with several nodes "exit codes [1, 0]".
_EXIT_REASON = re.compile(r"Job exited with exit codes? \[?(-?\d+)")
# FAILED_DRIVER, "most commonly because the user workload ran the node out of memory".
_DRIVER_REASON = "The job driver on the remote cluster failed"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # SkyPilot's messages carry terminal colours
LOG_LINES = 50  # lines of a failed job's log fetched from SkyPilot when no bucket has them
LAUNCH_LOG = "launch.log"
# Variables of one attempt (not in the compiled task): resuming, and where W&B logs it.
_ATTEMPT_ENV = (RESUME, ATTEMPT)
_ATTEMPT_ENV_PREFIX = WANDB_PREFIX


def import_sky() -> Any:
    try:
        import sky
    except ImportError as exc:
        raise RunError(f"running on the cloud needs SkyPilot, which is not installed ({exc})", INSTALL_HINT) from None
    return sky


class SkyClient:
    """The few calls of SkyPilot's client SDK that studyc makes (tests substitute a fake
    with the same signatures)."""

    def __init__(self) -> None:
        sky = import_sky()
        self.launch = sky.jobs.launch
        self.queue_v2 = sky.jobs.queue_v2
        self.cancel = sky.jobs.cancel
        self.get = sky.get
        self.stream_and_get = sky.stream_and_get
        self.tail_logs = sky.jobs.tail_logs
        self.pool_apply = sky.jobs.pool_apply
        # No jobs controller up: never started yet, or stopped itself after idling.
        self.ControllerNotUp = sky.exceptions.ClusterNotUpError
        # No jobs controller at all (even refresh=True cannot start one): no job exists.
        self.NoController = sky.exceptions.ClusterDoesNotExist
        # No cloud enabled: every launch fails the same way, so studyc stops at the first.
        self.NoCloudAccess = sky.exceptions.NoCloudAccessError


# ------------------------------------------------------------------ tasks


class Tasks:
    """Builds the SkyPilot task of a run, as SkyPilot's own parser reads it (offline)."""

    def __init__(self, loaded: LoadedStudy, plan: Plan):
        import yaml  # PyYAML: SkyPilot's YAML reader, part of the cloud extra

        self.sky = import_sky()
        self.yaml = yaml
        self.study = loaded.study
        self.workdir = plan.workdir
        self.renderer = TaskRenderer(loaded, plan, Path(plan.workdir))

    @property
    def secrets(self) -> list[str]:
        return self.renderer.secrets

    def build(self, run: RunPlan, env: dict[str, str] | None = None, pool: bool = False) -> Any:
        """The ``sky.Task`` of ``run`` (``pool``: of the study's job pool, with ``run``'s
        resources); secrets by name, their values from this shell."""
        config = self.yaml.safe_load(self.renderer.render_pool(run) if pool else self.renderer.render(run))
        config["workdir"] = self.workdir  # absolute: launched from wherever studyc runs
        config["envs"].update(env or {})
        present = [(name, os.environ[name]) for name in self.secrets if name in os.environ]
        try:
            return self.sky.Task.from_yaml_config(config, secrets_overrides=present or None)
        except Exception as exc:  # SkyPilot's validation: schema, resources, names
            raise RunError(f"SkyPilot refuses the task of run {run.arm} (seed {run.seed}): {exc}",
                           "check the study's resources and cloud settings (`studyc compile` writes the tasks)") from None


@dataclass
class DryRunTask:
    name: str
    run: RunPlan
    resources: str
    setup: str


@dataclass
class DryRun:
    tasks: list[DryRunTask]
    pending: list[RunPlan]  # runs of promoted stages: launched once the gates are judged
    recovery: dict[str, Any] | None
    recovery_notes: list[str]
    results: str | None
    secrets: dict[str, bool]  # name -> set in this shell
    problems: list[str]  # what would make SkyPilot refuse or fail the jobs
    warnings: list[str]  # what could not be checked, or may surprise
    prices: str  # where the $ figures come from
    controller_usd: float  # the jobs controller's own VM, over the study's wall-clock
    pool: str | None = None  # "NAME: N workers (...)" when the jobs run on a job pool


def dryrun(loaded: LoadedStudy, plan: Plan) -> DryRun:
    """What `studyc run --cloud` would launch: every task built and validated by SkyPilot,
    and the checks that can be made offline. Nothing sent anywhere (no network, no credentials)."""
    tasks = Tasks(loaded, plan)
    out, built = [], []
    for run in plan.runs:
        if not run.pending:
            task = tasks.build(run)
            built.append(task)
            out.append(DryRunTask(task.name, run, resources_text(task), task.setup or ""))
    renderer, study = tasks.renderer, loaded.study
    problems, warnings = offline_checks(study, built, tasks.sky)
    pool = None
    if study.cloud.pool is not None and out:
        renderer.check_pool(plan.runs)
        workers = tasks.build(out[0].run, pool=True)  # validated by SkyPilot like the jobs
        pool = (f"{pool_name(study)}: {study.cloud.pool.workers} workers of {resources_text(workers)}, each runs the "
                "setup once; the jobs run on them one at a time")
        for task in out:
            task.setup = workers.setup or ""
    catalog = read_catalog(infra_cloud(study.cloud.infra))
    if catalog is not None:
        prices = f"SkyPilot's {catalog.cloud} catalog ({catalog.path}), {'spot' if study.cloud.use_spot else 'on-demand'}"
    elif infra_cloud(study.cloud.infra) in CLUSTERS:
        prices = f"studyc's built-in table (a {infra_cloud(study.cloud.infra)} cluster has no price catalog)"
    else:
        prices = ("studyc's built-in table of on-demand prices (no SkyPilot catalog cached"
                  + (f" for {infra_cloud(study.cloud.infra)}: `sky show-gpus --infra {study.cloud.infra}` fetches it)"
                     if study.cloud.infra else ": the study names no cloud.infra)"))
    hourly = (catalog.controller if catalog is not None and catalog.controller else None) or CONTROLLER_PRICE
    controller_usd = hourly * (plan.totals["wall_hours"] + CONTROLLER_IDLE_H)
    return DryRun(out, [r for r in plan.runs if r.pending], renderer.recovery, renderer.notes, study.cloud.results,
                  {name: name in os.environ for name in tasks.secrets}, problems, warnings, prices, controller_usd, pool)


def offline_checks(study: Study, tasks: list[Any], sky: Any) -> tuple[list[str], list[str]]:
    """Problems SkyPilot would only find at launch (or the job at its end), found offline:
    bucket mounts the cloud cannot do, accelerators its catalog lacks, a setup that installs nothing."""
    problems: list[str] = []
    warnings: list[str] = []
    cloud_name = infra_cloud(study.cloud.infra)
    try:
        _feature_checks(study, tasks, sky, problems, warnings)
    except ImportError as exc:  # SkyPilot's support for that cloud is an extra of its own
        warnings.append(f"SkyPilot cannot check {cloud_name} here ({exc}); the jobs need it too: "
                        f"pip install 'studyc[{CLOUD_EXTRAS.get(cloud_name or '', 'cloud')}]'")
    catalog = read_catalog(cloud_name)
    wanted = sorted({name for task in tasks for res in task.resources for name in (res.accelerators or {})})
    if catalog is not None:
        for name in wanted:
            if name.upper() not in catalog.gpu:
                offered = ", ".join(sorted(catalog.gpu)[:12]) or "none"
                problems.append(f"{name} is not in SkyPilot's {cloud_name} catalog: its jobs would end FAILED_PRECHECKS "
                                f"(the catalog offers {offered})")
    elif wanted and cloud_name not in CLUSTERS:
        warnings.append(f"accelerators ({', '.join(wanted)}) not checked: no SkyPilot catalog is cached"
                        + (f" for {cloud_name} (`sky show-gpus --infra {study.cloud.infra}` fetches it)" if cloud_name
                           else " (set cloud.infra to check against one cloud's catalog)"))
    if not study.run.setup and tasks and "pip install" not in (tasks[0].setup or ""):
        warnings.append("the jobs install nothing: the workdir is no Python project (no pyproject.toml, setup.py or "
                        "requirements.txt); set run.setup to what the runs need")
    return problems, warnings


def _feature_checks(study: Study, tasks: list[Any], sky: Any, problems: list[str], warnings: list[str]) -> None:
    """What the study's cloud cannot do, by SkyPilot's own verdict: mount the results bucket,
    host the jobs controller."""
    if tasks:
        if study.cloud.results:
            problems += [f"cloud.results {study.cloud.results} cannot be mounted on {cloud}: SkyPilot says \"{why}\"; "
                         "run elsewhere (cloud.infra) or drop cloud.results and read results from W&B"
                         for cloud, why in _unsupported(tasks[0], sky, "STORAGE_MOUNTING")]
        warnings += [f"{cloud} cannot host SkyPilot's jobs controller (\"{why}\"): another cloud must be enabled "
                     "(`sky check`) to run it, or set jobs.controller.resources in ~/.sky/config.yaml"
                     for cloud, why in _unsupported(tasks[0], sky, "HOST_CONTROLLERS")]


def _unsupported(task: Any, sky: Any, feature: str) -> list[tuple[Any, str]]:
    """(cloud, SkyPilot's reason) where the task's cloud lacks ``feature``, by SkyPilot's own verdict."""
    out = []
    for res in task.resources:
        if res.cloud is None:
            continue
        try:
            res.cloud.check_features_are_supported(res, {getattr(sky.clouds.CloudImplementationFeatures, feature)})
        except sky.exceptions.NotSupportedError as exc:
            out.append((res.cloud, str(exc).strip()))
    return out


def resources_text(task: Any) -> str:
    parts = []
    for res in task.resources:
        what = [str(res.infra.cloud).lower() if res.infra and res.infra.cloud else "any cloud"]
        if res.infra and res.infra.region:
            what[0] += f"/{res.infra.region}"
        if res.accelerators:
            what += [f"{name}:{count:g}" for name, count in res.accelerators.items()]
        if res.cpus:
            what.append(f"{res.cpus} CPUs")
        if res.memory:
            what.append(f"{res.memory} GB memory")
        what.append("spot" if res.use_spot else "on-demand")
        if res.disk_size:
            what.append(f"{res.disk_size} GB disk")
        parts.append(", ".join(what))
    return " | ".join(parts)


# ------------------------------------------------------------------ executor


@dataclass
class CloudOptions:
    """How `studyc run --cloud` behaves around its jobs."""

    # Asked on Ctrl-C with the jobs in flight (their names): True cancels them. None: they
    # are left running, and the next `studyc run --cloud` follows them again.
    confirm_cancel: Callable[[list[str]], bool] | None = None
    client: Any = None  # SkyClient() unless given
    refresh_s: float = 10.0  # how often the job queue is asked (and results copied)
    launch_workers: int = 4  # launches in flight at once
    settle_s: float = 120.0  # how long a finished job's exit code may take to reach the bucket
    patience_s: float = 300.0  # how long SkyPilot may stay unreachable before studyc gives up
    # How long a job may wait for a machine (PENDING, STARTING, RECOVERING) before studyc
    # cancels it: SkyPilot retries provisioning without end when no region has capacity.
    max_wait_s: float = 2 * 3600.0


@dataclass
class SkyHandle:
    run_id: str
    name: str
    run_dir: Path
    wandb_group: str = ""  # the W&B group the run logs to (per stage), when it does
    job_id: int | None = None
    launch: Future | None = None  # the launch request, while in flight
    cancelled: bool = False  # by studyc (stop rule, Ctrl-C): a CANCELLED job is not a preemption
    cancelling: Future | None = None
    ended: JobState | None = None
    ended_seen: float | None = None  # when a terminal status was first seen (results may lag behind)
    pulled: float = 0.0  # when its results were last looked for after that
    waiting_since: float | None = None  # when it last began to wait for a machine
    absent_since: float | None = None  # when SkyPilot's queue first lacked it

    def __str__(self) -> str:
        return f"managed job {self.job_id} ({self.name})" if self.job_id is not None else f"managed job {self.name}"


class SkyExecutor(Executor):
    """One SkyPilot managed job per attempt; see the module's docstring."""

    remote = True

    def __init__(self, loaded: LoadedStudy, plan: Plan, store: Store, options: CloudOptions | None = None):
        self.options = options or CloudOptions()
        self.client = self.options.client or SkyClient()
        self.tasks = Tasks(loaded, plan)
        self.planned = [r for r in plan.runs if not r.pending]
        self.study = loaded.study
        self.store = store
        cloud, wandb = loaded.study.cloud, loaded.study.tracking.wandb
        self.results = Results(cloud.results, loaded.study.study) if cloud.results else None
        self.wandb = wandb if wandb is not None and wandb.mode not in ("offline", "disabled") else None
        self.pool = ThreadPoolExecutor(max_workers=self.options.launch_workers, thread_name_prefix="studyc-launch")
        self._following: dict[int, SkyHandle] = {}  # job id -> handle
        self._records: dict[int, Any] = {}  # job id -> its ManagedJobRecord at the last refresh
        self._next_refresh = 0.0
        self._unreachable_since: float | None = None
        self._wake = threading.Event()
        self.job_pool = pool_name(loaded.study)  # the SkyPilot job pool the jobs run on, if the study has one

    def check(self) -> None:
        """Before anything launches: results come back, secrets are set, SkyPilot accepts
        every task and answers."""
        if self.results is None and self.wandb is None:
            raise RunError("cloud runs need a place for their results, and this study has none",
                           "add `cloud: {results: s3://BUCKET/PATH}` (or gs://): each run writes its metrics, log "
                           "and exit code there")
        missing = [name for name in self.tasks.secrets if name not in os.environ]
        if missing:
            raise RunError(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set in this shell; cloud "
                           "runs receive them as SkyPilot secrets, by name",
                           f"export {missing[0]}=... before `studyc run --cloud` (the value is never written to a file)")
        problems, _ = offline_checks(self.study, [self.tasks.build(run) for run in self.planned], self.tasks.sky)
        if problems:
            raise RunError(problems[0], "`studyc run --cloud --dryrun` lists every check")
        self.tasks.renderer.check_pool(self.planned)
        if self.results is not None:
            self.results.check()
        else:
            import_wandb()  # results come from W&B: fail now, not after the jobs ran
        try:
            self.client.get(self.client.queue_v2(refresh=False, limit=1, fields=["job_id"]))
        except (self.client.ControllerNotUp, self.client.NoController):
            pass  # a fresh or idle SkyPilot: no job in progress; the first launch starts the controller
        except Exception as exc:  # whatever else SkyPilot raises: no server, no credentials
            raise RunError(f"SkyPilot's API server did not answer: {exc}",
                           "run `sky check` (cloud credentials) and `sky api status`") from None
        try:
            self.start_pool()
        except Exception as exc:  # before any job: nothing launched, nothing to follow
            raise RunError(f"SkyPilot could not start the job pool {self.job_pool}: {_ANSI.sub('', str(exc)).strip()}",
                           "run `sky check`; `sky jobs pool status` shows the pool") from None

    def start_pool(self) -> None:
        """Bring up the study's job pool (``cloud.pool``), or update it to the study's setup
        and size: SkyPilot starts the workers, each runs the setup once."""
        if self.job_pool is None or not self.planned:
            return
        from sky.serve.serve_utils import UpdateMode

        task = self.tasks.build(self.planned[0], pool=True)
        with open(self.store.home / "pool-launch.log", "w", encoding="utf-8") as log:
            self.client.stream_and_get(self.client.pool_apply(task, self.job_pool, mode=UpdateMode.ROLLING,
                                                              workers=self.study.cloud.pool.workers), output_stream=log)

    # ---------------------------------------------------------------- submit

    def submit(self, job: Job) -> SkyHandle:
        run = job.run
        env = {k: v for k, v in job.env.items() if k in _ATTEMPT_ENV or k.startswith(_ATTEMPT_ENV_PREFIX)}
        task = self.tasks.build(run, env)
        handle = SkyHandle(run.id, task_name(self.study.study, run), job.run_dir,
                           wandb_group=wandb_group(self.study, run.stage))
        self.store.job_submitted(run.id, handle.name)  # before launching: a later studyc finds it by name
        resume = env.get(RESUME) == "1"
        handle.launch = self.pool.submit(self._launch, handle, task, resume)
        handle.launch.add_done_callback(lambda _: self._wake.set())
        return handle

    def _launch(self, handle: SkyHandle, task: Any, resume: bool) -> int:
        """In a launch thread: one managed job; returns its id."""
        if self.results is not None and not resume:
            self.results.clear(handle.run_id)  # a fresh attempt starts from an empty run directory
        handle.run_dir.mkdir(parents=True, exist_ok=True)
        with open(handle.run_dir / LAUNCH_LOG, "w", encoding="utf-8") as log:
            request = self.client.launch(task, name=handle.name, pool=self.job_pool) if self.job_pool else \
                self.client.launch(task, name=handle.name)
            job_ids, _ = self.client.stream_and_get(request, output_stream=log)
        job_id = int(job_ids[0] if isinstance(job_ids, (list, tuple)) else job_ids)
        if handle.cancelled:  # Ctrl-C or a stop rule while the launch was in flight
            self._cancel_job(job_id)
        return job_id

    # ---------------------------------------------------------------- follow

    def poll(self, handle: SkyHandle) -> JobState:
        if handle.ended is not None:
            return handle.ended
        if handle.launch is not None:
            if not handle.launch.done():
                return JobState(running=True, waiting=True)
            if not self._launched(handle):
                return handle.ended
        self._refresh()
        record = self._records.get(handle.job_id)
        now = time.monotonic()
        if record is None:  # SkyPilot's queue lacks it: gone, if that lasts
            handle.absent_since = handle.absent_since or now
            if now - handle.absent_since < self.options.settle_s:
                return JobState(running=True, waiting=True)
            self._note(handle, f"studyc: SkyPilot no longer knows {handle} (its jobs controller was torn down?)")
            handle.ended = JobState(running=False, failure="crashed")
            self._following.pop(handle.job_id, None)
            return handle.ended
        handle.absent_since = None
        status = record.status.value
        if status not in ("SUCCEEDED", "FAILED", "CANCELLED") and status not in NOT_THE_RUN:
            waiting = status in WAITING
            handle.waiting_since = (handle.waiting_since or now) if waiting else None
            if waiting and now - handle.waiting_since > self.options.max_wait_s and not handle.cancelled:
                waited = now - handle.waiting_since
                self._note(handle, f"studyc: {handle} waited {waited:.0f} s for a machine ({status}); cancelled "
                           f"after {self.options.max_wait_s:.0f} s (no capacity for its resources?)")
                self.cancel(handle)
                handle.ended = JobState(running=False, failure="crashed")
                self._following.pop(handle.job_id, None)
                return handle.ended
            return JobState(running=True, waiting=waiting)
        return self._conclude(handle, record)

    def _launched(self, handle: SkyHandle) -> bool:
        """The launch request came back: follow the job, or end the attempt if it failed."""
        future, handle.launch = handle.launch, None
        try:
            handle.job_id = future.result()
        except Exception as exc:
            if handle.cancelled:
                handle.ended = JobState(running=False)
                return False
            if isinstance(exc, self.client.NoCloudAccess):
                raise RunError(f"SkyPilot cannot reach any cloud: {_ANSI.sub('', str(exc)).strip()}",
                               "run `sky check` and set up the credentials of the study's cloud "
                               f"({self.study.cloud.infra or 'any'}); nothing was launched") from None
            launch_log = tail(handle.run_dir / LAUNCH_LOG, 20)
            self._note(handle, f"{launch_log}\nstudyc: launching {handle} failed: {exc}".lstrip())
            handle.ended = JobState(running=False, failure="crashed")
            return False
        self.store.job_submitted(handle.run_id, handle.name, handle.job_id)
        self._following[handle.job_id] = handle
        self._next_refresh = 0.0  # ask about the new job at once
        return True

    def _refresh(self) -> None:
        """One queue request for every job followed, at most every refresh_s; results of
        running jobs are copied then too."""
        now = time.monotonic()
        if now < self._next_refresh or not self._following:
            return
        self._next_refresh = now + self.options.refresh_s
        try:
            records = self._queue(job_ids=list(self._following))
        except Exception as exc:
            self._unreachable_since = self._unreachable_since or now
            if now - self._unreachable_since > self.options.patience_s:
                raise RunError(f"SkyPilot's API server has not answered for {now - self._unreachable_since:.0f} s: "
                               f"{exc}", "the jobs go on without studyc; check `sky api status`, then "
                               "`studyc run --cloud` again follows them") from None
            return
        self._unreachable_since = None
        self._records.update({r.job_id: r for r in records})
        for job_id, handle in self._following.items():
            record = self._records.get(job_id)
            if record is not None and record.status.value == "RUNNING":
                self._pull(handle)

    def _queue(self, **filters: Any) -> list[Any]:
        """The records of the jobs asked about. A jobs controller that is not up (it stops
        itself once idle, so these jobs ended) is started again to tell how they ended; with
        no controller at all, no job exists."""
        ask = functools.partial(self.client.queue_v2, fields=list(FIELDS), **filters)
        try:
            records, *_ = self.client.get(ask(refresh=False))
        except self.client.NoController:
            return []
        except self.client.ControllerNotUp:
            try:
                records, *_ = self.client.get(ask(refresh=True))
            except self.client.NoController:
                return []
        return records

    def _pull(self, handle: SkyHandle) -> str | None:
        """Copy the run's files from the bucket; the error, if it could not."""
        if self.results is None:
            return None
        try:
            self.results.pull(handle.run_id, handle.run_dir)
        except ResultsError as exc:
            return str(exc)
        return None

    def _conclude(self, handle: SkyHandle, record: Any) -> JobState:
        """A job that ended: its run's outcome, once its files are in."""
        status = record.status.value
        now = time.monotonic()
        if now - handle.pulled < self.options.refresh_s:  # waiting for its last files: look again later
            return JobState(running=True)
        handle.ended_seen, handle.pulled = handle.ended_seen or now, now
        error = self._pull(handle)
        code = _exit_code(handle.run_dir / EXIT_CODE_FILE)
        ran = status in ("SUCCEEDED", "FAILED")
        if ran and code is None and self.results is not None and now - handle.ended_seen < self.options.settle_s:
            return JobState(running=True)  # the bucket may not have the last files yet
        if self.results is None and not (handle.run_dir / METRICS_FILE).exists() and self.wandb is not None:
            self._from_wandb(handle)
        failure = None
        if status == "SUCCEEDED":
            if code is None and self.results is not None:
                failure = "crashed"
                self._note(handle, f"studyc: {handle} SUCCEEDED, but its exit code never reached {self.results.url}"
                           + (f" ({error})" if error else ""))
            code = 0 if code is None else code
        elif status == "FAILED":
            if code is None:  # no bucket, or it never got there: what SkyPilot says, and the job's log
                code = reason_exit_code(record)
                self._fetch_log(handle)
                self._note(handle, f"studyc: {handle} FAILED{_reason(record)}")
            failure = "timeout" if code == TIMEOUT_EXIT else None  # None: classified from its log and metrics
            if code is None and _DRIVER_REASON in (getattr(record, "failure_reason", None) or ""):
                failure = "oom"
        elif status == "CANCELLED":
            if not handle.cancelled:  # not by studyc: the machine or someone else took it away
                failure = "preempted"
                self._note(handle, f"studyc: {handle} was CANCELLED, not by studyc{_reason(record)}")
        else:  # setup, prechecks, no resources, controller: not the run's own doing
            failure = "crashed"
            self._note(handle, f"studyc: {handle} {status}{_reason(record)}")
        handle.ended = JobState(running=False, exit_code=code, failure=failure)
        self._following.pop(handle.job_id, None)
        return handle.ended

    def _from_wandb(self, handle: SkyHandle) -> None:
        """Without a bucket, the run's metrics come from W&B (after it ended)."""
        wb = self.wandb
        try:
            records = wandb_series(wb.project, wb.entity, handle.wandb_group, handle.run_id)
        except Exception as exc:  # network, login: the run is judged on what is there (nothing)
            self._note(handle, f"studyc: could not read the run's metrics from W&B: {exc}")
            return
        if records:
            write_metrics(handle.run_dir / METRICS_FILE, records)

    def _wandb_group(self, run_id: str) -> str:
        """The W&B group a run an earlier studyc launched logs to (by its stage)."""
        row = self.store.db.execute("SELECT stage FROM study_runs WHERE run_id=? LIMIT 1", (run_id,)).fetchone()
        return wandb_group(self.study, row["stage"] if row is not None else "")

    def _fetch_log(self, handle: SkyHandle) -> None:
        """The end of a failed job's log, from SkyPilot, into the run's log (what classifies
        an OOM when no bucket brought the log back)."""
        if self.results is not None or handle.job_id is None:
            return
        handle.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            with open(handle.run_dir / LOG_FILE, "a", encoding="utf-8") as log:
                self.client.tail_logs(job_id=handle.job_id, follow=False, tail=LOG_LINES, output_stream=log)
        except Exception as exc:  # the log is a help, not a need: the exit code still classifies
            self._note(handle, f"studyc: could not fetch the log of {handle}: {exc}")

    def _note(self, handle: SkyHandle, text: str) -> None:
        """Add what SkyPilot said to the run's log, where the report's failure notes come from."""
        handle.run_dir.mkdir(parents=True, exist_ok=True)
        with open(handle.run_dir / LOG_FILE, "a", encoding="utf-8") as log:
            log.write(text.rstrip("\n") + "\n")

    def wait(self, handles: list[SkyHandle], timeout: float) -> None:
        """Until a launch comes back or the next queue refresh is due."""
        until_refresh = self._next_refresh - time.monotonic() if self._following else timeout
        if self._wake.wait(max(0.0, min(timeout, until_refresh))):
            self._wake.clear()

    # ---------------------------------------------------------------- resume

    def follow(self, run_ids: list[str]) -> dict[str, SkyHandle]:
        """Handles on the jobs an earlier studyc launched for these runs and never saw
        end (found by id, or by name when it died before learning the id)."""
        opened = self.store.open_jobs(run_ids)
        if not opened:
            return {}
        try:
            found = self._find(opened)
        except Exception as exc:
            raise RunError(f"could not ask SkyPilot about the {len(opened)} jobs an earlier studyc launched: {exc}",
                           "nothing was launched (it could duplicate them); check `sky api status` and try again"
                           ) from None
        handles = {}
        for run_id, record in found.items():
            attempt = opened[run_id]
            handle = SkyHandle(run_id, attempt["job_name"], self.store.run_dir(run_id),
                               wandb_group=self._wandb_group(run_id), job_id=record.job_id)
            if attempt["job_id"] is None:
                self.store.job_submitted(run_id, handle.name, record.job_id)
            self._following[record.job_id] = handle
            self._records[record.job_id] = record
            handles[run_id] = handle
        return handles

    def _find(self, opened: dict[str, dict[str, Any]]) -> dict[str, Any]:
        ids = {a["job_id"]: run_id for run_id, a in opened.items() if a["job_id"] is not None}
        found = {ids[r.job_id]: r for r in self._queue(job_ids=list(ids))} if ids else {}
        for run_id, attempt in opened.items():
            if attempt["job_id"] is not None:
                continue
            # Submitted after the attempt began (10 min of slack for clocks that disagree).
            since = (attempt["started_at"] or 0) - 600
            named = [r for r in self._queue(name_match=attempt["job_name"])
                     if r.job_name == attempt["job_name"] and (r.submitted_at or since) >= since]
            if named:
                found[run_id] = max(named, key=lambda r: r.job_id)
        return found

    # ---------------------------------------------------------------- stop

    def cancel(self, handle: SkyHandle, sig: int = signal.SIGTERM) -> None:
        if handle.cancelled:  # the scheduler's SIGKILL after SIGTERM: the cancel request is on its way
            return
        handle.cancelled = True
        if handle.launch is not None and not handle.launch.done():
            if handle.launch.cancel():  # not started yet: nothing to cancel
                handle.ended = JobState(running=False)
            return  # _launch cancels the job as soon as it has an id
        if handle.job_id is not None:
            handle.cancelling = self.pool.submit(self._cancel_job, handle.job_id)

    def _cancel_job(self, job_id: int) -> None:
        self.client.get(self.client.cancel(job_ids=[job_id]))

    def reap(self, handle: SkyHandle, grace_s: float = 5.0) -> None:
        """After a cancel: wait (up to grace_s) until SkyPilot has the request."""
        pending = [f for f in (handle.cancelling, handle.launch if handle.cancelled else None) if f is not None]
        if pending:
            wait_futures(pending, timeout=grace_s)

    def on_interrupt(self, handles: list[SkyHandle], exc: BaseException | None) -> bool:
        """Whether to cancel the jobs in flight when studyc stops: on Ctrl-C if the person
        says so (or --cancel-on-interrupt); never on an error, after which the next
        `studyc run --cloud` follows them again."""
        if not isinstance(exc, KeyboardInterrupt) or self.options.confirm_cancel is None:
            return False
        return bool(self.options.confirm_cancel([str(h) for h in handles]))


def reason_exit_code(record: Any) -> int | None:
    """The run's exit code as SkyPilot's failure_reason states it, if it does."""
    match = _EXIT_REASON.search(getattr(record, "failure_reason", None) or "")
    return int(match.group(1)) if match else None


def _reason(record: Any) -> str:
    return f": {record.failure_reason}" if getattr(record, "failure_reason", None) else ""


def _exit_code(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
