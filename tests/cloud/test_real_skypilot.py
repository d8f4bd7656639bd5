"""`studyc run --cloud` against the real SkyPilot 0.14: its SDK starts a real local API server
(in a temporary HOME, on a port of its own) and no cloud is reachable. studyc passes its
check with no jobs controller yet, reaches launch, and turns SkyPilot's "no cloud access"
into one line that says to run `sky check` (exit 1, no traceback). The behaviours the fake
is built from (fixtures/skypilot-<version>.json) are checked against the real server too.

Slow (the server's start and SkyPilot's cloud check take about a minute each); needs no
network beyond this machine."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sky", reason="the cloud extra (skypilot) is not installed")
pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def sky_env(tmp_path_factory):
    """An environment with nothing of the developer's: a fresh HOME (no credentials, no
    ~/.sky), SkyPilot's local API server on a free port, no usage reports."""
    home = tmp_path_factory.mktemp("sky-home")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
           "SKYPILOT_API_SERVER_LOCAL_PORT": str(_free_port()), "SKYPILOT_DISABLE_USAGE_COLLECTION": "1",
           "PYTHONPATH": str(REPO), "WANDB_API_KEY": "0" * 40, "WANDB_MODE": "offline"}
    yield env
    subprocess.run([sys.executable, "-c", "import sky; sky.api_stop()"], env=env, capture_output=True, timeout=120)


def test_run_cloud_passes_with_no_controller_reaches_launch_and_says_to_run_sky_check(sky_env, tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text("study: realsky\n"
                     "run: {command: \"python -c 'print(1)'\", resources: {hours: 0.01}}\n"
                     "metrics: {m: {}}\narms: {a: {}}\n"
                     "tracking: {wandb: {project: p}}\n")  # results from W&B: no bucket to reach
    done = subprocess.run([sys.executable, "-m", "studyc.cli", "run", str(study), "--cloud", "--store",
                           str(tmp_path / ".studyc")], env=sky_env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=540)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "start  a seed 0" in out  # the check passed with no jobs controller: the launch began
    assert "error: SkyPilot cannot reach any cloud: Cloud access is not set up. Run: sky check" in out
    assert "hint: run `sky check`" in out
    assert "Traceback" not in out and "internal error" not in out


def test_recorded_behaviour_holds_for_the_real_server(sky_env, fake_sky_module):
    probe = ("import json, sky\n"
             "try:\n"
             "    sky.get(sky.jobs.queue_v2(refresh=False))\n"
             "    print(json.dumps(None))\n"
             "except Exception as exc:\n"
             "    print(json.dumps([f'{type(exc).__module__}.{type(exc).__name__}', str(exc)]))\n")
    done = subprocess.run([sys.executable, "-c", probe], env=sky_env, capture_output=True, text=True, timeout=300)
    observed = json.loads(done.stdout.strip().splitlines()[-1])
    recorded = fake_sky_module.RECORDED["errors"]["no_controller"]
    assert observed == [recorded["class"], recorded["message"]], done.stderr[-2000:]
