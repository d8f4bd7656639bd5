"""Stages at run time: stages that do not need each other run side by side, a stage
waits for its needs, evaluation stages run a command on each promoted run's directory,
and a failing smoke stage stops the study before anything else starts."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from studyc import orchestrate
from studyc.runtime.store import Store
from studyc.spec.loader import load
from studyc.stageflow import SmokeFailed

TRAIN = """\
import sys, time, studyc
c = studyc.config()
if c.get("crash"):
    sys.exit("boom: crashed on purpose")
time.sleep(c.get("sleep", 0))
(studyc.checkpoint_dir() / "model.txt").write_text(str(c["base"] + c["seed"]))
studyc.log(step=0, nrmse=c["base"] + 0.001 * c["seed"])
"""

EVALUATE = """\
import os, studyc
source = studyc.source_run_dir()
weights = float((source / "checkpoints" / "model.txt").read_text())
(studyc.run_dir() / "eval.json").write_text(os.environ["STUDYC_SOURCE_RUN_DIR"])
studyc.log(eval_score=weights * 10)
"""


@pytest.fixture
def scripts(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "train.py").write_text(TRAIN)
    (tmp_path / "evaluate.py").write_text(EVALUATE)
    return tmp_path / "train.py", tmp_path / "evaluate.py"


def study(train: Path, stages: str, seeds: str = "[0]", parallel: int = 2) -> str:
    return textwrap.dedent(f"""\
        study: graph
        run:
          command: {sys.executable} {train}
          config: {{base: 0.05, sleep: 0, crash: false}}
          seeds: {seeds}
          resources: {{hours: 0.001}}
        metrics:
          nrmse: {{goal: min}}
          eval_score: {{goal: max}}
        arms:
          a: {{}}
          b: {{config: {{base: 0.07}}}}
        budget: {{parallel: {parallel}}}
        stages:
        """) + textwrap.indent(textwrap.dedent(stages), "  ")


def records_by_stage(store: Store) -> dict[str, list]:
    out: dict[str, list] = {}
    rows = store.study_runs("graph", None)
    records = store.records([r["run_id"] for r in rows])
    for row in rows:
        out.setdefault(row["stage"], []).append(records[row["run_id"]])
    return out


def test_independent_stages_overlap_and_needs_wait(tmp_path, write_study, scripts):
    text = study(scripts[0], """\
        first: {arms: [a], config: {sleep: 1.5}}
        second: {arms: [b]}
        third: {arms: [b], needs: [first], config: {sleep: 0.01}}
        """)
    store = Store(tmp_path / "store")
    events = []
    orchestrate.execute(load(write_study(text)), store, events.append)
    runs = records_by_stage(store)
    first, second, third = runs["first"][0], runs["second"][0], runs["third"][0]
    assert {r.status for rs in runs.values() for r in rs} == {"done"}
    assert second.started_at < first.ended_at  # side by side, not in the order written
    assert third.started_at >= first.ended_at  # `needs` waits
    starts = [e.run.stage for e in events if e.kind == "start"]
    assert starts.index("second") < starts.index("third")


def test_evaluation_stage_runs_once_per_promoted_run(tmp_path, write_study, scripts):
    text = study(scripts[0], f"""\
        train: {{arms: [a, b], promote: {{top: 1}}}}
        full_eval: {{arms: promoted, needs: [train], evaluate: "{sys.executable} {scripts[1]}"}}
        """, seeds="[0, 1]")
    store = Store(tmp_path / "store")
    loaded = load(write_study(text))
    orchestrate.execute(loaded, store)
    rows = [r for r in store.study_runs("graph", None) if r["stage"] == "full_eval"]
    # a (base 0.05) wins the promotion; its two runs are each evaluated once.
    assert sorted((r["arm"], r["seed"]) for r in rows) == [("a", 0), ("a", 1)]
    trained = {(r["arm"], r["seed"]): r["run_id"] for r in store.study_runs("graph", None) if r["stage"] == "train"}
    for row in rows:
        assert row["status"] == "done", row["log_tail"]
        source_dir = store.run_dir(trained[("a", row["seed"])]).resolve()
        assert (store.run_dir(row["run_id"]) / "eval.json").read_text() == str(source_dir)
        values = [v for _, _, name, v in store.series([row["run_id"]])[row["run_id"]] if name == "eval_score"]
        assert values == [pytest.approx((0.05 + row["seed"]) * 10)]
    # Run again: the evaluations are reused, not repeated.
    events = []
    orchestrate.execute(loaded, store, events.append)
    assert {e.kind for e in events} == {"cached"}


def test_a_failing_smoke_stage_stops_the_study(tmp_path, write_study, scripts):
    text = study(scripts[0], """\
        main: {arms: [a, b]}
        test_run: {arms: [b], smoke: true, config: {crash: true}}
        """)
    store = Store(tmp_path / "store")
    with pytest.raises(SmokeFailed) as info:
        orchestrate.execute(load(write_study(text)), store)
    assert "smoke stage 'test_run' failed" in info.value.message
    assert "b seed 0: failed (crashed)" in info.value.message and info.value.hint
    runs = records_by_stage(store)
    assert [r.status for r in runs["test_run"]] == ["failed"]
    assert {r.status for r in runs["main"]} == {"queued"} and not any(r.attempts for r in runs["main"])


def test_a_passing_smoke_stage_runs_first(tmp_path, write_study, scripts):
    text = study(scripts[0], """\
        main: {arms: [a, b]}
        test_run: {arms: [b], smoke: true, config: {sleep: 0.01}}
        """)
    store = Store(tmp_path / "store")
    orchestrate.execute(load(write_study(text)), store)
    runs = records_by_stage(store)
    assert min(r.started_at for r in runs["main"]) >= runs["test_run"][0].ended_at
    assert {r.status for rs in runs.values() for r in rs} == {"done"}


def test_cloud_evaluations_need_a_results_bucket(tmp_path, write_study, scripts):
    from studyc.errors import RunError
    from studyc.stageflow import check_cloud_evaluations

    text = study(scripts[0], f"""\
        train: {{arms: [a, b], promote: {{top: 1}}}}
        full_eval: {{arms: promoted, needs: [train], evaluate: "{sys.executable} {scripts[1]}"}}
        """)
    with pytest.raises(RunError) as info:
        check_cloud_evaluations(load(write_study(text)).study)
    assert "stage 'full_eval' evaluates earlier runs" in info.value.message and "cloud: {results:" in info.value.hint
    check_cloud_evaluations(load(write_study(text + "cloud: {results: 's3://b/p'}\n")).study)
