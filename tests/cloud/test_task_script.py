"""What a compiled task does on the machine: SkyPilot's upload wait still runs after the run
script, the log and metrics are closed files a bucket mount uploads, and a fresh machine
gets the project installed (issue 12, items 1 and 5)."""

from __future__ import annotations

import os
import time
import subprocess
from pathlib import Path

import pytest

from studyc.compiler.plan import RunPlan
from studyc.compiler.sky import TORCH_CPU_INDEX, default_setup, run_script

pytest.importorskip("sky", reason="the cloud extra (skypilot) is not installed")
REPO = Path(__file__).resolve().parents[2]


def _run(command: str) -> RunPlan:
    return RunPlan(id="r1", arm="a", stage="main", seed=0, command=command, command_template=command, config={},
                   resources={}, env={}, est_hours=0.1, est_usd=0.0, gpu_hours=0.0)


def _execute(script: str, results: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "STUDYC_RESULTS_DIR": str(results), "STUDYC_STUDY": "s", "STUDYC_RUN_ID": "r1",
           "STUDYC_CONFIG_JSON": '{"a": 1}', "TMPDIR": str(results.parent)}
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)


def test_skypilot_upload_wait_runs_after_the_script_and_sees_its_exit_code(tmp_path):
    from sky.backends.task_codegen import TaskCodeGen

    # SkyPilot appends its wait for a cached bucket mount's uploads to the run script; that
    # block must run (it reads $?), else the run's last files never reach the bucket.
    built = TaskCodeGen.build_task_bash_script(run_script(_run("echo hi; exit 3"), 30))
    tail = "exit $__skypilot_user_exit_code"
    assert built.rstrip().endswith(tail)
    probe = built.rstrip()[: -len(tail)] + 'echo "upload wait ran: $__skypilot_user_exit_code"; ' + tail
    done = _execute(probe, tmp_path / "results")
    assert done.returncode == 3
    assert "upload wait ran: 3" in done.stdout
    run_dir = tmp_path / "results" / "s" / "r1"
    assert (run_dir / "exit_code").read_text() == "3\n"
    assert (run_dir / "log.txt").read_text() == "hi\n"
    assert (run_dir / "config.json").read_text() == '{"a": 1}\n'


def test_log_reaches_the_run_directory_while_the_run_goes_on(tmp_path):
    from studyc import protocol

    # A file on a MOUNT_CACHED bucket is uploaded once closed: the log is copied in, whole.
    script = run_script(_run("echo first; sleep 3; echo second"), 30).replace(
        f"sleep {protocol.LOG_SYNC_S} &", "sleep 1 &")
    proc = subprocess.Popen(["bash", "-c", script], env={
        **os.environ, "STUDYC_RESULTS_DIR": str(tmp_path), "STUDYC_STUDY": "s", "STUDYC_RUN_ID": "r1",
        "STUDYC_CONFIG_JSON": "{}", "TMPDIR": str(tmp_path)}, stdout=subprocess.DEVNULL)
    log = tmp_path / "s" / "r1" / "log.txt"
    try:
        deadline = time.monotonic() + 10
        while not (log.exists() and log.read_text() == "first\n") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert log.read_text() == "first\n"  # live, while the run still sleeps
    finally:
        proc.wait(timeout=30)
    assert log.read_text() == "first\nsecond\n"


def test_metrics_file_is_closed_after_every_record(tmp_path, monkeypatch):
    import studyc

    monkeypatch.setenv("STUDYC_RUN_DIR", str(tmp_path))
    studyc.log(step=0, loss=1.0)
    open_files = {os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")}
    assert str((tmp_path / "metrics.jsonl").resolve()) not in open_files
    studyc.log(step=1, loss=0.5)
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 2


def test_default_setup_installs_the_project_its_torch_extra_and_wandb(tmp_path):
    # studyc's own repository: a project with torch and wandb extras.
    cpu = default_setup(REPO, gpu=False, tracked=True)
    assert f"python3 -m pip install --extra-index-url {TORCH_CPU_INDEX} -e '.[torch,wandb]'" in cpu
    gpu = default_setup(REPO, gpu=True, tracked=False)
    assert "python3 -m pip install -e '.[torch]'" in gpu and TORCH_CPU_INDEX not in gpu  # PyPI's CUDA wheels
    # Not a Python project: its requirements, and wandb when tracked.
    (tmp_path / "requirements.txt").write_text("numpy\n")
    other = default_setup(tmp_path, gpu=True, tracked=True)
    assert "python3 -m pip install -r requirements.txt" in other and "python3 -m pip install wandb" in other
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert "python3 -m pip install -e .\n" in default_setup(tmp_path, gpu=False, tracked=False)


def test_every_seed_study_task_has_a_setup_and_its_own_replaces_it(tmp_path, write_study):
    from studyc.compiler.plan import compile_plan
    from studyc.compiler.sky import write_compiled
    from studyc.spec.loader import load

    import yaml

    loaded = load(REPO / "studies" / "burgers_phase3_ablation.yaml", "cpu")
    compiled = write_compiled(loaded, compile_plan(loaded), tmp_path / "a")
    setup = yaml.safe_load(compiled.tasks[0].read_text())["setup"]
    assert "-e '.[torch,wandb]'" in setup
    own = write_study("""\
        study: own
        run: {command: python t.py, setup: "pip install mylib"}
        metrics: {m: {}}
        arms: {a: {}}
        """)
    loaded = load(own)
    compiled = write_compiled(loaded, compile_plan(loaded), tmp_path / "b")
    assert yaml.safe_load(compiled.tasks[0].read_text())["setup"] == "pip install mylib\n"


def test_no_process_of_the_script_outlives_it(tmp_path):
    # SkyPilot reads the job's output until every writer closed it: a stray `sleep` of the
    # log copier would hold the job open.
    script = run_script(_run("echo hi"), 30)
    start = time.monotonic()
    proc = subprocess.Popen(["bash", "-c", script], env={
        **os.environ, "STUDYC_RESULTS_DIR": str(tmp_path), "STUDYC_STUDY": "s", "STUDYC_RUN_ID": "r1",
        "STUDYC_CONFIG_JSON": "{}", "TMPDIR": str(tmp_path)}, stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=60)  # EOF only once every holder of the pipe is gone
    assert out == "hi\n" and time.monotonic() - start < 10
