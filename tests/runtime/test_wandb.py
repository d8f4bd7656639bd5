"""`tracking.wandb`: each run logs to W&B through `studyc.log`, read back from the files of
W&B's real client in offline mode. Without tracking, runs never import wandb."""

from __future__ import annotations

import json
import struct
import sys
import textwrap
from pathlib import Path

import pytest

from studyc import orchestrate
from studyc.runtime.store import Store
from studyc.spec.loader import load

pytest.importorskip("wandb")

TRAINER = """\
import sys, studyc
c = studyc.config()
for i in range(3):
    studyc.log(step=i, nrmse=c["base"] + 0.01 / (i + 1), wandb_loaded=float("wandb" in sys.modules))
"""


def study(trainer: Path, tracking: str) -> str:
    return textwrap.dedent(f"""\
        study: tracked
        tags: [phase3]
        run:
          command: {sys.executable} {trainer}
          config: {{base: 0.05}}
          seeds: [0]
        metrics:
          nrmse: {{goal: min}}
        arms:
          pure: {{}}
        """) + tracking


def wandb_records(path: Path):
    """The records of a W&B transaction log (.wandb): a LevelDB-style log of protobuf
    Records in 32 KiB blocks, each chunk with a 7-byte header (crc, length, type)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # block trailer padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            break
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # full, or last chunk of a record
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def test_runs_log_to_wandb_offline(tmp_path, write_study, monkeypatch):
    trainer = tmp_path / "train.py"
    trainer.write_text(TRAINER)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wb").mkdir()
    path = write_study(study(trainer, "tracking: {wandb: {project: universal-simulator, tags: [upt]}}\n"))
    store = Store(tmp_path / "store")
    orchestrate.execute(load(str(path)), store)
    run_id = store.study_runs("tracked", None)[0]["run_id"]
    assert store.get(run_id).status == "done"

    [log] = (tmp_path / "wb" / "wandb").glob("offline-run-*/run-*.wandb")
    records = list(wandb_records(log))
    [run] = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.project == "universal-simulator"
    assert run.run_group == "tracked"  # the study, when tracking.wandb.group is not set
    assert list(run.tags) == ["phase3", "upt"]
    assert run.display_name == "pure-s0"
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["base"] == 0.05 and config["seed"] == 0
    assert config["studyc"]["run_id"] == run_id and config["studyc"]["arm"] == "pure"
    history = [{(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    logged = [(h["_step"], h["nrmse"]) for h in history]
    stored = [(s, v) for _, s, n, v in store.series([run_id])[run_id] if n == "nrmse"]
    assert logged == stored and len(logged) == 3


def test_without_tracking_runs_never_import_wandb(tmp_path, write_study):
    trainer = tmp_path / "train.py"
    trainer.write_text(TRAINER)
    store = Store(tmp_path / "store")
    orchestrate.execute(load(str(write_study(study(trainer, "")))), store)
    run_id = store.study_runs("tracked", None)[0]["run_id"]
    assert {v for _, _, n, v in store.series([run_id])[run_id] if n == "wandb_loaded"} == {0.0}


def test_no_credentials_skips_tracking_and_runs_still_train(tmp_path, monkeypatch):
    """A study that asks for W&B on a machine with no key must not lose its runs."""
    from click.testing import CliRunner

    from studyc.cli import main
    from studyc.runtime import wandb_log

    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    wandb_log.unavailable.cache_clear()
    trainer = tmp_path / "train.py"
    trainer.write_text(TRAINER)
    path = tmp_path / "s.yaml"
    path.write_text(study(trainer, "tracking: {wandb: {project: p}}\n"))
    result = CliRunner().invoke(main, ["run", str(path), "--store", str(tmp_path / "store"), "--out", str(tmp_path / "r")])
    wandb_log.unavailable.cache_clear()
    assert result.exit_code == 0, result.output
    assert "W&B tracking skipped: no W&B credentials" in result.output
    runs = Store(tmp_path / "store").study_runs("tracked", None)
    assert [r["status"] for r in runs] == ["done"]


def test_a_failing_wandb_init_does_not_fail_the_run(tmp_path, monkeypatch, capsys):
    from studyc.runtime import sdk

    monkeypatch.setenv("STUDYC_RUN_DIR", str(tmp_path))
    monkeypatch.setenv("STUDYC_WANDB_PROJECT", "p")
    monkeypatch.setenv("STUDYC_WANDB_MODE", "not-a-mode")  # wandb.init rejects it
    monkeypatch.setattr(sdk, "_wandb_run", None)
    sdk.log(step=0, loss=1.0)
    sdk.log(step=1, loss=0.5)
    assert "W&B logging disabled" in capsys.readouterr().err
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2
