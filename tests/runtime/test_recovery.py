"""Preemption and resume from a checkpoint, runs that ignore SIGTERM, live budget
enforcement, runs shared between studies, and `studyc status --json`."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
from pathlib import Path

from click.testing import CliRunner

from studyc import orchestrate
from studyc.cli import main
from studyc.compiler.plan import Compiler
from studyc.runtime.executor import LocalExecutor
from studyc.runtime.fake import FakeExecutor
from studyc.runtime.scheduler import Scheduler
from studyc.runtime.store import Store
from studyc.spec.loader import load


def study_text(trainer: Path, name: str = "recover", config: str = "{steps: 20, sleep: 0.1}", seeds: str = "[0]",
               resources: str = "{hours: 0.001}", extra: str = "") -> str:
    return textwrap.dedent(f"""\
        study: {name}
        run:
          command: {sys.executable} {trainer}
          config: {config}
          seeds: {seeds}
          resources: {resources}
        metrics:
          nrmse: {{goal: min}}
        arms:
          a: {{}}
        """) + textwrap.dedent(extra)


def test_a_preempted_run_resumes_from_its_checkpoint(tmp_path, write_study, slow_trainer, find_processes):
    """SIGTERM from outside (the machine going away) mid-run: classified preempted, and
    the playbook's `resume: true` restarts it in the same directory, from its checkpoint."""
    path = write_study(study_text(slow_trainer, extra="on_failure: {preempted: {retries: 1, resume: true}}\n"))
    store = Store(tmp_path / "store")
    sent = []

    def preempt(event):
        if event.kind == "progress" and event.metrics.get("step", 0) >= 4 and not sent:
            pids = find_processes(f"STUDYC_RUN_ID={event.run.id}")
            assert pids
            os.killpg(os.getpgid(pids[0]), signal.SIGTERM)
            sent.append(event.metrics["step"])

    orchestrate.execute(load(str(path)), store, preempt)
    run_id = store.study_runs("recover", None)[0]["run_id"]
    record = store.get(run_id)
    assert sent and record.status == "done" and record.attempts == 2
    assert [a["failure"] for a in store.attempts(run_id)] == ["preempted", None]
    series = [dict(step=s, **{n: v}) for _, s, n, v in store.series([run_id])[run_id] if n == "resumed_from"]
    assert sorted({r["step"] for r in series}) == list(range(20))  # nothing lost across the restart
    resumed = [r for r in series if r["resumed_from"] > 0]
    assert resumed and resumed[0]["resumed_from"] >= sent[0]  # continued, not started over
    assert len(series) < 20 + sent[0] + 2


def test_a_run_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path, write_study):
    trainer = tmp_path / "stubborn.py"
    trainer.write_text("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)\n")
    path = write_study(study_text(trainer, config="{}", resources="{hours: 0.001, timeout: 1s}"))
    loaded = load(str(path))
    plan = Compiler(loaded).compile()
    store = Store(tmp_path / "store")
    store.add_runs("recover", None, plan.runs)
    scheduler = Scheduler(loaded.study, store, LocalExecutor(), plan.workdir, 1, grace_s=0.5)
    scheduler.execute(plan.runs)
    record = store.get(plan.runs[0].id)
    assert record.failure == "timeout" and record.exit_code == -signal.SIGKILL


def steps(run):
    """A trainer on the fake executor's clock: ``steps`` steps of ``sleep`` seconds."""
    for i in range(run.config.get("steps", 4)):
        yield run.config.get("sleep", 0.1)
        run.log(step=i, nrmse=run.config.get("base", 0.05) + 0.001 * run.config["seed"])


def test_runs_that_would_cross_the_budget_are_skipped_and_recorded(tmp_path, write_study):
    # $1 per CPU-second: each run is estimated at $1.08 but really takes 2 s ($2).
    text = study_text(Path("train.py"), config="{steps: 10, sleep: 0.2}", seeds="[0, 1, 2, 3]",
                      resources="{hours: 0.0003}", extra="prices: {CPU: 3600}\nbudget: {usd: 5, parallel: 1}\n")
    path = write_study(text)
    store = Store(tmp_path / "store")
    events = []
    orchestrate.execute(load(str(path)), store, events.append, executor=FakeExecutor(steps))
    skipped = [e for e in events if e.kind == "skip"]
    done = [e for e in events if e.kind == "end" and e.status == "done"]
    assert len(done) == 2 and len(skipped) == 2
    spent = sum(e.usd for e in done)
    assert 3.5 < spent <= 5.0  # the budget was never crossed
    assert "would cross budget.usd" in skipped[0].message
    rows = store.study_runs("recover", None)
    assert [bool(r["skipped"]) for r in rows] == [False, False, True, True]
    assert store.spent("recover", None)[0] == spent
    # What was spent is remembered: running the study again starts nothing new.
    again = []
    orchestrate.execute(load(str(path)), store, again.append, executor=FakeExecutor(steps))
    assert {e.kind for e in again} == {"cached", "skip"}

    result = CliRunner().invoke(main, ["status", str(path), "--json", "--store", str(tmp_path / "store")])
    assert result.exit_code == 0, result.output
    runs = json.loads(result.output)["runs"]
    assert [r["status"] for r in runs] == ["done", "done", "skipped", "skipped"]
    for r in runs:
        assert set(r) >= {"id", "arm", "stage", "seed", "status", "attempts", "failure", "started_at", "ended_at"}
    assert runs[0]["attempts"] == 1 and runs[0]["started_at"].endswith("Z") and runs[0]["ended_at"]
    assert "would cross budget.usd" in runs[2]["failure"]


def test_a_run_finished_for_one_study_is_reused_by_another(tmp_path, write_study):
    store = Store(tmp_path / "store")
    first = write_study(study_text(Path("train.py"), name="first", config="{base: 0.05}", seeds="[0, 1]"), "first.yaml")
    second = write_study(study_text(Path("train.py"), name="second", config="{base: 0.05}", seeds="[0, 1, 2]"),
                         "second.yaml")
    orchestrate.execute(load(str(first)), store, executor=FakeExecutor(steps))
    events = []
    orchestrate.execute(load(str(second)), store, events.append, executor=FakeExecutor(steps))
    assert [(e.kind, e.run.seed) for e in events if e.kind in ("cached", "start")] == [
        ("cached", 0), ("cached", 1), ("start", 2)]
    # --rerun forces the arm again, here for both seeds the first study had.
    events = []
    orchestrate.execute(load(str(first)), store, events.append, rerun={"a"}, executor=FakeExecutor(steps))
    assert sorted(e.run.seed for e in events if e.kind == "start") == [0, 1]
    assert {store.get(e.run.id).attempts for e in events if e.kind == "start"} == {2}


def test_identical_arms_share_one_execution(tmp_path, write_study):
    text = study_text(Path("train.py"), name="twins", config="{base: 0.05}").replace("  a: {}\n", "  a: {}\n  b: {}\n")
    store = Store(tmp_path / "store")
    events = []
    orchestrate.execute(load(str(write_study(text))), store, events.append, executor=FakeExecutor(steps))
    assert [e.run.arm for e in events if e.kind == "start"] == ["a"]
    assert [(e.run.arm, e.kind) for e in events if e.kind in ("end", "cached")] == [("a", "end"), ("b", "cached")]
    rows = store.study_runs("twins", None)
    assert len({r["run_id"] for r in rows}) == 1 and {r["status"] for r in rows} == {"done"}
