"""An in-process executor for tests (as httpx's MockTransport is for clients): each run
is a Python generator on a virtual clock, so scheduling, recovery, stop rules and
timeouts are tested in milliseconds, without processes or sleeping.

A program receives a ``FakeRun`` (the job, its config, ``log`` and ``print``) and yields
the seconds it spends between steps; what it returns is its exit code::

    def train(run):
        for step in range(3):
            yield 10.0                      # ten (virtual) seconds of work
            run.log(step=step, loss=1.0 / (step + 1))
        return 0

    scheduler = Scheduler(study, store, FakeExecutor(train), ...)
"""

from __future__ import annotations

import json
import math
import signal
from dataclasses import dataclass, field
from typing import Any, Callable, Generator

from studyc.protocol import CONFIG, LOG_FILE, METRICS_FILE, RESUME
from studyc.runtime.executor import Executor, Job, JobState

Program = Callable[["FakeRun"], Generator[float, None, "int | None"]]
TERMINATED = 143  # what a run's shell exits with after SIGTERM (LocalExecutor's wrapper)


class FakeRun:
    """A run as its program sees it."""

    def __init__(self, job: Job, executor: "FakeExecutor"):
        self.job = job
        self.config: dict[str, Any] = json.loads(open(job.env[CONFIG], encoding="utf-8").read())
        self.resumed = job.env.get(RESUME) == "1"
        self.ignores_sigterm = False  # set it to make SIGTERM do nothing (SIGKILL then follows)
        self.terminated = False  # SIGTERM arrived
        self._executor = executor

    def now(self) -> float:
        """The virtual clock, in seconds."""
        return self._executor.now()

    def log(self, step: int | None = None, **metrics: float) -> None:
        """One metrics line, as ``studyc.log`` writes it."""
        record: dict[str, Any] = {"t": round(self._executor.now(), 3)}
        if step is not None:
            record["step"] = step
        record.update(metrics)
        with open(self.job.run_dir / METRICS_FILE, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def print(self, text: str) -> None:
        with open(self.job.run_dir / LOG_FILE, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")


@dataclass
class FakeHandle:
    run: FakeRun
    program: Generator[float, None, "int | None"]
    wake_at: float = 0.0
    exit_code: int | None = None
    gpus: list[int] = field(default_factory=list)


class FakeExecutor(Executor):
    """Runs ``program`` for every job, in this process, on a virtual clock that ``wait``
    moves forward to the next thing that happens. ``jobs`` keeps every submitted job and
    ``peak`` the most runs that were running at once."""

    def __init__(self, program: Program, start_s: float = 0.0):
        self.program = program
        self.clock_s = start_s
        self.jobs: list[Job] = []
        self.running: list[FakeHandle] = []
        self.peak = 0

    def now(self) -> float:
        return self.clock_s

    def submit(self, job: Job) -> FakeHandle:
        job.run_dir.mkdir(parents=True, exist_ok=True)
        (job.run_dir / LOG_FILE).touch()
        self.jobs.append(job)
        run = FakeRun(job, self)
        handle = FakeHandle(run, self.program(run), self.clock_s, gpus=list(job.gpus))
        self.running.append(handle)
        self.peak = max(self.peak, len(self.running))
        self._advance(handle)
        return handle

    def _advance(self, handle: FakeHandle) -> None:
        """Run the program up to its next step in the future (or its end)."""
        while handle.exit_code is None and handle.wake_at <= self.clock_s:
            try:
                handle.wake_at += max(0.0, float(next(handle.program)))
            except StopIteration as stop:
                self._end(handle, stop.value or 0)

    def _end(self, handle: FakeHandle, code: int) -> None:
        handle.exit_code = code
        if handle in self.running:
            self.running.remove(handle)

    def poll(self, handle: FakeHandle) -> JobState:
        self._advance(handle)
        return JobState(running=handle.exit_code is None, exit_code=handle.exit_code)

    def wait(self, handles: list[FakeHandle], timeout: float) -> None:
        if any(h.exit_code is not None for h in handles):  # one has ended: no time passes
            return
        due = min((h.wake_at for h in handles), default=math.inf)
        self.clock_s = max(self.clock_s, min(due, self.clock_s + timeout))

    def cancel(self, handle: FakeHandle, sig: int = signal.SIGTERM) -> None:
        if handle.exit_code is not None:
            return
        if sig == signal.SIGKILL:
            self._end(handle, -signal.SIGKILL)
        elif not handle.run.ignores_sigterm:
            handle.run.terminated = True
            self._end(handle, TERMINATED)
