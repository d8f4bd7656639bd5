"""The executor interface (a base class: submit, poll and cancel to implement, the rest
with explicit defaults) and the local process executor.

Each local run is a process in its own process group, so cancelling it takes its children
too. ``studyc.runtime.fake`` has an in-process executor for tests.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studyc.protocol import CPUS, EXIT_CODE_FILE, LOG_FILE, RUN_DIR
from studyc.runtime import procs


@dataclass
class Job:
    """What an executor needs to start one attempt of a run."""

    run_id: str
    command: str
    workdir: str
    env: dict[str, str]
    run_dir: Path
    cpus: int = 1
    gpus: list[int] = field(default_factory=list)
    run: Any = None  # the RunPlan of this attempt (config edited for a retry), for executors that render a task


@dataclass
class JobState:
    running: bool
    exit_code: int | None = None
    waiting: bool = False  # running, but not on a machine yet (a cloud job queued or being recovered)
    failure: str | None = None  # the executor's own verdict, when it knows better than the exit code


class Executor:
    """Starts runs and reports on them: the scheduler's only way to run anything.

    A subclass implements ``submit``, ``poll`` and ``cancel``; every other method has a
    default that suits an executor whose runs live and die with studyc."""

    remote = False  # True: each run has a machine of its own (nothing to pack here) and may outlive studyc

    def submit(self, job: Job) -> Any:
        """Start one attempt; returns a handle. OSError: it could not start (the run fails)."""
        raise NotImplementedError

    def poll(self, handle: Any) -> JobState:
        raise NotImplementedError

    def cancel(self, handle: Any, sig: int = signal.SIGTERM) -> None:
        """Ask the run to stop (SIGTERM), or make it stop (SIGKILL)."""
        raise NotImplementedError

    def now(self) -> float:
        """The clock runs are timed by (seconds): timeouts, durations, spend."""
        return time.monotonic()

    def wait(self, handles: list[Any], timeout: float) -> None:
        """Block until one of ``handles`` may have ended, at most ``timeout`` seconds."""
        time.sleep(max(0.0, min(timeout, POLL_S) if handles else timeout))

    def reap(self, handle: Any, grace_s: float = 5.0) -> None:
        """After a run ended or was cancelled: make sure nothing of it is left."""

    def process_group(self, handle: Any) -> int | None:
        """The run's process group on this machine (recorded so that a later studyc can
        clean up after one that died), None when it has none here."""
        return None

    def follow(self, run_ids: list[str]) -> dict[str, Any]:
        """Handles on runs an earlier studyc left going (runs that outlive studyc), by run id."""
        return {}

    def on_interrupt(self, handles: list[Any], exc: BaseException | None) -> bool:
        """On Ctrl-C: whether to stop the runs in flight (else they go on without studyc)."""
        return True


POLL_S = 0.01  # how often an executor that cannot block on its runs looks at them


@dataclass
class LocalHandle:
    proc: subprocess.Popen
    pidfd: int | None  # readable once the process exits: exits are seen at once, without polling
    run_id: str = ""  # in the environment of each of the run's processes (see procs.run_processes)

    @property
    def pgid(self) -> int:
        return self.proc.pid  # each run leads its own session and process group


# Run by /bin/sh before a job's command. The job's stdin is the read end of the executor's
# lifeline pipe, whose write end only studyc holds: a background watcher blocks on it and,
# when studyc dies (even by SIGKILL) and the pipe closes, kills the job's whole process
# group, grandchildren included. The command itself reads /dev/null. TERM is trapped so
# that the shell outlives a SIGTERM until its command has ended (the command, exec'd
# afresh, gets the default handling back).
# On its way out the shell also leaves the command's exit code in the run directory, so a
# studyc killed between the command's end and recording it finds that the run ended.
_LIFELINE = ("trap 'exit 143' TERM; "
             f"trap 'c=$?; printf %s $c > \"${RUN_DIR}/.{EXIT_CODE_FILE}.part\" && "
             f"mv -f \"${RUN_DIR}/.{EXIT_CODE_FILE}.part\" \"${RUN_DIR}/{EXIT_CODE_FILE}\"; exit $c' EXIT; "
             "exec 3<&0 </dev/null; { read _ <&3; kill -KILL 0; } & exec 3<&-; ")


class LocalExecutor(Executor):
    """Runs jobs as child processes of this machine, each in its own process group, none
    outliving studyc."""

    def __init__(self) -> None:
        self._lifeline: tuple[int, int] | None = None

    def _lifeline_fd(self) -> int:
        if self._lifeline is None:
            self._lifeline = os.pipe()  # not inherited: only studyc holds the write end
        return self._lifeline[0]

    def __del__(self) -> None:
        if self._lifeline is not None:
            for fd in self._lifeline:
                os.close(fd)

    def submit(self, job: Job) -> LocalHandle:
        job.run_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        # The interpreter that runs studyc also runs `python ...` commands: a venv works
        # without being activated.
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env.update(job.env)
        threads = str(job.cpus)
        env.update({"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, CPUS: threads})
        # A run sees only the GPUs it was packed onto (none for a CPU run).
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, job.gpus))
        env["PYTHONUNBUFFERED"] = "1"
        with open(job.run_dir / LOG_FILE, "ab") as log:
            proc = subprocess.Popen(["/bin/sh", "-c", _LIFELINE + job.command], cwd=job.workdir, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=self._lifeline_fd(), start_new_session=True)
        try:
            pidfd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            pidfd = None
        return LocalHandle(proc, pidfd, job.run_id)

    def poll(self, handle: LocalHandle) -> JobState:
        code = handle.proc.poll()
        if code is not None:
            _close(handle)
        return JobState(running=code is None, exit_code=code)

    def process_group(self, handle: LocalHandle) -> int:
        return handle.pgid

    def wait(self, handles: list[LocalHandle], timeout: float) -> None:
        fds = [h.pidfd for h in handles if h.pidfd is not None]
        if len(fds) < len(handles) or not fds:  # no pidfds (old kernel), or nothing running here: sleep
            super().wait(handles, timeout)
            return
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        poller.poll(max(0.0, timeout) * 1000)

    def cancel(self, handle: LocalHandle, sig: int = signal.SIGTERM) -> None:
        """``sig`` to the run's group, its session and whatever else carries its run id."""
        procs.signal_run(handle.pgid, handle.run_id, sig)

    def reap(self, handle: LocalHandle, grace_s: float = 5.0) -> None:
        """After a cancel: wait for the group to go, then kill what is left."""
        try:
            handle.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.cancel(handle, signal.SIGKILL)
            handle.proc.wait()
        else:
            self.cancel(handle, signal.SIGKILL)  # stray descendants, in the group or not
        _close(handle)


def _close(handle: LocalHandle) -> None:
    if handle.pidfd is not None:
        os.close(handle.pidfd)
        handle.pidfd = None


def tail(path: Path, lines: int = 50) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(data.splitlines()[-lines:])
