"""Config values reach a run only shell-quoted: hostile strings arrive as literal text and
run nothing, both in the local path (a real `studyc run`) and the cloud path (a compiled
task's `run:` script executed by bash)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

STUDYC = [sys.executable, "-m", "studyc.cli"]

PROBE = """\
import json, sys, studyc
cfg = studyc.config()
with open(cfg["out"], "w") as fh:
    json.dump({"argv": sys.argv[1:], "config": cfg}, fh)
studyc.log(step=0, m=1.0)
"""


def hostile_values(sentinel: Path) -> dict[str, str]:
    return {
        "subst": f"$(touch {sentinel})",
        "backticks": f"`touch {sentinel}`",
        "chain": "; rm -rf ~/studyc-canary",
        "quotes": f"' ; touch {sentinel}; echo '",
        "newline": f"a\nb && touch {sentinel}",
        "variable": "$HOME ${PATH}",
        "pipe": "--x=1 | tee /dev/null &",
    }


def write_study(root: Path, out: Path, sentinel: Path) -> tuple[Path, dict[str, str]]:
    (root / "probe.py").write_text(PROBE)
    values = hostile_values(sentinel)
    placeholders = " ".join(f"{{config.{k}}}" for k in values)
    config = {**values, "out": str(out)}
    study = root / "study.yaml"
    study.write_text(
        f"study: shell-safety\n"
        f"run:\n"
        f"  command: {json.dumps(f'{sys.executable} probe.py {placeholders} --seed {{seed}}')}\n"
        f"  config: {json.dumps(config)}\n"
        f"  resources: {{hours: 0.01}}\n"
        "metrics: {m: {}}\n"
        "arms: {a: {}}\n")
    return study, values


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A HOME whose canary directory must survive; `rm -rf ~` would only ever reach it."""
    home = tmp_path / "home"
    (home / "studyc-canary").mkdir(parents=True)
    return home


def assert_literal(received: dict, values: dict[str, str], sentinel: Path, home: Path) -> None:
    assert received["argv"] == [*values.values(), "--seed", "0"]
    assert {k: received["config"][k] for k in values} == values
    assert not sentinel.exists()
    assert (home / "studyc-canary").is_dir()


def test_local_run_passes_hostile_values_literally(tmp_path, home):
    sentinel, out = tmp_path / "PWNED", tmp_path / "received.json"
    study, values = write_study(tmp_path, out, sentinel)
    env = dict(os.environ, HOME=str(home), STUDYC_HOME=str(tmp_path / ".studyc"))
    result = subprocess.run([*STUDYC, "run", str(study), "--out", str(tmp_path / "report")], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert out.exists(), result.stdout + result.stderr  # the run ran (the report after it is not the point here)
    assert_literal(json.loads(out.read_text()), values, sentinel, home)


def test_cloud_task_script_passes_hostile_values_literally(tmp_path, home, sky):
    sentinel, out = tmp_path / "PWNED", tmp_path / "received.json"
    study, values = write_study(tmp_path, out, sentinel)
    build = tmp_path / "build"
    compiled = subprocess.run([*STUDYC, "compile", str(study), "-o", str(build)], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)
    assert compiled.returncode == 0, compiled.stderr
    (task_file,) = (build / "tasks").glob("*.sky.yaml")
    task = sky.Task.from_yaml(str(task_file))
    os.chdir(build)  # SkyPilot resolves the workdir from where `sky jobs launch` runs
    try:
        task.expand_and_validate_workdir()
    finally:
        os.chdir(tmp_path)
    # What the cloud machine does: the task's envs, then `run:` under bash in the workdir.
    env = {"PATH": os.environ["PATH"], "HOME": str(home), **task.envs}
    result = subprocess.run(["bash", "-c", task.run], cwd=task.workdir, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_literal(json.loads(out.read_text()), values, sentinel, home)
    run_dir = home / "studyc-results" / "shell-safety" / task.envs["STUDYC_RUN_ID"]
    assert (run_dir / "exit_code").read_text() == "0\n"
    assert json.loads((run_dir / "config.json").read_text()) == json.loads(task.envs["STUDYC_CONFIG_JSON"])
    assert (run_dir / "metrics.jsonl").exists()


def test_cloud_task_script_reports_the_runs_exit_status(tmp_path, home, sky):
    (tmp_path / "study.yaml").write_text("study: fails\nrun: {command: 'exit 3', resources: {hours: 0.01}}\n"
                                         "metrics: {m: {}}\narms: {a: {}}\n")
    subprocess.run([*STUDYC, "compile", "study.yaml", "-o", "build"], cwd=tmp_path, check=True, capture_output=True)
    (task_file,) = (tmp_path / "build" / "tasks").glob("*.sky.yaml")
    task = sky.Task.from_yaml(str(task_file))
    env = {"PATH": os.environ["PATH"], "HOME": str(home), **task.envs}
    result = subprocess.run(["bash", "-c", task.run], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 3
    run_dir = home / "studyc-results" / "fails" / task.envs["STUDYC_RUN_ID"]
    assert (run_dir / "exit_code").read_text() == "3\n"
