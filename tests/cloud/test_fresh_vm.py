"""A compiled task on a fresh machine: seed 000's cpu-profile task, its workdir synced the way
SkyPilot syncs it (``.gitignore``/``.skyignore`` respected) into an empty HOME, its setup run
in a new Python environment where SkyPilot's job scripts activate it, its run script built
by SkyPilot's own script builder with the task's envs, and the run directory uploaded to a
local S3 server standing in for the bucket mount. The metrics, log and exit code must arrive
in the bucket, and studyc must copy them into its store and report on them.

Nothing of the developer's environment reaches the machine (HOME, PATH, PYTHONPATH are its
own). The "image" has the project's dependencies preinstalled (a .pth onto this test's own
site-packages) and pip runs with no index, so the setup needs no network; it still has to
install the project itself, or the run cannot import it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from studyc.compiler.plan import compile_plan
from studyc.compiler.sky import RESULTS_MOUNT, write_compiled
from studyc.runtime.results import Results
from studyc.spec.loader import load

pytest.importorskip("sky", reason="the cloud extra (skypilot) is not installed")
pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
SEED_000 = REPO / "studies" / "burgers_phase3_ablation.yaml"


def sync_workdir(src: Path, dest: Path) -> None:
    """What SkyPilot's rsync of the workdir leaves on the machine: everything but what
    git (or .skyignore) excludes, and .git itself."""
    from sky.data.storage_utils import get_excluded_files

    excluded = {e.rstrip("/") for e in get_excluded_files(str(src))} | {".git"}

    def ignore(folder: str, names: list[str]) -> set[str]:
        rel = os.path.relpath(folder, src)
        return {n for n in names if os.path.normpath(os.path.join(rel, n)) in excluded or n == ".git"}

    shutil.copytree(src, dest, ignore=ignore, symlinks=True)


def machine_script(text: str, envs: dict[str, str], run: bool) -> str:
    """The script SkyPilot runs on the machine: its prologue (user env, ~/sky_workdir), the
    task's envs, and for `run:` its wait for cached bucket uploads."""
    from sky.backends.task_codegen import TaskCodeGen
    from sky.skylet import log_lib

    return log_lib.make_task_bash_script(TaskCodeGen.build_task_bash_script(text) if run else text, env_vars=envs)


def on_the_machine(script: str, env: dict[str, str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """Run a script as the machine would, and leave nothing of it behind if it overruns."""
    proc = subprocess.Popen(["bash", "-c", script], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"ran past {timeout:.0f} s:\n{out[-3000:]}{err[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_seed_000_cpu_task_installs_runs_and_delivers_its_results(tmp_path, s3, bucket, s3_endpoint):
    # The study's own cloud section, pointed at AWS with the local bucket (Vast cannot mount one).
    study_text, replaced = re.subn(r"(?m)^cloud: \{.*\}.*$", f"cloud: {{infra: aws, use_spot: false, "
                                   f"results: s3://{bucket}/results}}", SEED_000.read_text())
    assert replaced == 1
    loaded = load(SEED_000, "cpu", text=study_text)
    plan = compile_plan(loaded)
    compiled = write_compiled(loaded, plan, tmp_path / "out")
    task = yaml.safe_load(compiled.tasks[0].read_text())
    run = next(r for r in plan.runs if r.id == task["envs"]["STUDYC_RUN_ID"])

    home = tmp_path / "vm"
    sync_workdir(Path(plan.workdir), home / "sky_workdir")
    assert (home / "sky_workdir" / "pyproject.toml").exists() and not (home / "sky_workdir" / ".git").exists()
    # The image: a Python with pip and the project's dependencies, not the project
    # (~/sky-user-env is where SkyPilot's job scripts look for the user's environment).
    env_dir = home / "sky-user-env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    site = next(env_dir.glob("lib/python*/site-packages"))
    (site / "image.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    machine = {"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PIP_NO_INDEX": "1",
               "PIP_NO_BUILD_ISOLATION": "0", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    probe = [str(env_dir / "bin" / "python"), "-c", "import studyc; print(studyc.__file__)"]
    assert subprocess.run(probe, env=machine, cwd=home, capture_output=True, timeout=60).returncode != 0  # not yet

    setup = on_the_machine(machine_script(task["setup"], task["envs"], run=False), machine, home, timeout=600)
    assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]
    installed = subprocess.run(probe, env=machine, cwd=home, capture_output=True, text=True, timeout=60)
    assert installed.stdout.startswith(str(home / "sky_workdir")), installed.stdout + installed.stderr

    mount = tmp_path / "mount"  # stands in for the bucket, mounted at RESULTS_MOUNT
    envs = {**task["envs"], "STUDYC_RESULTS_DIR": str(mount)}
    assert task["envs"]["STUDYC_RESULTS_DIR"] == RESULTS_MOUNT
    done = on_the_machine(machine_script(task["run"], envs, run=True), machine, home, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for path in mount.rglob("*"):  # what the cached mount uploads
        if path.is_file():
            s3.put_object(Bucket=bucket, Key=f"results/{path.relative_to(mount)}", Body=path.read_bytes())

    # studyc's side: the files arrive from the bucket into the run's directory.
    local = tmp_path / "store-run"
    Results(f"s3://{bucket}/results", plan.study).pull(run.id, local)
    assert (local / "exit_code").read_text().strip() == "0"
    metrics = [json.loads(line) for line in (local / "metrics.jsonl").read_text().splitlines()]
    assert metrics and all("step" in m for m in metrics) and any("nrmse" in m or "val_nrmse" in m for m in metrics)
    assert (local / "log.txt").read_text().strip()

    # ... and become a report: the run recorded from its pulled files, as the cloud
    # executor records a finished job, then judged and rendered from the store.
    from studyc.orchestrate import report
    from studyc.runtime import metrics_file
    from studyc.runtime.procs import owner_token
    from studyc.runtime.store import Store

    store = Store(tmp_path / "store")
    store.add_runs(plan.study, plan.profile, plan.runs)
    store.claim(run.id, run.config, owner_token())
    pulled = metrics_file.read(local / "metrics.jsonl")
    assert pulled.bad is None
    store.finish(run.id, "done", int((local / "exit_code").read_text()), None, None, pulled.records, 0.0, 0.0)
    result = report(loaded, store, tmp_path / "report")
    text = Path(result.paths["report"]).read_text()
    assert run.id in text and f"{run.arm}" in text
    statuses = {h["status"] for h in result.verdicts["hypotheses"].values()}
    assert statuses and statuses <= {"PASS", "FAIL", "INCONCLUSIVE", "INCOMPLETE"}
    assert "INCOMPLETE" in statuses  # one run of six: the checks that need the others say so
