"""Fixtures for `studyc run --cloud`: a real S3-compatible server (moto, on 127.0.0.1) for
the results bucket, and the fake of SkyPilot's client calls (``fake_sky.py``)."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

pytest.importorskip("sky", reason="the cloud extra (skypilot) is not installed")
boto3 = pytest.importorskip("boto3", reason="the cloud extra (boto3) is not installed")
moto_server = pytest.importorskip("moto.server", reason="moto[server] (dev extra) is not installed")

from testkit.cloud import CloudRun  # noqa: E402 - after the checks that skip without the cloud extra

FAKE_SKY = Path(__file__).with_name("fake_sky.py")


def _load_fake():
    spec = importlib.util.spec_from_file_location("studyc_tests_fake_sky", FAKE_SKY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_FAKE = _load_fake()


@pytest.fixture(scope="session")
def fake_sky_module():
    return _FAKE


@pytest.fixture(scope="session")
def s3_endpoint():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    """A boto3 client on the local S3 server; the same settings reach studyc, the fake's
    jobs and any process they start, through the standard AWS environment variables."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return boto3.client("s3")


@pytest.fixture
def bucket(s3) -> str:
    name = f"studyc-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def fake_sky(tmp_path):
    fake = _FAKE.FakeSky(tmp_path / "sky")
    yield fake
    fake.kill_all()


@pytest.fixture
def cloud(tmp_path, fake_sky):
    return CloudRun(tmp_path / ".studyc", fake_sky)


# A trainer that follows the run protocol. Config: steps, sleep per step, crash (exit code
# at the last step, once per `crash_times`), oom (when batch_size > oom), nan (log NaN).
TRAINER = """\
import json, os, sys, time, studyc
c = studyc.config()
ckpt = studyc.checkpoint_dir() / "state.json"
start = json.loads(ckpt.read_text())["step"] + 1 if ckpt.exists() else 0
if c.get("oom") and c["batch_size"] > c["oom"]:
    print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", flush=True)
    sys.exit(1)
for i in range(start, c.get("steps", 3)):
    time.sleep(c.get("sleep", 0.05))
    loss = float("nan") if c.get("nan") else 1.0 / (i + 1)
    studyc.log(step=i, loss=loss, nrmse=c.get("base", 0.05) + 0.001 * c["seed"] + 0.01 / (i + 1), resumed_from=start,
               attempt=float(os.environ.get("STUDYC_ATTEMPT", "1")), batch_size=c.get("batch_size", 0))
    (ckpt.parent / "tmp.json").write_text(json.dumps({"step": i}))
    os.replace(ckpt.parent / "tmp.json", ckpt)
if c.get("crash"):
    marker = studyc.run_dir() / "crashes"
    n = int(marker.read_text()) if marker.exists() else 0
    if n < c.get("crash_times", 99):
        marker.write_text(str(n + 1))
        print("RuntimeError: something broke", flush=True)
        sys.exit(c["crash"])
print("done", flush=True)
"""


@pytest.fixture
def cloud_study(tmp_path, bucket):
    """Write a study that runs TRAINER on the cloud with results in the test bucket."""
    trainer = tmp_path / "trainer.py"
    trainer.write_text(TRAINER)

    def write(config: str = "{base: 0.05}", extra: str = "", seeds: str = "[0]", arms: str = "a: {}\nb: {config: {base: 0.06}}",
              results: bool = True, name: str = "study.yaml") -> Path:
        results_line = f", results: s3://{bucket}/results" if results else ""
        arm_lines = "".join(f"  {line}\n" for line in arms.splitlines())
        text = (f"study: cloudy\n"
                f"run:\n"
                f"  command: {sys.executable} {trainer}\n"
                f"  config: {config}\n"
                f"  seeds: {seeds}\n"
                f"  resources: {{accelerators: 'A100:1', vram_gb: 10, hours: 0.01}}\n"
                f"metrics:\n"
                f"  nrmse: {{goal: min}}\n"
                f"arms:\n{arm_lines}"
                f"cloud: {{infra: aws{results_line}}}\n") + textwrap.dedent(extra)
        if "budget:" not in extra:
            text += "budget: {parallel: 4}\n"
        path = tmp_path / name
        path.write_text(text)
        return path

    return write

