"""The boundary with SkyPilot: the fake cannot drift from the real client's signatures,
skypilot is imported only by the cloud executor (with a clear message when it is
missing), `run --cloud --dryrun` builds every task with SkyPilot's own parser and contacts
nothing, and the playbook is split between SkyPilot and studyc without overlap."""

from __future__ import annotations

import inspect
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import sky
from click.testing import CliRunner

from studyc.cli import main
from studyc.compiler.plan import compile_plan
from studyc.compiler.sky import task_name
from studyc.errors import RunError
from studyc.runtime import sky_executor
from studyc.spec.loader import load

REPO = Path(__file__).resolve().parents[2]
STUDIES = sorted((REPO / "studies").glob("*.yaml"))


def _shape(fn) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("name, real", [
    ("launch", sky.jobs.launch), ("queue_v2", sky.jobs.queue_v2), ("cancel", sky.jobs.cancel),
    ("get", sky.get), ("stream_and_get", sky.stream_and_get), ("tail_logs", sky.jobs.tail_logs),
])
def test_the_fake_has_the_signatures_of_skypilots_client(name, real, fake_sky_module):
    assert _shape(getattr(fake_sky_module.FakeSky, name))[1:] == _shape(real)  # [1:]: self


def test_studyc_calls_the_real_client_functions(monkeypatch):
    client = sky_executor.SkyClient()
    assert (client.launch, client.queue_v2, client.cancel) == (sky.jobs.launch, sky.jobs.queue_v2, sky.jobs.cancel)
    assert (client.get, client.stream_and_get, client.tail_logs) == (sky.get, sky.stream_and_get, sky.jobs.tail_logs)
    assert (client.ControllerNotUp, client.NoController) == (sky.exceptions.ClusterNotUpError,
                                                             sky.exceptions.ClusterDoesNotExist)
    assert set(sky_executor.FIELDS) <= set(sky.schemas.api.responses.ManagedJobRecord.model_fields)


def test_without_skypilot_the_message_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "sky", None)  # `import sky` now fails as if not installed
    with pytest.raises(RunError) as info:
        sky_executor.import_sky()
    assert "needs SkyPilot, which is not installed" in info.value.message
    assert info.value.hint == "install the cloud extra: pip install 'studyc[cloud]'"
    result = CliRunner().invoke(main, ["run", str(STUDIES[0]), "--cloud", "--dryrun"])
    assert result.exit_code == 1 and "pip install 'studyc[cloud]'" in result.output


def test_only_the_cloud_executor_imports_skypilot():
    code = ("import sys, studyc.cli, studyc.orchestrate, studyc.runtime.sky_executor, studyc.runtime.results;"
            "print(sorted(m for m in ('sky', 'boto3', 'wandb') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.fixture
def no_network(monkeypatch):
    def refuse(self, address):
        raise AssertionError(f"the dry run tried to connect to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.stem)
def test_dryrun_prints_every_job_that_would_launch_and_contacts_nothing(study, tmp_path, monkeypatch, no_network):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STUDYC_HOME", raising=False)
    for profile in [None, *load(study).study.profiles]:
        args = ["run", str(study), "--cloud", "--dryrun"] + (["--profile", profile] if profile else [])
        result = CliRunner().invoke(main, args)
        plan = compile_plan(load(study, profile))
        assert result.exit_code == (0 if plan.budget["ok"] else 1), result.output
        launched = [r for r in plan.runs if not r.pending]
        assert f"{len(launched)} managed jobs would launch (dry run: nothing launched)" in result.output
        for run in launched[:60]:
            line = next(line for line in result.output.splitlines() if task_name(plan.study, run) in line)
            assert f"{run.est_hours:.3g} h" in line and f"${run.est_usd:,.2f}" in line
        assert f"totals: {plan.totals['runs']} runs" in result.output
        assert "budget" in result.output
    assert not (tmp_path / ".studyc").exists()  # a dry run writes nothing


def test_dryrun_shows_resources_recovery_results_and_secrets(tmp_path, monkeypatch, no_network):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_API_KEY", "secret-value")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    path = tmp_path / "s.yaml"
    path.write_text("""\
study: sweep
run:
  command: python train.py
  config: {lr: 3.0e-4, batch_size: 12}
  seeds: [0, 1]
  resources: {accelerators: "A100-80GB:1", vram_gb: 55, hours: 16, cpus: 8}
metrics:
  nrmse: {goal: min}
arms:
  aggressive: {config: {batch_size: 8}}
on_failure:
  oom: {retries: 2, config: {batch_size: "batch_size // 2"}}
  preempted: {retries: 3, resume: true}
  crashed: {retries: 2}
prices: {A100-80GB: 0.95}
budget: {usd: 20, parallel: 6}
tracking: {wandb: {project: p}}
cloud: {infra: gcp/us-central1, use_spot: true, results: "gs://bkt/sota", secrets: [HF_TOKEN]}
""")
    result = CliRunner().invoke(main, ["run", str(path), "--cloud", "--dryrun"])
    out = result.output
    assert result.exit_code == 1, out  # 2 x 16 h x $0.95 = $30.40 > $20: the real run would refuse
    assert "gcp/us-central1, A100-80GB:1, 8+ CPUs, spot, 256 GB disk" in out
    assert out.count("16 h") >= 2 and "$15.20" in out
    assert "job_recovery: strategy=EAGER_NEXT_REGION\n" in out  # SkyPilot recovers lost machines, nothing else
    assert "crashed: studyc retries up to 2 times as a new job" in out
    assert "oom: studyc retries up to 2 times as a new job with batch_size = batch_size // 2" in out
    assert "results: gs://bkt/sota/sweep/<run id>/" in out
    assert "secret HF_TOKEN: not set" in out and "secret WANDB_API_KEY: set in this shell" in out
    assert "secret-value" not in out
    assert "over budget" in out and "--allow-over-budget" in out


def test_dryrun_leaves_out_runs_that_finished_earlier(tmp_path, monkeypatch):
    from studyc.runtime.store import Store

    monkeypatch.chdir(tmp_path)
    study = STUDIES[0]
    plan = compile_plan(load(study))
    store = Store(tmp_path / ".studyc")
    runs = [r for r in plan.runs if not r.pending]
    store.add_runs(plan.study, None, runs)
    store.claim(runs[0].id, runs[0].config, "me")
    store.finish(runs[0].id, "done", 0, None, None, [{"step": 0, "nrmse": 0.1}], 0.0, 0.0)
    store.close()
    result = CliRunner().invoke(main, ["run", str(study), "--cloud", "--dryrun", "--store", str(tmp_path / ".studyc")])
    assert f"{len(runs) - 1} managed jobs would launch" in result.output
    assert "reused, not launched: 1 runs that finished earlier" in result.output
    assert task_name(plan.study, runs[0]) not in result.output


def test_dryrun_and_cancel_on_interrupt_go_with_cloud():
    for flag in ("--dryrun", "--cancel-on-interrupt"):
        result = CliRunner().invoke(main, ["run", str(STUDIES[0]), flag])
        assert result.exit_code == 1 and f"{flag} goes with --cloud" in result.output
