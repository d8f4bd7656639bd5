"""`studyc run` and `studyc report` end to end: a small study really runs (one arm
crashes on one seed), is judged and rendered; then the report is re-rendered from the
store, with edited checks, a user template, --fail-on and a shared leaderboard."""

import csv
import json
import os
import subprocess
import sys

import pytest

STUDYC = [sys.executable, "-m", "studyc.cli"]

TRAINER = """\
import studyc
c = studyc.config()
if c.get("crash_seed") == c["seed"]:
    raise SystemExit("boom: this seed always crashes")
for i in range(4):
    studyc.log(step=i, loss=1.0 / (i + 1), nrmse=c["base"] + 0.002 * c["seed"] + 0.01 / (i + 1))
"""

# Final nrmse = base + 0.002 * seed + 0.0025.
#   good   base 0.040 -> [0.0425, 0.0445]: mean 0.0435, half-width 12.706 * 0.001 = 0.0127
#   close  base 0.058 -> [0.0605, 0.0625]: mean 0.0615, the same half-width: <= 0.0625 is open
#   broken base 0.040, seed 1 crashes
STUDY = """\
study: toy-report
title: A toy study for the report
run:
  command: {python} train.py
  config: {{base: 0.05}}
  seeds: [0, 1]
  resources: {{hours: 0.001}}
metrics:
  nrmse: {{goal: min}}
  loss: {{goal: min, reduce: best}}
baselines:
  ref: {{nrmse: 0.07, source: an earlier study}}
arms:
  good: {{config: {{base: 0.040}}, label: the good one}}
  close: {{config: {{base: 0.058}}}}
  broken: {{config: {{base: 0.040, +crash_seed: 1}}}}
hypotheses:
  H1: {{claim: good beats the reference, check: good.nrmse <= ref.nrmse}}
  H2: {{claim: close reaches 0.0625, check: close.nrmse <= {h2}}}
  H3: {{claim: broken beats the reference, check: broken.nrmse <= ref.nrmse}}
{h4}
expect:
  good: {{nrmse: [0.03, 0.05]}}
claims:
  "good works": [H1]
  "everything works": [H1, H2, H3]
decision:
  - {{if: H1 and H2, then: ship it}}
  - {{else: iterate}}
budget: {{parallel: 3}}
report: {{leaderboard: board.csv}}
"""
H4 = "  H4: {claim: good is worse than the reference, check: good.nrmse >= ref.nrmse}"


def study_text(h2="0.0625", h4=H4):
    return STUDY.format(python=sys.executable, h2=h2, h4=h4)


def studyc(*args, cwd):
    env = dict(os.environ, STUDYC_HOME=str(cwd / ".studyc"))
    return subprocess.run(STUDYC + list(args), cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("report")
    (cwd / "train.py").write_text(TRAINER)
    (cwd / "toy.yaml").write_text(study_text())
    result = studyc("run", "toy.yaml", "--out", "out", cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return cwd, result


def test_the_report_carries_every_section(ran):
    cwd, result = ran
    report = (cwd / "out" / "ablation_report.md").read_text()
    for section in ("## Summary", "## Hypotheses", "## Metrics per arm", "## Expected vs observed", "## Claims",
                    "## Decision rule", "## Runs", "## Budget", "## Plots", "## Leaderboard"):
        assert section in report, section
    assert "**Decision:** not reached yet" in report
    assert "| H1 | good beats the reference | `good.nrmse <= ref.nrmse` | 0.0435 ± 0.013 | ≤ 0.07 | 2 | **PASS** |" in report
    assert "| H2 |" in report and "**INCONCLUSIVE**" in report and "more seeds per arm would likely" in report
    assert "broken.nrmse: 1 of 2 failed (crashed)" in report and "boom: this seed always crashes" in report
    assert "| good | nrmse | [0.03, 0.05] | 0.0435 [0.03079, 0.05621] | 2 | hit |" in report
    assert "| good works | H1: PASS | **supported** |" in report
    assert "| everything works | H1: PASS, H2: INCONCLUSIVE, H3: INCOMPLETE | **partial** |" in report
    assert "![nrmse per arm](plots/nrmse_per_arm.png)" in report and "![nrmse learning curves]" in report
    assert "Pre-registration:** checks locked at" in report
    assert "INCOMPLETE    H3: broken.nrmse" in result.stdout.replace("INCOMPLETE   ", "INCOMPLETE    ")


def test_comparison_csv_plots_and_versioned_json(ran):
    cwd, _ = ran
    out = cwd / "out"
    rows = list(csv.DictReader((out / "comparison.csv").open()))
    assert [(r["arm"], r["source"], r["n"]) for r in rows] == [
        ("good", "runs", "2"), ("close", "runs", "2"), ("broken", "runs", "1"), ("ref", "baseline", "")]
    assert float(rows[0]["nrmse_mean"]) == pytest.approx(0.0435) and float(rows[0]["nrmse_std"]) == pytest.approx(0.0014142, rel=1e-4)
    assert rows[0]["config.base"] == "0.04" and rows[0]["label"] == "the good one" and rows[3]["nrmse_mean"] == "0.07"
    for png in ("nrmse_per_arm.png", "nrmse_curves.png"):
        assert (out / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    verdicts = json.loads((out / "verdicts.json").read_text())
    results = json.loads((out / "results.json").read_text())
    for doc, kind in ((verdicts, "verdicts"), (results, "results")):
        assert doc["metadata"]["kind"] == kind and doc["metadata"]["schema_version"] == 1
    assert verdicts["hypotheses"]["H2"]["more_seeds"] >= 1 and verdicts["hypotheses"]["H2"]["leaning"] == "PASS"
    assert verdicts["preregistration"]["status"] == "locked" and verdicts["preregistration"]["warning"] is False
    good = results["arms"]["good"]
    assert [r["series"]["nrmse"]["last"] for r in good["runs"]] == pytest.approx([0.0425, 0.0445])
    assert good["runs"][0]["series"]["loss"] == pytest.approx({"last": 0.25, "min": 0.25, "max": 1.0, "mean": 0.5208333,
                                                                "best": 0.25})
    assert good["metrics"]["nrmse"]["ci_lo"] == pytest.approx(0.0435 - 12.706 * 0.001, rel=1e-3)


def test_report_re_renders_without_running_and_keeps_one_leaderboard_row_per_arm(ran):
    cwd, _ = ran
    board = cwd / "board.csv"
    first = board.read_text()
    rows = list(csv.DictReader(first.splitlines()))
    assert list(rows[0])[:4] == ["run_id", "timestamp", "label", "nrmse"]
    assert {"wall_clock (s)", "params", "tags"} <= set(rows[0])
    assert [(r["label"], r["n"]) for r in rows] == [("the good one", "2"), ("close", "2"), ("broken", "1")]
    assert float(rows[0]["nrmse"]) == pytest.approx(0.0435) and len(rows[0]["run_id"].split()) == 2
    result = studyc("report", "toy.yaml", "--out", "again", cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert "start " not in result.stdout and (cwd / "again" / "ablation_report.md").exists()
    assert [r["run_id"] for r in csv.DictReader(board.open())] == [r["run_id"] for r in rows]


def test_checks_edited_after_results_are_flagged(ran):
    cwd, _ = ran
    (cwd / "edited.yaml").write_text(study_text(h2="0.07"))
    result = studyc("report", "edited.yaml", "--out", "edited", cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert "WARNING: the checks changed after results existed" in result.stdout
    report = (cwd / "edited" / "ablation_report.md").read_text()
    assert "> **WARNING: the checks changed after results existed." in report
    prereg = json.loads((cwd / "edited" / "verdicts.json").read_text())["preregistration"]
    assert prereg["warning"] is True and prereg["status"] == "changed after results"
    assert prereg["locked_hash"] != prereg["current_hash"]


def test_fail_on_turns_verdicts_into_an_exit_code(ran):
    cwd, _ = ran
    assert studyc("report", "toy.yaml", "--out", "x", "--fail-on", "fail", cwd=cwd).returncode == 3  # H4 FAILs
    (cwd / "nofail.yaml").write_text(study_text(h4=""))
    assert studyc("report", "nofail.yaml", "--out", "y", cwd=cwd).returncode == 0
    assert studyc("report", "nofail.yaml", "--out", "y", "--fail-on", "fail", cwd=cwd).returncode == 0
    assert studyc("report", "nofail.yaml", "--out", "y", "--fail-on", "inconclusive", cwd=cwd).returncode == 3


def test_a_user_template_overrides_the_built_in_one(ran):
    cwd, _ = ran
    (cwd / "templates").mkdir()
    try:
        (cwd / "templates" / "ablation_report.md.j2").write_text(
            "Custom {{ study.study }}:{% for h in hypotheses %} {{ h.name }}={{ h.status }}{% endfor %}\n")
        assert studyc("report", "toy.yaml", "--out", "custom", cwd=cwd).returncode == 0
        assert (cwd / "custom" / "ablation_report.md").read_text() == \
            "Custom toy-report: H1=PASS H2=INCONCLUSIVE H3=INCOMPLETE H4=FAIL\n"
        (cwd / "templates" / "ablation_report.md.j2").write_text("line one\n{{ no_such_name.x }}\n")
        result = studyc("report", "toy.yaml", "--out", "custom", cwd=cwd)
        assert result.returncode == 1 and "ablation_report.md.j2:2" in result.stderr and "no_such_name" in result.stderr
    finally:
        for f in (cwd / "templates").iterdir():
            f.unlink()
        (cwd / "templates").rmdir()


def test_report_of_a_study_that_never_ran_says_so(ran):
    cwd, _ = ran
    (cwd / "other.yaml").write_text(study_text().replace("study: toy-report", "study: never-ran"))
    result = studyc("report", "other.yaml", cwd=cwd)
    assert result.returncode == 1 and "holds no runs of study 'never-ran'" in result.stderr
    assert "Traceback" not in result.stderr
