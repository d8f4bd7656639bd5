"""End to end through the real CLI: a tiny Burgers study really trains, is judged and
reported; running it again reuses every run; status and report read the store."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STUDYC = [sys.executable, "-m", "studyc.cli"]

TINY = f"""\
study: tiny-burgers
run:
  command: python -m examples.burgers.train
  workdir: {REPO}
  config: {{architecture: u_shaped, tokens: 8, hidden: 16, depth: 1, heads: 2, epochs: 2, n_train: 16, n_test: 8,
           n_x: 32, n_t: 6, batch_size: 8, rollout_steps: 4, lr: 3.0e-3}}
  seeds: [0, 1]
  resources: {{hours: 0.002}}
metrics:
  nrmse: {{goal: min}}
  train_time: {{goal: min, unit: s}}
baselines:
  identity: {{nrmse: 0.5, source: "copying u(t) forward scores ~0.1; a loose bound"}}
arms:
  pure: {{config: {{architecture: pure}}}}
  ushaped: {{}}
hypotheses:
  H1: {{claim: pure beats a loose bound, check: pure.nrmse <= identity.nrmse}}
  H2: {{claim: pure within 5% of U-shaped, check: "within(pure.nrmse, ushaped.nrmse, rel=0.05)"}}
decision:
  - if: H1 and H2
    then: promote
  - else: iterate
budget: {{parallel: 2}}
"""


def studyc(*args, cwd):
    env = dict(os.environ, STUDYC_HOME=str(cwd / ".studyc"), STUDYC_CACHE=str(cwd / "cache"))
    return subprocess.run(STUDYC + list(args), cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("e2e")
    (cwd / "tiny.yaml").write_text(TINY)
    first = studyc("run", "tiny.yaml", "--out", "out", cwd=cwd)
    return cwd, first


def test_run_trains_judges_and_reports(ran):
    cwd, result = ran
    assert result.returncode == 0, result.stdout + result.stderr
    assert "report: out/ablation_report.md" in result.stdout
    out = cwd / "out"
    for name in ("ablation_report.md", "comparison.csv", "verdicts.json", "results.json", "plots/nrmse_per_arm.png"):
        assert (out / name).exists(), name
    verdicts = json.loads((out / "verdicts.json").read_text())
    assert verdicts["metadata"]["kind"] == "verdicts" and verdicts["metadata"]["schema_version"] == 1
    assert verdicts["hypotheses"]["H1"]["status"] in {"PASS", "FAIL", "INCONCLUSIVE"}
    results = json.loads((out / "results.json").read_text())
    seeds = [r["values"]["nrmse"] for r in results["arms"]["pure"]["runs"]]
    assert len(seeds) == 2 and seeds[0] != seeds[1]  # real training: seeds differ
    report = (out / "ablation_report.md").read_text()
    assert "| H1 |" in report and "## Metrics per arm" in report and "Decision" in report
    csv = (out / "comparison.csv").read_text().splitlines()
    assert csv[0].startswith("arm,stage,source,n,nrmse_mean") and len(csv) == 4  # 2 arms and the baseline


def test_second_run_reuses_every_run(ran):
    cwd, _ = ran
    again = studyc("run", "tiny.yaml", "--out", "out2", cwd=cwd)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("reuse ") == 4 and "start " not in again.stdout


def test_status_json(ran):
    cwd, _ = ran
    result = studyc("status", "tiny.yaml", "--json", cwd=cwd)
    runs = json.loads(result.stdout)["runs"]
    assert len(runs) == 4
    assert set(runs[0]) >= {"id", "arm", "stage", "seed", "status", "attempts", "failure", "started_at", "ended_at"}
    assert {r["status"] for r in runs} == {"done"}


def test_report_rerenders_without_running(ran):
    cwd, _ = ran
    result = studyc("report", "tiny.yaml", "--out", "again", cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert (cwd / "again" / "ablation_report.md").exists()
    assert "start " not in result.stdout
