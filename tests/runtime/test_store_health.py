"""The store's schema version, read-only use, and a damaged store: refused in one line
that names the file and what to do, never read into a wrong report; repaired from the
backup studyc keeps, or from what is still readable."""

from __future__ import annotations

import os
import sqlite3
import sys

import pytest
from click.testing import CliRunner

from studyc.cli import main
from studyc.compiler.plan import RunPlan
from studyc.runtime import procs
from studyc.runtime.store import BACKUP_FILE, SCHEMA_VERSION, Store, StoreError, repair

STUDY = """\
study: health
run: {{command: {python} {trainer}, config: {{base: 0.05}}, seeds: [0, 1], resources: {{hours: 0.001}}}}
metrics: {{nrmse: {{goal: min}}}}
arms: {{a: {{}}}}
hypotheses: {{H1: {{claim: low, check: a.nrmse <= 0.5}}}}
"""


def filled(home, runs: int = 3) -> Store:
    store = Store(home)
    plans = [RunPlan(f"r{i}", "a", "main", i, "true", "true", {}, {"cpus": 1}, {}, 0.1, 0.0, 0.0) for i in range(runs)]
    store.add_runs("s", None, plans)
    for plan in plans:
        store.claim(plan.id, {}, procs.owner_token())
        store.finish(plan.id, "done", 0, None, None, [{"step": s, "loss": 1.0 / (s + 1)} for s in range(200)], 0.0, 0.0)
    return store


def damage(path) -> None:
    """Overwrite the pages after the first with garbage (the header stays: still 'SQLite')."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the file itself
    db.close()
    size = path.stat().st_size
    assert size > 4096
    with open(path, "r+b") as fh:
        fh.seek(4096)
        fh.write(os.urandom(size - 4096))


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_a_new_store_carries_its_schema_version_and_a_newer_one_is_refused(tmp_path):
    store = Store(tmp_path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    store.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    store.close()
    with pytest.raises(StoreError, match="written by a newer studyc"):
        Store(tmp_path)


def test_read_only_commands_create_nothing(tmp_path, write_study, toy_trainer):
    path = write_study(STUDY.format(python=sys.executable, trainer=toy_trainer))
    home = tmp_path / "empty"
    store = Store(home, readonly=True)
    assert store.study_runs("health", None) == [] and store.reduced_series([]) == {}
    status = invoke("status", path, "--store", home, "--json")
    assert status.exit_code == 0, status.output
    assert '"status": "queued"' in status.output
    report = invoke("report", path, "--store", home, "--out", tmp_path / "out")
    assert report.exit_code == 1 and "holds no runs" in report.output
    assert not home.exists()


def test_a_zero_length_store_is_not_taken_for_a_new_one(tmp_path, write_study, toy_trainer):
    path = write_study(STUDY.format(python=sys.executable, trainer=toy_trainer))
    home = tmp_path / "home"
    home.mkdir()
    (home / "store.db").write_bytes(b"")
    with pytest.raises(StoreError, match="is empty"):
        Store(home)
    for command in ("status", "run", "report"):
        result = invoke(command, path, "--store", home)
        assert result.exit_code == 1, result.output
        assert f"{home / 'store.db'} is empty (0 bytes)" in result.output and "studyc store repair" in result.output
        assert "Traceback" not in result.output
    assert (home / "store.db").stat().st_size == 0  # untouched: nothing ran


def test_a_corrupt_store_stops_every_command_and_no_report_is_written(tmp_path, write_study, toy_trainer):
    path = write_study(STUDY.format(python=sys.executable, trainer=toy_trainer))
    home = tmp_path / "home"
    filled(home, runs=20).close()
    damage(home / "store.db")
    with pytest.raises(StoreError, match="integrity check|damaged"):
        Store(home, readonly=True)
    for args in (["status"], ["report", "--out", tmp_path / "out"], ["run", "--out", tmp_path / "out"]):
        result = invoke(args[0], path, "--store", home, *args[1:])
        assert result.exit_code == 1, result.output
        assert str(home / "store.db") in result.output and "studyc store repair" in result.output
    assert not (tmp_path / "out").exists()


def test_repair_restores_the_backup_a_run_took(tmp_path, write_study, toy_trainer):
    path = write_study(STUDY.format(python=sys.executable, trainer=toy_trainer))
    home = tmp_path / "home"
    ran = invoke("run", path, "--store", home, "--out", tmp_path / "out")
    assert ran.exit_code == 0, ran.output
    again = invoke("run", path, "--store", home, "--out", tmp_path / "out")  # backs up a store with both runs
    assert again.exit_code == 0 and (home / BACKUP_FILE).exists()
    damage(home / "store.db")
    refused = invoke("report", path, "--store", home, "--out", tmp_path / "out")
    assert refused.exit_code == 1 and f"cp {home / BACKUP_FILE}" in refused.output
    fixed = invoke("store", "repair", "--store", home)
    assert fixed.exit_code == 0 and "restored" in fixed.output and "broken-" in fixed.output
    assert list(home.glob("store.db.broken-*"))  # the damaged store is kept
    report = invoke("report", path, "--store", home, "--out", tmp_path / "out")
    assert report.exit_code == 0 and "PASS" in report.output


def test_repair_without_a_backup_keeps_what_is_readable(tmp_path):
    store = filled(tmp_path, runs=3)
    store.close()
    (tmp_path / "store.db").write_bytes((tmp_path / "store.db").read_bytes()[:8192])  # cut short
    message = repair(tmp_path)
    assert "rebuilt" in message
    assert Store(tmp_path).db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    assert "empty store" in repair(tmp_path, fresh=True)
    assert Store(tmp_path).study_runs("s", None) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through read-only permissions")
def test_status_works_on_a_read_only_store(tmp_path, write_study, toy_trainer):
    path = write_study(STUDY.format(python=sys.executable, trainer=toy_trainer))
    home = tmp_path / "home"
    filled(home).close()
    for p in home.iterdir():
        p.chmod(0o444)
    home.chmod(0o555)
    try:
        result = invoke("status", path, "--store", home)
        assert result.exit_code == 0, result.output
    finally:
        home.chmod(0o755)


def test_a_store_cut_short_is_refused_on_open_without_a_full_check(tmp_path, monkeypatch):
    filled(tmp_path, runs=20).close()
    path = tmp_path / "store.db"
    path.write_bytes(path.read_bytes()[:8192])
    monkeypatch.setattr("studyc.runtime.store.QUICK_CHECK_MAX_BYTES", 0)  # as for a large store
    with pytest.raises(StoreError, match="is cut short"):
        Store(tmp_path, readonly=True)


def test_series_are_reduced_when_a_run_ends_and_by_the_migration(tmp_path):
    import math

    store = Store(tmp_path)
    plan = RunPlan("r1", "a", "main", 0, "true", "true", {}, {"cpus": 1}, {}, 0.1, 0.0, 0.0)
    store.add_runs("s", None, [plan])
    store.claim("r1", {}, procs.owner_token())
    store.finish("r1", "done", 0, None, None, [{"step": 0, "loss": 3.0}, {"step": 1, "loss": 1.0},
                                               {"step": 2, "loss": 2.0, "acc": float("nan")}], 0.0, 0.0)
    expected = {"loss": {"last": 2.0, "min": 1.0, "max": 3.0, "mean": 2.0}}
    reduced = store.reduced_series(["r1", "none"])
    assert reduced["r1"]["loss"] == expected["loss"] and reduced["none"] == {}
    assert math.isnan(reduced["r1"]["acc"]["last"])
    store.db.execute("DELETE FROM series_stats")
    store.db.execute("PRAGMA user_version = 1")  # a store from before the reductions were kept
    store.close()
    assert Store(tmp_path, readonly=True).reduced_series(["r1"])["r1"]["loss"] == expected["loss"]  # read as it is
    assert Store(tmp_path).reduced_series(["r1"])["r1"]["loss"] == expected["loss"]  # migrated
    assert Store(tmp_path).db.execute("SELECT COUNT(*) FROM series_stats").fetchone()[0] == 2


def test_a_new_store_appears_whole_never_as_an_empty_file(tmp_path, monkeypatch):
    """A reader (`studyc status`, a second studyc) that looks while the first studyc is
    creating the store must find either no store or a whole one, never an empty file that
    reads as truncated."""
    seen = []
    original = Store._migrate

    def migrate(self):
        seen.append(self.path.exists())
        original(self)

    monkeypatch.setattr(Store, "_migrate", migrate)
    store = Store(tmp_path / "home")
    store.close()
    assert seen[0] is False  # the schema was written aside
    assert (tmp_path / "home" / "store.db").read_bytes().startswith(b"SQLite format 3")
    assert [p.name for p in (tmp_path / "home").iterdir() if p.name.endswith(".new")] == []
    Store(tmp_path / "home", readonly=True).close()
