"""One path from study to report through artifacts that are read back: `studyc run`
compiles once and leaves plan.json beside the report; `studyc report` renders from the
store and that plan.json (no compile) with the same verdicts, and says when the study
changed since the runs. Artifacts are versioned, upgraded, and share an invocation id."""

import json
import math
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from studyc import artifacts
from studyc.artifacts import envelope, read_artifact, write_json
from studyc.cli import main
from studyc.compiler import plan as plan_module
from studyc.errors import RunError

STUDY = """\
study: artifacts-toy
run:
  command: {python} {trainer}
  config: {{base: 0.05}}
  seeds: [0, 1]
  resources: {{hours: 0.001}}
metrics:
  nrmse: {{goal: min}}
baselines:
  ref: {{nrmse: 0.2, source: a loose bound}}
arms:
  a: {{}}
  b: {{config: {{base: 0.06}}}}
hypotheses:
  H1: {{claim: a beats the bound, check: a.nrmse <= {threshold}}}
  H2: {{claim: a beats b, check: a.nrmse < b.nrmse}}
"""


@pytest.fixture
def counted(monkeypatch):
    """How often the compiler compiled (and looked up the code version, git included)."""
    calls = {"compile": 0, "code_version": 0}
    compile_, code_version = plan_module.Compiler.compile, plan_module.code_version

    def compile_counted(self):
        calls["compile"] += 1
        return compile_(self)

    def code_version_counted(workdir):
        calls["code_version"] += 1
        return code_version(workdir)

    monkeypatch.setattr(plan_module.Compiler, "compile", compile_counted)
    monkeypatch.setattr(plan_module, "code_version", code_version_counted)
    return calls


def _body(path):
    data = json.loads(path.read_text())
    meta = data.pop("metadata")
    return meta, data


def test_run_compiles_once_and_report_reads_the_plan_back(write_study, toy_trainer, tmp_path, counted):
    path = write_study(STUDY.format(python=sys.executable, trainer=toy_trainer, threshold="ref.nrmse"))
    store, out = tmp_path / "store", tmp_path / "out"
    ran = CliRunner().invoke(main, ["run", str(path), "--store", str(store), "--out", str(out)])
    assert ran.exit_code == 0, ran.output
    assert counted == {"compile": 1, "code_version": 1}
    plan_meta, plan = _body(out / "plan.json")
    run_meta, run_verdicts = _body(out / "verdicts.json")
    results_meta, _ = _body(out / "results.json")
    assert plan_meta["kind"] == "plan" and plan_meta["schema_version"] == artifacts.SCHEMA_VERSIONS["plan"]
    assert plan_meta["invocation_id"] == run_meta["invocation_id"] == results_meta["invocation_id"]
    assert len(plan["runs"]) == 4 and plan["totals"]["runs"] == 4

    counted.update(compile=0, code_version=0)
    again = CliRunner().invoke(main, ["report", str(path), "--store", str(store), "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert counted == {"compile": 0, "code_version": 0}  # rendered from the store and plan.json
    assert "changed since" not in again.output
    report_meta, report_verdicts = _body(out / "verdicts.json")
    assert report_verdicts == run_verdicts
    assert report_meta["invocation_id"] != run_meta["invocation_id"]  # another command
    assert _body(out / "plan.json")[0] == plan_meta  # the run's plan is left as it was

    path.write_text(STUDY.format(python=sys.executable, trainer=toy_trainer, threshold="0.01"))
    changed = CliRunner().invoke(main, ["report", str(path), "--store", str(store), "--out", str(out)])
    assert changed.exit_code == 0, changed.output
    assert "the study changed since its runs" in changed.output and plan_meta["spec_hash"] in changed.output
    assert counted["compile"] == 1
    assert _body(out / "verdicts.json")[1]["hypotheses"]["H1"]["status"] == "FAIL"


def test_reader_checks_kind_and_version_and_upgrades(tmp_path, monkeypatch):
    path = tmp_path / "verdicts.json"
    assert read_artifact(path, "verdicts") is None
    write_json(path, envelope("verdicts", "abc", {"hypotheses": {}}))
    assert read_artifact(path, "verdicts")["hypotheses"] == {}
    with pytest.raises(RunError, match="not a studyc plan artifact"):
        read_artifact(path, "plan")

    monkeypatch.setitem(artifacts.SCHEMA_VERSIONS, "verdicts", 2)
    with pytest.raises(RunError, match="cannot upgrade"):
        read_artifact(path, "verdicts")
    monkeypatch.setitem(artifacts.UPGRADES, ("verdicts", 1), lambda d: {**d, "claims": d.get("claims", {})})
    upgraded = read_artifact(path, "verdicts")
    assert upgraded["claims"] == {} and upgraded["metadata"]["schema_version"] == 2

    write_json(path, envelope("verdicts", "abc", {}))  # now written as version 2
    monkeypatch.setitem(artifacts.SCHEMA_VERSIONS, "verdicts", 1)
    with pytest.raises(RunError, match="reads up to version 1"):
        read_artifact(path, "verdicts")
    path.write_text("{not json")
    with pytest.raises(RunError, match="cannot read"):
        read_artifact(path, "verdicts")


def test_reproducible_artifacts_carry_no_invocation_id():
    meta = envelope("plan", "abc", {}, timestamp=False)["metadata"]
    assert "invocation_id" not in meta and "generated_at" not in meta
    first = artifacts.begin_invocation()
    assert envelope("plan", "abc", {})["metadata"]["invocation_id"] == first == artifacts.invocation_id()
    assert artifacts.begin_invocation() != first


def test_artifacts_are_readable_like_ordinary_files(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        write_json(tmp_path / "verdicts.json", envelope("verdicts", "abc", {}))
    finally:
        os.umask(mask)
    assert (tmp_path / "verdicts.json").stat().st_mode & 0o777 == 0o644


def test_an_unchanged_study_file_reads_its_plan_back_across_a_studyc_upgrade(write_study, toy_trainer, tmp_path,
                                                                               counted, monkeypatch):
    """A newer studyc may fill in new defaults (another spec hash): the file did not change,
    so the report neither recompiles nor says the study changed."""
    path = write_study(STUDY.format(python=sys.executable, trainer=toy_trainer, threshold="ref.nrmse"))
    store, out = tmp_path / "store", tmp_path / "out"
    assert CliRunner().invoke(main, ["run", str(path), "--store", str(store), "--out", str(out)]).exit_code == 0
    monkeypatch.setattr("studyc.spec.loader.LoadedStudy.spec_hash", property(lambda self: "a-newer-default"))
    counted.update(compile=0)
    again = CliRunner().invoke(main, ["report", str(path), "--store", str(store), "--out", str(out)])
    assert again.exit_code == 0 and "changed since" not in again.output and counted["compile"] == 0


@pytest.mark.parametrize("data", [
    {"lr": 2**70, "nrmse": math.nan, "gap": [-math.inf, 0.5]},  # past orjson's 64 bits: the json module's path
    {"lr": np.int64(3), "nrmse": np.float64("nan"), "gap": [np.float32(0.5)]},  # numpy numbers
])
def test_artifacts_are_strict_json_with_every_number_exact(tmp_path, data):
    write_json(tmp_path / "a.json", data)
    back = json.loads((tmp_path / "a.json").read_text(), parse_constant=pytest.fail)
    assert back["nrmse"] is None and back["gap"][-1] == 0.5
    assert back["lr"] == data["lr"] and isinstance(back["lr"], int)
