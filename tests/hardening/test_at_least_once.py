"""Issue 14 item 9: a run that finished while its studyc was being killed is recorded from
its files by the next studyc, not run again; what the shell could not leave on disk runs
again (at-least-once)."""

import json
import os
import socket
import sys
import time

from studyc import orchestrate
from studyc.compiler.plan import compile_plan
from studyc.runtime.store import Store
from studyc.spec.loader import load
from testkit.studies import one_run_study

DEAD_OWNER = f"{socket.gethostname()}:4194303:1"  # a pid above pid_max: no such studyc


def study(tmp_path, write_study):
    trainer = tmp_path / "t.py"
    trainer.write_text("import studyc\nstudyc.log(step=0, loss=0.25)\n")
    return write_study(one_run_study("once", f"{sys.executable} {trainer}"))


def left_running(store, path, exit_code, started_delay=0.0):
    """What a studyc killed right after its run's command ended leaves: the run 'running'
    under a dead owner, its files written."""
    loaded = load(path)
    run = compile_plan(loaded).runs[0]
    store.add_runs("once", None, [run])
    store.claim(run.id, run.config, DEAD_OWNER)
    run_dir = store.run_dir(run.id)
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text(json.dumps({"t": time.time(), "step": 0, "loss": 0.25}) + "\n")
    (run_dir / "exit_code").write_text(str(exit_code))
    if started_delay:
        os.utime(run_dir / "exit_code", (time.time() - started_delay,) * 2)
    return run


def test_a_run_that_ended_unrecorded_is_recorded_not_rerun(tmp_path, write_study):
    store = Store(tmp_path / "store")
    path = study(tmp_path, write_study)
    run = left_running(store, path, 0)
    events = []
    orchestrate.execute(load(path), store, events.append)
    assert not [e for e in events if e.kind == "start"]
    assert [e.status for e in events if e.kind == "end"] == ["done"]
    assert store.get(run.id).status == "done" and store.get(run.id).attempts == 1
    assert [s[3] for s in store.series([run.id])[run.id]] == [0.25]


def test_a_failed_or_stale_exit_is_run_again(tmp_path, write_study):
    store = Store(tmp_path / "store")
    path = study(tmp_path, write_study)
    run = left_running(store, path, 0, started_delay=3600)  # a file from before this attempt began
    events = []
    orchestrate.execute(load(path), store, events.append)
    assert [e.kind for e in events if e.kind in ("start", "end")] == ["start", "end"]
    assert store.get(run.id).attempts == 2


def test_the_shell_leaves_the_exit_code(tmp_path, write_study):
    store = Store(tmp_path / "store")
    path = study(tmp_path, write_study)
    orchestrate.execute(load(path), store)
    run_id = compile_plan(load(path)).runs[0].id
    assert (store.run_dir(run_id) / "exit_code").read_text() == "0"
