"""Helpers for runtime tests that drive real `studyc` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from testkit.polling import wait_for

STUDYC = str(Path(sys.executable).parent / "studyc")


def processes_with(marker: str) -> list[int]:
    """Pids of live processes whose environment holds ``marker`` (a KEY=value string),
    read straight from /proc: independent of the code under test."""
    found = []
    needle = marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except (OSError, IndexError):
            continue
    return found


class Studyc:
    """Starts `studyc ARGS...` in the background against its own store, and looks at the
    processes it left. Every process is killed at teardown whatever happened."""

    def __init__(self, tmp_path: Path):
        self.cwd = tmp_path
        self.home = tmp_path / ".studyc"
        self.mark = f"STUDYC_TEST_MARK={tmp_path}"  # inherited by studyc and its runs
        self.started: list[subprocess.Popen] = []

    def __call__(self, *args: str) -> subprocess.Popen:
        env = dict(os.environ, STUDYC_HOME=str(self.home), STUDYC_TEST_MARK=str(self.cwd))
        proc = subprocess.Popen([STUDYC, *args], cwd=self.cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self.started.append(proc)
        return proc

    def processes(self) -> list[int]:
        return processes_with(self.mark)

    wait_for = staticmethod(wait_for)

    def cleanup(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        for pid in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def studyc_proc(tmp_path: Path):
    runner = Studyc(tmp_path)
    yield runner
    runner.cleanup()


@pytest.fixture
def slow_trainer(tmp_path: Path) -> Path:
    """A run that logs ``steps`` steps of ``sleep`` seconds each, checkpointing each step
    to its checkpoint directory and resuming from it when there is one. While the file
    ``tmp_path/hold`` exists a run waits after its first step (at most 2 min), so a test
    can keep runs going for as long as a busy machine needs to start another studyc."""
    path = tmp_path / "slow_train.py"
    path.write_text("""\
import json, os, pathlib, time, studyc
HOLD = pathlib.Path(HOLD_PATH)
c = studyc.config()
ckpt = studyc.checkpoint_dir() / "state.json"
start = json.loads(ckpt.read_text())["step"] + 1 if ckpt.exists() else 0
for i in range(start, c.get("steps", 10)):
    time.sleep(c.get("sleep", 0.1))
    deadline = time.monotonic() + 120
    while i == start + 1 and HOLD.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    studyc.log(step=i, loss=1.0 / (i + 1), nrmse=c.get("base", 0.05) + 0.001 * c["seed"], pid=os.getpid(),
               resumed_from=start)
    (ckpt.parent / "tmp.json").write_text(json.dumps({"step": i}))
    os.replace(ckpt.parent / "tmp.json", ckpt)  # atomic: a kill never leaves half a checkpoint
""".replace("HOLD_PATH", repr(str(tmp_path / "hold"))))
    return path


@pytest.fixture
def find_processes():
    """``find_processes("KEY=value")``: pids of live processes with that in their environment."""
    return processes_with
