"""`cloud: {pool: {workers: N}}`: the study's jobs run on a SkyPilot job pool of N identical
workers, each running the setup once, instead of a machine (and a setup) per run."""

from __future__ import annotations

import pytest
import yaml

from studyc.compiler.plan import compile_plan
from studyc.compiler.sky import write_compiled
from studyc.errors import RunError
from studyc.spec.loader import load

sky = pytest.importorskip("sky", reason="the cloud extra (skypilot) is not installed")
from testkit.cloud import runs_by_arm  # noqa: E402


def test_compile_writes_the_pool_and_jobs_without_setup(tmp_path, write_study):
    path = write_study("""\
        study: Pooled.Study
        run: {command: python t.py, setup: "pip install mylib", resources: {accelerators: "L4:1", hours: 1}}
        metrics: {m: {}}
        arms: {a: {}, b: {config: {+x: 1}}}
        cloud: {infra: aws, pool: {workers: 2}}
        """)
    loaded = load(path)
    compiled = write_compiled(loaded, compile_plan(loaded), tmp_path / "out")
    pool_file = tmp_path / "out" / "tasks" / "pool.sky.yaml"
    assert pool_file in compiled.tasks
    pool = yaml.safe_load(pool_file.read_text())
    assert pool["pool"] == {"workers": 2} and pool["setup"] == "pip install mylib\n" and "run" not in pool
    assert pool["name"] == "studyc-pooled-study"
    assert "sky jobs pool apply -p studyc-pooled-study tasks/pool.sky.yaml" in pool_file.read_text()
    task = sky.Task.from_yaml(str(pool_file))  # SkyPilot reads it as a pool
    assert task.service is not None and task.setup == "pip install mylib\n"
    for job_file in [p for p in compiled.tasks if p != pool_file]:
        job = yaml.safe_load(job_file.read_text())
        assert "setup" not in job and job["run"]  # the worker ran the setup already
        assert "sky jobs launch --pool studyc-pooled-study" in job_file.read_text()


def test_a_pool_needs_runs_of_one_shape(tmp_path, write_study):
    path = write_study("""\
        study: pooled
        run: {command: python t.py, resources: {accelerators: "L4:1", hours: 1}}
        metrics: {m: {}}
        arms: {a: {}, big: {resources: {accelerators: "H100:1"}}}
        cloud: {infra: aws, pool: {workers: 2}}
        """)
    loaded = load(path)
    with pytest.raises(RunError, match="identical workers"):
        write_compiled(loaded, compile_plan(loaded), tmp_path / "out")


def test_run_cloud_applies_the_pool_once_then_launches_every_job_on_it(cloud, cloud_study):
    path = cloud_study(seeds="[0, 1]", extra="""\
        cloud: {infra: aws, pool: {workers: 2}}
        """)
    text = path.read_text()
    bucket_line = next(line for line in text.splitlines() if line.startswith("cloud: {infra: aws, results:"))
    results = bucket_line.split("results: ")[1].rstrip("}")
    text = text.replace(bucket_line + "\n", "").replace("pool: {workers: 2}}", f"pool: {{workers: 2}}, results: {results}}}")
    path.write_text(text)
    cloud(path)
    calls = [(name, c) for name, c in cloud.fake.calls if name in ("pool_apply", "launch")]
    assert calls[0] == ("pool_apply", {"pool_name": "studyc-cloudy", "workers": 2, "mode": "rolling"})
    launches = [c for name, c in calls if name == "launch"]
    assert len(launches) == 4 and all(c["pool"] == "studyc-cloudy" for c in launches)
    assert sum(name == "pool_apply" for name, _ in calls) == 1
    assert all(j["status"] == "SUCCEEDED" and j["setup"] is None for j in cloud.fake.jobs())
    assert all(r["status"] == "done" for r in runs_by_arm(cloud.store()).values())


def test_dryrun_shows_the_pool_and_its_setup(tmp_path, write_study, monkeypatch):
    from click.testing import CliRunner

    from studyc.cli import main

    monkeypatch.setenv("HOME", str(tmp_path))
    path = write_study("""\
        study: pooled
        run: {command: python t.py, setup: "pip install mylib", resources: {accelerators: "L4:1", hours: 1}}
        metrics: {m: {}}
        arms: {a: {}, b: {}}
        cloud: {infra: aws, pool: {workers: 3}}
        """)
    result = CliRunner().invoke(main, ["run", str(path), "--cloud", "--dryrun"])
    assert result.exit_code == 0, result.output
    assert "job pool studyc-pooled: 3 workers of aws, L4:1, on-demand" in result.output
    assert "each runs the setup once" in result.output and "pip install mylib" in result.output
