"""The executor protocol (submit, poll, cancel) and the local process executor.

Each run is a process in its own process group, so cancelling it takes its children too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

LOG_FILE = "log.txt"


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


@dataclass
class JobState:
    running: bool
    exit_code: int | None = None


class Executor(Protocol):
    def submit(self, job: Job) -> Any: ...

    def poll(self, handle: Any) -> JobState: ...

    def cancel(self, handle: Any, sig: int = signal.SIGTERM) -> None: ...


class LocalExecutor:
    """Runs jobs as child processes of this machine."""

    def submit(self, job: Job) -> subprocess.Popen:
        job.run_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        # The interpreter that runs studyc also runs `python ...` commands: a venv works
        # without being activated.
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env.update(job.env)
        threads = str(job.cpus)
        env.update({"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "STUDYC_CPUS": threads})
        # A run sees only the GPUs it was packed onto (none for a CPU run).
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, job.gpus))
        env["PYTHONUNBUFFERED"] = "1"
        log = open(job.run_dir / LOG_FILE, "ab")
        try:
            return subprocess.Popen(["/bin/sh", "-c", job.command], cwd=job.workdir, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()

    def poll(self, handle: subprocess.Popen) -> JobState:
        code = handle.poll()
        return JobState(running=code is None, exit_code=code)

    def cancel(self, handle: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
        try:
            os.killpg(handle.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def reap(self, handle: subprocess.Popen, grace_s: float = 5.0) -> None:
        """After a cancel: wait for the group to go, then kill what is left."""
        deadline = time.monotonic() + grace_s
        while handle.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if handle.poll() is None:
            self.cancel(handle, signal.SIGKILL)
            handle.wait()
        else:
            self.cancel(handle, signal.SIGKILL)  # stray grandchildren in the group


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
