"""The command line as a user meets it: exit codes, positioned errors, JSON shapes."""

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from studyc.cli import main

REPO = Path(__file__).resolve().parents[1]
PHASE3 = str(REPO / "studies" / "burgers_phase3_ablation.yaml")


def invoke(*args, env=None):
    return CliRunner().invoke(main, list(args), env=env)


def test_validate_ok():
    result = invoke("validate", PHASE3)
    assert result.exit_code == 0, result.output
    assert "ok" in result.output


def test_validate_broken_study_names_the_line_without_traceback(write_study):
    path = write_study(Path(PHASE3).read_text().replace("check: pure_256.nrmse", "check: pure_265.nrmse"))
    result = invoke("validate", str(path))
    assert result.exit_code == 1
    assert f"{path}:" in result.output and "pure_265" in result.output and "did you mean 'pure_256'" in result.output
    assert "Traceback" not in result.output


def test_validate_json_for_editors(write_study):
    path = write_study("study: s\nrun: {command: x}\nmetrics: {m: {}}\narms: {a: {confg: {}}}\n")
    result = invoke("validate", "--json", str(path))
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["ok"] is False
    err = data["errors"][0]
    assert (err["line"], err["col"]) == (4, 12) and "confg" in err["message"] and "config" in err["hint"]


def test_plan_json_shape():
    result = invoke("plan", PHASE3, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert {"usd", "gpu_hours", "wall_hours"} <= data["totals"].keys()
    assert len(data["runs"]) == 3
    assert 4.0 <= data["totals"]["usd"] <= 4.5  # the seed's own estimate: ~$4-4.50
    assert data["budget"]["ok"] is True


def test_over_budget_run_is_refused_with_the_numbers(write_study, store_home):
    text = Path(PHASE3).read_text().replace("budget: {usd: 4.50,", "budget: {usd: 2.00,")
    path = write_study(text)
    result = invoke("run", str(path), "--store", str(store_home))
    assert result.exit_code == 1
    assert "over budget" in result.output and "exceeds budget.usd = $2.00" in result.output


def test_run_on_gpu_without_a_gpu_says_what_to_do(write_study, store_home, toy_trainer, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no nvidia-smi: no GPU here
    path = write_study(f"""\
        study: g
        run: {{command: {sys.executable} {toy_trainer}, config: {{base: 0.1}}, resources: {{accelerators: "A100:1"}}}}
        metrics: {{nrmse: {{goal: min}}}}
        arms: {{a: {{}}}}
        """)
    result = invoke("run", str(path), "--store", str(store_home))
    assert result.exit_code == 1
    assert "needs A100:1" in result.output and "--profile cpu" in result.output


def test_unknown_profile(store_home):
    result = invoke("run", PHASE3, "--profile", "cpuu", "--store", str(store_home))
    assert result.exit_code == 1 and "did you mean 'cpu'" in result.output


def test_help_lists_the_commands():
    result = subprocess.run([sys.executable, "-m", "studyc.cli", "--help"], capture_output=True, text=True)
    for command in ("validate", "plan", "run", "status", "report"):
        assert command in result.stdout


def test_exit_codes_tell_usage_user_error_and_bug_apart(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the crash log goes under the working directory
    assert invoke("plann", PHASE3).exit_code == 2  # usage: click's own code
    assert invoke("plan", PHASE3, "--no-such-flag").exit_code == 2
    assert invoke("plan", str(tmp_path / "missing.yaml")).exit_code == 1  # user error

    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("studyc.spec.loader.validate_file", bug)
    result = invoke("validate", PHASE3)
    assert result.exit_code == 4, result.output
    assert "internal error in studyc" in result.output and "Traceback" not in result.output


def test_help_documents_the_exit_codes():
    result = invoke("--help")
    assert result.exit_code == 0
    text = result.output
    assert "Exit codes:" in text
    for code in ("0  ok", "1  a user error", "2  usage", "3  --fail-on", "4  an internal error"):
        assert code in text


def test_output_cut_short_by_its_reader_is_no_error():
    """`studyc plan ... | head -1`: the rest of the output has nowhere to go, and that is fine."""
    done = subprocess.run(f"{sys.executable} -m studyc.cli plan {REPO / 'studies' / 'burgers_sota_sweep.yaml'} --explain "
                          "| head -1", shell=True, capture_output=True, text=True, cwd=REPO)
    assert done.stdout.startswith("code ") and done.stderr == ""
