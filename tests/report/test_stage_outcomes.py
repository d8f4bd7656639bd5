"""Verdicts and report parts of the stage language: failed(x) in decision rules (seed
003's DEBUG branch), claims with a check of their own (seed 001's 70% bar), named
scenarios (seed 003's optimistic / conservative / worst), the smoke stage's stop, the
evaluation stage's results, and links to the artifacts runs write."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from studyc.cli import main
from studyc.report.collect import ArmResult, Results, RunResult
from studyc.report.judge import FAIL, INCOMPLETE, PASS, Judge
from studyc.spec.model import Study


def make(statuses: dict[tuple[str, int], str] | None = None, values: dict[str, list[float]] | None = None, **extra):
    data = {"study": "t", "run": {"command": "true"}, "metrics": {"acc": {"goal": "max"}},
            "arms": {"a": {}, "b": {}}, "stages": {"train": {"arms": ["a", "b"]}}}
    data.update(extra)
    study = Study.model_validate(data)
    values = values or {"a": [0.64, 0.645, 0.65], "b": [0.35, 0.36, 0.37]}
    statuses = statuses or {}
    arms = {}
    for arm, vals in values.items():
        runs = []
        for i, v in enumerate(vals):
            status = statuses.get((arm, i), "done")
            runs.append(RunResult(f"{arm}{i}", arm, "train", i, status, "crashed" if status == "failed" else None, 1,
                                  {"acc": v}))
        arms[arm] = ArmResult(arm, "train", "runs", runs)
    return Judge(study, Results(study, None, ["train"], {"train": arms}, dict(arms), ["acc"]))


DEBUG = [{"if": "failed(a) or failed(train)", "then": "DEBUG & ADJUST CONFIG"}, {"if": "a.acc > b.acc", "then": "go on"}]


def test_a_crashed_run_reaches_the_debug_branch():
    judge = make({("a", 1): "failed"}, decision=DEBUG)
    judge.judge_hypotheses()
    decision = judge.decision()
    assert decision["status"] == "reached" and decision["then"] == "DEBUG & ADJUST CONFIG"
    verdict = judge.condition(judge.parse("failed(a)"))
    assert verdict.status == PASS and "1 of 3 runs of arm a failed (crashed)" in verdict.sentence


def test_without_failures_the_decision_goes_on():
    judge = make(decision=DEBUG)
    assert judge.condition(judge.parse("failed(train)")).status == FAIL
    assert judge.decision()["then"] == "go on"


def test_failed_is_undecided_while_runs_have_not_ended():
    judge = make({("b", 0): "running"}, decision=DEBUG)
    assert judge.condition(judge.parse("failed(b)")).status == INCOMPLETE
    assert judge.condition(judge.parse("failed(a)")).status == FAIL
    assert judge.decision()["status"] == "pending"


def test_a_claim_check_keeps_the_seeds_bar():
    # Seed 001: "Stability fixes work: >70% final vs 36%", Partial: 0.645 beats 0.36 but misses 70%.
    judge = make(hypotheses={"H1": {"claim": "fixed beats baseline", "check": "a.acc > b.acc"}},
                 claims={"Stability fixes work: >70% final vs 36%": {"hypotheses": ["H1"], "check": "a.acc > 0.70"},
                         "plain": ["H1"]})
    verdicts = judge.all()
    claim = verdicts["claims"]["Stability fixes work: >70% final vs 36%"]
    assert claim["status"] == "partial" and claim["hypotheses"] == {"H1": PASS}
    assert claim["check"]["status"] == FAIL and "a.acc = 0.645" in claim["check"]["sentence"]
    assert verdicts["claims"]["plain"]["status"] == "supported" and verdicts["claims"]["plain"]["check"] is None


SCENARIOS = {"optimistic": {"a": {"acc": [0.7, 1.0]}}, "conservative": {"a": {"acc": [0.6, 0.7]}, "b": {"acc": [0.3, 0.4]}},
             "worst": {"a": {"acc": [None, 0.5]}}}


def test_the_report_says_which_scenario_the_observations_match():
    scenarios = make(scenarios=SCENARIOS).all()["scenarios"]
    assert scenarios["matched"] == ["conservative"]
    assert scenarios["summary"] == "the observations match 'conservative'"
    assert scenarios["scenarios"]["optimistic"]["status"] == "miss"
    assert scenarios["scenarios"]["conservative"]["hits"] == 2


def test_no_scenario_matching_names_the_closest():
    scenarios = make(scenarios=SCENARIOS, values={"a": [0.66, 0.68, 0.67], "b": [0.5, 0.5, 0.5]}).all()["scenarios"]
    assert scenarios["matched"] == []
    assert scenarios["summary"] == "no scenario matches every range; closest: 'conservative' (1 of 2 ranges hit)"


# ---------------------------------------------------------------- end to end, in-process

TRAIN = """\
import json, sys, studyc
c = studyc.config()
if c.get("crash"):
    sys.exit("boom")
(studyc.checkpoint_dir() / "model.txt").write_text(str(c["base"]))
(studyc.run_dir() / "compare.json").write_text(json.dumps({"all_criteria_met": True}))
studyc.log(step=0, nrmse=c["base"] + 0.001 * c["seed"])
"""
EVALUATE = """\
import studyc
studyc.log(latency_ms=1000 * float((studyc.source_run_dir() / "checkpoints" / "model.txt").read_text()))
"""


def write(tmp_path: Path, stages: str) -> Path:
    (tmp_path / "train.py").write_text(TRAIN)
    (tmp_path / "evaluate.py").write_text(EVALUATE)
    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent(f"""\
        study: e2e
        run:
          command: {sys.executable} train.py
          config: {{base: 0.05, crash: false}}
          seeds: [0, 1]
          resources: {{hours: 0.001}}
          artifacts: [compare.json, checkpoints/*.txt, never.bin]
        metrics:
          nrmse: {{goal: min}}
          latency_ms: {{goal: min, unit: ms}}
        arms:
          a: {{}}
          b: {{config: {{base: 0.07}}, artifacts: [compare.json]}}
        hypotheses:
          H1: {{claim: a is better, check: a.nrmse < b.nrmse}}
        budget: {{parallel: 2}}
        stages:
        """) + textwrap.indent(textwrap.dedent(stages), "  "))
    return path


def run(tmp_path: Path, path: Path):
    env = {"STUDYC_HOME": str(tmp_path / ".studyc")}
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        return CliRunner(env=env).invoke(main, ["run", str(path), "--out", str(tmp_path / "report")])
    finally:
        os.chdir(here)


def test_evaluation_results_and_artifact_links(tmp_path):
    path = write(tmp_path, f"""\
        train: {{arms: [a, b], promote: {{top: 1}}}}
        bench: {{arms: promoted, needs: [train], evaluate: "{sys.executable} evaluate.py", resources: {{hours: 0.001}}}}
        """)
    result = run(tmp_path, path)
    assert result.exit_code == 0, result.output
    report = (tmp_path / "report" / "ablation_report.md").read_text()
    data = json.loads((tmp_path / "report" / "results.json").read_text())
    evaluated = data["arms"]["a"]
    assert evaluated["stage"] == "bench"
    # The evaluation's own metric, beside the training metrics of the run it evaluated.
    assert evaluated["metrics"]["latency_ms"]["mean"] == pytest.approx(50.0)
    assert evaluated["metrics"]["nrmse"]["mean"] == pytest.approx(0.0505)
    assert all(r["source"] for r in evaluated["runs"])
    # Every link resolves, relative to the report, to the file the run wrote.
    links = [line for line in report.splitlines() if line.startswith("- a [train] seed 0:")]
    assert len(links) == 1 and "not written: never.bin" in links[0], report
    for href in ("compare.json", "checkpoints/model.txt"):
        target = links[0].split(f"[{href}](")[1].split(")")[0]
        assert not os.path.isabs(target) and (tmp_path / "report" / target).resolve().is_file()
    assert "- b [train] seed 1: [compare.json](" in report and "never.bin" not in report.split("- b [train] seed 1:")[1].splitlines()[0]


def test_a_failed_smoke_stage_is_in_the_report(tmp_path):
    path = write(tmp_path, """\
        test_run: {arms: [a], smoke: true, config: {crash: true}, seeds: [0]}
        main: {arms: [a, b]}
        """)
    result = run(tmp_path, path)
    assert result.exit_code == 1
    assert "smoke stage 'test_run' failed" in result.output and "Traceback" not in result.output
    report = (tmp_path / "report" / "ablation_report.md").read_text()
    assert "The smoke stage `test_run` failed, so the study stopped before its other stages:** a seed 0 (crashed)" in report
    verdicts = json.loads((tmp_path / "report" / "verdicts.json").read_text())
    assert verdicts["smoke"]["stage"] == "test_run"
    # The smoke run is no result of arm a's: the hypothesis waits for the real runs.
    assert verdicts["hypotheses"]["H1"]["status"] == "INCOMPLETE"
