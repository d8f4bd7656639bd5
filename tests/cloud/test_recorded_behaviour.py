"""`studyc run --cloud` where SkyPilot 0.14 behaves as recorded in
``fixtures/skypilot-0.14.1.json``: no jobs controller yet, a controller that stopped itself
or is gone, the real failure_reason strings (no bucket), jobs that never get a machine, and
W&B results looked up in the group the run logged to (issue 12, items 2, 4, 6, 10, 11)."""

from __future__ import annotations

import json
import sys

import pytest

from studyc.runtime import sky_executor
from studyc.runtime.sky_executor import SkyExecutor, reason_exit_code
from studyc.runtime.store import Store
from studyc.spec.loader import load
from testkit.cloud import runs_by_arm


def test_fixture_is_the_installed_skypilots(fake_sky_module):
    import sky

    assert fake_sky_module.RECORDED["skypilot_version"] == sky.__version__
    statuses = {s.value for s in sky.jobs.ManagedJobStatus}
    assert set(fake_sky_module.RECORDED["statuses"]) == statuses


def test_fresh_skypilot_with_no_jobs_controller_does_not_refuse(cloud, cloud_study):
    assert cloud.fake.controller == "none"  # queue_v2(refresh=False) raises ClusterNotUpError
    cloud(cloud_study(arms="a: {}"))
    (run,) = runs_by_arm(cloud.store()).values()
    assert run["status"] == "done"
    asked = [c for name, c in cloud.fake.calls if name == "queue_v2"]
    assert asked[0]["refresh"] is False  # the check never starts a controller


def _executor(cloud, path) -> SkyExecutor:
    loaded = load(path)
    from studyc.compiler.plan import compile_plan

    return SkyExecutor(loaded, compile_plan(loaded), Store(cloud.home), cloud.options())


def test_a_stopped_controller_is_started_again_to_tell_how_jobs_ended(cloud, cloud_study):
    path = cloud_study(arms="a: {}")
    cloud(path)
    (job,) = cloud.fake.jobs()
    cloud.fake.controller = "stopped"  # autostop, ~10 idle minutes after the last job
    executor = _executor(cloud, path)
    (record,) = executor._queue(job_ids=[job["job_id"]])
    assert record.status.value == "SUCCEEDED"
    assert [c["refresh"] for n, c in cloud.fake.calls[-2:] if n == "queue_v2"] == [False, True]
    cloud.fake.controller = "down"  # torn down: no job can exist any more
    assert executor._queue(job_ids=[job["job_id"]]) == []


def test_failure_class_comes_from_skypilots_reason_and_log_without_a_bucket(cloud, cloud_study, tmp_path,
                                                                           monkeypatch):
    # No bucket: results come from W&B. The OOM is told by the job's log (fetched from
    # SkyPilot) and its exit code by the real failure_reason, so the playbook's oom applies.
    trainer = tmp_path / "oom.py"
    trainer.write_text("import sys, studyc\nc = studyc.config()\n"
                       "if c['batch_size'] > 4:\n"
                       "    print('torch.OutOfMemoryError: CUDA out of memory', flush=True); sys.exit(1)\n")
    asked = []

    def series(project, entity, group, run_id):
        asked.append(group)
        return [{"t": 1.0, "step": 0, "nrmse": 0.1}]

    monkeypatch.setattr(sky_executor, "wandb_series", series)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    cloud.fake.upload_results = False
    path = cloud_study(config="{batch_size: 8}", arms="a: {}", results=False, extra=f"""\
        tracking: {{wandb: {{project: p, group: sweep, groups: {{screen: sweep-screen}}}}}}
        stages: {{screen: {{arms: all}}}}
        on_failure: {{oom: {{retries: 1, config: {{batch_size: "batch_size // 2"}}}}}}
        """)
    text = path.read_text().replace(f"{sys.executable} {tmp_path / 'trainer.py'}", f"{sys.executable} {trainer}")
    path.write_text(text)
    cloud(path)
    store = cloud.store()
    (run,) = runs_by_arm(store).values()
    first, second = store.attempts(run["run_id"])
    assert (first["failure"], first["exit_code"]) == ("oom", 1)
    assert (second["status"], json.loads(second["config"])["batch_size"]) == ("done", 4)
    assert set(asked) == {"sweep-screen"}  # the stage's group, where the run logged
    assert ("tail_logs", {"job_id": 1, "follow": False, "tail": 50}) in cloud.fake.calls


def test_exit_code_is_read_from_the_real_failure_reason(fake_sky_module):
    class Record:
        failure_reason = fake_sky_module.failure_reason("FAILED", 7, 137)

    assert reason_exit_code(Record) == 137
    Record.failure_reason = "Job exited with exit codes [3, 0] (user program failure). To see the details, ..."
    assert reason_exit_code(Record) == 3
    Record.failure_reason = fake_sky_module.failure_reason("FAILED_CONTROLLER", 7)
    assert reason_exit_code(Record) is None


def test_the_driver_failure_is_an_oom(cloud, cloud_study):
    cloud.fake.launch_failure = "FAILED_driver"
    cloud(cloud_study(arms="a: {}"), settle_s=0.5)
    (run,) = runs_by_arm(cloud.store()).values()
    assert (run["status"], run["failure"]) == ("failed", "oom")


@pytest.mark.parametrize("status", ["FAILED_PRECHECKS", "FAILED_CONTROLLER", "FAILED_SETUP"])
def test_jobs_that_fail_outside_the_run_say_skypilots_reason(cloud, cloud_study, status, fake_sky_module):
    cloud.fake.launch_failure = status
    cloud(cloud_study(arms="a: {}"))
    (run,) = runs_by_arm(cloud.store()).values()
    assert (run["status"], run["failure"]) == ("failed", "crashed")
    assert f"{status}: {fake_sky_module.failure_reason(status, 1, 1)}" in run["log_tail"]


def test_a_job_that_never_gets_a_machine_is_given_up_after_max_wait(cloud, cloud_study):
    cloud.fake.stuck_starting = True
    cloud(cloud_study(arms="a: {}"), max_wait_s=1.0)
    (run,) = runs_by_arm(cloud.store()).values()
    assert (run["status"], run["failure"]) == ("failed", "crashed")
    assert "for a machine (" in run["log_tail"] and "cancelled after 1 s" in run["log_tail"]
    assert any(name == "cancel" for name, _ in cloud.fake.calls)
