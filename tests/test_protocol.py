"""The run protocol has one home (studyc/protocol.py), and the timeout policy: locally a
run is stopped for time only when the study says so."""

import ast
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from studyc import protocol

PACKAGE = Path(__file__).resolve().parents[1] / "studyc"


def test_the_protocol_names_live_in_one_module():
    holders = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if "STUDYC_CONFIG" in p.read_text())
    assert holders == ["protocol.py"]
    for name in ("metrics.jsonl", "log.txt", "config.json"):  # ("exit_code" is also a column)
        holders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                   if f'"{name}"' in p.read_text() and p.name != "protocol.py"]
        assert holders == [], f"{name} spelled outside protocol.py: {holders}"


def test_the_task_writer_does_not_load_the_runtime():
    tree = ast.parse((PACKAGE / "compiler" / "sky.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(m and m.startswith("studyc.runtime") for m in imported), imported
    code = ("import sys, studyc.compiler.sky; "
            "print(sorted(m for m in sys.modules if m == 'sqlite3' or m.startswith('studyc.runtime.')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    # the package itself brings the trainer SDK (and its W&B hook); nothing of the executor or the store
    assert eval(loaded) == ["studyc.runtime.sdk", "studyc.runtime.wandb_log"], loaded


def test_timeout_policy():
    assert protocol.timeout_s({"timeout": None}, 0.001, remote=False) is None  # a slow machine never fails a run
    assert protocol.timeout_s({}, 5.0, remote=False) is None
    assert protocol.timeout_s({"timeout": 0.5}, 0.001, remote=False) == 1800
    assert protocol.timeout_s({"timeout": 0.5}, 0.001, remote=True) == 1800
    assert protocol.timeout_s({"timeout": None}, 2.0, remote=True) == 3 * 2 * 3600  # a cloud job bills until it ends
    assert protocol.timeout_s({"timeout": None}, 0.0001, remote=True) == 60
    assert protocol.timeout_note(2.0, 2.3) == "studyc: stopped by the timeout after 2.3 s (limit 2.0 s, resources.timeout)"


def test_local_and_cloud_environments_share_the_identity(tmp_path):
    run = SimpleNamespace(id="r1", arm="a", stage="main", seed=3)
    local = protocol.local_env("s", run, tmp_path, tmp_path / "config.json", resume=True)
    cloud = protocol.cloud_env("s", run, '{"lr":1}', "/mnt")
    identity = {"STUDYC_STUDY": "s", "STUDYC_RUN_ID": "r1", "STUDYC_ARM": "a", "STUDYC_STAGE": "main", "STUDYC_SEED": "3"}
    assert identity.items() <= local.items() and identity.items() <= cloud.items()
    assert local[protocol.RUN_DIR] == str(tmp_path) and local[protocol.RESUME] == "1"
    assert cloud[protocol.CONFIG_JSON] == '{"lr":1}' and cloud[protocol.RESULTS_DIR] == "/mnt"
    assert protocol.RESULTS_DIR not in protocol.cloud_env("s", run, "{}", None)
