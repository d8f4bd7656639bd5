"""Local execution with real processes: caching, rerun, failure classes and the playbook."""

import json
import math
import sys
import textwrap
from pathlib import Path

import pytest

from studyc import orchestrate
from studyc.errors import RunError
from studyc.runtime.store import Store
from studyc.spec.loader import load


def study_text(trainer: Path, body: str = "", seeds: str = "[0, 1]", extra_run: str = "") -> str:
    return textwrap.dedent(f"""\
        study: toy
        run:
          command: {sys.executable} {trainer}
          config: {{base: 0.05}}
          seeds: {seeds}
          resources: {{hours: 0.001}}{extra_run}
        metrics:
          nrmse: {{goal: min}}
          loss: {{goal: min}}
        arms:
          a: {{}}
          b: {{config: {{base: 0.07}}}}
        budget: {{parallel: 2}}
        """) + textwrap.dedent(body)


def run_study(path, store, **kw):
    events = []
    orchestrate.execute(load(path), store, events.append, **kw)
    return events


def test_runs_execute_then_are_reused(tmp_path, write_study, toy_trainer):
    store = Store(tmp_path / "store")
    path = write_study(study_text(toy_trainer))
    events = run_study(path, store)
    ends = [e for e in events if e.kind == "end"]
    assert len(ends) == 4 and all(e.status == "done" for e in ends)
    assert ends[0].metrics["nrmse"] > 0
    again = run_study(path, store)
    assert [e.kind for e in again] == ["cached"] * 4
    rerun = run_study(path, store, rerun={"b"})
    assert sorted(e.run.arm for e in rerun if e.kind == "end") == ["b", "b"]


def test_metric_series_are_stored(tmp_path, write_study, toy_trainer):
    store = Store(tmp_path / "store")
    run_study(write_study(study_text(toy_trainer)), store)
    rows = store.study_runs("toy", None)
    series = store.series([rows[0]["run_id"]])[rows[0]["run_id"]]
    assert len([s for s in series if s[2] == "nrmse"]) == 4


def test_changing_one_arm_reruns_only_that_arm(tmp_path, write_study, toy_trainer):
    store = Store(tmp_path / "store")
    path = write_study(study_text(toy_trainer))
    run_study(path, store)
    path.write_text(path.read_text().replace("base: 0.07", "base: 0.08"))
    events = run_study(path, store)
    assert sorted(e.run.arm for e in events if e.kind == "start") == ["b", "b"]


FLAKY = """\
import os, sys, studyc
c = studyc.config()
if c["batch_size"] > 4:
    print("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB", file=sys.stderr)
    sys.exit(1)
studyc.log(step=0, nrmse=0.05, loss=0.1, batch=c["batch_size"])
"""

NAN = """\
import time, studyc
for i in range(100):
    studyc.log(step=i, loss=float("nan") if i >= 2 else 1.0, nrmse=0.1)
    time.sleep(0.05)
"""

HANG = """\
import time
time.sleep(60)
"""

# The host's OOM killer: a SIGKILL studyc did not send.
KILLED = """\
import os, signal
os.kill(os.getpid(), signal.SIGKILL)
"""

# Exits cleanly, but its loss went NaN: diverged all the same (no stop rule needed).
QUIET_NAN = """\
import studyc
studyc.log(step=0, loss=1.0, nrmse=0.1)
studyc.log(step=1, loss=float("nan"), nrmse=float("nan"))
"""

# Diverges while the learning rate is high: the playbook lowers it (1.0 -> 0.7 -> 0.49).
UNSTABLE = """\
import studyc
c = studyc.config()
value = float("inf") if c["lr"] > 0.5 else 0.05
studyc.log(step=0, loss=value, nrmse=value)
"""

CRASH = """\
for i in range(100):
    print(f"line {i}")
raise SystemExit("bad config: no such dataset")
"""


@pytest.mark.parametrize("script, body, failure, attempts", [
    (FLAKY, "on_failure: {oom: {retries: 2, config: {batch_size: 'batch_size // 2'}}}\n", None, 3),
    (FLAKY, "", "oom", 1),
    (NAN, "stop: {diverged: 'loss != loss or loss > 1e3'}\n", "diverged", 1),
    (HANG, "", "timeout", 1),
    (HANG, "on_failure: {timeout: {retries: 1}}\n", "timeout", 2),
    (KILLED, "", "oom", 1),
    (QUIET_NAN, "", "diverged", 1),
    (UNSTABLE, "on_failure: {diverged: {retries: 2, config: {lr: 'lr * 0.7'}}}\n", None, 3),
    (CRASH, "on_failure: {oom: {retries: 2}}\n", "crashed", 1),
])
def test_failures_are_classified_and_recovered(tmp_path, write_study, script, body, failure, attempts):
    trainer = tmp_path / "trainer.py"
    trainer.write_text(script)
    text = textwrap.dedent(f"""\
        study: failing
        run:
          command: {sys.executable} {trainer}
          config: {{batch_size: 16, lr: 1.0}}
          seeds: [0]
          resources: {{hours: 0.001, timeout: 2s}}
        metrics:
          nrmse: {{goal: min}}
        arms:
          a: {{}}
        """) + body
    store = Store(tmp_path / "store")
    events = run_study(write_study(text), store)
    end = [e for e in events if e.kind == "end"][-1]
    record = store.get(end.run.id)
    assert record.failure == failure
    assert record.attempts == attempts
    assert record.status == ("done" if failure is None else "failed")
    if failure:
        assert record.log_tail is not None
    if failure == "timeout":  # the log says what stopped the run, and the limit
        assert "studyc: stopped by the timeout after" in record.log_tail and "(limit 2.0 s" in record.log_tail
    history = store.attempts(end.run.id)
    if script is FLAKY and failure is None:  # the playbook halved the batch twice: 16 -> 8 -> 4
        assert [json.loads(a["config"])["batch_size"] for a in history] == [16, 8, 4]
        assert [a["failure"] for a in history] == ["oom", "oom", None]
    if script is UNSTABLE:
        assert [json.loads(a["config"])["lr"] for a in history] == [1.0, 0.7, pytest.approx(0.49)]
        assert [a["failure"] for a in history] == ["diverged", "diverged", None]
    if script is CRASH:  # the last 50 lines of the run's log, with the error
        lines = record.log_tail.splitlines()
        assert len(lines) == 50 and lines[0] == "line 51" and lines[-1] == "bad config: no such dataset"
        assert end.message == "bad config: no such dataset"


def test_over_budget_plan_is_refused_before_anything_runs(tmp_path, write_study, toy_trainer):
    text = study_text(toy_trainer).replace("resources: {hours: 0.001}", "resources: {hours: 2, accelerators: 'A100:1'}")
    text = text.replace("budget: {parallel: 2}", "budget: {parallel: 2, usd: 1.0}")
    store = Store(tmp_path / "store")
    with pytest.raises(RunError, match=r"over budget"):
        run_study(write_study(text), store)
    assert store.study_runs("toy", None) == []


def test_nan_metric_is_stored_as_nan(tmp_path, write_study):
    trainer = tmp_path / "t.py"
    trainer.write_text("import studyc\nstudyc.log(step=0, nrmse=float('nan'))\n")
    text = textwrap.dedent(f"""\
        study: nan
        run: {{command: {sys.executable} {trainer}, seeds: [0]}}
        metrics: {{nrmse: {{goal: min}}}}
        arms: {{a: {{}}}}
        """)
    store = Store(tmp_path / "store")
    run_study(write_study(text), store)
    run_id = store.study_runs("nan", None)[0]["run_id"]
    assert math.isnan(store.series([run_id])[run_id][0][3])
