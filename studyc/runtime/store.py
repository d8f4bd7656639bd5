"""The store: SQLite in WAL mode under ``.studyc/``, and the only module that speaks SQL.

Runs are keyed by their content hash, so a finished run is shared by every study that
plans it. A run's final status and its metric series are written in one transaction:
a kill at any moment leaves either the whole record or none of it.

The schema is versioned with ``PRAGMA user_version`` (MIGRATIONS bring an older store up
to date). Read-only commands open the store read-only and create nothing. A store that
is not a database, or fails SQLite's quick check, is refused with what to do: restore
the WAL-safe backup studyc takes before each run (``store.db.bak``), or `studyc store
repair`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from studyc.errors import RunError
from studyc.protocol import HOME
from studyc.runtime import procs

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    command TEXT NOT NULL,
    config TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued',
    attempts INTEGER NOT NULL DEFAULT 0,
    failure TEXT,
    exit_code INTEGER,
    started_at REAL,
    ended_at REAL,
    host TEXT,
    log_tail TEXT,
    est_hours REAL,
    est_usd REAL,
    gpu_hours REAL,
    usd REAL,
    owner TEXT,
    pgid INTEGER
);
CREATE TABLE IF NOT EXISTS attempts (
    run_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    failure TEXT,
    exit_code INTEGER,
    started_at REAL,
    ended_at REAL,
    config TEXT,
    log_tail TEXT,
    PRIMARY KEY (run_id, attempt)
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    step INTEGER,
    name TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, seq, name)
);
CREATE TABLE IF NOT EXISTS studies (
    name TEXT NOT NULL,
    profile TEXT NOT NULL,
    path TEXT,
    spec_hash TEXT,
    checks_hash TEXT,
    checks_locked_at REAL,
    checks_changed_after_results INTEGER NOT NULL DEFAULT 0,
    updated_at REAL,
    PRIMARY KEY (name, profile)
);
CREATE TABLE IF NOT EXISTS study_runs (
    study TEXT NOT NULL,
    profile TEXT NOT NULL,
    stage TEXT NOT NULL,
    arm TEXT NOT NULL,
    seed INTEGER NOT NULL,
    run_id TEXT NOT NULL,
    skipped TEXT,
    PRIMARY KEY (study, profile, stage, arm, seed)
);
CREATE INDEX IF NOT EXISTS study_runs_run ON study_runs (run_id);
CREATE TABLE IF NOT EXISTS series_stats (
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    lo REAL,
    hi REAL,
    mean REAL,
    last REAL,
    last_seq INTEGER,
    PRIMARY KEY (run_id, name)
);
"""

# What a study's run rows carry of each run record (its config and command are the plan's).
RUN_FIELDS = ("status", "attempts", "failure", "exit_code", "started_at", "ended_at", "log_tail", "usd", "gpu_hours",
              "owner")
STATUSES = ("queued", "running", "done", "failed", "skipped")
STORE_FILE = "store.db"
BACKUP_FILE = "store.db.bak"
SQLITE_MAGIC = b"SQLite format 3\x00"
# A full `PRAGMA quick_check` reads every page (about a second per 200 MB): on open it is
# run for stores up to this size and by every command that writes; a larger store opened
# to read gets the header checks, and the full check as soon as anything fails.
QUICK_CHECK_MAX_BYTES = 64 * 2**20
# Columns added after the first release: (table, column, type), added to older stores.
_ADDED_COLUMNS = [("runs", "owner", "TEXT"), ("runs", "pgid", "INTEGER"),
                  ("attempts", "job_name", "TEXT"), ("attempts", "job_id", "INTEGER")]  # a cloud attempt's managed job


def _add_columns(db: sqlite3.Connection) -> None:
    for table, column, kind in _ADDED_COLUMNS:
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


# Each run's logged series reduced by SQLite when the run's end is recorded, so that a
# report reads one row per run and series instead of every metric row.
_REDUCE = (
    "INSERT INTO series_stats (run_id, name, lo, hi, mean, last_seq) SELECT run_id, name, MIN(value), MAX(value),"
    " AVG(value), MAX(seq) FROM metrics WHERE {where} GROUP BY run_id, name")
_REDUCE_LAST = (
    "UPDATE series_stats SET last = (SELECT m.value FROM metrics m WHERE m.run_id = series_stats.run_id"
    " AND m.seq = series_stats.last_seq AND m.name = series_stats.name) WHERE {where}")


def _reduce_all(db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM series_stats")
    db.execute(_REDUCE.format(where="1"))
    db.execute(_REDUCE_LAST.format(where="1"))


# user_version -> the step that brings a store of that version to the next. Version 0 is
# a store from before versioning (its tables are created by SCHEMA, its columns added here).
SCHEMA_VERSION = 2
MIGRATIONS = {0: _add_columns, 1: _reduce_all}


class StoreError(RunError):
    """The store cannot be used as it is (corrupt, truncated, too new, unwritable)."""


def default_home() -> Path:
    return Path(os.environ.get(HOME, ".studyc"))


@dataclass
class RunRecord:
    id: str
    status: str
    attempts: int
    failure: str | None
    exit_code: int | None
    started_at: float | None
    ended_at: float | None
    host: str | None
    log_tail: str | None
    config: dict[str, Any]
    seed: int
    command: str
    est_hours: float | None
    usd: float | None
    gpu_hours: float | None


class Store:
    """``readonly``: for commands that only look (status, report): nothing is created or
    written; a missing store reads as an empty one."""

    def __init__(self, home: Path | None = None, readonly: bool = False):
        self.home = Path(home) if home else default_home()
        self.path = self.home / STORE_FILE
        self.readonly = readonly
        size = self._check_file()
        if readonly:
            self.db = self._open_readonly()
        else:
            self.home.mkdir(parents=True, exist_ok=True)
            if not size:
                self._create()
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        with self.guard("open"):
            if not readonly or size <= QUICK_CHECK_MAX_BYTES:
                self._check_health()
            if not readonly:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.execute("PRAGMA busy_timeout=30000")
                self._migrate()

    def _check_file(self) -> int:
        """A store file that is empty, cut short or not SQLite is refused, never taken for a
        new store. Returns its size (0: none yet)."""
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(100)
                size = os.fstat(fh.fileno()).st_size
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise StoreError(f"cannot read the store {self.path}: {exc.strerror}", "check its permissions") from None
        if not head:
            raise self._broken("is empty (0 bytes): truncated, not a new store")
        if not head.startswith(SQLITE_MAGIC) or len(head) < 100:
            raise self._broken("is not an SQLite database")
        page = int.from_bytes(head[16:18], "big")
        pages = int.from_bytes(head[28:32], "big")  # as of the last checkpoint: the file holds at least these
        if size < (65536 if page == 1 else page) * pages:
            raise self._broken(f"is cut short ({size} bytes where its header counts {pages} pages)")
        return size

    def _create(self) -> None:
        """A new store appears whole: built aside, then linked into place without replacing
        one another studyc made meanwhile, so no reader ever sees a half-made (empty) file."""
        aside = self.path.with_name(f".{STORE_FILE}.{os.getpid()}.new")
        try:
            self.db = sqlite3.connect(aside, isolation_level=None)
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                self._migrate()
            finally:
                self.db.close()
            os.link(aside, self.path)
        except FileExistsError:
            pass  # another studyc created it first: use theirs
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot create the store {self.path}: {exc}",
                             f"make {self.home} writable, or point STUDYC_HOME at a directory that is") from None
        finally:
            aside.unlink(missing_ok=True)

    def _open_readonly(self) -> sqlite3.Connection:
        if not self.path.exists():  # nothing to read: an empty store in memory, nothing on disk
            db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            db.executescript(SCHEMA)
            _add_columns(db)
            return db
        uri = f"file:{self.path}?mode=ro"
        try:
            db = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("SELECT 1 FROM sqlite_master LIMIT 1")
            return db
        except sqlite3.OperationalError:
            # A WAL store in a read-only directory: its shared-memory file cannot be made.
            # Read the file as it is (nobody can be writing to it there).
            return sqlite3.connect(f"file:{self.path}?immutable=1", uri=True, isolation_level=None,
                                   check_same_thread=False)

    def _check_health(self) -> None:
        row = self.db.execute("PRAGMA quick_check").fetchone()
        if row is None or row[0] != "ok":
            raise self._broken(f"fails SQLite's integrity check ({row[0] if row else 'no answer'})")

    def _broken(self, what: str) -> StoreError:
        backup = self.home / BACKUP_FILE
        restore = (f"restore the backup studyc took before the last run (cp {backup} {self.path}), or "
                   if backup.exists() else "")
        return StoreError(f"the store {self.path} {what}; nothing was read from it",
                          f"{restore}run `studyc store repair` (keeps what is readable; --fresh starts an empty store)")

    @contextmanager
    def guard(self, doing: str = "read") -> Iterator[None]:
        """SQLite errors that mean a damaged store become one StoreError naming the file;
        a failure of any other kind is checked against the store's health first."""
        try:
            yield
        except StoreError:
            raise
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "readonly" in str(exc).lower().replace(" ", ""):
                raise StoreError(f"cannot {doing} the store {self.path}: it is read-only",
                                 "make it writable, or point --store (or $STUDYC_HOME) at a writable directory") from None
            try:
                self._check_health()
            except sqlite3.DatabaseError:
                raise self._broken(f"is damaged ({exc})") from None
            if isinstance(exc, (sqlite3.DataError, sqlite3.IntegrityError, sqlite3.ProgrammingError,
                                sqlite3.InterfaceError)):
                raise  # a bug, not the store
            raise StoreError(f"cannot {doing} the store {self.path}: {exc}",
                             "check the disk (space, permissions) and try again") from None

    def _migrate(self) -> None:
        """Bring the schema up to SCHEMA_VERSION, one step at a time, in one transaction."""
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"the store {self.path} has schema version {version}, written by a newer studyc; this "
                             f"one reads up to version {SCHEMA_VERSION}", "upgrade studyc")
        if version == SCHEMA_VERSION:
            return
        with self.transaction() as db:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            for step in range(version, SCHEMA_VERSION):
                MIGRATIONS[step](db)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def backup(self) -> Path | None:
        """A consistent copy of the store (SQLite's online backup: safe in WAL mode, while
        other studyc processes write) beside it, taken before a run changes anything."""
        if self.readonly:
            return None
        target = self.home / BACKUP_FILE
        partial = target.with_name(target.name + ".tmp")
        with self.guard("back up"):
            copy = sqlite3.connect(partial)
            try:
                self.db.backup(copy)
            finally:
                copy.close()
        os.replace(partial, target)
        return target

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def run_dir(self, run_id: str) -> Path:
        return self.home / "runs" / run_id

    # ------------------------------------------------------------ studies

    def register_study(self, name: str, profile: str | None, path: str, spec_hash: str, checks_hash: str) -> None:
        """Record the study; lock its checks the first time, and flag a later change of
        checks once results exist (the pre-registration record)."""
        prof = profile or ""
        now = time.time()
        with self.transaction() as db:
            row = db.execute("SELECT checks_hash, checks_locked_at FROM studies WHERE name=? AND profile=?", (name, prof)).fetchone()
            if row is None:
                db.execute("INSERT INTO studies (name, profile, path, spec_hash, checks_hash, updated_at) VALUES (?,?,?,?,?,?)",
                           (name, prof, path, spec_hash, checks_hash, now))
                return
            changed = row["checks_hash"] != checks_hash and row["checks_locked_at"] is not None and self._has_results(db, name, prof)
            db.execute(
                "UPDATE studies SET path=?, spec_hash=?, updated_at=?, checks_changed_after_results = checks_changed_after_results OR ?"
                " , checks_hash = CASE WHEN checks_locked_at IS NULL THEN ? ELSE checks_hash END WHERE name=? AND profile=?",
                (path, spec_hash, now, int(changed), checks_hash, name, prof))

    def _has_results(self, db: sqlite3.Connection, name: str, profile: str) -> bool:
        return db.execute(
            "SELECT 1 FROM study_runs s JOIN runs r ON r.id = s.run_id WHERE s.study=? AND s.profile=? AND r.status='done' LIMIT 1",
            (name, profile)).fetchone() is not None

    def lock_checks(self, name: str, profile: str | None) -> None:
        with self.transaction() as db:
            db.execute("UPDATE studies SET checks_locked_at=? WHERE name=? AND profile=? AND checks_locked_at IS NULL",
                       (time.time(), name, profile or ""))

    def study_record(self, name: str, profile: str | None) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM studies WHERE name=? AND profile=?", (name, profile or "")).fetchone()
        return dict(row) if row else None

    # ------------------------------------------------------------ runs

    def add_runs(self, study: str, profile: str | None, runs: list[Any]) -> None:
        """Enter planned runs (queued unless already known) and link them to the study."""
        with self.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO runs (id, command, config, seed, est_hours, est_usd) VALUES (?,?,?,?,?,?)",
                [(r.id, r.command, json.dumps(r.config, sort_keys=True), r.seed, r.est_hours, r.est_usd) for r in runs])
            db.executemany(
                "INSERT INTO study_runs (study, profile, stage, arm, seed, run_id) VALUES (?,?,?,?,?,?)"
                " ON CONFLICT (study, profile, stage, arm, seed) DO UPDATE SET run_id=excluded.run_id, skipped=NULL",
                [(study, profile or "", r.stage, r.arm, r.seed, r.id) for r in runs])

    def forget_membership(self, study: str, profile: str | None, keep: set[tuple[str, str, int]]) -> None:
        """Drop links to runs the study no longer plans (an arm was removed or renamed)."""
        rows = self.db.execute("SELECT stage, arm, seed FROM study_runs WHERE study=? AND profile=?", (study, profile or "")).fetchall()
        stale = [(r["stage"], r["arm"], r["seed"]) for r in rows if (r["stage"], r["arm"], r["seed"]) not in keep]
        if stale:
            with self.transaction() as db:
                db.executemany("DELETE FROM study_runs WHERE study=? AND profile=? AND stage=? AND arm=? AND seed=?",
                               [(study, profile or "", *s) for s in stale])

    def mark_skipped(self, study: str, profile: str | None, run: Any, reason: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE study_runs SET skipped=? WHERE study=? AND profile=? AND stage=? AND arm=? AND seed=?",
                       (reason, study, profile or "", run.stage, run.arm, run.seed))

    def get(self, run_id: str) -> RunRecord | None:
        row = self.db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        return _record(row) if row else None

    def records(self, run_ids: list[str]) -> dict[str, RunRecord]:
        out: dict[str, RunRecord] = {}
        for chunk in _chunks(run_ids, 500):
            marks = ",".join("?" * len(chunk))
            for row in self.db.execute(f"SELECT * FROM runs WHERE id IN ({marks})", chunk):
                out[row["id"]] = _record(row)
        return out

    def claim(self, run_id: str, config: dict[str, Any], owner: str) -> int | None:
        """Mark a run running for the studyc named ``owner``; returns the attempt number,
        or None when another live studyc (another study sharing the run) is running it."""
        now = time.time()
        with self.transaction() as db:
            row = db.execute("SELECT status, owner FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is None:
                raise KeyError(f"run {run_id} is not in the store (add_runs comes first)")
            if _held_by_another(row, owner):
                return None
            db.execute("UPDATE runs SET status='running', attempts=attempts+1, started_at=?, ended_at=NULL, host=?, failure=NULL,"
                       " exit_code=NULL, owner=?, pgid=NULL WHERE id=?", (now, socket.gethostname(), owner, run_id))
            attempt = db.execute("SELECT attempts FROM runs WHERE id=?", (run_id,)).fetchone()[0]
            db.execute("INSERT OR REPLACE INTO attempts (run_id, attempt, status, started_at, config) VALUES (?,?,?,?,?)",
                       (run_id, attempt, "running", now, json.dumps(config, sort_keys=True)))
        return attempt

    def launched(self, run_id: str, pgid: int | None) -> None:
        """Remember the run's process group, so that a later studyc can clean up after a
        studyc that died."""
        if pgid is not None:
            with self.transaction() as db:
                db.execute("UPDATE runs SET pgid=? WHERE id=?", (pgid, run_id))

    def job_submitted(self, run_id: str, name: str, job_id: int | None = None) -> None:
        """The managed job that runs the current attempt (its name before launch, its id
        once known), so that a later studyc finds the job again instead of launching another."""
        with self.transaction() as db:
            db.execute("UPDATE attempts SET job_name=?, job_id=COALESCE(?, job_id) WHERE run_id=?"
                       " AND attempt=(SELECT attempts FROM runs WHERE id=?)", (name, job_id, run_id, run_id))

    def open_jobs(self, run_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Of ``run_ids``, those whose last attempt launched a managed job whose outcome no
        studyc recorded (it may still be going): that attempt, by run. Not an attempt that
        studyc stopped itself (interrupted), nor one whose end it recorded."""
        out: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(run_ids, 500):
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                "SELECT a.* FROM runs r JOIN attempts a ON a.run_id = r.id AND a.attempt = r.attempts"
                f" WHERE r.id IN ({marks}) AND r.status IN ('queued', 'running') AND r.failure IS NULL"
                " AND a.job_name IS NOT NULL AND a.status != 'interrupted'", chunk)
            out.update({row["run_id"]: dict(row) for row in rows})
        return out

    def reattach(self, run_id: str, owner: str) -> int | None:
        """Follow the run's last attempt again, now for ``owner`` (its job outlived the
        studyc that launched it); returns the attempt number, None when another live
        studyc follows it."""
        with self.transaction() as db:
            row = db.execute("SELECT status, owner, attempts FROM runs WHERE id=?", (run_id,)).fetchone()
            if _held_by_another(row, owner):
                return None
            db.execute("UPDATE runs SET status='running', ended_at=NULL, failure=NULL, exit_code=NULL, owner=?, pgid=NULL"
                       " WHERE id=?", (owner, run_id))
            db.execute("UPDATE attempts SET status='running', failure=NULL, ended_at=NULL WHERE run_id=? AND attempt=?",
                       (run_id, row["attempts"]))
        return row["attempts"]

    def finish(self, run_id: str, status: str, exit_code: int | None, failure: str | None, log_tail: str | None,
               series: list[dict[str, Any]], usd: float | None, gpu_hours: float | None, final: bool = True) -> None:
        """Record an attempt's end and the run's metric series, atomically. A failed attempt
        that will be retried leaves the run queued (``final`` False). ``usd`` and
        ``gpu_hours`` are what the attempt spent; the run keeps the sum over attempts."""
        now = time.time()
        rows = []
        for seq, record in enumerate(series):
            step = record.get("step")
            for name, value in record.items():
                if name in ("step", "t"):
                    continue
                rows.append((run_id, seq, step, name, _db_float(value)))
        with self.transaction() as db:
            attempt = db.execute("SELECT attempts FROM runs WHERE id=?", (run_id,)).fetchone()[0]
            db.execute("UPDATE attempts SET status=?, failure=?, exit_code=?, ended_at=?, log_tail=? WHERE run_id=? AND attempt=?",
                       (status, failure, exit_code, now, log_tail, run_id, attempt))
            db.execute("DELETE FROM metrics WHERE run_id=?", (run_id,))
            db.executemany("INSERT INTO metrics (run_id, seq, step, name, value) VALUES (?,?,?,?,?)", rows)
            db.execute("DELETE FROM series_stats WHERE run_id=?", (run_id,))
            db.execute(_REDUCE.format(where="run_id = ?1"), (run_id,))
            db.execute(_REDUCE_LAST.format(where="run_id = ?1"), (run_id,))
            db.execute("UPDATE runs SET status=?, failure=?, exit_code=?, ended_at=?, log_tail=?, owner=NULL, pgid=NULL,"
                       " usd=COALESCE(usd,0)+?, gpu_hours=COALESCE(gpu_hours,0)+? WHERE id=?",
                       (status if final else "queued", failure, exit_code, now, log_tail, usd or 0.0, gpu_hours or 0.0, run_id))

    def requeue(self, run_ids: list[str]) -> None:
        """Runs stopped by Ctrl-C: back to the queue, their attempt marked interrupted."""
        now = time.time()
        with self.transaction() as db:
            db.executemany("UPDATE attempts SET status='interrupted', ended_at=? WHERE run_id=? AND status='running'",
                           [(now, r) for r in run_ids])
            db.executemany("UPDATE runs SET status='queued', failure=NULL, exit_code=NULL, owner=NULL, pgid=NULL WHERE id=?",
                           [(r,) for r in run_ids])

    def recover_interrupted(self, run_ids: list[str]) -> list[str]:
        """Of ``run_ids``, those left 'running' by a studyc that died: what is left of their
        processes is killed and they go back to the queue (their attempt: preempted).
        Runs of a studyc still alive (another study sharing them) are left alone."""
        stale = []
        for chunk in _chunks(run_ids, 500):
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(f"SELECT id, owner, pgid FROM runs WHERE status='running' AND id IN ({marks})", chunk)
            stale += [(r["id"], r["owner"], r["pgid"]) for r in rows if not procs.owner_alive(r["owner"])]
        for run_id, _, pgid in stale:
            procs.kill_orphans(pgid, run_id)
        if stale:
            now = time.time()
            with self.transaction() as db:
                for run_id, owner, _ in stale:
                    # Only if no other studyc claimed it in the meantime.
                    cur = db.execute("UPDATE runs SET status='queued', owner=NULL, pgid=NULL WHERE id=? AND status='running'"
                                     " AND owner IS ?", (run_id, owner))
                    if cur.rowcount:
                        db.execute("UPDATE attempts SET status='failed', failure='preempted', ended_at=? WHERE run_id=?"
                                   " AND status='running'", (now, run_id))
        return [s[0] for s in stale]

    def spent(self, study: str, profile: str | None) -> tuple[float, float]:
        """Dollars and GPU-hours the study's runs have used so far, over all attempts."""
        row = self.db.execute(
            "SELECT COALESCE(SUM(r.usd),0), COALESCE(SUM(r.gpu_hours),0) FROM runs r WHERE r.id IN"
            " (SELECT run_id FROM study_runs WHERE study=? AND profile=?)", (study, profile or "")).fetchone()
        return float(row[0]), float(row[1])

    def attempts(self, run_id: str) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute("SELECT * FROM attempts WHERE run_id=? ORDER BY attempt", (run_id,))]

    def count_runs(self, study: str, profile: str | None) -> int:
        return self.db.execute("SELECT COUNT(*) FROM study_runs WHERE study=? AND profile=?",
                               (study, profile or "")).fetchone()[0]

    def study_runs(self, study: str, profile: str | None) -> list[dict[str, Any]]:
        """The study's runs with their records. A run left 'running' by a studyc that died
        reads as 'queued': that is what the next `studyc run` will do with it."""
        cursor = self.db.cursor()
        cursor.row_factory = None  # plain tuples, zipped below: a large sweep has thousands of rows
        cursor.execute(f"SELECT s.stage, s.arm, s.seed, s.run_id, s.skipped, {', '.join('r.' + c for c in RUN_FIELDS)}"
                       " FROM study_runs s JOIN runs r ON r.id = s.run_id WHERE s.study=? AND s.profile=? ORDER BY s.rowid",
                       (study, profile or ""))
        names = ("stage", "arm", "seed", "run_id", "skipped", *RUN_FIELDS)
        out = [dict(zip(names, row)) for row in cursor]
        for row in out:
            if row["status"] == "running" and not procs.owner_alive(row["owner"]):
                row["status"] = "queued"
        return out

    def series(self, run_ids: list[str]) -> dict[str, list[tuple[int, int | None, str, float]]]:
        """Each run's metric records as (seq, step, name, value), in logging order."""
        out: dict[str, list] = {rid: [] for rid in run_ids}
        for chunk in _chunks(run_ids, 500):
            marks = ",".join("?" * len(chunk))
            for row in self.db.execute(f"SELECT run_id, seq, step, name, value FROM metrics WHERE run_id IN ({marks}) ORDER BY run_id, seq",
                                       chunk):
                value = row[4] if row[4] is not None else math.nan
                out[row[0]].append((row[1], row[2], row[3], value))
        return out

    # ------------------------------------------------------------ reductions for the report

    def reduced_series(self, run_ids: list[str]) -> dict[str, dict[str, dict[str, float]]]:
        """Per run and logged series: last, min, max and mean (reduced by SQLite when the
        run's end was recorded), in one query."""
        with self.guard():
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version < 2:  # an older store opened read-only: reduce its metric rows now
                rows = self.db.execute(
                    "SELECT g.run_id, g.name, g.lo, g.hi, g.mean, m.value FROM (SELECT run_id, name, MIN(value) lo,"
                    " MAX(value) hi, AVG(value) mean, MAX(seq) last_seq FROM metrics WHERE run_id IN"
                    " (SELECT value FROM json_each(?1)) GROUP BY run_id, name) g JOIN metrics m ON m.run_id = g.run_id"
                    " AND m.seq = g.last_seq AND m.name = g.name", (json.dumps(run_ids),))
            else:
                rows = self.db.execute("SELECT run_id, name, lo, hi, mean, last FROM series_stats"
                                       " WHERE run_id IN (SELECT value FROM json_each(?))", (json.dumps(run_ids),))
            out: dict[str, dict[str, dict[str, float]]] = {rid: {} for rid in run_ids}
            nan = math.nan  # NaN is stored as NULL; a REAL column returns floats
            for rid, name, lo, hi, mean, last in rows:
                out[rid][name] = {"last": nan if last is None else last, "min": nan if lo is None else lo,
                                  "max": nan if hi is None else hi, "mean": nan if mean is None else mean}
        return out

    def points(self, series: str, run_ids: list[str]) -> Iterator[tuple[str, Any, float | None]]:
        """(run id, step (or seq when the run logged none), value) of one logged series."""
        with self.guard():
            yield from self.db.execute(
                "SELECT run_id, COALESCE(step, seq), value FROM metrics WHERE name = ?"
                " AND run_id IN (SELECT value FROM json_each(?))", (series, json.dumps(run_ids)))

    def profiles(self, study: str) -> list[str | None]:
        """The profiles the study has runs under (None: no profile)."""
        with self.guard():
            return [r[0] or None for r in self.db.execute(
                "SELECT DISTINCT profile FROM study_runs WHERE study = ?", (study,))]


def repair(home: Path, fresh: bool = False) -> str:
    """Set a damaged store aside (never deleted) and put a working one in its place: the
    backup when it is healthy, else every row still readable (``fresh``: an empty store).
    Returns what was done, in a sentence."""
    path = home / STORE_FILE
    if not path.exists():
        return f"there is no store at {path}: nothing to repair"
    aside = path.with_name(f"{STORE_FILE}.broken-{time.strftime('%Y%m%dT%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{path}{suffix}").exists():
            os.replace(f"{path}{suffix}", f"{aside}{suffix}")
    kept = f"the damaged store is kept as {aside}"
    if fresh:
        return f"started an empty store at {path}; {kept}"
    backup = home / BACKUP_FILE
    if backup.exists() and _healthy(backup):
        shutil.copyfile(backup, path)
        return f"restored {path} from the backup taken before the last run; {kept}"
    copied = _salvage(aside, path)
    return f"rebuilt {path} from what was readable ({copied} rows); {kept}"


def _healthy(path: Path) -> bool:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        finally:
            db.close()
    except sqlite3.DatabaseError:
        return False


def _salvage(broken: Path, path: Path) -> int:
    """Copy every row that can still be read, table by table, into a new store."""
    fresh = Store(path.parent)
    copied = 0
    try:
        old = sqlite3.connect(f"file:{broken}?mode=ro", uri=True)
    except sqlite3.DatabaseError:
        return 0
    for table in ("runs", "attempts", "metrics", "studies", "study_runs"):
        try:
            columns = [row[1] for row in old.execute(f"PRAGMA table_info({table})")]
            cursor = old.execute(f"SELECT {', '.join(columns)} FROM {table}")
        except sqlite3.DatabaseError:
            continue
        insert = f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        while True:
            try:
                chunk = cursor.fetchmany(1000)
            except sqlite3.DatabaseError:
                break  # the rest of this table is unreadable; what came before it is kept
            if not chunk:
                break
            with fresh.transaction() as db:
                db.executemany(insert, chunk)
            copied += len(chunk)
    old.close()
    fresh.close()
    return copied


def _held_by_another(row: sqlite3.Row, owner: str) -> bool:
    return row["status"] == "running" and row["owner"] != owner and procs.owner_alive(row["owner"])


def _db_float(value: Any) -> float | None:
    # SQLite stores NaN as NULL; keep inf as is, and NaN as NULL that reads back as NaN.
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def _record(row: sqlite3.Row) -> RunRecord:
    return RunRecord(
        id=row["id"], status=row["status"], attempts=row["attempts"], failure=row["failure"], exit_code=row["exit_code"],
        started_at=row["started_at"], ended_at=row["ended_at"], host=row["host"], log_tail=row["log_tail"],
        config=json.loads(row["config"]), seed=row["seed"], command=row["command"], est_hours=row["est_hours"],
        usd=row["usd"], gpu_hours=row["gpu_hours"])


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
