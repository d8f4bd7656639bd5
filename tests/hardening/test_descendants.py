"""Issue 14: runs are killed by session and run id, not only by process group, so no
descendant outlives them (a grandchild that calls setsid included)."""

import os
import signal
import sys
import textwrap
import time
from pathlib import Path

from studyc import orchestrate
from studyc.runtime.store import Store
from studyc.spec.loader import load

ESCAPER = """\
import os, subprocess, sys, studyc
# A grandchild in a session (and process group) of its own, as a daemonising tool makes.
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
studyc.log(step=0, loss=0.5)
"""


def marked(mark: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            if f"HARDEN_MARK={mark}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except (OSError, IndexError):
            continue
    return found


def test_a_grandchild_in_its_own_session_does_not_outlive_the_run(tmp_path, write_study):
    trainer = tmp_path / "escaper.py"
    trainer.write_text(ESCAPER)
    path = write_study(textwrap.dedent(f"""\
        study: escape
        run:
          command: {sys.executable} {trainer}
          seeds: [0]
          env: {{HARDEN_MARK: "{tmp_path}"}}
          resources: {{hours: 0.001}}
        metrics:
          loss: {{goal: min}}
        arms:
          a: {{}}
        """))
    try:
        events = []
        orchestrate.execute(load(path), Store(tmp_path / "store"), events.append)
        assert [e.status for e in events if e.kind == "end"] == ["done"]
        deadline = time.monotonic() + 5
        while marked(str(tmp_path)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marked(str(tmp_path)) == []
    finally:
        for pid in marked(str(tmp_path)):
            os.kill(pid, signal.SIGKILL)
