"""`studyc run --cloud` against the fake of SkyPilot's client: each job really runs the
compiled task's `run:` script, writes to a real (moto) S3 bucket, and studyc syncs the
results back into its store. Covers launch, polling, preemption recovery, user failures,
cancel, Ctrl-C, and following jobs again after studyc closed or died."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from studyc import orchestrate
from studyc.compiler.sky import task_name
from studyc.errors import RunError
from studyc.runtime.store import Store
from testkit.cloud import runs_by_arm
from testkit.polling import wait_for

FAKE_SKY = Path(__file__).with_name("fake_sky.py")


def metric_values(store: Store, run_id: str, name: str) -> list[float]:
    return [value for _, _, metric, value in store.series([run_id])[run_id] if metric == name]


def running_job(fake, what: str = "a running job"):
    return wait_for(lambda: next((j for j in fake.jobs() if j["status"] == "RUNNING"), None), what=what)


def bucket_lines(s3, bucket: str, run_id: str, name: str = "metrics.jsonl") -> list[str]:
    try:
        body = s3.get_object(Bucket=bucket, Key=f"results/cloudy/{run_id}/{name}")["Body"].read()
    except s3.exceptions.NoSuchKey:
        return []
    return body.decode().splitlines()


# ---------------------------------------------------------------- launch and poll


def test_one_managed_job_per_run_named_after_its_task_results_synced_into_the_store(cloud, cloud_study, s3, bucket):
    path = cloud_study(seeds="[0, 1]", extra="budget: {parallel: 2}\n")
    loaded, plan = cloud(path)
    jobs = cloud.fake.jobs()
    assert sorted(j["job_name"] for j in jobs) == sorted(task_name("cloudy", r) for r in plan.runs)
    assert all(j["status"] == "SUCCEEDED" for j in jobs)
    # Within budget.parallel: never more than 2 jobs between submission and end.
    edges = sorted([(j["submitted_at"], 1) for j in jobs] + [(j["end_at"], -1) for j in jobs])
    in_flight = max(sum(d for _, d in edges[:i + 1]) for i in range(len(edges)))
    assert in_flight <= 2
    # Polling asks SkyPilot for failure_reason, for the jobs it follows only.
    queries = [c for name, c in cloud.fake.calls if name == "queue_v2" and c["job_ids"]]
    assert queries and all("failure_reason" in c["fields"] for c in queries)
    store = cloud.store()
    for run in plan.runs:
        record = store.get(run.id)
        assert record.status == "done" and record.exit_code == 0 and record.attempts == 1
        # What the run wrote to the bucket is what the store holds.
        logged = [json.loads(line) for line in bucket_lines(s3, bucket, run.id)]
        assert [r["nrmse"] for r in logged] == metric_values(store, run.id, "nrmse") and len(logged) == 3
        assert (store.run_dir(run.id) / "exit_code").read_text().strip() == "0"
        attempt = store.attempts(run.id)[-1]
        assert attempt["job_name"] == task_name("cloudy", run)
        assert attempt["job_id"] == next(j["job_id"] for j in jobs if j["job_name"] == attempt["job_name"])
    # The normal report works from what was synced.
    report = orchestrate.report(loaded, store, cloud.home.parent / "report")
    assert report.paths["report"].exists()
    assert json.loads((cloud.home.parent / "report" / "results.json").read_text())


def test_runs_finished_earlier_are_not_launched_again(cloud, cloud_study):
    path = cloud_study()
    cloud(path)
    launched = len(cloud.fake.jobs())
    cloud(path)
    assert len(cloud.fake.jobs()) == launched == 2
    assert [e.kind for e in cloud.events[-2:]] == ["cached", "cached"]


# ---------------------------------------------------------------- recovery


def test_preemption_is_recovered_by_skypilot_and_the_run_resumes_from_its_checkpoint(cloud, cloud_study, s3, bucket):
    path = cloud_study(config="{base: 0.05, steps: 20, sleep: 0.15}", arms="a: {}",
                       extra="on_failure: {preempted: {retries: 2, resume: true}}\n")
    thread = cloud.in_thread(path)
    job = running_job(cloud.fake)
    run_id = job["env"]["STUDYC_RUN_ID"]
    wait_for(lambda: len(bucket_lines(s3, bucket, run_id)) >= 3, what="three steps in the bucket")
    cloud.fake.preempt(job["job_id"])
    thread.join(90)
    assert not thread.is_alive() and not thread.errors
    store = cloud.store()
    record = store.get(run_id)
    assert record.status == "done" and record.attempts == 1  # SkyPilot recovered it: no studyc retry
    assert cloud.fake.job(job["job_id"])["recovery_count"] == 1 and len(cloud.fake.jobs()) == 1
    resumed = metric_values(store, run_id, "resumed_from")
    assert resumed[0] == 0 and resumed[-1] >= 3  # the second machine continued from the checkpoint
    steps = [s for _, s, name, _ in store.series([run_id])[run_id] if name == "nrmse"]
    assert sorted(set(steps)) == list(range(20))


def test_oom_is_retried_by_studyc_as_a_new_job_with_the_edited_config(cloud, cloud_study):
    # SkyPilot is not asked to restart failures (its max_restarts_on_errors would rerun this OOM
    # as it is first): studyc classifies it and retries it halving batch_size.
    path = cloud_study(config="{base: 0.05, batch_size: 8, oom: 4}", arms="a: {}", extra="""\
        on_failure:
          oom: {retries: 2, config: {batch_size: "batch_size // 2"}}
          crashed: {retries: 1}
        """)
    cloud(path)
    jobs = cloud.fake.jobs()
    assert len(jobs) == 2
    assert jobs[0]["status"] == "FAILED" and jobs[0]["recovery_count"] == 0  # no rerun of the OOM as it is
    assert json.loads(jobs[1]["env"]["STUDYC_CONFIG_JSON"])["batch_size"] == 4
    store = cloud.store()
    (run,) = runs_by_arm(store).values()
    first, second = store.attempts(run["run_id"])
    assert (first["failure"], first["exit_code"], json.loads(first["config"])["batch_size"]) == ("oom", 1, 8)
    assert second["status"] == "done" and json.loads(second["config"])["batch_size"] == 4
    assert metric_values(store, run["run_id"], "batch_size")[-1] == 4
    assert [e.kind for e in cloud.events if e.kind in ("retry", "end")] == ["retry", "end"]


def test_the_runs_own_exit_code_and_metrics_decide_its_failure_class(cloud, cloud_study):
    path = cloud_study(arms="crash: {config: {+crash: 3}}\nnan: {config: {+nan: true}}\nkilled: {config: {+crash: 137}}")
    cloud(path)
    runs = runs_by_arm(cloud.store())
    assert (runs["crash/0"]["status"], runs["crash/0"]["failure"], runs["crash/0"]["exit_code"]) == ("failed", "crashed", 3)
    assert "RuntimeError: something broke" in runs["crash/0"]["log_tail"]
    assert (runs["nan/0"]["failure"], runs["nan/0"]["exit_code"]) == ("diverged", 0)  # exit 0, but NaN
    assert (runs["killed/0"]["failure"], runs["killed/0"]["exit_code"]) == ("oom", 137)


def test_a_job_that_never_ran_is_a_crash_with_skypilots_reason(cloud, cloud_study):
    cloud.fake.launch_failure = "FAILED_NO_RESOURCE"
    path = cloud_study(arms="a: {}", extra="on_failure: {oom: {retries: 1, config: {base: 'base * 2'}}}\n")
    cloud(path)
    (run,) = runs_by_arm(cloud.store()).values()
    assert (run["status"], run["failure"], run["exit_code"]) == ("failed", "crashed", None)
    assert "FAILED_NO_RESOURCE: sky.exceptions.ResourcesUnavailableError: Failed to acquire resources" in run["log_tail"]
    end = next(e for e in cloud.events if e.kind == "end")
    assert "Failed to acquire resources" in end.message


def test_a_launch_request_that_fails_is_a_crash_with_the_error(cloud, cloud_study):
    cloud.fake.launch_error = RuntimeError("quota exceeded for A100 in us-east-1")
    cloud(cloud_study(arms="a: {}"))
    (run,) = runs_by_arm(cloud.store()).values()
    assert run["failure"] == "crashed" and "quota exceeded for A100" in run["log_tail"]


def test_a_job_cancelled_by_someone_else_is_preempted_and_resumed_as_a_new_job(cloud, cloud_study, s3, bucket):
    path = cloud_study(config="{base: 0.05, steps: 25, sleep: 0.1}", arms="a: {}",
                       extra="on_failure: {preempted: {retries: 1, resume: true}}\n")
    thread = cloud.in_thread(path)
    job = running_job(cloud.fake)
    run_id = job["env"]["STUDYC_RUN_ID"]
    wait_for(lambda: len(bucket_lines(s3, bucket, run_id)) >= 2, what="two steps in the bucket")
    cloud.fake.get(cloud.fake.cancel(job_ids=[job["job_id"]]))  # e.g. `sky jobs cancel` from a shell
    thread.join(90)
    assert not thread.errors
    jobs = cloud.fake.jobs()
    assert [j["status"] for j in jobs] == ["CANCELLED", "SUCCEEDED"]
    assert jobs[1]["env"]["STUDYC_RESUME"] == "1"
    store = cloud.store()
    first, second = store.attempts(run_id)
    assert first["failure"] == "preempted" and second["status"] == "done"
    assert metric_values(store, run_id, "resumed_from")[-1] > 0


# ---------------------------------------------------------------- cancel


def test_a_stop_rule_cancels_the_job(cloud, cloud_study):
    path = cloud_study(config="{base: 0.05, steps: 200, sleep: 0.1}", arms="a: {}", extra="stop: {diverged: 'step >= 3'}\n")
    cloud(path)
    (job,) = cloud.fake.jobs()
    assert job["status"] == "CANCELLED"
    assert ("cancel", {"job_ids": [job["job_id"]], "name": None}) in cloud.fake.calls
    (run,) = runs_by_arm(cloud.store()).values()
    assert (run["status"], run["failure"]) == ("failed", "diverged")


def _interrupt_when_running(fake, n: int) -> None:
    def fire():
        wait_for(lambda: sum(j["status"] == "RUNNING" for j in fake.jobs()) >= n, what=f"{n} running jobs")
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=fire, daemon=True).start()


def test_ctrl_c_asks_and_cancels_the_jobs_when_told(cloud, cloud_study):
    path = cloud_study(config="{base: 0.05, steps: 200, sleep: 0.1}")
    _interrupt_when_running(cloud.fake, 2)
    with pytest.raises(KeyboardInterrupt):
        cloud(path, cancel=True)
    assert len(cloud.asked) == 1 and len(cloud.asked[0]) == 2 and "managed job" in cloud.asked[0][0]
    wait_for(lambda: all(j["status"] == "CANCELLED" for j in cloud.fake.jobs()), what="jobs cancelled")
    store = cloud.store()
    for run in runs_by_arm(store).values():
        assert run["status"] == "queued"
        assert store.attempts(run["run_id"])[-1]["status"] == "interrupted"
    assert store.open_jobs([r["run_id"] for r in runs_by_arm(store).values()]) == {}


def test_ctrl_c_can_leave_the_jobs_running_and_the_next_run_follows_them(cloud, cloud_study):
    path = cloud_study(config="{base: 0.05, steps: 30, sleep: 0.1}")
    _interrupt_when_running(cloud.fake, 2)
    with pytest.raises(KeyboardInterrupt):
        cloud(path, cancel=False)
    assert len(cloud.asked) == 1
    assert all(j["status"] in ("RUNNING", "SUCCEEDED") for j in cloud.fake.jobs())
    cloud.events.clear()
    cloud(path)
    assert len(cloud.fake.jobs()) == 2  # followed, not launched again
    starts = [e for e in cloud.events if e.kind == "start"]
    assert len(starts) == 2 and all(e.message.startswith("followed again: managed job") for e in starts)
    for run in runs_by_arm(cloud.store()).values():
        assert (run["status"], run["attempts"]) == ("done", 1)


def test_when_skypilot_stops_answering_studyc_gives_up_but_leaves_the_jobs_running(cloud, cloud_study):
    path = cloud_study(config="{base: 0.05, steps: 30, sleep: 0.1}", arms="a: {}")
    thread = cloud.in_thread(path, patience_s=1.0)
    job = running_job(cloud.fake)

    def unreachable(*args, **kwargs):
        raise ConnectionError("Could not connect to SkyPilot API server at http://127.0.0.1:46580")

    cloud.fake.queue_v2 = unreachable
    thread.join(60)
    (error,) = thread.errors
    assert isinstance(error, RunError) and "has not answered" in error.message and "follows them" in error.hint
    assert cloud.fake.job(job["job_id"])["status"] == "RUNNING"
    assert not [c for c in cloud.fake.calls if c[0] == "cancel"]
    del cloud.fake.queue_v2  # it answers again: the next run follows the job
    cloud(path)
    assert len(cloud.fake.jobs()) == 1 and runs_by_arm(cloud.store())["a/0"]["attempts"] == 1


# ---------------------------------------------------------------- resume after studyc died


def _studyc(tmp_path: Path, fake, *args: str) -> subprocess.Popen:
    """The real studyc CLI in its own process, with the fake in place of SkyPilot's client."""
    env = dict(os.environ, STUDYC_HOME=str(tmp_path / ".studyc"))
    return subprocess.Popen([sys.executable, str(FAKE_SKY), "studyc", str(fake.root), "--", *args], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_killed_studyc_is_picked_up_again_from_the_store_without_duplicates(tmp_path, fake_sky, cloud_study):
    path = cloud_study(config="{base: 0.05, steps: 25, sleep: 0.1}", seeds="[0, 1]")
    first = _studyc(tmp_path, fake_sky, "run", str(path), "--cloud")
    wait_for(lambda: sum(j["status"] == "RUNNING" for j in fake_sky.jobs()) == 4, what="4 running jobs")
    db = sqlite3.connect(tmp_path / ".studyc" / "store.db")
    wait_for(lambda: db.execute("SELECT COUNT(*) FROM attempts WHERE job_id IS NOT NULL").fetchone()[0] == 4,
             what="job ids in the store")
    first.kill()  # kill -9: no chance to clean up
    first.communicate()
    # Two of the jobs as if studyc had died before learning their ids: found by name.
    db.execute("UPDATE attempts SET job_id = NULL WHERE rowid IN (SELECT rowid FROM attempts LIMIT 2)")
    db.commit()
    db.close()
    assert all(j["status"] == "RUNNING" for j in fake_sky.jobs())  # managed jobs outlive studyc
    second = _studyc(tmp_path, fake_sky, "run", str(path), "--cloud")
    out, _ = second.communicate(timeout=120)
    assert second.returncode == 0, out
    assert len(fake_sky.jobs()) == 4 and all(j["status"] == "SUCCEEDED" for j in fake_sky.jobs())
    assert out.count("followed again: managed job") == 4
    store = Store(tmp_path / ".studyc")
    for run in runs_by_arm(store).values():
        assert (run["status"], run["attempts"]) == ("done", 1)
        assert len(metric_values(store, run["run_id"], "nrmse")) == 25
        assert store.attempts(run["run_id"])[0]["job_id"] is not None
    assert (tmp_path / "reports" / "cloudy" / "ablation_report.md").exists()


# ---------------------------------------------------------------- refusals before launch


def test_a_secret_missing_from_the_shell_is_refused_before_anything_launches(cloud, cloud_study, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    path = cloud_study(extra="").read_text().replace("cloud: {", "cloud: {secrets: [HF_TOKEN], ")
    (cloud.home.parent / "s.yaml").write_text(path)
    with pytest.raises(RunError, match="HF_TOKEN is not set in this shell"):
        cloud(cloud.home.parent / "s.yaml")
    assert cloud.fake.jobs() == []


def test_secrets_reach_the_job_from_the_shell_by_name(cloud, cloud_study, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf-secret-value")
    text = cloud_study(arms="a: {}").read_text().replace("cloud: {", "cloud: {secrets: [HF_TOKEN], ")
    (cloud.home.parent / "s.yaml").write_text(text)
    cloud(cloud.home.parent / "s.yaml")
    (job,) = cloud.fake.jobs()
    assert job["env"]["HF_TOKEN"] == "hf-secret-value" and job["status"] == "SUCCEEDED"
    for path in cloud.home.rglob("*"):
        assert not path.is_file() or b"hf-secret-value" not in path.read_bytes()


def test_a_study_without_a_results_location_is_refused(cloud, cloud_study):
    with pytest.raises(RunError, match="need a place for their results"):
        cloud(cloud_study(results=False))
    assert cloud.fake.jobs() == []


@pytest.mark.parametrize("flag", [[], ["--cancel-on-interrupt"]], ids=["no-terminal", "cancel-on-interrupt"])
def test_ctrl_c_on_the_command_line(tmp_path, fake_sky, cloud_study, flag):
    path = cloud_study(config="{base: 0.05, steps: 100, sleep: 0.1}")
    proc = _studyc(tmp_path, fake_sky, "run", str(path), "--cloud", *flag)
    wait_for(lambda: sum(j["status"] == "RUNNING" for j in fake_sky.jobs()) == 2, what="2 running jobs")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    if flag:
        assert "cancelling 2 cloud jobs (--cancel-on-interrupt): managed job" in out
        wait_for(lambda: all(j["status"] == "CANCELLED" for j in fake_sky.jobs()), what="jobs cancelled")
    else:  # nobody to ask: the jobs go on, and studyc says how to pick them up
        assert "no terminal to ask whether to cancel the cloud jobs" in out
        assert "left 2 cloud jobs running: managed job" in out
        assert f"`studyc run {path} --cloud` follows them again" in out
        # Not cancelled (on a busy machine a job may have finished since).
        assert all(j["status"] in ("RUNNING", "SUCCEEDED") for j in fake_sky.jobs())


def test_success_is_confirmed_by_the_exit_code_the_run_wrote(cloud, cloud_study):
    cloud.fake.upload_results = False  # SkyPilot says SUCCEEDED, but nothing reached the bucket
    cloud(cloud_study(arms="a: {}"), settle_s=0.5)
    (job,) = cloud.fake.jobs()
    assert job["status"] == "SUCCEEDED"
    (run,) = runs_by_arm(cloud.store()).values()
    assert (run["status"], run["failure"]) == ("failed", "crashed")
    assert "SUCCEEDED, but its exit code never reached s3://" in run["log_tail"]
