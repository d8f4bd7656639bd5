"""`studyc compile`: plan.json and one SkyPilot task per run, each checked by SkyPilot's
own validation; same input, same bytes on any machine; no secret in any file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from studyc.cli import main
from studyc.compiler.ids import canonical
from studyc.compiler.plan import compile_plan
from studyc.compiler.sky import job_recovery, write_compiled, yaml_block, yaml_scalar
from studyc.spec.loader import load

REPO = Path(__file__).resolve().parents[2]
yaml = pytest.importorskip("yaml", reason="PyYAML (SkyPilot's YAML reader) comes with the cloud extra")
STUDIES = sorted((REPO / "studies").glob("*.yaml"))


def compile_to(path: Path, out: Path, profile: str | None = None):
    loaded = load(path, profile)
    plan = compile_plan(loaded)
    return plan, write_compiled(loaded, plan, out)


def profiles_of(path: Path) -> list[str | None]:
    return [None, *load(path).study.profiles]


@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.stem)
def test_every_study_compiles_to_tasks_skypilot_accepts(study, tmp_path, sky_validate):
    for profile in profiles_of(study):
        out = tmp_path / (profile or "full")
        plan, compiled = compile_to(study, out, profile)
        data = json.loads(compiled.plan_file.read_text())
        assert data["metadata"]["kind"] == "plan" and data["metadata"]["spec_hash"] == plan.spec_hash
        assert len(compiled.tasks) + compiled.pending == len(data["runs"])
        for path in compiled.tasks:
            task = sky_validate(path, out)
            run = next(r for r in plan.runs if path.name.startswith(r.id))
            assert task.envs["STUDYC_RUN_ID"] == run.id
            assert json.loads(task.envs["STUDYC_CONFIG_JSON"]) == run.config
            assert Path(task.workdir) == Path(plan.workdir)


def test_seed_002_task_carries_resources_recovery_and_results(write_study, seed_002, tmp_path, sky_validate):
    out = tmp_path / "out"
    plan, compiled = compile_to(write_study(seed_002), out)
    tasks = {sky_validate(p, out).envs["STUDYC_ARM"]: sky_validate(p, out) for p in compiled.tasks}
    aggressive = tasks["aggressive"]
    (res,) = aggressive.resources
    assert res.accelerators == {"A100-80GB": 1} and res.use_spot and res.disk_size == 64
    assert str(res.infra.cloud).lower() == "vast"
    # SkyPilot recovers lost machines only; every failure of the run itself is studyc's, by its class.
    assert res.job_recovery == {"strategy": "EAGER_NEXT_REGION"}
    text = next(p for p in compiled.tasks if "aggressive" in p.read_text()).read_text()
    assert "# oom: studyc retries up to 2 times as a new job with batch_size = batch_size // 2" in text
    assert list(aggressive.storage_mounts) == ["/studyc-results"]
    assert aggressive.envs["STUDYC_RESULTS_DIR"] == "/studyc-results"
    assert [ref.name for ref in aggressive._managed_secret_refs] == ["WANDB_API_KEY"]  # by name only
    assert "A100" in str(tasks["deeper"].resources)


def test_recovery_playbook_mapping():
    from studyc.spec.model import Study

    base = {"study": "s", "run": {"command": "x"}, "metrics": {"m": {}}, "arms": {"a": {}}}
    none, notes = job_recovery(Study.model_validate(base))
    assert none is None and notes == []
    only_edits = Study.model_validate({**base, "on_failure": {"oom": {"retries": 2, "config": {"b": "b // 2"}}}})
    recovery, notes = job_recovery(only_edits)
    assert recovery is None and notes == ["oom: studyc retries up to 2 times as a new job with b = b // 2"]
    # SkyPilot's own restarts would rerun an OOM as it is (max_restarts_on_errors reruns any
    # non-zero exit) or restart without bound (recover_on_exit_codes): never asked for.
    as_is = Study.model_validate({**base, "on_failure": {"crashed": {"retries": 1}, "oom": {"retries": 3},
                                                         "preempted": {"retries": 2}}})
    recovery, notes = job_recovery(as_is)
    assert recovery == {"strategy": "EAGER_NEXT_REGION"}
    assert "crashed: studyc retries up to 1 time as a new job" in notes
    assert "preempted (exit 143: SIGTERM the machine survived): studyc retries up to 2 times as a new job" in notes


def _two_checkouts(tmp_path: Path, study_text: str) -> list[Path]:
    roots = []
    for where in ("alice/work", "bob/elsewhere/deeper"):
        root = tmp_path / where
        (root / "studies").mkdir(parents=True)
        (root / "studies" / "s.yaml").write_text(study_text)
        roots.append(root)
    return roots


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_study_compiles_to_the_same_bytes_on_any_machine(tmp_path, seed_002):
    text = seed_002.replace("run:\n", "run:\n  workdir: ..\n", 1)
    trees = []
    for root in _two_checkouts(tmp_path, text):
        out = root / "build"
        compile_to(root / "studies" / "s.yaml", out)
        compile_to(root / "studies" / "s.yaml", out)  # again: unchanged
        trees.append(_tree(out))
        for content in trees[-1].values():
            assert str(tmp_path).encode() not in content  # no absolute path
    assert trees[0] == trees[1] and len(trees[0]) == 7
    plan = json.loads(trees[0]["plan.json"])
    assert plan["workdir"] == ".." and plan["study_file"] == "../studies/s.yaml"
    assert "generated_at" not in plan["metadata"]


def test_tasks_of_runs_no_longer_planned_are_removed(tmp_path, write_study, seed_002):
    out = tmp_path / "out"
    _, first = compile_to(write_study(seed_002), out)
    edited = seed_002.replace("tokens: 24, batch_size: 10", "tokens: 24, batch_size: 9")
    _, second = compile_to(write_study(edited), out)
    assert len(second.tasks) == 6 and sorted((out / "tasks").iterdir()) == sorted(second.tasks)
    assert len(set(first.tasks) - set(second.tasks)) == 1


def test_no_secret_value_reaches_any_compiled_file(tmp_path, write_study, seed_002, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "wandb-secret-value-123")
    monkeypatch.setenv("HF_TOKEN", "hf-secret-value-456")
    text = seed_002.replace("cloud: {", "cloud: {secrets: [HF_TOKEN], ")
    out = tmp_path / "out"
    _, compiled = compile_to(write_study(text), out)
    for content in _tree(out).values():
        assert b"secret-value" not in content
    task = yaml.safe_load(compiled.tasks[0].read_text())
    assert task["secrets"] == {"HF_TOKEN": None, "WANDB_API_KEY": None}


def test_a_credential_in_run_env_is_refused_before_writing(tmp_path, write_study, seed_002):
    text = seed_002.replace("  seeds: [0]\n", "  seeds: [0]\n  env: {HF_TOKEN: hf-abc}\n", 1)
    result = CliRunner().invoke(main, ["compile", str(write_study(text)), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "HF_TOKEN, which looks like a credential" in result.output
    assert "cloud: {secrets: [HF_TOKEN]}" in result.output
    assert not (tmp_path / "out").exists()


def test_compile_refuses_over_budget_unless_told(tmp_path, write_study, seed_002):
    path = str(write_study(seed_002.replace("usd: 35", "usd: 30")))
    refused = CliRunner().invoke(main, ["compile", path, "-o", str(tmp_path / "out")])
    assert refused.exit_code == 1 and "estimated $32.80 exceeds budget.usd = $30.00" in refused.output
    assert "--allow-over-budget" in refused.output and not (tmp_path / "out").exists()
    allowed = CliRunner().invoke(main, ["compile", path, "-o", str(tmp_path / "out"), "--allow-over-budget"])
    assert allowed.exit_code == 0, allowed.output
    assert "6 SkyPilot tasks" in allowed.output and "over budget (allowed" in allowed.output
    assert len(list((tmp_path / "out" / "tasks").glob("*.sky.yaml"))) == 6


def test_plan_shows_schedule_totals_and_budget(write_study, seed_004):
    path = write_study(seed_004.replace("parallel: 4}", "parallel: 4, usd: 20}"))
    result = CliRunner().invoke(main, ["plan", str(path)])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "schedule on one machine (1 GPU × 94.5 GB" in out
    # Two runs share the GPU and slow each other (machine.contention, default 1.0).
    assert "0.00–5.00 h 2 running (GPU memory 72/94.5 GB" in out and "5.00–10.00 h 2 running" in out
    assert "slowed by machine.contention = 1" in out
    assert "totals: 4 runs, $30.00, 10.00 GPU-hours, 10.00 h wall-clock" in out
    assert "budget.usd: $30.00 of $20.00 (OVER by $10.00)" in out and "--allow-over-budget" in out


def test_plan_json_shape(write_study, seed_004):
    result = CliRunner().invoke(main, ["plan", str(write_study(seed_004)), "--json"])
    data = json.loads(result.output)
    assert {"usd", "gpu_hours", "wall_hours"} <= data["totals"].keys()
    run = data["runs"][0]
    assert {"id", "arm", "stage", "seed", "resources", "est_hours", "est_usd", "start_h", "end_h", "gpus"} <= run.keys()
    assert data["schedule"]["peak_concurrent"] == 2 and data["budget"]["ok"]


def test_user_templates_override_the_task_template(tmp_path, write_study, seed_004, monkeypatch):
    original = (REPO / "studyc" / "templates" / "sky_task.yaml.j2").read_text()
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "sky_task.yaml.j2").write_text("# team template\n" + original)
    monkeypatch.chdir(tmp_path)
    _, compiled = compile_to(write_study(seed_004), tmp_path / "out")
    assert compiled.tasks[0].read_text().startswith("# team template\n")


# ------------------------------------------------------------- YAML quoting

printable = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(printable)
def test_any_string_survives_yaml_quoting(text):
    assert yaml.safe_load(f"k: {yaml_scalar(text)}\n") == {"k": text}


@settings(max_examples=300, deadline=None)
@given(st.lists(printable.filter(lambda s: "\n" not in s), min_size=1, max_size=5))
def test_any_script_survives_as_a_block(lines):
    script = "\n".join(lines) + "\n"
    doc = f"run: {yaml_block(script)}\nafter: 1\n"
    assert yaml.safe_load(doc) == {"run": script, "after": 1}


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), printable, min_size=1, max_size=4))
def test_config_values_cannot_change_the_task(sky, tmp_path_factory, config):
    out = tmp_path_factory.mktemp("fuzz")
    config_yaml = json.dumps(config)  # JSON is YAML: the study states the values verbatim
    (out / "s.yaml").write_text(f"study: f\nrun: {{command: 'echo', config: {config_yaml}}}\n"
                                "metrics: {m: {}}\narms: {a: {}}\n")
    _, compiled = compile_to(out / "s.yaml", out / "build")
    task = sky.Task.from_yaml(str(compiled.tasks[0]))
    assert json.loads(task.envs["STUDYC_CONFIG_JSON"]) == {**config, "seed": 0}
    assert task.envs["STUDYC_CONFIG_JSON"] == canonical({**config, "seed": 0})
    shutil.rmtree(out)


def test_promoted_stages_get_their_tasks_when_gates_are_judged(tmp_path, write_study):
    path = write_study("""\
        study: staged
        run: {command: python t.py, resources: {accelerators: "L4:1", hours: 1}}
        metrics: {m: {goal: min}}
        arms: {a: {}, b: {}, c: {}}
        stages:
          screen: {arms: all, promote: {top: 1}}
          full: {arms: promoted, needs: [screen], config: {+epochs: 50}, resources: {hours: 4}}
        """)
    result = CliRunner().invoke(main, ["compile", str(path), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "3 SkyPilot tasks" in result.output
    assert "task files for 1 promoted run come once the gates are judged" in result.output
    plan = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert [r["pending"] for r in plan["runs"]] == [False, False, False, True]
    # Budgeted for the promoted run: 3 x 1 h + 4 h of L4 at $0.80/h.
    assert plan["totals"]["usd"] == pytest.approx(7 * 0.80)
