"""`studyc promote`: the champion's config goes back into the study (or a config file)
and nothing else in the file moves. Results are recorded straight into a store, so no
process is spawned."""

from __future__ import annotations

import csv
import difflib
import json
import shutil
import textwrap
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from studyc.cli import main
from studyc.compiler.plan import Compiler
from studyc.errors import RunError
from studyc.promote import drop_plus, promote
from studyc.runtime.store import Store
from studyc.spec.loader import load
from studyc.yamledit import edit_yaml, float_text

REPO = Path(__file__).resolve().parents[2]


def record(path: Path, store: Store, profile: str | None, metric: str, values: dict[str, float],
           stage: str | None = None) -> None:
    """Finished runs for the arms in ``values`` (every seed logs the same final value)."""
    loaded = load(path, profile)
    compiler = Compiler(loaded)
    plan = compiler.compile()
    runs = [r for r in plan.runs if r.arm in values and not r.pending and (stage is None or r.stage == stage)]
    if stage is not None and not runs:
        runs = [r for arm in values for r in compiler.stage_runs(stage, [arm])]
    store.register_study(loaded.study.study, profile, str(path), plan.spec_hash, plan.checks_hash)
    store.add_runs(loaded.study.study, profile, runs)
    for run in runs:
        assert store.claim(run.id, run.config, "test") is not None
        store.finish(run.id, "done", 0, None, "", [{"step": 0, metric: values[run.arm] + 0.01},
                                                  {"step": 1, metric: values[run.arm]}], 0.0, 0.0)


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    diff = list(difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0))
    removed = [d[1:] for d in diff if d.startswith("-") and not d.startswith("---")]
    added = [d[1:] for d in diff if d.startswith("+") and not d.startswith("+++")]
    return removed, added


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / ".studyc")


def copy_study(name: str, tmp_path: Path) -> Path:
    path = tmp_path / name
    shutil.copy(REPO / "studies" / name, path)
    return path


def test_seed_000_round_trip_changes_only_the_promoted_lines(tmp_path, store):
    path = copy_study("burgers_phase3_ablation.yaml", tmp_path)
    before = path.read_text()
    record(path, store, "cpu", "nrmse", {"pure_128": 0.061, "pure_256": 0.052, "chansep_128": 0.07})
    done = promote(path, "cpu", store)
    after = path.read_text()
    assert done.winner.arm == "pure_256" and "champion" in done.winner.why
    removed, added = changed_lines(before, after)
    # Only the keys pure_256 sets differently from run.config, each on its own line.
    assert removed == ["    architecture: u_shaped", "    tokens: 128"]
    assert added == ["    architecture: pure", "    tokens: 256"]
    assert {c["key"]: c["new"] for c in done.changes} == {"architecture": "pure", "tokens": 256}
    promoted = load(path)  # still a valid study, with the winner as its base config
    assert promoted.study.run.config["tokens"] == 256
    cpu = load(path, "cpu").study  # the profile's overlay is untouched
    assert cpu.run.config["epochs"] == 3 and cpu.arms["pure_256"].config["tokens"] == 32


def test_seed_002_champion_of_the_last_stage_carries_its_stage_config(tmp_path, store):
    path = copy_study("burgers_sota_sweep.yaml", tmp_path)
    before = path.read_text()
    study = load(path).study
    arm = "sweep_round_b_deeper"
    record(path, store, "cpu", "nrmse", {arm: 0.04}, stage="full_eval")
    done = promote(path, "cpu", store)
    assert (done.winner.arm, done.winner.stage) == (arm, "full_eval")
    expected = {**study.run.config, **study.arms[arm].config, **study.stages["full_eval"].config}
    assert load(path).study.run.config == expected  # the study's own values, not the cpu profile's
    removed, added = changed_lines(before, path.read_text())
    assert len(removed) == len(added) == len(done.changes) == 11
    assert all(line.startswith("    ") and not line.startswith("     ") for line in removed + added)
    for old, new in zip(removed, added):  # each line's comment stays, in its column
        assert old.split(":")[0] == new.split(":")[0]
        if "#" in old:
            assert (old.index("#"), old.split("#", 1)[1]) == (new.index("#"), new.split("#", 1)[1])


def test_flow_config_and_added_keys(tmp_path, store, write_study):
    path = write_study("""
        study: flow
        run:
          command: python train.py   # the trainer
          config: {lr: 0.001, depth: 2}   # keep this comment
          seeds: [0, 1]
        metrics:
          loss: {goal: min}
        arms:
          base: {}
          deep: {config: {depth: 4, +dropout: 0.1}}
        """)
    before = path.read_text()
    record(path, store, None, "loss", {"base": 0.5, "deep": 0.3})
    done = promote(path, None, store)
    assert done.winner.arm == "deep"
    removed, added = changed_lines(before, path.read_text())
    # dropout is now a key of run.config, so the arm's '+dropout' (declaring it new) loses its '+'.
    assert removed == ["  config: {lr: 0.001, depth: 2}   # keep this comment",
                       "  deep: {config: {depth: 4, +dropout: 0.1}}"]
    assert added == ["  config: {lr: 0.001, depth: 4, dropout: 0.1} # keep this comment",
                     "  deep: {config: {depth: 4, dropout: 0.1}}"]


def test_to_a_config_file_keeps_its_comments_and_marks_the_leaderboard(tmp_path, store, write_study,
                                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)  # report.leaderboard is relative to the working directory
    path = write_study("""
        study: tofile
        run:
          command: python train.py
          config: {lr: 0.001, depth: 2, optim: {name: adam, betas: [0.9, 0.999]}}
        metrics:
          loss: {goal: min}
        arms:
          a: {config: {lr: 0.002}}
          b: {config: {depth: 3, optim: {betas: [0.9, 0.95]}}}
        report: {leaderboard: board.csv}
        """)
    config = tmp_path / "prod.yaml"
    config.write_text(textwrap.dedent("""\
        # production config
        lr: 0.001        # tuned in phase 2
        depth: 2

        optim:
          name: adam     # the optimizer
          betas: [0.9, 0.999]
        extra: kept      # not a study key
        """))
    before = path.read_text()
    record(path, store, None, "loss", {"a": 0.5, "b": 0.2})
    done = promote(path, None, store, to=config)
    assert path.read_text() == before  # the study is not touched
    assert config.read_text() == textwrap.dedent("""\
        # production config
        lr: 0.001        # tuned in phase 2
        depth: 3

        optim:
          name: adam     # the optimizer
          betas: [0.9, 0.95]
        extra: kept      # not a study key
        """)
    assert {c["key"] for c in done.changes} == {"depth", "optim.betas"}
    with open(tmp_path / "board.csv", newline="") as fh:
        rows = {r["arm"]: r for r in csv.DictReader(fh)}
    assert rows["b"]["promoted"].endswith(f"into {config}") and rows["b"]["loss"] == "0.2"
    # A later report refreshes the row and keeps the mark.
    from studyc.report import leaderboard
    from studyc.report.collect import collect
    from studyc.spec.arms import expand_arms

    loaded = load(path)
    leaderboard.update(tmp_path / "board.csv", leaderboard.rows(collect(loaded.study, store, None),
                                                                expand_arms(loaded.study)))
    with open(tmp_path / "board.csv", newline="") as fh:
        assert {r["arm"]: r["promoted"] for r in csv.DictReader(fh)} == {"a": "", "b": rows["b"]["promoted"]}


def test_to_a_new_json_file(tmp_path, store, write_study):
    path = write_study("""
        study: tojson
        run: {command: python train.py, config: {lr: 0.001}}
        metrics: {loss: {goal: min}}
        arms: {a: {config: {lr: 0.002}}, b: {}}
        """)
    record(path, store, None, "loss", {"a": 0.1, "b": 0.2})
    promote(path, None, store, to=tmp_path / "out" / "best.json")
    assert json.loads((tmp_path / "out" / "best.json").read_text()) == {"lr": 0.002}


def test_no_results_yet_is_a_clear_error(tmp_path, store, write_study):
    path = write_study("""
        study: empty
        run: {command: python train.py}
        metrics: {loss: {goal: min}}
        arms: {a: {}}
        """)
    with pytest.raises(RunError, match="no results yet") as info:
        promote(path, None, store)
    assert "studyc run" in info.value.hint


def test_no_champion_is_a_clear_error(tmp_path, store, write_study):
    path = write_study("""
        study: nochamp
        run: {command: python train.py}
        metrics: {loss: {goal: min}, acc: {goal: max}}
        arms: {a: {}}
        """)
    record(path, store, None, "acc", {"a": 0.5})  # runs finished, but never logged the primary metric
    with pytest.raises(RunError, match="no champion yet") as info:
        promote(path, None, store)
    assert "--arm" in info.value.hint


def test_dryrun_writes_nothing_and_cli_reports(tmp_path, store, write_study):
    path = write_study("""
        study: cli
        run: {command: python train.py, config: {lr: 0.001}}
        metrics: {loss: {goal: min}}
        arms: {a: {config: {lr: 0.002}}, b: {}}
        """)
    before = path.read_text()
    record(path, store, None, "loss", {"a": 0.1, "b": 0.2})
    runner = CliRunner()
    result = runner.invoke(main, ["promote", str(path), "--dryrun", "--store", str(store.home)])
    assert result.exit_code == 0, result.output
    assert "+run: {command: python train.py, config: {lr: 0.002}}" in result.output and path.read_text() == before
    result = runner.invoke(main, ["promote", str(path), "--json", "--arm", "b", "--store", str(store.home)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["changes"] == []  # b is run.config itself
    result = runner.invoke(main, ["promote", str(path), "--arm", "nope", "--store", str(store.home)])
    assert result.exit_code == 1 and "unknown arm 'nope'" in result.output
    result = runner.invoke(main, ["promote", str(path), "--store", str(tmp_path / "nothing")])
    assert result.exit_code == 1 and "no results yet" in result.output
    assert not (tmp_path / "nothing").exists()  # a missing store is not created


def test_edit_yaml_keeps_block_layout_and_appends_new_keys():
    text = textwrap.dedent("""\
        a: 1   # one
        # about b
        b:
            x: 1      # nested, four spaces
            y: [1, 2]
            lr: 3.0e-4
        c: 'quoted'
        """)
    out = edit_yaml(text, (), {"b": {"x": 2, "z": 3, "lr": 3.5e-4}, "c": "new", "d": True, "e": "on", "f": 1e-05},
                    "f.yaml")
    assert out == textwrap.dedent("""\
        a: 1   # one
        # about b
        b:
            x: 2      # nested, four spaces
            y: [1, 2]
            lr: 3.5e-4
            z: 3
        c: 'new'
        d: true
        e: "on"
        f: 1.0e-5
        """)
    # The study loader reads YAML 1.1: 'on' would be true there, and 1e-05 a string.
    assert yaml.safe_load(out)["e"] == "on" and yaml.safe_load(out)["f"] == 1e-05


def test_a_missing_run_config_is_added_under_run(tmp_path, store, write_study):
    path = write_study("""
        study: noconfig
        run:
          command: python train.py
          seeds: [0]
        metrics: {loss: {goal: min}}
        arms: {a: {config: {+lr: 0.01}}}
        """)
    record(path, store, None, "loss", {"a": 0.1})
    promote(path, None, store)
    assert path.read_text().splitlines()[2:6] == ["  command: python train.py", "  seeds: [0]", "  config:",
                                                  "    lr: 0.01"]
    assert "arms: {a: {config: {lr: 0.01}}}" in path.read_text()


def test_drop_plus_everywhere_a_new_key_is_declared():
    text = textwrap.dedent("""\
        run:
          config: {lr: 0.1, optim: {beta: 0.9, eps: 1.0e-8}}
        arms:
          a:
            config:
              +lr: 0.2          # declared new before the promotion
              optim: {+eps: 1.0e-6, +other: 1}
            grid: {"+optim.beta": [0.8], +width: [1, 2]}
        stages:
          s: {config: {'+lr': 0.3}}
        profiles:
          cpu:
            run: {config: {+lr: 0.05}}
            arms: {a: {config: {+lr: 0.01}}}
        """)
    assert drop_plus(text) == textwrap.dedent("""\
        run:
          config: {lr: 0.1, optim: {beta: 0.9, eps: 1.0e-8}}
        arms:
          a:
            config:
              lr: 0.2          # declared new before the promotion
              optim: {eps: 1.0e-6, +other: 1}
            grid: {"optim.beta": [0.8], +width: [1, 2]}
        stages:
          s: {config: {'lr': 0.3}}
        profiles:
          cpu:
            run: {config: {lr: 0.05}}
            arms: {a: {config: {lr: 0.01}}}
        """)


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([None, "e", "E"]))
def test_floats_read_back_the_same_in_yaml_1_1(value, exp):
    assert yaml.safe_load(float_text(value, exp)) == value
