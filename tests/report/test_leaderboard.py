"""The leaderboard shared across studies: seed 002's columns, one row per arm keyed by
its run ids, columns united across studies, atomic rewrites."""

import csv

from studyc.report.leaderboard import update


def row(run_id, **cells):
    return {"run_id": run_id, "timestamp": "2025-11-04T10:00:00Z", "label": run_id, **cells,
            "wall_clock (s)": "12.5", "params": "", "tags": "phase3", "study": "s", "profile": "", "arm": run_id,
            "n": "2", "config": "{}"}


def read(path):
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return reader.fieldnames, list(reader)


def test_rows_are_added_then_updated_in_place(tmp_path):
    path = tmp_path / "reports" / "leaderboard.csv"
    assert update(path, [row("r1 r2", nrmse="0.06"), row("r3 r4", nrmse="0.05")]) == {"added": 2, "updated": 0, "rows": 2}
    assert update(path, [row("r1 r2", nrmse="0.061")]) == {"added": 0, "updated": 1, "rows": 2}
    header, rows = read(path)
    assert header[:4] == ["run_id", "timestamp", "label", "nrmse"] and header[-8:-5] == ["wall_clock (s)", "params", "tags"]
    assert [(r["run_id"], r["nrmse"]) for r in rows] == [("r1 r2", "0.061"), ("r3 r4", "0.05")]


def test_another_study_adds_its_metric_columns(tmp_path):
    path = tmp_path / "leaderboard.csv"
    update(path, [row("a", nrmse="0.06", conservation_gap="0.01")])
    update(path, [row("b", peak_acc="0.7")])
    header, rows = read(path)
    assert header[:6] == ["run_id", "timestamp", "label", "nrmse", "conservation_gap", "peak_acc"]
    assert rows[0]["peak_acc"] == "" and rows[1]["nrmse"] == "" and rows[1]["peak_acc"] == "0.7"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".leaderboard.csv.") and p.suffix != ".lock"]
