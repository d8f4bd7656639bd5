"""The store's ownership of running runs (who runs what, and when they are gone), and
older stores opened by this version."""

from __future__ import annotations

import socket
import sqlite3
import subprocess

from studyc.compiler.plan import RunPlan
from studyc.runtime import procs
from studyc.runtime.store import SCHEMA_VERSION, Store


def plan_run(run_id: str = "r1") -> RunPlan:
    return RunPlan(run_id, "a", "main", 0, "true", "true", {"lr": 0.1}, {"cpus": 1}, {}, 0.1, 0.01, 0.0)


def token_of(pid: int) -> str:
    return f"{socket.gethostname()}:{pid}:{procs._start_ticks(pid)}"


def test_a_run_held_by_a_live_studyc_is_not_claimed_twice(tmp_path):
    store = Store(tmp_path)
    store.add_runs("s", None, [plan_run()])
    other = subprocess.Popen(["sleep", "30"])  # stands for another studyc process
    try:
        assert store.claim("r1", {"lr": 0.1}, token_of(other.pid)) == 1
        assert store.claim("r1", {"lr": 0.1}, procs.owner_token()) is None
        assert store.recover_interrupted(["r1"]) == []  # its owner is alive
    finally:
        other.kill()
        other.wait()
    assert store.study_runs("s", None)[0]["status"] == "queued"  # reads as what will happen to it
    assert store.recover_interrupted(["r1"]) == ["r1"]
    assert store.get("r1").status == "queued"
    assert [a["failure"] for a in store.attempts("r1")] == ["preempted"]
    assert store.claim("r1", {"lr": 0.1}, procs.owner_token()) == 2


def test_owner_liveness():
    assert procs.owner_alive(procs.owner_token())
    assert not procs.owner_alive(None)
    assert not procs.owner_alive("elsewhere.example:1:1")  # a store is local to one machine
    gone = subprocess.Popen(["sleep", "30"])
    token = token_of(gone.pid)
    gone.kill()
    gone.wait()
    assert not procs.owner_alive(token)


def test_spend_accumulates_over_attempts(tmp_path):
    store = Store(tmp_path)
    store.add_runs("s", None, [plan_run()])
    owner = procs.owner_token()
    store.claim("r1", {}, owner)
    store.finish("r1", "failed", 1, "oom", "CUDA out of memory", [], usd=0.25, gpu_hours=0.5, final=False)
    assert store.get("r1").status == "queued" and store.get("r1").gpu_hours == 0.5
    store.claim("r1", {}, owner)
    store.finish("r1", "done", 0, None, None, [{"step": 0, "loss": 1.0}], usd=0.5, gpu_hours=1.0)
    assert store.spent("s", None) == (0.75, 1.5)
    assert store.series(["r1"])["r1"] == [(0, 0, "loss", 1.0)]


def test_an_older_store_is_upgraded_in_place(tmp_path):
    db = sqlite3.connect(tmp_path / "store.db")
    db.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, command TEXT NOT NULL, config TEXT NOT NULL, seed INTEGER NOT NULL,"
               " status TEXT NOT NULL DEFAULT 'queued', attempts INTEGER NOT NULL DEFAULT 0, failure TEXT, exit_code INTEGER,"
               " started_at REAL, ended_at REAL, host TEXT, log_tail TEXT, est_hours REAL, est_usd REAL, gpu_hours REAL,"
               " usd REAL)")
    db.execute("INSERT INTO runs (id, command, config, seed, status) VALUES ('old', 'true', '{}', 0, 'done')")
    db.commit()
    db.close()
    store = Store(tmp_path)
    assert store.get("old").status == "done"
    store.add_runs("s", None, [plan_run()])
    assert store.claim("r1", {}, procs.owner_token()) == 1
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
