"""Execute one stage's runs on an executor: pack them by CPU slots, GPUs and VRAM within
the study's parallelism, follow them live (progress, stop rules, timeouts), classify
failures, apply the recovery playbook, and keep the store true at every step.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from studyc import protocol
from studyc.compiler.plan import RunPlan, render_command
from studyc.compiler.resources import Demand, Occupancy, Target
from studyc.errors import RunError
from studyc.protocol import CONFIG_FILE, EXIT_CODE_FILE, LOG_FILE, METRICS_FILE
from studyc.runtime import metrics_file, procs, wandb_log
from studyc.runtime.executor import Executor, Job, JobState, tail
from studyc.runtime.failures import EditError, StopRules, apply_edits, classify
from studyc.runtime.store import Store
from studyc.spec.accelerators import gpu_count
from studyc.spec.model import Study


@dataclass
class Event:
    """Something the person watching should know. The CLI decides how to show it."""

    kind: str  # start, progress, end, retry, cached, skip, wait (run by another studyc), interrupted
    run: RunPlan
    status: str | None = None
    failure: str | None = None
    message: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    attempt: int = 0
    usd: float = 0.0  # what the attempt spent (end, retry)
    gpu_hours: float = 0.0


@dataclass
class _Active:
    run: RunPlan
    handle: Any
    config: dict[str, Any]
    attempt: int
    started: float
    timeout_s: float | None  # None: no limit (protocol.timeout_s)
    gpus: list[int]
    offset: int = 0
    killed_by: str | None = None
    kill_at: float | None = None  # when to SIGKILL a run that ignores SIGTERM
    latest: dict[str, float] = field(default_factory=dict)
    waiting_since: float | None = None  # a cloud job without its machine yet: its clock stands still
    bad_metrics: str | None = None  # why a metrics line was refused, seen live

    def deadline(self) -> float | None:
        """When the scheduler must act on this run unasked: its timeout, or the SIGKILL after one."""
        if self.kill_at is not None:
            return self.kill_at
        if self.killed_by is None and self.timeout_s is not None and self.waiting_since is None:
            return self.started + self.timeout_s
        return None


@dataclass
class Spend:
    """Money and GPU time the study has used so far (earlier invocations included), against
    the budget."""

    usd: float = 0.0
    gpu_hours: float = 0.0


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM to studyc): scheduling stopped, children terminated, the store
    consistent. A KeyboardInterrupt, so callers treat it as the user's Ctrl-C."""


def detect_gpus() -> list[float]:
    """Memory (GB) of each local GPU, via nvidia-smi; empty when there is none."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if out.returncode != 0:
        return []
    return [float(line) / 1024 for line in out.stdout.split() if line.strip()]


def host_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def host_memory_gb() -> float | None:
    """This machine's memory in GB, None when unknown."""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return None
    return pages * size / 1e9


def host_target(need_gpus: bool, cpus: int | None = None) -> Target:
    """This machine in the resource model (nvidia-smi asked only when a run needs a GPU)."""
    return Target(tuple(detect_gpus()) if need_gpus else (), cpus or host_cpus(), host_memory_gb())


@dataclass
class _Queued:
    run: RunPlan
    config: dict[str, Any]
    resume: bool = False


class Scheduler:
    """Runs one stage's runs at a time on ``executor``, keeping ``store`` true throughout.

    SIGINT and SIGTERM (when run on the main thread) stop scheduling: the runs in flight
    are terminated with their process groups, put back in the queue, and ``execute``
    raises ``Interrupted``.
    """

    def __init__(self, study: Study, store: Store, executor: Executor, workdir: str, parallel: int,
                 on_event: Callable[[Event], None] = lambda e: None, rerun: set[str] | None = None,
                 cpus: int | None = None, gpus: list[float] | None = None, memory_gb: float | None = None,
                 live_s: float = 0.25, spend: Spend | None = None,
                 study_key: tuple[str, str | None] | None = None, grace_s: float = 5.0):
        self.study = study
        self.store = store
        self.executor = executor
        self.remote = executor.remote
        self.workdir = workdir
        self.parallel = parallel
        self.on_event = on_event
        self.rerun = rerun or set()
        self.cpus = cpus or host_cpus()
        self.gpu_memory = gpus if gpus is not None else None
        self.memory_gb = memory_gb or host_memory_gb()
        self.live_s = live_s
        self.grace_s = grace_s
        self.stop_rules = StopRules(study)
        self.spend = spend or Spend()
        self.study_key = study_key
        if study_key:  # what earlier invocations spent counts against the budget too
            usd, gpu_hours = store.spent(*study_key)
            self.spend.usd += usd
            self.spend.gpu_hours += gpu_hours
        self.owner = procs.owner_token()
        self._retries_used: dict[tuple[str, str], int] = {}
        self._stopping: int | None = None

    # ------------------------------------------------------------ packing

    def _gpus(self) -> list[float]:
        if self.gpu_memory is None:
            self.gpu_memory = detect_gpus()
        return self.gpu_memory

    def check_fits(self, runs: list[RunPlan]) -> None:
        """Refuse, before starting anything, runs this machine can never hold."""
        for run in runs:
            res = run.resources
            if self.memory_gb and res.get("memory_gb", 0) > self.memory_gb:
                raise RunError(f"run {run.arm} (seed {run.seed}) needs {res['memory_gb']:g} GB of memory; this machine has "
                               f"{self.memory_gb:.1f} GB", "lower memory_gb, or run on the cloud (--cloud)")
            need = gpu_count(res.get("accelerators"))
            if need:
                gpus = self._gpus()
                if len(gpus) < need:
                    raise RunError(
                        f"run {run.arm} (seed {run.seed}) needs {res['accelerators']} but this machine has "
                        f"{len(gpus)} GPU(s)", "run a CPU profile (--profile cpu) or on the cloud (--cloud)")
                if res["vram_gb"] and max(gpus) < res["vram_gb"]:
                    raise RunError(f"run {run.arm} needs {res['vram_gb']:g} GB of GPU memory; the largest GPU here has "
                                   f"{max(gpus):.1f} GB", "lower vram_gb/batch size or use a larger GPU")

    def host(self, need_gpus: bool = True) -> Target:
        """This machine in the resource model (its GPUs looked up only when a run needs one)."""
        return Target(tuple(self._gpus()) if need_gpus else (), self.cpus, self.memory_gb)

    def _place(self, run: RunPlan, active: dict[str, _Active]) -> list[int] | None:
        """GPU indices for ``run`` given what is running, [] for a CPU run, None if it
        must wait: the plan's packing rules (compiler/resources.py) on this machine."""
        if self.remote:
            return []
        demand = Demand.of(run.resources)
        occupancy = Occupancy(self.host(need_gpus=bool(demand.gpus) or any(a.gpus for a in active.values())))
        for a in active.values():
            occupancy.take(Demand.of(a.run.resources), tuple(a.gpus))
        gpus = occupancy.place(demand)
        return None if gpus is None else list(gpus)

    # ------------------------------------------------------------ execution

    def execute(self, runs: list[RunPlan], more: Callable[[str], list[RunPlan]] | None = None) -> None:
        """Run what is not already done. Returns when every run has ended. ``more``: called
        with each stage once all its runs have ended; the runs it returns (stages that
        could not start before) join the queue, beside those still running."""
        todo: deque[_Queued] = deque()
        twins: dict[str, list[RunPlan]] = {}  # per stage: arms identical to an earlier one, executed once
        open_stages: dict[str, set[str]] = {}  # stage -> its run ids
        active: dict[str, _Active] = {}
        elsewhere: dict[str, RunPlan] = {}  # being run by another studyc (a study sharing them)

        def enqueue(batch: list[RunPlan]) -> None:
            fresh = self._enqueue(batch, todo, twins)
            for run in batch:
                open_stages.setdefault(run.stage, set()).add(run.id)
            self._adopt(fresh, todo, active)

        def release() -> bool:
            """Stages whose runs have all ended: their twins, then what they let start."""
            released = False
            while True:
                inflight = {q.run.id for q in todo} | set(active) | set(elsewhere)
                ended = [stage for stage, ids in open_stages.items() if not ids & inflight]
                if not ended:
                    return released
                for stage in ended:
                    del open_stages[stage]
                    self._report_twins(twins.pop(stage, []))
                    if more is not None:
                        enqueue(more(stage))
                released = True

        last_live = 0.0
        with self._signals():
            try:
                enqueue(runs)
                while todo or active or elsewhere or release():
                    if self._stopping:
                        raise Interrupted()
                    size = len(todo) + len(active) + len(elsewhere)
                    progressed = self._start_ready(todo, active, elsewhere)
                    now = self.executor.now()
                    live = now - last_live >= self.live_s
                    if live:
                        last_live = now
                    for run_id in list(active):
                        progressed |= self._check(active, run_id, todo, live)
                    if elsewhere and live:
                        progressed |= self._check_elsewhere(elsewhere, todo)
                    if progressed or size != len(todo) + len(active) + len(elsewhere):
                        release()
                    elif active or elsewhere:
                        until = min([last_live + self.live_s] + [d for a in active.values() if (d := a.deadline())])
                        self.executor.wait([a.handle for a in active.values()], max(0.0, until - self.executor.now()))
            except BaseException as exc:
                self._interrupt(active, exc)
                raise

    def _enqueue(self, runs: list[RunPlan], todo: deque[_Queued], twins: dict[str, list[RunPlan]]) -> list[_Queued]:
        """Queue the runs not already done (those done are reported as reused); a run
        already queued (an identical arm) is its twin. Returns the new queue items."""
        stale = set(self.store.recover_interrupted([r.id for r in runs]))
        self._record_ended([r for r in runs if r.id in stale])
        records = self.store.records([r.id for r in runs])
        queued = {q.run.id for q in todo}
        fresh: list[_Queued] = []
        for run in runs:
            record = records.get(run.id)
            if record is not None and record.status == "done" and run.arm not in self.rerun:
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(record.ended_at)) if record.ended_at else "earlier"
                self.on_event(Event("cached", run, status="done", message=f"finished {when}"))
            elif run.id in queued:
                twins.setdefault(run.stage, []).append(run)
            else:
                queued.add(run.id)
                fresh.append(self._queued(run, record))
        if fresh and not self.remote:
            self.check_fits([q.run for q in fresh])
        todo.extend(fresh)
        return fresh

    def _report_twins(self, twins: list[RunPlan]) -> None:
        for twin in twins:
            record = self.store.get(twin.id)
            message = "the same run as an identical arm"
            if record.status == "done":
                self.on_event(Event("cached", twin, status="done", message=message))
            elif record.status == "failed":
                self.on_event(Event("end", twin, status="failed", failure=record.failure, message=message))
            else:
                self._skip(twin, f"{message}, which was skipped")

    def _record_ended(self, runs: list[RunPlan]) -> None:
        """Runs a studyc that died left 'running' whose command had in fact ended well (its
        shell wrote the exit code): recorded now, from their files, instead of run again.
        Only the window between the command's end and that file is left (at-least-once)."""
        for run in runs if not self.remote else []:
            run_dir = self.store.run_dir(run.id)
            try:
                code = int((run_dir / EXIT_CODE_FILE).read_text().strip())
                ended = (run_dir / EXIT_CODE_FILE).stat().st_mtime
            except (OSError, ValueError):
                continue
            last = self.store.attempts(run.id)[-1]
            metrics = metrics_file.read(run_dir / METRICS_FILE)
            if code != 0 or ended < (last["started_at"] or 0) or metrics.bad is not None:
                continue  # a failure, or an older attempt's file: it runs again, as it would have
            series = metrics.records
            if classify(code, tail(run_dir / LOG_FILE, 50), series, None) is not None:
                continue
            hours = max(0.0, ended - (last["started_at"] or ended)) / 3600
            usd = hours * run.usd_per_hour
            self.store.finish(run.id, "done", code, None, None, series, usd, hours * gpu_count(run.resources.get("accelerators")))
            self.on_event(Event("end", run, status="done", attempt=last["attempt"], usd=usd, metrics=_final_values(series),
                                message="it had ended when the studyc running it stopped; recorded now"))

    def _adopt(self, fresh: list[_Queued], todo: deque[_Queued], active: dict[str, _Active]) -> None:
        """Jobs an earlier studyc left going (cloud jobs outlive studyc) are followed
        again as the same attempt, never launched twice."""
        found = self.executor.follow([q.run.id for q in fresh]) if fresh else {}
        for item in [q for q in fresh if q.run.id in found]:
            run, handle = item.run, found[item.run.id]
            attempt = self.store.reattach(run.id, self.owner)
            if attempt is None:  # another live studyc follows it
                continue
            todo.remove(item)
            last = self.store.attempts(run.id)[-1]
            config = json.loads(last["config"]) if last["config"] else run.config
            active[run.id] = _Active(run, handle, config, attempt, self.executor.now(), self._timeout_s(run), [])
            self.on_event(Event("start", run, status="running", attempt=attempt, message=f"followed again: {handle}"))

    def _timeout_s(self, run: RunPlan) -> float | None:
        # A remote run's task enforces its own timeout (protocol.cloud_script): never here.
        return None if self.remote else protocol.timeout_s(run.resources, run.est_hours, remote=False)

    def _queued(self, run: RunPlan, record: Any) -> _Queued:
        """A run to start. One whose last attempt was cut short (Ctrl-C, or studyc died)
        continues from its checkpoint when the playbook resumes preempted runs."""
        playbook = self.study.on_failure.get("preempted")
        if record is None or record.status != "queued" or not record.attempts or not (playbook and playbook.resume):
            return _Queued(run, run.config)
        last = self.store.attempts(run.id)[-1]
        if last["status"] == "interrupted" or last["failure"] == "preempted":
            return _Queued(run, json.loads(last["config"]), resume=True)
        return _Queued(run, run.config)

    @contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def stop(signum: int, frame: Any) -> None:
            self._stopping = signum

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _start_ready(self, todo: deque[_Queued], active: dict[str, _Active], elsewhere: dict[str, RunPlan]) -> bool:
        # budget.together: runs go in waves of `parallel` that start together, on an idle machine.
        if self.study.budget.together and active:
            return False
        started = False
        waiting: deque[_Queued] = deque()
        while todo and len(active) < self.parallel:
            item = todo.popleft()
            reason = self._over_budget(item.run, active)
            if reason:
                self._skip(item.run, reason)
                continue
            gpus = self._place(item.run, active)
            if gpus is None:
                waiting.append(item)
                continue
            if self._submit(item, gpus, active):
                started = True
            else:
                elsewhere[item.run.id] = item.run
                self.on_event(Event("wait", item.run, status="running", message="being run by another studyc"))
        todo.extendleft(reversed(waiting))
        return started

    def _check_elsewhere(self, elsewhere: dict[str, RunPlan], todo: deque[_Queued]) -> bool:
        """Runs another studyc was running: reuse them once done, take them over if it died."""
        self.store.recover_interrupted(list(elsewhere))
        records = self.store.records(list(elsewhere))
        changed = False
        for run_id, run in list(elsewhere.items()):
            record = records[run_id]
            if record.status == "running":
                continue
            del elsewhere[run_id]
            changed = True
            if record.status == "done":
                self.on_event(Event("cached", run, status="done", message="finished by another studyc"))
            elif record.status == "failed":
                self.on_event(Event("end", run, status="failed", failure=record.failure, attempt=record.attempts,
                                    message="failed in another studyc"))
            else:
                todo.append(self._queued(run, record))
        return changed

    def _over_budget(self, run: RunPlan, active: dict[str, _Active]) -> str | None:
        budget = self.study.budget
        committed_usd = self.spend.usd + sum(a.run.est_usd for a in active.values())
        committed_gpu = self.spend.gpu_hours + sum(a.run.gpu_hours for a in active.values())
        if budget.usd is not None and committed_usd + run.est_usd > budget.usd + 1e-9:
            return (f"would cross budget.usd: ${committed_usd:.2f} spent or committed + ${run.est_usd:.2f} estimated "
                    f"> ${budget.usd:.2f}")
        if budget.gpu_hours is not None and run.gpu_hours and committed_gpu + run.gpu_hours > budget.gpu_hours + 1e-9:
            return (f"would cross budget.gpu_hours: {committed_gpu:.2f} used or committed + {run.gpu_hours:.2f} estimated "
                    f"> {budget.gpu_hours:.2f} GPU-hours")
        return None

    def _skip(self, run: RunPlan, reason: str) -> None:
        if self.study_key:
            self.store.mark_skipped(self.study_key[0], self.study_key[1], run, reason)
        self.on_event(Event("skip", run, status="skipped", message=reason))

    def _submit(self, item: _Queued, gpus: list[int], active: dict[str, _Active]) -> bool:
        """Start one attempt; False if another studyc holds the run."""
        run, config, resume = item.run, item.config, item.resume
        attempt = self.store.claim(run.id, config, self.owner)
        if attempt is None:
            return False
        run_dir = self.store.run_dir(run.id)
        if not resume and run_dir.exists():
            shutil.rmtree(run_dir)  # a fresh attempt starts clean; a resumed one keeps checkpoints
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / EXIT_CODE_FILE).unlink(missing_ok=True)  # a resumed run's: from the attempt before
        config_path = run_dir / CONFIG_FILE
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True))
        env = dict(run.env)
        env.update(protocol.local_env(self.study.study, run, run_dir, config_path, resume))
        if run.source:  # an evaluation run: the directory of the run it evaluates
            env[protocol.SOURCE_RUN_DIR] = str(self.store.run_dir(run.source).resolve())
        env.update(wandb_log.run_env(self.study, run.arm, run.stage, run.seed, attempt))
        command = run.command if config is run.config else _rerender(run, config)
        offset = (run_dir / METRICS_FILE).stat().st_size if resume and (run_dir / METRICS_FILE).exists() else 0
        try:
            handle = self.executor.submit(Job(run.id, command, self.workdir, env, run_dir, run.resources["cpus"], gpus,
                                              run=replace(run, config=config, command=command)))
        except (OSError, ValueError) as exc:  # the workdir is gone, an argument the OS refuses: this run fails
            message = f"studyc could not start the run: {exc}"
            self.store.finish(run.id, "failed", None, "crashed", message, [], 0.0, 0.0)
            self.on_event(Event("end", run, status="failed", failure="crashed", attempt=attempt, message=message))
            return True
        self.store.launched(run.id, self.executor.process_group(handle))
        active[run.id] = _Active(run, handle, config, attempt, self.executor.now(), self._timeout_s(run), gpus, offset)
        self.on_event(Event("start", run, status="running", attempt=attempt, message="resumed" if resume else None))
        return True

    def _check(self, active: dict[str, _Active], run_id: str, todo: deque[_Queued], live: bool) -> bool:
        a = active[run_id]
        state = self.executor.poll(a.handle)
        now = self.executor.now()
        if state.waiting:  # neither time nor money runs while a cloud job waits for its machine
            a.waiting_since = a.waiting_since or now
            return False
        if a.waiting_since is not None:
            a.started += now - a.waiting_since
            a.waiting_since = None
        if state.running:
            if live:
                self._follow(a)
            if a.killed_by is None and a.timeout_s is not None and now - a.started >= a.timeout_s:
                self._stop(a, "timeout")
            elif a.kill_at is not None and now >= a.kill_at:  # ignored SIGTERM
                self.executor.cancel(a.handle, signal.SIGKILL)
                a.kill_at = None
            return False
        del active[run_id]
        self.executor.reap(a.handle, grace_s=0)  # whatever the run left behind in its process group
        self._follow(a)
        self._finish(a, state, todo)
        return True

    def _follow(self, a: _Active) -> None:
        """Read new metric lines: progress for the watcher, stop rules for the run."""
        path = self.store.run_dir(a.run.id) / METRICS_FILE
        try:
            with open(path, "rb") as fh:
                fh.seek(a.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n")
        if end < 0:
            return
        a.offset += end + 1
        fresh: dict[str, float] = {}
        for line in chunk[: end + 1].splitlines():
            if not line.strip() or a.bad_metrics:
                continue
            try:
                record = metrics_file.parse_line(line, 0)
            except metrics_file.BadLine as bad:  # the line number comes from the whole file, at the end
                a.bad_metrics = bad.why
                if a.killed_by is None:
                    self._stop(a, "bad_metrics")
                continue
            values = {k: v for k, v in record.items() if k not in ("t",) and isinstance(v, (int, float))}
            fresh.update(values)
            if a.killed_by is None:
                fired = self.stop_rules.check(values)
                if fired:
                    self._stop(a, fired)
        if fresh:
            a.latest.update(fresh)
            self.on_event(Event("progress", a.run, status="running", metrics=dict(a.latest), attempt=a.attempt))

    def _stop(self, a: _Active, why: str) -> None:
        """Ask a run to end (SIGTERM to its group); SIGKILL follows if it lingers."""
        a.killed_by = why
        a.kill_at = self.executor.now() + self.grace_s
        self.executor.cancel(a.handle, signal.SIGTERM)

    def _finish(self, a: _Active, state: JobState, todo: deque[_Queued]) -> None:
        run, exit_code = a.run, state.exit_code
        run_dir = self.store.run_dir(run.id)
        metrics = metrics_file.read(run_dir / METRICS_FILE)
        series = metrics.records
        if a.killed_by == "timeout" and a.timeout_s is not None:  # the log says what stopped it, and the limit
            _append_line(run_dir / LOG_FILE, protocol.timeout_note(a.timeout_s, self.executor.now() - a.started))
        log_tail = tail(run_dir / LOG_FILE, 50)
        if metrics.bad is not None:  # the run's own output is unusable: its class, whatever else happened
            log_tail = f"{log_tail}\nstudyc: {metrics.bad}".lstrip("\n")
            failure = "bad_metrics"
        else:
            failure = a.killed_by or state.failure or classify(exit_code, log_tail, series, None)
        hours = (self.executor.now() - a.started) / 3600
        hourly = run.usd_per_hour
        usd = hours * hourly
        gpu_hours = hours * gpu_count(run.resources.get("accelerators"))
        self.spend.usd += usd
        self.spend.gpu_hours += gpu_hours
        try:
            retry = self._recovery(run, failure, a.config) if failure else None
        except EditError as exc:  # the playbook cannot make a usable config: the failure stands
            retry = None
            log_tail = f"{log_tail}\nstudyc: not retried: {exc}".lstrip("\n")
        status = "done" if failure is None else "failed"
        self.store.finish(run.id, status, exit_code, failure, log_tail if failure else None, series, usd, gpu_hours,
                          final=retry is None)
        if retry is not None:
            todo.appendleft(retry)
            self.on_event(Event("retry", run, status="queued", failure=failure, attempt=a.attempt, usd=usd,
                                gpu_hours=gpu_hours, message=_edits_text(a.config, retry.config, retry.resume)))
        else:
            self.on_event(Event("end", run, status=status, failure=failure, attempt=a.attempt, usd=usd, gpu_hours=gpu_hours,
                                metrics=_final_values(series), message=_last_line(log_tail) if failure else None))

    def _recovery(self, run: RunPlan, failure: str, config: dict[str, Any]) -> _Queued | None:
        playbook = self.study.on_failure.get(failure)
        if playbook is None:
            return None
        key = (run.id, failure)
        used = self._retries_used.get(key, 0)
        if used >= playbook.retries:
            return None
        self._retries_used[key] = used + 1
        return _Queued(run, apply_edits(config, playbook.config), playbook.resume)

    def _interrupt(self, active: dict[str, _Active], exc: BaseException | None = None) -> None:
        """Terminate the runs in flight (their whole process groups) and put them back in
        the queue, so the store says what is true. Cloud jobs may go on without studyc
        instead (the executor decides): the store keeps them running, and the next
        `studyc run` follows them again."""
        if active and not self.executor.on_interrupt([a.handle for a in active.values()], exc):
            for a in active.values():
                self.on_event(Event("interrupted", a.run, status="running", attempt=a.attempt, message="left running"))
            active.clear()
            return
        for a in active.values():
            self.executor.cancel(a.handle, signal.SIGTERM)
        deadline = self.executor.now() + self.grace_s
        for a in active.values():
            self.executor.reap(a.handle, grace_s=max(0.0, deadline - self.executor.now()))
        self.store.requeue(list(active))
        for a in active.values():
            self.on_event(Event("interrupted", a.run, status="queued", attempt=a.attempt))
        active.clear()


def _append_line(path: Path, line: str) -> None:
    """``line`` on a line of its own at the end of ``path``."""
    with open(path, "a+b") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell():
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                fh.write(b"\n")
        fh.write(line.encode("utf-8") + b"\n")


def _rerender(run: RunPlan, config: dict[str, Any]) -> str:
    """A retried run's command carries its edited config (placeholders re-filled)."""
    return render_command(run.command_template, config, run.seed)


def _edits_text(old: dict[str, Any], new: dict[str, Any], resume: bool) -> str:
    changes = [f"{k}: {old.get(k)} -> {v}" for k, v in new.items() if old.get(k) != v]
    parts = (["config " + ", ".join(changes)] if changes else []) + (["resuming from checkpoint"] if resume else [])
    return "; ".join(parts) or "same config"


def _final_values(series: list[dict[str, Any]]) -> dict[str, float]:
    values: dict[str, float] = {}
    for record in series:
        values.update({k: v for k, v in record.items() if k not in ("t", "step") and isinstance(v, (int, float))})
    return values


def _last_line(text: str) -> str | None:
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:200] if lines else None

