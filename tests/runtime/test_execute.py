"""Local execution: caching and rerun with real processes; failure classes, timeouts and the
playbook on the in-process fake executor."""

import json
import math
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from studyc import orchestrate
from studyc.errors import RunError
from studyc.runtime.fake import FakeExecutor
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


def toy(run):
    """The toy trainer (tests/conftest.py) on the fake executor."""
    for i in range(run.config.get("steps", 4)):
        yield 0.1
        run.log(step=i, loss=1.0 / (i + 1), nrmse=run.config["base"] + 0.001 * run.config["seed"] + 0.01 / (i + 1))


def test_metric_series_are_stored(tmp_path, write_study):
    store = Store(tmp_path / "store")
    run_study(write_study(study_text(Path("train.py"))), store, executor=FakeExecutor(toy))
    rows = store.study_runs("toy", None)
    series = store.series([rows[0]["run_id"]])[rows[0]["run_id"]]
    assert len([s for s in series if s[2] == "nrmse"]) == 4


def test_changing_one_arm_reruns_only_that_arm(tmp_path, write_study):
    store = Store(tmp_path / "store")
    path = write_study(study_text(Path("train.py")))
    run_study(path, store, executor=FakeExecutor(toy))
    path.write_text(path.read_text().replace("base: 0.07", "base: 0.08"))
    events = run_study(path, store, executor=FakeExecutor(toy))
    assert sorted(e.run.arm for e in events if e.kind == "start") == ["b", "b"]


# Failure classes and the playbook, on the in-process fake executor: each trainer is a
# program on a virtual clock (see studyc/runtime/fake.py), so a 60 s hang costs nothing.

def flaky(run):  # out of memory until the playbook has halved the batch enough
    yield 0.1
    if run.config["batch_size"] > 4:
        run.print("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB")
        return 1
    run.log(step=0, nrmse=0.05, loss=0.1, batch=run.config["batch_size"])


def nan(run):
    for i in range(100):
        run.log(step=i, loss=float("nan") if i >= 2 else 1.0, nrmse=0.1)
        yield 0.05


def hang(run):
    yield 60.0


def killed(run):  # the host's OOM killer: a SIGKILL studyc did not send
    yield 0.1
    return -signal.SIGKILL


def quiet_nan(run):  # exits cleanly, but its loss went NaN: diverged all the same (no stop rule needed)
    yield 0.1
    run.log(step=0, loss=1.0, nrmse=0.1)
    run.log(step=1, loss=float("nan"), nrmse=float("nan"))


def unstable(run):  # diverges while the learning rate is high: the playbook lowers it (1.0 -> 0.7 -> 0.49)
    yield 0.1
    value = float("inf") if run.config["lr"] > 0.5 else 0.05
    run.log(step=0, loss=value, nrmse=value)


def crash(run):
    yield 0.1
    for i in range(100):
        run.print(f"line {i}")
    run.print("bad config: no such dataset")
    return 1


@pytest.mark.parametrize("program, body, failure, attempts", [
    (flaky, "on_failure: {oom: {retries: 2, config: {batch_size: 'batch_size // 2'}}}\n", None, 3),
    (flaky, "", "oom", 1),
    (nan, "stop: {diverged: 'loss != loss or loss > 1e3'}\n", "diverged", 1),
    (hang, "", "timeout", 1),
    (hang, "on_failure: {timeout: {retries: 1}}\n", "timeout", 2),
    (killed, "", "oom", 1),
    (quiet_nan, "", "diverged", 1),
    (unstable, "on_failure: {diverged: {retries: 2, config: {lr: 'lr * 0.7'}}}\n", None, 3),
    (crash, "on_failure: {oom: {retries: 2}}\n", "crashed", 1),
])
def test_failures_are_classified_and_recovered(tmp_path, write_study, program, body, failure, attempts):
    text = textwrap.dedent("""\
        study: failing
        run:
          command: python trainer.py
          config: {batch_size: 16, lr: 1.0}
          seeds: [0]
          resources: {hours: 0.001, timeout: 2s}
        metrics:
          nrmse: {goal: min}
        arms:
          a: {}
        """) + body
    store = Store(tmp_path / "store")
    events = run_study(write_study(text), store, executor=FakeExecutor(program))
    end = [e for e in events if e.kind == "end"][-1]
    record = store.get(end.run.id)
    assert record.failure == failure
    assert record.attempts == attempts
    assert record.status == ("done" if failure is None else "failed")
    if failure:
        assert record.log_tail is not None
    if failure == "timeout":  # the log says what stopped the run, and the limit
        assert "studyc: stopped by the timeout after 2.0 s (limit 2.0 s" in record.log_tail
    history = store.attempts(end.run.id)
    if program is flaky and failure is None:  # the playbook halved the batch twice: 16 -> 8 -> 4
        assert [json.loads(a["config"])["batch_size"] for a in history] == [16, 8, 4]
        assert [a["failure"] for a in history] == ["oom", "oom", None]
    if program is unstable:
        assert [json.loads(a["config"])["lr"] for a in history] == [1.0, 0.7, pytest.approx(0.49)]
        assert [a["failure"] for a in history] == ["diverged", "diverged", None]
    if program is crash:  # the last 50 lines of the run's log, with the error
        lines = record.log_tail.splitlines()
        assert len(lines) == 50 and lines[0] == "line 51" and lines[-1] == "bad config: no such dataset"
        assert end.message == "bad config: no such dataset"


def test_no_timeout_set_means_a_slow_machine_never_fails_a_run(tmp_path, write_study):
    """A run estimated at 4 s that takes ten minutes (a machine 150 times slower; the old
    default stopped it after 60 s) ends done."""
    def slow(run):
        yield 600.0
        run.log(step=0, nrmse=0.05)

    path = write_study(textwrap.dedent("""\
        study: slow
        run: {command: python t.py, seeds: [0], resources: {hours: 0.001}}
        metrics: {nrmse: {goal: min}}
        arms: {a: {}}
        """))
    store = Store(tmp_path / "store")
    events = run_study(path, store, executor=FakeExecutor(slow))
    end = [e for e in events if e.kind == "end"][-1]
    assert end.status == "done" and store.get(end.run.id).status == "done"


def test_a_run_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path, write_study):
    def stubborn(run):
        run.ignores_sigterm = True
        yield 60.0

    path = write_study(textwrap.dedent("""\
        study: stubborn
        run: {command: python t.py, seeds: [0], resources: {hours: 0.001, timeout: 1s}}
        metrics: {nrmse: {goal: min}}
        arms: {a: {}}
        """))
    store = Store(tmp_path / "store")
    executor = FakeExecutor(stubborn)
    events = run_study(path, store, executor=executor)
    record = store.get(events[-1].run.id)
    assert record.failure == "timeout" and record.exit_code == -signal.SIGKILL
    assert 1.0 + 5.0 <= executor.now() < 1.0 + 5.0 + 1.0  # SIGKILL once the 5 s grace after SIGTERM ran out


def test_over_budget_plan_is_refused_before_anything_runs(tmp_path, write_study, toy_trainer):
    text = study_text(toy_trainer).replace("resources: {hours: 0.001}", "resources: {hours: 2, accelerators: 'A100:1'}")
    text = text.replace("budget: {parallel: 2}", "budget: {parallel: 2, usd: 1.0}")
    store = Store(tmp_path / "store")
    with pytest.raises(RunError, match=r"over budget"):
        run_study(write_study(text), store)
    assert store.study_runs("toy", None) == []


def test_nan_metric_is_stored_as_nan(tmp_path, write_study):
    def nan_once(run):
        yield 0.1
        run.log(step=0, nrmse=float("nan"))

    text = textwrap.dedent("""\
        study: nan
        run: {command: python t.py, seeds: [0]}
        metrics: {nrmse: {goal: min}}
        arms: {a: {}}
        """)
    store = Store(tmp_path / "store")
    run_study(write_study(text), store, executor=FakeExecutor(nan_once))
    run_id = store.study_runs("nan", None)[0]["run_id"]
    assert math.isnan(store.series([run_id])[run_id][0][3])


def test_the_report_says_a_run_was_stopped_by_its_timeout_and_the_limit(tmp_path, write_study):
    path = write_study(textwrap.dedent("""\
        study: slowpoke
        run: {command: python t.py, seeds: [0], resources: {hours: 0.001, timeout: 2s}}
        metrics: {nrmse: {goal: min}}
        arms: {a: {}}
        hypotheses: {H1: {claim: low, check: a.nrmse <= 1}}
        """))
    store = Store(tmp_path / "store")
    loaded = load(path)
    plan = orchestrate.execute(loaded, store, executor=FakeExecutor(hang))
    result = orchestrate.report(loaded, store, tmp_path / "out", plan)
    text = result.paths["report"].read_text()
    assert "timeout" in text and "studyc: stopped by the timeout after 2.0 s (limit 2.0 s, resources.timeout)" in text
    assert result.verdicts["hypotheses"]["H1"]["status"] == "INCOMPLETE"
