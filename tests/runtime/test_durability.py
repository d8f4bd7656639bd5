"""Real `studyc run` processes killed with SIGKILL or stopped with Ctrl-C, two at once,
and two studies sharing runs: the store stays true and no process is left behind."""

from __future__ import annotations

import json
import random
import signal
import sys
import textwrap
from pathlib import Path

from studyc.runtime.store import Store


def slow_study(trainer: Path, name: str = "durable", seeds: int = 4, steps: int = 8, sleep: float = 0.15,
               command: str | None = None, extra: str = "") -> str:
    return textwrap.dedent(f"""\
        study: {name}
        run:
          command: {command or f'{sys.executable} {trainer}'}
          config: {{steps: {steps}, sleep: {sleep}}}
          seeds: {list(range(seeds))}
          resources: {{hours: 0.001}}
        metrics:
          nrmse: {{goal: min}}
        arms:
          a: {{}}
        budget: {{parallel: 2}}
        """) + textwrap.dedent(extra)


def records(home: Path, study: str = "durable") -> dict[str, dict]:
    store = Store(home)
    try:
        return {r["run_id"]: r for r in store.study_runs(study, None)}
    finally:
        store.close()


def raw_statuses(home: Path) -> dict[str, str]:
    """Statuses exactly as stored (no liveness interpretation)."""
    if not (home / "store.db").exists():
        return {}
    store = Store(home)
    try:
        return {row[0]: row[1] for row in store.db.execute("SELECT id, status FROM runs")}
    finally:
        store.close()


def raw_attempts(home: Path) -> dict[str, int]:
    store = Store(home)
    try:
        return {row[0]: row[1] for row in store.db.execute("SELECT id, attempts FROM runs WHERE status='running'")}
    finally:
        store.close()


def metric_rows_live(home: Path, run_id: str) -> int:
    """Lines a running run has logged so far."""
    path = home / "runs" / run_id / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def metric_rows(home: Path, run_id: str) -> int:
    store = Store(home)
    try:
        return len([s for s in store.series([run_id])[run_id] if s[2] == "nrmse"])
    finally:
        store.close()


def test_kill_9_mid_study_loses_no_finished_run(tmp_path, write_study, studyc_proc, slow_trainer):
    path = write_study(slow_study(slow_trainer))
    first = studyc_proc("run", str(path))
    home = studyc_proc.home
    studyc_proc.wait_for(lambda: "done" in raw_statuses(home).values() and "running" in raw_statuses(home).values(),
             what="one run done and one running")
    first.send_signal(signal.SIGKILL)
    first.wait()
    finished = {rid: r for rid, r in records(home).items() if r["status"] == "done"}
    assert finished
    # The runs go down with studyc (their lifeline pipe closed): nothing is left running.
    studyc_proc.wait_for(lambda: not studyc_proc.processes(), timeout=10, what="the runs to die with studyc")
    # `studyc status` does not claim a dead studyc's runs are running.
    status = studyc_proc("status", str(path), "--json")
    out, err = status.communicate(timeout=60)
    assert status.returncode == 0, err
    assert {r["status"] for r in json.loads(out)["runs"]} <= {"done", "queued"}

    second = studyc_proc("run", str(path))
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    after = records(home)
    assert all(r["status"] == "done" for r in after.values())
    for rid, before in finished.items():  # not executed again
        assert after[rid]["attempts"] == before["attempts"] == 1
        assert after[rid]["started_at"] == before["started_at"]
        assert rid not in [line.split("(")[1].split(")")[0] for line in out.splitlines() if "start " in line]
    for rid in after:
        assert metric_rows(home, rid) == 8  # whole series, nothing half-written
    store = Store(home)
    interrupted = [a for rid in after for a in store.attempts(rid) if a["failure"] == "preempted"]
    # A run cut off by the kill is a preempted attempt; one whose command had just ended is
    # recorded from its files by the second studyc (its exit code was on disk).
    assert interrupted or "recorded now" in out, "the runs cut off by the kill are recorded as preempted attempts"
    assert all(store.attempts(rid)[0]["failure"] == "preempted" for rid in after if after[rid]["attempts"] > 1)
    assert not studyc_proc.processes()


def test_kill_9_at_random_moments_keeps_the_store_consistent(tmp_path, write_study, studyc_proc, slow_trainer):
    path = write_study(slow_study(slow_trainer, seeds=6, steps=3, sleep=0.05))
    home = studyc_proc.home
    rng = random.Random(5)
    for _ in range(4):
        proc = studyc_proc("run", str(path))
        studyc_proc.wait_for(lambda: (home / "store.db").exists(), what="the store")
        studyc_proc.wait_for(lambda: proc.poll() is not None or rng.random() < 0.1, what="a random moment")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for rid, record in records(home).items():
            if record["status"] == "done":
                assert metric_rows(home, rid) == 3, "a finished run always has its whole series"
            assert record["status"] in ("done", "queued", "failed")
        studyc_proc.wait_for(lambda: not studyc_proc.processes(), timeout=10, what="orphans to die")
    last = studyc_proc("run", str(path))
    _, err = last.communicate(timeout=120)
    assert last.returncode == 0, err
    assert {r["status"] for r in records(home).values()} == {"done"}


def test_no_process_outlives_a_killed_studyc(tmp_path, write_study, studyc_proc, slow_trainer):
    """SIGKILL cannot be caught, so studyc cannot clean up; each run's lifeline pipe does:
    the whole process group dies, grandchildren included, long before the runs would end."""
    command = f"sleep 300 & {sys.executable} {slow_trainer}"
    path = write_study(slow_study(slow_trainer, seeds=2, steps=300, sleep=0.1, command=repr(command)))
    first = studyc_proc("run", str(path))
    studyc_proc.wait_for(lambda: len([p for p in studyc_proc.processes() if _comm(p) in ("sleep", "python")]) == 4,
                         what="the runs and their sleeps")
    first.send_signal(signal.SIGKILL)
    first.wait()
    studyc_proc.wait_for(lambda: not studyc_proc.processes(), timeout=10, what="every process to end")
    second = studyc_proc("run", str(path))
    studyc_proc.wait_for(lambda: set(raw_attempts(studyc_proc.home).values()) == {2}, what="the runs to restart")
    second.send_signal(signal.SIGINT)
    second.communicate(timeout=60)
    studyc_proc.wait_for(lambda: not studyc_proc.processes(), timeout=10, what="every process to end")


def test_recovery_kills_what_a_dead_studyc_left_of_a_run(tmp_path):
    """The next studyc's safety net: a run's leftover process group is killed, but only if
    it really is that run's (process ids get reused)."""
    import os
    import subprocess

    from studyc.runtime import procs

    env = dict(os.environ, STUDYC_RUN_ID="r1")
    leftover = subprocess.Popen(["sleep", "60"], env=env, start_new_session=True)
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        assert procs.kill_orphans(stranger.pid, "r1") == 0
        assert procs.kill_orphans(leftover.pid, "r2") == 0
        assert procs.kill_orphans(leftover.pid, "r1") == 1
        assert leftover.wait(timeout=5) == -signal.SIGKILL
        assert stranger.poll() is None
    finally:
        for proc in (leftover, stranger):
            proc.kill()
            proc.wait()


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def test_ctrl_c_stops_children_and_requeues_then_resumes(tmp_path, write_study, studyc_proc, slow_trainer):
    path = write_study(slow_study(slow_trainer, seeds=3, steps=30, sleep=0.1,
                                  extra="on_failure: {preempted: {retries: 1, resume: true}}\n"))
    proc = studyc_proc("run", str(path))
    home = studyc_proc.home
    studyc_proc.wait_for(lambda: list(raw_statuses(home).values()).count("running") == 2, what="two runs running")
    studyc_proc.wait_for(lambda: len(studyc_proc.processes()) >= 3, what="the run processes")
    studyc_proc.wait_for(lambda: all(metric_rows_live(home, rid) >= 3 for rid, st in raw_statuses(home).items()
                                     if st == "running"), what="a few checkpoints")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    assert not studyc_proc.processes(), "Ctrl-C left a process behind"
    statuses = raw_statuses(home)
    assert sorted(statuses.values()) == ["queued"] * 3
    store = Store(home)
    cut = {rid: store.attempts(rid) for rid in statuses if store.attempts(rid)}
    assert [a[0]["status"] for a in cut.values()] == ["interrupted", "interrupted"]
    assert all(a[0]["ended_at"] for a in cut.values())

    # Run again: the interrupted runs continue from their checkpoints (the playbook resumes
    # preempted runs), the third starts afresh.
    again = studyc_proc("run", str(path))
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert out.count(", resumed") == 2
    # Plain progress lines (stdout is not a terminal), the last summary with units.
    summary = [line for line in out.splitlines() if "ended (" in line][-1]
    assert "3/3 ended (3 done, 0 reused, 0 failed, 0 skipped), 0 running, 0 queued" in summary
    assert " s elapsed" in summary and "spent $" in summary and "GPU-h" in summary
    for rid in statuses:
        first_resume = [v for _, s, n, v in store.series([rid])[rid] if n == "resumed_from"]
        assert (first_resume[-1] > 0) == (rid in cut)
        assert store.get(rid).status == "done"


def test_a_second_run_of_the_same_study_is_refused(tmp_path, write_study, studyc_proc, slow_trainer):
    path = write_study(slow_study(slow_trainer, seeds=2, steps=10, sleep=0.1))
    first = studyc_proc("run", str(path))
    studyc_proc.wait_for(lambda: "running" in raw_statuses(studyc_proc.home).values(), what="the first studyc to start")
    second = studyc_proc("run", str(path))
    _, err = second.communicate(timeout=60)
    assert second.returncode == 1
    assert f"already being run by studyc pid {first.pid}" in err
    assert "Traceback" not in err
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert {r["status"] for r in records(studyc_proc.home).values()} == {"done"}
    assert {r["attempts"] for r in records(studyc_proc.home).values()} == {1}


def test_two_studies_sharing_runs_execute_them_once(tmp_path, write_study, studyc_proc, slow_trainer):
    """Study B plans the same runs as study A, which is running them: B waits for A's runs
    and reuses them instead of running them a second time."""
    a = write_study(slow_study(slow_trainer, name="first", seeds=2, steps=10, sleep=0.1), "a.yaml")
    b = write_study(slow_study(slow_trainer, name="second", seeds=2, steps=10, sleep=0.1), "b.yaml")
    first = studyc_proc("run", str(a))
    studyc_proc.wait_for(lambda: list(raw_statuses(studyc_proc.home).values()).count("running") == 2, what="A's runs to start")
    second = studyc_proc("run", str(b))
    out_b, err_b = second.communicate(timeout=120)
    _, err_a = first.communicate(timeout=120)
    assert first.returncode == 0 and second.returncode == 0, err_a + err_b
    assert "being run by another studyc" in out_b
    assert out_b.count("finished by another studyc") == 2
    assert "start " not in out_b
    shared = records(studyc_proc.home, "second")
    assert shared.keys() == records(studyc_proc.home, "first").keys()
    assert {r["attempts"] for r in shared.values()} == {1}
