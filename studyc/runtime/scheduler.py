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
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from studyc.compiler.plan import RunPlan, render_command
from studyc.errors import RunError
from studyc.runtime.executor import LOG_FILE, Executor, Job, tail
from studyc.runtime.failures import StopRules, apply_edits, classify
from studyc.runtime.sdk import METRICS_FILE, read_metrics
from studyc.runtime.store import Store
from studyc.spec.model import Study

CONFIG_FILE = "config.json"
MIN_TIMEOUT_S = 60.0
TIMEOUT_FACTOR = 3.0


@dataclass
class Event:
    """Something the person watching should know. The CLI decides how to show it."""

    kind: str  # start, end, retry, cached, skip, progress
    run: RunPlan
    status: str | None = None
    failure: str | None = None
    message: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    attempt: int = 0


@dataclass
class _Active:
    run: RunPlan
    handle: Any
    config: dict[str, Any]
    attempt: int
    started: float
    timeout_s: float
    gpus: list[int]
    offset: int = 0
    killed_by: str | None = None
    latest: dict[str, float] = field(default_factory=dict)


@dataclass
class Spend:
    """Money and GPU time used so far in this invocation, against the budget."""

    usd: float = 0.0
    gpu_hours: float = 0.0


class Interrupted(Exception):
    """Ctrl-C: scheduling stopped, children terminated, store consistent."""


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


class Scheduler:
    def __init__(self, study: Study, store: Store, executor: Executor, workdir: str, parallel: int,
                 on_event: Callable[[Event], None] = lambda e: None, rerun: set[str] | None = None,
                 cpus: int | None = None, gpus: list[float] | None = None, poll_s: float = 0.01,
                 live_s: float = 0.25, spend: Spend | None = None, study_key: tuple[str, str | None] | None = None):
        self.study = study
        self.store = store
        self.executor = executor
        self.workdir = workdir
        self.parallel = parallel
        self.on_event = on_event
        self.rerun = rerun or set()
        self.cpus = cpus or host_cpus()
        self.gpu_memory = gpus if gpus is not None else None
        self.poll_s = poll_s
        self.live_s = live_s
        self.stop_rules = StopRules(study)
        self.spend = spend or Spend()
        self.study_key = study_key
        self._retries_used: dict[tuple[str, str], int] = {}

    # ------------------------------------------------------------ packing

    def _gpus(self) -> list[float]:
        if self.gpu_memory is None:
            self.gpu_memory = detect_gpus()
        return self.gpu_memory

    def check_fits(self, runs: list[RunPlan]) -> None:
        """Refuse, before starting anything, runs this machine can never hold."""
        for run in runs:
            res = run.resources
            need = _gpu_count(res)
            if need:
                gpus = self._gpus()
                if len(gpus) < need:
                    raise RunError(
                        f"run {run.arm} (seed {run.seed}) needs {res['accelerators']} but this machine has "
                        f"{len(gpus)} GPU(s)", "run a CPU profile (--profile cpu) or on the cloud (--cloud)")
                if res["vram_gb"] and max(gpus) < res["vram_gb"]:
                    raise RunError(f"run {run.arm} needs {res['vram_gb']:g} GB of GPU memory; the largest GPU here has "
                                   f"{max(gpus):.1f} GB", "lower vram_gb/batch size or use a larger GPU")

    def _place(self, run: RunPlan, active: dict[str, _Active]) -> list[int] | None:
        """GPU indices for ``run`` given what is running, [] for a CPU run, None if it
        must wait."""
        res = run.resources
        used_cpus = sum(a.run.resources["cpus"] for a in active.values())
        if active and used_cpus + res["cpus"] > self.cpus:
            return None
        need = _gpu_count(res)
        if not need:
            return []
        gpus = self._gpus()
        used = [0.0] * len(gpus)
        busy = [0] * len(gpus)
        for a in active.values():
            for g in a.gpus:
                used[g] += a.run.resources["vram_gb"] or gpus[g]
                busy[g] += 1
        vram = res["vram_gb"]
        # VRAM known: GPUs are shared while memory lasts; unknown: one run per GPU.
        free = [g for g in range(len(gpus)) if (used[g] + vram <= gpus[g] if vram else busy[g] == 0)]
        return free[:need] if len(free) >= need else None

    # ------------------------------------------------------------ execution

    def execute(self, runs: list[RunPlan]) -> None:
        """Run what is not already done. Returns when every run has ended."""
        todo: deque[tuple[RunPlan, dict[str, Any], bool]] = deque()
        for run in runs:
            record = self.store.get(run.id)
            if record is not None and record.status == "done" and run.arm not in self.rerun:
                self.on_event(Event("cached", run, status="done"))
                continue
            todo.append((run, run.config, False))
        if not todo:
            return
        self.check_fits([r for r, _, _ in todo])
        active: dict[str, _Active] = {}
        last_live = 0.0
        try:
            while todo or active:
                progressed = self._start_ready(todo, active)
                now = time.monotonic()
                live = now - last_live >= self.live_s
                if live:
                    last_live = now
                for run_id in list(active):
                    progressed |= self._check(active, run_id, todo, live)
                if not progressed:
                    time.sleep(self.poll_s)
        except KeyboardInterrupt:
            self._interrupt(active)
            raise Interrupted() from None

    def _start_ready(self, todo: deque, active: dict[str, _Active]) -> bool:
        started = False
        waiting: deque = deque()
        while todo and len(active) < self.parallel:
            run, config, resume = todo.popleft()
            reason = self._over_budget(run, active)
            if reason:
                self._skip(run, reason)
                continue
            gpus = self._place(run, active)
            if gpus is None:
                waiting.append((run, config, resume))
                continue
            self._submit(run, config, resume, gpus, active)
            started = True
        todo.extendleft(reversed(waiting))
        return started

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

    def _submit(self, run: RunPlan, config: dict[str, Any], resume: bool, gpus: list[int], active: dict[str, _Active]) -> None:
        run_dir = self.store.run_dir(run.id)
        if not resume and run_dir.exists():
            shutil.rmtree(run_dir)  # a fresh attempt starts clean; a resumed one keeps checkpoints
        run_dir.mkdir(parents=True, exist_ok=True)
        config_path = run_dir / CONFIG_FILE
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True))
        env = dict(run.env)
        env.update({
            "STUDYC_CONFIG": str(config_path.resolve()),
            "STUDYC_RUN_DIR": str(run_dir.resolve()),
            "STUDYC_RUN_ID": run.id,
            "STUDYC_ARM": run.arm,
            "STUDYC_STAGE": run.stage,
            "STUDYC_SEED": str(run.seed),
            "STUDYC_STUDY": self.study.study,
        })
        command = run.command if config is run.config else _rerender(run, config)
        attempt = self.store.start(run.id, config)
        handle = self.executor.submit(Job(run.id, command, self.workdir, env, run_dir, run.resources["cpus"], gpus))
        timeout = run.resources.get("timeout")
        timeout_s = timeout * 3600 if timeout else max(MIN_TIMEOUT_S, run.est_hours * 3600 * TIMEOUT_FACTOR)
        offset = (run_dir / METRICS_FILE).stat().st_size if resume and (run_dir / METRICS_FILE).exists() else 0
        active[run.id] = _Active(run, handle, config, attempt, time.monotonic(), timeout_s, gpus, offset)
        self.on_event(Event("start", run, status="running", attempt=attempt))

    def _check(self, active: dict[str, _Active], run_id: str, todo: deque, live: bool) -> bool:
        a = active[run_id]
        state = self.executor.poll(a.handle)
        if state.running:
            if live:
                self._follow(a)
            if a.killed_by is None and time.monotonic() - a.started > a.timeout_s:
                self._stop(a, "timeout")
            return False
        del active[run_id]
        self._follow(a)
        self._finish(a, state.exit_code, todo)
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
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
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
        a.killed_by = why
        self.executor.cancel(a.handle, signal.SIGTERM)
        reap = getattr(self.executor, "reap", None)
        if reap is not None:
            reap(a.handle, grace_s=5.0)

    def _finish(self, a: _Active, exit_code: int | None, todo: deque) -> None:
        run = a.run
        run_dir = self.store.run_dir(run.id)
        series = read_metrics(run_dir / METRICS_FILE)
        log_tail = tail(run_dir / LOG_FILE, 50)
        failure = classify(exit_code, log_tail, series, a.killed_by)
        hours = (time.monotonic() - a.started) / 3600
        hourly = run.est_usd / run.est_hours if run.est_hours else 0.0
        usd = hours * hourly
        gpu_hours = hours * _gpu_count(run.resources)
        self.spend.usd += usd
        self.spend.gpu_hours += gpu_hours
        retry = self._recovery(run, failure, a.config) if failure else None
        status = "done" if failure is None else "failed"
        self.store.finish(run.id, status, exit_code, failure, log_tail if failure else None, series, usd, gpu_hours,
                          final=retry is None)
        if retry is not None:
            config, resume = retry
            todo.appendleft((run, config, resume))
            self.on_event(Event("retry", run, status="queued", failure=failure, attempt=a.attempt,
                                message=_edits_text(a.config, config, resume)))
        else:
            self.on_event(Event("end", run, status=status, failure=failure, attempt=a.attempt,
                                metrics=_final_values(series), message=_last_line(log_tail) if failure else None))

    def _recovery(self, run: RunPlan, failure: str, config: dict[str, Any]) -> tuple[dict[str, Any], bool] | None:
        playbook = self.study.on_failure.get(failure)
        if playbook is None:
            return None
        key = (run.id, failure)
        used = self._retries_used.get(key, 0)
        if used >= playbook.retries:
            return None
        self._retries_used[key] = used + 1
        return apply_edits(config, playbook.config), playbook.resume

    def _interrupt(self, active: dict[str, _Active]) -> None:
        for a in active.values():
            self.executor.cancel(a.handle, signal.SIGTERM)
        for a in active.values():
            reap = getattr(self.executor, "reap", None)
            if reap is not None:
                reap(a.handle, grace_s=5.0)
        self.store.requeue(list(active))


def _gpu_count(resources: dict[str, Any]) -> int:
    acc = resources.get("accelerators")
    if not acc:
        return 0
    _, _, count = acc.partition(":")
    return int(count) if count else 1


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

