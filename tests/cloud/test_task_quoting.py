"""Whatever a study's keys and values hold, a compiled task file says exactly what studyc
meant: SkyPilot's own parser reads it back to the same structure (issue 14, item 2: a
config key with a newline used to inject a top-level ``setup:`` through a comment)."""

from __future__ import annotations

import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from studyc.compiler.ids import canonical
from studyc.compiler.plan import compile_plan
from studyc.compiler.sky import TaskRenderer, run_script, write_compiled
from studyc.errors import StudyErrors
from studyc.spec.loader import load

sky = pytest.importorskip("sky", reason="the cloud extra (skypilot) is not installed")

TOP_LEVEL = {"name", "workdir", "resources", "file_mounts", "envs", "secrets", "setup", "run"}
# Any text, line breaks of every kind (\n, \r, NEL, LS, PS) and YAML's syntax included.
hostile = st.text(st.characters(blacklist_categories=("Cs",)), max_size=24) | st.sampled_from(
    ["bs\n- 1", "x\nsetup: rm -rf /", "a\r\nrun: evil", "k\x85setup: x", "k\u2028run: y", "#", "- ", "{a: 1}", "&x *x",
     "'", '"', "\\", "%YAML 1.1", "--- !!python/object", "\t", "? k", "\ufeffbom"])


def _study(key: str, value: str, env_value: str) -> dict:
    return {
        "study": "q",
        "run": {"command": "python t.py", "config": {key: value, "n": 4}, "env": {"EXTRA": env_value},
                "resources": {"hours": 0.1}},
        "metrics": {"m": {}},
        "arms": {"a": {}},
        "on_failure": {"oom": {"retries": 1, "config": {key: 7}}, "crashed": {"retries": 1}},
        "tracking": {"wandb": {"project": "p"}},
        "cloud": {"infra": "aws", "results": "s3://b/r", "secrets": ["HF_TOKEN"]},
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.filter_too_much])
@given(key=hostile.filter(bool), value=hostile, env_value=hostile.filter(lambda s: "\x00" not in s))
def test_any_key_or_value_compiles_to_a_task_skypilot_reads_back_unchanged(tmp_path_factory, key, value, env_value):
    root = tmp_path_factory.mktemp("quote")
    path = root / "study.yaml"
    path.write_text(json.dumps(_study(key, value, env_value)), encoding="utf-8")  # JSON is YAML
    try:
        loaded = load(path)
    except StudyErrors:
        return  # refused with a positioned error: nothing compiles, nothing to inject into
    plan = compile_plan(loaded)
    compiled = write_compiled(loaded, plan, root / "out")
    (task_file,) = compiled.tasks
    config = yaml_of(task_file)
    assert set(config) == TOP_LEVEL  # nothing injected at the top level
    task = sky.Task.from_yaml(str(task_file))  # SkyPilot's parser and schema
    (run,) = plan.runs
    assert task.envs["STUDYC_CONFIG_JSON"] == canonical(run.config)
    assert json.loads(task.envs["STUDYC_CONFIG_JSON"])[key] == value
    assert task.envs["EXTRA"] == env_value
    renderer = TaskRenderer(loaded, plan, root / "out")
    assert task.setup == renderer.setup(None)
    assert task.run == run_script(run, 1080)  # 0.1 h x the timeout factor 3
    assert config["secrets"] == {"HF_TOKEN": None, "WANDB_API_KEY": None}
    shutil.rmtree(root)


def yaml_of(path):
    from sky.utils import yaml_utils

    return yaml_utils.read_yaml(str(path))
