"""Results from the cloud: the bucket (against a local S3 server, moto) and W&B's history
rows. What cannot run here: gs:// (google-cloud-storage needs Google's servers) and
reading W&B through its API (needs network and a login); only W&B's row format is tested."""

from __future__ import annotations

import math

import pytest

from studyc.errors import RunError
from studyc.runtime.results import Results, history_records, split_url
from studyc.runtime.sdk import read_metrics


def put(s3, bucket: str, key: str, body: bytes) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=body)


def test_pull_copies_the_run_directory_but_not_its_checkpoints(s3, bucket, tmp_path):
    base = "results/study-x/run1/"
    put(s3, bucket, base + "metrics.jsonl", b'{"step": 0, "nrmse": 0.5}\n')
    put(s3, bucket, base + "log.txt", b"epoch 0\n")
    put(s3, bucket, base + "exit_code", b"0\n")
    put(s3, bucket, base + "checkpoints/state.pt", b"x" * 1000)
    put(s3, bucket, "results/study-x/run10/metrics.jsonl", b"{}\n")  # another run with a common prefix
    results = Results(f"s3://{bucket}/results", "study-x")
    local = tmp_path / "run1"
    assert results.pull("run1", local) is True
    assert sorted(p.name for p in local.iterdir()) == ["exit_code", "log.txt", "metrics.jsonl"]
    assert read_metrics(local / "metrics.jsonl") == [{"step": 0, "nrmse": 0.5}]
    assert results.pull("run1", local) is False  # nothing changed: nothing copied
    put(s3, bucket, base + "metrics.jsonl", b'{"step": 0, "nrmse": 0.5}\n{"step": 1, "nrmse": 0.4}\n')
    assert results.pull("run1", local) is True
    assert [r["nrmse"] for r in read_metrics(local / "metrics.jsonl")] == [0.5, 0.4]


def test_clear_empties_the_run_directory_in_the_bucket(s3, bucket, tmp_path):
    for key in ("metrics.jsonl", "log.txt", "checkpoints/a", "checkpoints/b"):
        put(s3, bucket, f"study-x/run1/{key}", b"1")
    put(s3, bucket, "study-x/run2/metrics.jsonl", b"1")
    results = Results(f"s3://{bucket}", "study-x")  # a bucket without a path
    assert results.clear("run1") == 4
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["study-x/run2/metrics.jsonl"]


def test_an_unreadable_bucket_is_refused_with_the_reason(s3, tmp_path):
    results = Results("s3://no-such-bucket-here/x", "study-x")
    with pytest.raises(RunError) as info:
        results.check()
    assert "cannot read the results bucket s3://no-such-bucket-here/x" in info.value.message
    assert "NoSuchBucket" in info.value.message and "sky check" in info.value.hint


def test_without_boto3_the_message_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "boto3", None)
    with pytest.raises(RunError) as info:
        Results("s3://bucket/x", "study-x")
    assert "pip install 'studyc[cloud]'" in info.value.hint


def test_gcs_without_its_client_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "google.cloud", None)
    with pytest.raises(RunError) as info:
        Results("gs://bucket/x", "study-x")
    assert "pip install google-cloud-storage" in info.value.hint


def test_split_url():
    assert split_url("s3://b/some/path/") == ("s3", "b", "some/path")
    assert split_url("gs://b") == ("gs", "b", "")


def test_wandb_history_rows_become_metric_records():
    # The shape of `wandb.Api().run(...).scan_history()` rows for `studyc.log(step=i, ...)`.
    rows = [
        {"_step": 0, "_timestamp": 1700000000.1234, "_runtime": 3.2, "loss": 1.0, "nrmse": 0.5},
        {"_step": 1, "_timestamp": 1700000001.5, "_runtime": 4.2, "loss": 0.5, "nrmse": 0.4, "note": "text",
         "flag": True},
        {"_step": 2, "_timestamp": 1700000002.0, "_runtime": 5.0},  # nothing logged at this step
    ]
    assert history_records(rows) == [
        {"t": 1700000000.123, "step": 0, "loss": 1.0, "nrmse": 0.5},
        {"t": 1700000001.5, "step": 1, "loss": 0.5, "nrmse": 0.4},
    ]
    assert not any(math.isnan(v) for r in history_records(rows) for v in r.values())
